// A stopped pipeline never pays, and nothing of a stopped run happens later, whatever the
// application does: a restart with another video, a stop from inside each of the element's
// own messages, a child kept by the application, and random state-change cycles.
#include "run-fixture.h"

#include <atomic>

namespace {

// How many creates a cycle's element decided before its stop: each is announced by an
// "Extending video" progress message right before it is sent, and a stop at that message
// comes first. `exact`: false for a stop at once, whose announced create may have been
// refused by the stop that followed it.
struct Decided {
  guint creates = 0;
  bool exact = true;
};

guint count_extending(const RunResult &result) {
  guint count = 0;
  for (const auto &[type, text] : result.progress)
    count += type == GST_PROGRESS_TYPE_START && text.find("Extending video") != std::string::npos;
  return count;
}

// One cycle of test_random_state_cycles: plays, stops at a random point.
Decided cycle_with_random_stop(GstElement *pipeline, GRand *rand) {
  int mode = g_rand_int_range(rand, 0, 20);
  if (mode < 17) {
    // At the k-th of the element's messages, or at the end if the run has fewer.
    auto decided = std::make_shared<guint>(0);
    auto seen = std::make_shared<int>(0);
    int k = g_rand_int_range(rand, 0, 14);
    auto stop = stop_at(
        pipeline,
        [decided, seen, k](GstMessage *m) {
          if (!is_kirin_message(m) || (*seen)++ == k)
            return is_kirin_message(m);
          *decided += is_progress(m, GST_PROGRESS_TYPE_START, "Extending video");
          return false;
        },
        mode < 9);
    stop->or_at_end = true;
    gst_element_set_state(pipeline, GST_STATE_PLAYING);
    fail_unless(stop->wait_and_stop(), "cycle never reached its stop (message %d, %s)", k,
                mode < 9 ? "from the handler" : "from the test thread");
    return {*decided, true};
  }
  RunResult result;
  if (mode < 19) { // at once
    gst_element_set_state(pipeline, GST_STATE_PLAYING);
    gst_element_set_state(pipeline, GST_STATE_READY);
    GstBus *bus = gst_element_get_bus(pipeline);
    while (GstMessage *m = gst_bus_pop(bus)) {
      kirin_test_take_message(m, result);
      gst_message_unref(m);
    }
    gst_object_unref(bus);
    return {count_extending(result), false};
  }
  kirin_test_run(pipeline, 60, result); // after the end
  fail_if(result.timed_out, "the cycle did not end");
  return {count_extending(result), true};
}

} // namespace

