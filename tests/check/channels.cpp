// Many channels in one process, as a playout application runs them: what one channel's
// application does in its handlers (a bus sync handler, notify:: and source-setup) runs on
// that channel's own threads, never on the client thread that carries every element's
// requests, so a handler that blocks delays its own element only.
#include "common.h"

#include "emulator-fixture.h"

#include <sys/prctl.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>

namespace {

using kirin_emu::Route;

constexpr const char *kKey = "channels-test-key";
constexpr guint kWaitMs = 20000;

// The names of the threads the application's handlers ran on.
std::mutex handler_threads_lock;
std::set<std::string> handler_threads;

void record_handler_thread() {
  char name[17] = {};
  prctl(PR_GET_NAME, name);
  std::lock_guard<std::mutex> guard(handler_threads_lock);
  handler_threads.insert(name);
}

// One channel: kirinextendsrc ! fakesink, with the moment its first buffer passed.
struct Channel {
  GstElement *pipeline = gst_pipeline_new(nullptr);
  GstElement *src;
  std::mutex lock;
  std::condition_variable changed;
  gint64 first_buffer_us = 0;

  Channel(const kirin_emu::Emulator &emu, const std::string &name) {
    src = kirin_test_make_src(emu, 20);
    g_object_set(src, "video-id", "demo-5s", "external-task-id", name.c_str(), "journal", "none",
                 nullptr);
    GstElement *sink = gst_element_factory_make("fakesink", nullptr);
    g_object_set(sink, "sync", FALSE, nullptr);
    gst_bin_add_many(GST_BIN(pipeline), src, sink, nullptr);
    fail_unless(gst_element_link(src, sink));
    GstPad *pad = gst_element_get_static_pad(sink, "sink");
    gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER, on_buffer, this, nullptr);
    gst_object_unref(pad);
  }
  ~Channel() {
    gst_element_set_state(pipeline, GST_STATE_NULL);
    gst_object_unref(pipeline);
  }

  static GstPadProbeReturn on_buffer(GstPad *, GstPadProbeInfo *, gpointer data) {
    auto *self = static_cast<Channel *>(data);
    std::lock_guard<std::mutex> guard(self->lock);
    self->first_buffer_us = g_get_monotonic_time();
    self->changed.notify_all();
    return GST_PAD_PROBE_REMOVE;
  }
  gint64 wait_first_buffer() {
    std::unique_lock<std::mutex> guard(lock);
    changed.wait_for(guard, std::chrono::milliseconds(kWaitMs), [&] { return first_buffer_us; });
    return first_buffer_us;
  }
};

// A sync handler that blocks at the channel's first kirin-task message until released (or
// 10 s passed), as an application doing slow work there would.
struct BlockingHandler {
  std::mutex lock;
  std::condition_variable changed;
  bool blocked = false, released = false, returned = false;

  static GstBusSyncReply on_message(GstBus *, GstMessage *message, gpointer data) {
    auto *self = static_cast<BlockingHandler *>(data);
    const GstStructure *s = gst_message_get_structure(message);
    if (GST_MESSAGE_TYPE(message) != GST_MESSAGE_ELEMENT || !s ||
        !gst_structure_has_name(s, "kirin-task"))
      return GST_BUS_PASS;
    std::unique_lock<std::mutex> guard(self->lock);
    if (self->blocked)
      return GST_BUS_PASS;
    self->blocked = true;
    self->changed.notify_all();
    self->changed.wait_for(guard, std::chrono::seconds(10), [&] { return self->released; });
    self->returned = true;
    return GST_BUS_PASS;
  }
  bool wait_blocked() {
    std::unique_lock<std::mutex> guard(lock);
    return changed.wait_for(guard, std::chrono::milliseconds(kWaitMs), [&] { return blocked; });
  }
  void release() {
    std::lock_guard<std::mutex> guard(lock);
    released = true;
    changed.notify_all();
  }
};

// From the moment the provider's answer that the task completed is sent (the emulator holds
// it until then) to the channel's first buffer, in microseconds.
gint64 completion_to_first_byte(kirin_emu::Emulator &emu, Channel &channel) {
  kirin_emu::HoldFilter completing;
  completing.only_final = true;
  emu.hold(Route::Poll, completing);
  gst_element_set_state(channel.pipeline, GST_STATE_PLAYING);
  fail_unless(emu.wait_held(Route::Poll, 1, kWaitMs) == 1, "the task never completed");
  gint64 released_us = g_get_monotonic_time();
  emu.release(Route::Poll);
  gint64 first_buffer_us = channel.wait_first_buffer();
  fail_unless(first_buffer_us != 0, "no first buffer");
  return first_buffer_us - released_us;
}

} // namespace

