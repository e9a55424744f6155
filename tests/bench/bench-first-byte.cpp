// kirin-bench first-byte: from the emulator marking the task completed to the first buffer
// out, by polls or by callbacks.
#include "bench-common.h"
#include "emulator.h"

namespace kirin_bench {
namespace {

// One element, one task held pending by the emulator until complete_now at a chosen moment.
struct FirstByteRun {
  std::string task_id, error;
  gint64 created_us = 0, complete_us = 0, seen_us = 0, first_us = 0;
  std::vector<gint64> polls, callbacks;
};

GstBusSyncReply note_completed(GstBus *, GstMessage *msg, gpointer data) {
  auto *seen_us = static_cast<std::atomic<gint64> *>(data);
  const GstStructure *s = gst_message_get_structure(msg);
  if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ELEMENT && s &&
      gst_structure_has_name(s, "kirin-task") &&
      g_strcmp0(gst_structure_get_string(s, "status"), "completed") == 0 && *seen_us == 0)
    *seen_us = now_us();
  return GST_BUS_PASS;
}

FirstByteRun first_byte_once(kirin_emu::Emulator &emulator, guint poll_interval_ms,
                             bool use_callbacks, double phase) {
  FirstByteRun run;
  emulator.push_fault(kirin_emu::Route::Task, "stuck");
  ClientLog::get().forget_first_task();
  GstElement *src = make_extend_src(emulator.api_url(), "test-key");
  if (poll_interval_ms)
    g_object_set(src, "poll-interval", poll_interval_ms, nullptr);
  // The process's shared receiver on a free port; the emulator notifies it of each change.
  if (use_callbacks)
    g_object_set(src, "callback-listen", "127.0.0.1:0", nullptr);
  Flow flow;
  flow.watch(src);
  GstElement *pipeline = make_pipeline(src);
  std::atomic<gint64> seen_us{0};
  GstBus *bus = gst_element_get_bus(pipeline);
  gst_bus_set_sync_handler(bus, note_completed, &seen_us, nullptr);
  gst_element_set_state(pipeline, GST_STATE_PLAYING);

  run.task_id = ClientLog::get().wait_first_task(10000);
  if (run.task_id.empty()) {
    run.error = "no task was created";
  } else {
    run.created_us = ClientLog::get().created_us(run.task_id);
    const guint nominal = poll_interval_ms ? poll_interval_ms : 5000;
    const gint64 complete_at = run.created_us + gint64(phase * nominal * 1000);
    const gint64 wait = complete_at - now_us();
    if (wait > 0)
      g_usleep(wait);
    emulator.complete_now(run.task_id);
    run.complete_us = now_us();
    // The next polls come at most 4 intervals later (the policy's cap), plus jitter.
    const gint64 deadline = now_us() + gint64(nominal) * 1000 * 5;
    std::unique_lock<std::mutex> guard(flow.lock);
    while (flow.first_us == 0 && now_us() < deadline)
      flow.first_buffer.wait_for(guard, std::chrono::milliseconds(100));
    if (flow.first_us == 0)
      run.error = "no buffer within 5 poll intervals of completion";
  }
  run.first_us = flow.first_us;
  run.seen_us = seen_us;
  GstMessage *msg = gst_bus_timed_pop_filtered(bus, 10 * GST_SECOND,
                                               GstMessageType(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
  if (msg && GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR && run.error.empty()) {
    GError *error = nullptr;
    gst_message_parse_error(msg, &error, nullptr);
    run.error = error->message;
    g_error_free(error);
  }
  if (msg)
    gst_message_unref(msg);
  gst_element_set_state(pipeline, GST_STATE_NULL);
  gst_bus_set_sync_handler(bus, nullptr, nullptr, nullptr);
  gst_object_unref(bus);
  gst_object_unref(pipeline);
  run.polls = ClientLog::get().polls(run.task_id);
  run.callbacks = ClientLog::get().callbacks(run.task_id);
  return run;
}

} // namespace

int run_first_byte(const Args &args) {
  ClientLog::get().install();
  const int reps = int(args.number("reps", 7));
  const guint poll_interval_ms = guint(args.number("poll-interval", 0)); // 0: the default
  const bool use_callbacks = args.get("callback") == "yes";
  kirin_emu::Options options;
  // A small render keeps the emulator's CPU out of the way; results are served from memory.
  options.width = 64;
  options.height = 48;
  kirin_emu::Emulator emulator(options);
  GError *error = nullptr;
  if (!emulator.start(&error)) {
    g_printerr("kirin-bench: emulator: %s\n", error->message);
    return 1;
  }
  std::vector<std::string> runs;
  int failures = 0;
  for (int i = 0; i < reps; i++) {
    // Completion moments spread over 15-85 % of the first poll interval (with its +-10 %
    // jitter it ends no earlier than 90 % of the nominal one). With callbacks the moment
    // does not matter: the notification, not the timer, wakes the element.
    const double phase =
        use_callbacks ? 0.05 : 0.15 + 0.7 * (reps > 1 ? double(i) / (reps - 1) : 0.5);
    FirstByteRun run = first_byte_once(emulator, poll_interval_ms, use_callbacks, phase);
    // The poll that saw the completion is the last one sent; the interval it closed began
    // at the poll before it (or at creation, when the timer was first set).
    gint64 seen_poll = run.polls.empty() ? 0 : run.polls.back();
    gint64 interval_start =
        run.polls.size() >= 2 ? run.polls[run.polls.size() - 2] : run.created_us;
    Json item;
    item.str("task", run.task_id).str("error", run.error).num("phase", phase);
    item.integer("polls", run.polls.size());
    if (run.error.empty()) {
      item.num("latency_ms", (run.first_us - run.complete_us) / 1000.0);
      item.num("interval_ms", (seen_poll - interval_start) / 1000.0);
      item.num("poll_wait_ms", (seen_poll - run.complete_us) / 1000.0);
      item.num("reaction_ms", (run.first_us - seen_poll) / 1000.0);
      item.num("poll_round_trip_ms", (run.seen_us - seen_poll) / 1000.0);
      item.num("expose_to_first_buffer_ms", (run.first_us - run.seen_us) / 1000.0);
      // The first notification after completion: how long the emulator took to send it.
      for (gint64 at : run.callbacks) {
        if (at >= run.complete_us) {
          item.num("callback_arrival_ms", (at - run.complete_us) / 1000.0);
          item.num("callback_to_first_buffer_ms", (run.first_us - at) / 1000.0);
          break;
        }
      }
    } else {
      failures++;
    }
    g_printerr("first-byte %d/%d: %s\n", i + 1, reps, item.text().c_str());
    runs.push_back(item.text());
  }
  Json out;
  out.integer("reps", reps).integer("poll_interval_ms", poll_interval_ms ? poll_interval_ms : 5000);
  out.boolean("callbacks", use_callbacks);
  out.raw("runs", json_array(runs)).str("plugin", plugin_file());
  out.print();
  return failures ? 1 : 0;
}

} // namespace kirin_bench