// c. A stop after the result was decided (the chain ends at the 3-minute limit, which the
// element says in a warning), then a restart with another video: only the new result
// streams, with its own tags.
GST_START_TEST(test_restart_streams_only_the_new_result) {
  auto emu = kirin_test_start_emulator(kKey, 0, 20);
  emu->add_video("long-175s", 175);
  fail_unless(
      emu->push_fault(kirin_emu::Route::Task, "url:" + emu->base_url() + "/files/stale.mp4"));
  Pipeline p = make_pipeline(*emu, "long-175s", 2, "stale");
  auto stop = stop_at(
      p.pipeline, [](GstMessage *m) { return GST_MESSAGE_TYPE(m) == GST_MESSAGE_WARNING; }, true);
  gst_element_set_state(p.pipeline, GST_STATE_PLAYING);
  fail_unless(stop->wait_and_stop(), "the chain did not stop at the 3-minute limit");
  // The same element again, another video.
  GstBus *bus = gst_element_get_bus(p.pipeline);
  gst_bus_set_sync_handler(bus, nullptr, nullptr, nullptr);
  gst_object_unref(bus);
  g_object_set(p.src, "video-id", "demo-5s", "extensions", 1, "external-task-id", "fresh", nullptr);
  GstPad *pad = gst_element_get_static_pad(p.src, "src");
  auto tags = std::make_shared<std::vector<std::string>>();
  gst_pad_add_probe(
      pad, GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM,
      [](GstPad *, GstPadProbeInfo *info, gpointer data) {
        GstEvent *event = GST_PAD_PROBE_INFO_EVENT(info);
        gchar *task = nullptr;
        GstTagList *list;
        if (GST_EVENT_TYPE(event) == GST_EVENT_TAG) {
          gst_event_parse_tag(event, &list);
          if (gst_tag_list_get_string(list, "kirin-task-id", &task))
            static_cast<std::vector<std::string> *>(data)->push_back(task);
          g_free(task);
        }
        return GST_PAD_PROBE_OK;
      },
      tags.get(), nullptr);
  gst_object_unref(pad);
  RunResult result;
  kirin_test_run(p.pipeline, 60, result);
  fail_unless(result.eos && !result.error, "the restarted run did not finish: %s",
              result.error ? result.error->message : "timeout");
  g_autofree char *task = nullptr;
  g_object_get(p.src, "task-id", &task, nullptr);
  fail_unless_equals_int(tags->size(), 1);
  assert_same_text(tags->front(), task);
  for (const auto &r : emu->requests())
    fail_if(r.route == kirin_emu::Route::Download && r.path == "/files/stale.mp4",
            "the stopped run's result was streamed");
  gst_object_unref(p.pipeline);
}
GST_END_TEST;

// d. An application that sets the pipeline to NULL from a sync bus handler, at each of the
// element's messages of a chained, journaled run in turn.
GST_START_TEST(test_set_state_null_from_every_message) {
  auto emu = kirin_test_start_emulator(kKey, 0, 20);
  g_autofree char *dir = g_dir_make_tmp("kirin-run-XXXXXX", nullptr);
  auto make = [&](int k) {
    Pipeline p = make_pipeline(*emu, "demo-5s", 2, "null-" + std::to_string(k));
    g_object_set(p.src, "cache-dir", dir, nullptr);
    return p;
  };
  // Message k of run k, until a run ends before its k-th message (how many progress
  // messages a run has depends on when its polls land).
  std::atomic<int> finalized{0};
  int k = 0;
  for (bool ended = false; !ended; k++) {
    fail_unless(k < 100, "the runs never end");
    Pipeline p = make(k);
    g_object_weak_ref(
        G_OBJECT(p.src),
        [](gpointer data, GObject *) { (*static_cast<std::atomic<int> *>(data))++; }, &finalized);
    auto stop = stop_at(p.pipeline, nth_kirin_message(k), true, GST_STATE_NULL);
    stop->or_at_end = true;
    gst_element_set_state(p.pipeline, GST_STATE_PLAYING);
    fail_unless(stop->wait_and_stop(), "run %d neither reached message %d nor its end", k, k);
    ended = stop->at_end;
    drop_pipeline(p);
  }
  fail_unless(k > 8, "only %d of the element's messages in a chained run", k - 1);
  // Every element is gone once its pipeline is: nothing of a run holds it.
  fail_unless_equals_int(finalized.load(), k);
  g_autofree char *command = g_strdup_printf("rm -rf '%s'", dir);
  fail_unless(system(command) == 0);
}
GST_END_TEST;