// Channel A's application blocks in its bus sync handler; channel B, in the same process,
// gets its result as fast as when A is not there.
GST_START_TEST(test_a_blocked_handler_delays_only_its_own_channel) {
  auto emu = kirin_test_start_emulator(kKey, 50, 200);
  gint64 alone_us;
  {
    Channel b(*emu, "channel-b-alone");
    alone_us = completion_to_first_byte(*emu, b);
  }
  // A's task never completes (its handler is what this is about), and A blocks at its first
  // kirin-task message.
  fail_unless(emu->push_fault(Route::Task, "stuck"));
  Channel a(*emu, "channel-a");
  BlockingHandler handler;
  GstBus *bus = gst_element_get_bus(a.pipeline);
  gst_bus_set_sync_handler(bus, BlockingHandler::on_message, &handler, nullptr);
  gst_element_set_state(a.pipeline, GST_STATE_PLAYING);
  fail_unless(handler.wait_blocked(), "channel A never reported its task");
  gint64 beside_us;
  {
    Channel b(*emu, "channel-b-beside-a");
    beside_us = completion_to_first_byte(*emu, b);
  }
  bool still_blocked;
  {
    std::lock_guard<std::mutex> guard(handler.lock);
    still_blocked = !handler.returned;
  }
  handler.release();
  gst_element_set_state(a.pipeline, GST_STATE_NULL);
  gst_bus_set_sync_handler(bus, nullptr, nullptr, nullptr);
  gst_object_unref(bus);
  g_print("completion to first byte: %.1f ms alone, %.1f ms beside a blocked channel\n",
          alone_us / 1000.0, beside_us / 1000.0);
  fail_unless(still_blocked, "channel B got its result only once channel A's handler returned");
  const gint64 bound_us = (gint64)(50 * 1000 * kirin_test_slowdown());
  fail_unless(beside_us - alone_us < bound_us, "%.1f ms later beside a blocked channel",
              (beside_us - alone_us) / 1000.0);
}
GST_END_TEST;

// Every handler an application connects runs off the client thread: the bus sync handler,
// notify:: of the task and the result, and source-setup.
GST_START_TEST(test_handlers_never_run_on_the_client_thread) {
  auto emu = kirin_test_start_emulator(kKey);
  Channel channel(*emu, "channel-threads");
  GstBus *bus = gst_element_get_bus(channel.pipeline);
  gst_bus_set_sync_handler(
      bus,
      [](GstBus *, GstMessage *message, gpointer) {
        if (GST_MESSAGE_SRC(message) && GST_IS_BIN(GST_MESSAGE_SRC(message)) &&
            !GST_IS_PIPELINE(GST_MESSAGE_SRC(message)))
          record_handler_thread();
        return GST_BUS_PASS;
      },
      nullptr, nullptr);
  auto on_notify = +[](GObject *, GParamSpec *, gpointer) { record_handler_thread(); };
  g_signal_connect(channel.src, "notify::task-id", G_CALLBACK(on_notify), nullptr);
  g_signal_connect(channel.src, "notify::result-url", G_CALLBACK(on_notify), nullptr);
  g_signal_connect(
      channel.src, "source-setup",
      G_CALLBACK(+[](GstElement *, GstElement *, gpointer) { record_handler_thread(); }), nullptr);
  RunResult result;
  kirin_test_run(channel.pipeline, 30, result);
  fail_unless(result.eos && !result.error);
  gst_bus_set_sync_handler(bus, nullptr, nullptr, nullptr);
  gst_object_unref(bus);
  std::lock_guard<std::mutex> guard(handler_threads_lock);
  fail_if(handler_threads.empty());
  for (const std::string &name : handler_threads)
    fail_if(name == "kirin-client", "a handler ran on the client thread");
}
GST_END_TEST;

static Suite *channels_suite() {
  Suite *s = suite_create("channels");
  TCase *tc = tcase_create("general");
  suite_add_tcase(s, tc);
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_a_blocked_handler_delays_only_its_own_channel);
  tcase_add_test(tc, test_handlers_never_run_on_the_client_thread);
  return s;
}

int main(int argc, char **argv) {
  kirin_test_init(&argc, &argv, "channels");
  return gst_check_run_suite(channels_suite(), "channels", __FILE__);
}