// e. The application keeps the child from source-setup, drops the pipeline (the element
// goes), and later plays the child on its own: the child's watch outlives the element.
GST_START_TEST(test_child_kept_by_the_application) {
  auto emu = kirin_test_start_emulator(kKey, 0, 20);
  Pipeline p = make_pipeline(*emu, "demo-5s", 1, "kept");
  GstElement *kept = nullptr;
  g_signal_connect(p.src, "source-setup",
                   G_CALLBACK(+[](GstElement *, GstElement *source, gpointer data) {
                     *static_cast<GstElement **>(data) = GST_ELEMENT(gst_object_ref(source));
                   }),
                   &kept);
  bool gone = false;
  g_object_weak_ref(
      G_OBJECT(p.src), [](gpointer data, GObject *) { *static_cast<bool *>(data) = true; }, &gone);
  emu->hold(kirin_emu::Route::Download);
  gst_element_set_state(p.pipeline, GST_STATE_PLAYING);
  // The child exists, and no byte went through it yet.
  fail_unless(emu->wait_held(kirin_emu::Route::Download, 1, kWaitMs) == 1);
  drop_pipeline(p);
  fail_unless(gone, "the element outlived its pipeline");
  fail_unless(kept != nullptr);
  emu->release(kirin_emu::Route::Download);

  GstElement *pipeline = gst_pipeline_new(nullptr);
  GstElement *sink = gst_element_factory_make("fakesink", nullptr);
  gst_bin_add_many(GST_BIN(pipeline), kept, sink, nullptr);
  gst_object_unref(kept); // the handler's reference: the pipeline holds the child now
  fail_unless(gst_element_link(kept, sink));
  RunResult result;
  kirin_test_run(pipeline, 60, result);
  fail_unless(result.eos, "the kept child did not play: %s",
              result.error ? result.error->message : "timeout");
  gst_object_unref(pipeline);
}
GST_END_TEST;

// g. Random state-change cycles with chains, URL refreshes and callbacks: the stop lands
// at a random message (from the deciding thread or the test thread), at once, or after the
// end. No create is sent after a stop, no cycle deadlocks, every element goes.
GST_START_TEST(test_random_state_cycles) {
  kirin_emu::Options options = kirin_test_emulator_options(kKey, 0, 20);
  options.width = 64; // small results: many tasks render quickly
  options.height = 48;
  auto emu = kirin_test_start_emulator(options);
  GRand *rand = g_rand_new_with_seed(20261130);
  std::atomic<int> finalized{0};
  std::map<std::string, gint64> stops;
  const int cycles = 1000;
  for (int i = 0; i < cycles; i++) {
    std::string run = "cycle-" + std::to_string(i);
    guint extensions = g_rand_int_range(rand, 1, 4);
    Pipeline p = make_pipeline(*emu, "demo-5s", extensions, run);
    g_object_set(p.src, "callback-listen", "127.0.0.1:0", nullptr);
    g_object_weak_ref(
        G_OBJECT(p.src),
        [](gpointer data, GObject *) { (*static_cast<std::atomic<int> *>(data))++; }, &finalized);
    if (g_rand_int_range(rand, 0, 4) == 0) // the CDN refuses the next download once
      emu->push_fault(kirin_emu::Route::Download, "http:403");
    Decided decided = cycle_with_random_stop(p.pipeline, rand);
    stops[run] = g_get_monotonic_time();
    drop_pipeline(p);
    guint created = creates_of(*emu, run);
    for (guint step = 2; step <= extensions; step++)
      created += creates_of(*emu, run + "-step" + std::to_string(step));
    fail_unless(decided.exact ? created == decided.creates : created <= decided.creates,
                "%s: %u creates, %u decided before the stop", run.c_str(), created,
                decided.creates);
  }
  g_rand_free(rand);
  fail_unless_equals_int(finalized.load(), cycles);
  assert_nothing_late(*emu, stops);
}
GST_END_TEST;

static Suite *run_states_suite() {
  Suite *s = suite_create("run-states");
  TCase *tc = tcase_create("general");
  suite_add_tcase(s, tc);
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, test_restart_streams_only_the_new_result);
  tcase_add_test(tc, test_set_state_null_from_every_message);
  tcase_add_test(tc, test_child_kept_by_the_application);
  tcase_add_test(tc, test_random_state_cycles);
  return s;
}

int main(int argc, char **argv) {
  kirin_test_init(&argc, &argv, "run-states");
  return gst_check_run_suite(run_states_suite(), "run-states", __FILE__);
}
