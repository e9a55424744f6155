// PAUSED→READY ends the run at the provider too: an element the application keeps (not
// disposed, ready to play again) sends nothing more of its stopped run. A job left running
// would go on polling, or follow a create answered after the stop with polls of its task,
// for as long as the element lives. The stop is placed while the emulator holds an answer,
// so the request it answers is in flight when the stop lands: the stop gives it up (the
// client closes its connection), and nothing follows it. (Dropping the job alone already
// ends it once its request is answered; what only the cancel does is give that request up.)
// A retry whose timer the client thread is dispatching as the stop returns is not sent either.
#include "common.h"
#include "emulator-fixture.h"

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr const char *kKey = "stop-key";
constexpr guint kWaitMs = 10000; // bound of every wait for something that must happen
// How long a stopped run is watched for requests: many poll intervals.
constexpr gint64 kWatchUs = 3 * G_USEC_PER_SEC / 2;

using kirin_emu::RequestRecord;
using kirin_emu::Route;

struct Pipeline {
  GstElement *pipeline = nullptr;
  GstElement *src = nullptr;
  GstElement *sink = nullptr;
};

Pipeline make_pipeline(const kirin_emu::Emulator &emu) {
  Pipeline p;
  p.pipeline = gst_pipeline_new(nullptr);
  p.src = kirin_test_make_src(emu, 50);
  g_object_set(p.src, "video-id", "demo-5s", nullptr);
  p.sink = gst_element_factory_make("fakesink", nullptr);
  g_object_set(p.sink, "sync", FALSE, nullptr);
  gst_bin_add_many(GST_BIN(p.pipeline), p.src, p.sink, nullptr);
  fail_unless(gst_element_link(p.src, p.sink));
  return p;
}

// Waits until `us` has passed: what the emulator receives by then is what came late.
void wait_until(gint64 us) {
  while (g_get_monotonic_time() < us)
    g_usleep(MIN(us - g_get_monotonic_time(), G_USEC_PER_SEC / 10) + 1);
}

void assert_nothing_after(const kirin_emu::Emulator &emu, gint64 stop_us) {
  for (const RequestRecord &r : emu.requests())
    fail_unless(r.arrival_us <= stop_us, "%s %s came %" G_GINT64_FORMAT " ms after the stop",
                r.method.c_str(), r.path.c_str(), (r.arrival_us - stop_us) / 1000);
}

guint count(const std::vector<RequestRecord> &records, Route route, const std::string &task_id) {
  guint n = 0;
  for (const RequestRecord &r : records)
    n += r.route == route && (task_id.empty() || r.task_id == task_id);
  return n;
}

// Holds the client thread inside the dispatch of a create's retry timer: the job has decided
// to send its second attempt (its "attempt 2" line, logged just before the request is made)
// and waits there until the test's stop has returned. Then it sees whether the request was
// handed to libsoup or refused ("not handed over").
struct RetryWindow {
  std::mutex lock;
  std::condition_variable changed;
  bool reached = false, stop_returned = false, refused = false;

  static void log(GstDebugCategory *category, GstDebugLevel, const gchar *, const gchar *, gint,
                  GObject *, GstDebugMessage *message, gpointer data) {
    auto *window = static_cast<RetryWindow *>(data);
    const char *text = gst_debug_message_get(message);
    if (!text || g_strcmp0(gst_debug_category_get_name(category), "kirinclient") != 0)
      return;
    std::unique_lock<std::mutex> guard(window->lock);
    if (strstr(text, "creating a task") && strstr(text, "(attempt 2)")) {
      window->reached = true;
      window->changed.notify_all();
      window->changed.wait_for(guard, std::chrono::milliseconds(kWaitMs),
                               [&] { return window->stop_returned; });
    } else if (strstr(text, "not handed over")) {
      window->refused = true;
      window->changed.notify_all();
    }
  }
  bool wait(bool RetryWindow::*flag) {
    std::unique_lock<std::mutex> guard(lock);
    return changed.wait_for(guard, std::chrono::milliseconds(kWaitMs), [&] { return this->*flag; });
  }
  void mark_stopped() {
    std::lock_guard<std::mutex> guard(lock);
    stop_returned = true;
    changed.notify_all();
  }
};

} // namespace

// A create refused with 429 is retried from a timer on the client thread. The stop returns
// while that thread is inside the timer's dispatch, about to make the second attempt: once
// released, it hands nothing to libsoup, and the provider sees one create only.
GST_START_TEST(test_a_retry_caught_in_its_timer_is_not_sent_after_the_stop) {
  auto emu = kirin_test_start_emulator(kKey, 0, 30000);
  fail_unless(emu->push_fault(Route::Create, "http:429"));
  gst_debug_set_active(TRUE);
  gst_debug_set_threshold_for_name("kirinclient", GST_LEVEL_DEBUG);
  gst_debug_remove_log_function(gst_debug_log_default);
  RetryWindow window;
  gst_debug_add_log_function(RetryWindow::log, &window, nullptr);
  Pipeline p = make_pipeline(*emu);
  gst_element_set_state(p.pipeline, GST_STATE_PLAYING);
  bool reached = window.wait(&RetryWindow::reached);
  fail_unless(gst_element_set_state(p.pipeline, GST_STATE_READY) == GST_STATE_CHANGE_SUCCESS);
  window.mark_stopped();
  bool refused = window.wait(&RetryWindow::refused);
  gst_debug_remove_log_function_by_data(&window);
  gst_debug_add_log_function(gst_debug_log_default, nullptr, nullptr);
  gst_debug_set_threshold_for_name("kirinclient", GST_LEVEL_INFO);
  fail_unless(reached, "the create was never retried");
  fail_unless(refused, "the retry was handed to libsoup after the stop");
  fail_unless_equals_int(emu->create_count(), 1);
  gst_element_set_state(p.pipeline, GST_STATE_NULL);
  gst_object_unref(p.pipeline);
}
GST_END_TEST;

// Stopped while a poll is out: the polling ends with the run, although the element lives on
// in READY.
GST_START_TEST(test_ready_while_polling_polls_no_more) {
  // A task that stays processing longer than the watch: a live job would poll all along.
  auto emu = kirin_test_start_emulator(kKey, 0, 30000);
  Pipeline p = make_pipeline(*emu);
  emu->hold(Route::Poll);
  gst_element_set_state(p.pipeline, GST_STATE_PLAYING);
  fail_unless(emu->wait_held(Route::Poll, 1, kWaitMs) == 1, "no poll was sent");
  fail_unless(gst_element_set_state(p.pipeline, GST_STATE_READY) == GST_STATE_CHANGE_SUCCESS);
  gint64 stop_us = g_get_monotonic_time();
  // The stop cancels the job: its poll is given up at once, not waited for.
  fail_unless(emu->wait_abandoned(Route::Poll, 1, kWaitMs) == 1,
              "the stopped run still waits for its poll's answer");
  emu->release(Route::Poll);
  wait_until(stop_us + kWatchUs);
  assert_nothing_after(*emu, stop_us);
  std::vector<RequestRecord> records = emu->requests();
  fail_unless_equals_int(count(records, Route::Create, ""), 1);
  // The element is still there: it could play again, but its old run does nothing.
  GstState state = GST_STATE_VOID_PENDING;
  gst_element_get_state(p.src, &state, nullptr, 0);
  fail_unless_equals_int(state, GST_STATE_READY);
  gst_element_set_state(p.pipeline, GST_STATE_NULL);
  gst_object_unref(p.pipeline);
}
GST_END_TEST;

// Stopped while the create is out (sent, unanswered): the provider's answer, which comes
// after the stop, starts nothing. No second create, and no poll of the task it made.
GST_START_TEST(test_ready_while_creating_follows_no_answer) {
  auto emu = kirin_test_start_emulator(kKey, 0, 30000);
  Pipeline p = make_pipeline(*emu);
  emu->hold(Route::Create);
  gst_element_set_state(p.pipeline, GST_STATE_PLAYING);
  fail_unless(emu->wait_held(Route::Create, 1, kWaitMs) == 1, "no create was sent");
  fail_unless(gst_element_set_state(p.pipeline, GST_STATE_READY) == GST_STATE_CHANGE_SUCCESS);
  gint64 stop_us = g_get_monotonic_time();
  fail_unless(emu->wait_abandoned(Route::Create, 1, kWaitMs) == 1,
              "the stopped run still waits for its create's answer");
  emu->release(Route::Create);
  wait_until(stop_us + kWatchUs);
  std::vector<RequestRecord> records = emu->requests();
  fail_unless_equals_int(count(records, Route::Create, ""), 1);
  std::string task_id = records.front().task_id;
  fail_if(task_id.empty(), "the held create made no task");
  fail_unless_equals_int(count(records, Route::Poll, task_id), 0);
  assert_nothing_after(*emu, stop_us);
  gst_element_set_state(p.pipeline, GST_STATE_NULL);
  gst_object_unref(p.pipeline);
}
GST_END_TEST;

// What the application thread of the test below saw: the first buffer reach the sink (which
// then prerolls it), and its EOS sent.
struct PrerollEos {
  std::mutex lock;
  std::condition_variable changed;
  bool buffer_came = false, eos_returned = false;
  static GstPadProbeReturn probe(GstPad *, GstPadProbeInfo *, gpointer data) {
    auto *seen = static_cast<PrerollEos *>(data);
    std::lock_guard<std::mutex> guard(seen->lock);
    seen->buffer_came = true;
    seen->changed.notify_all();
    return GST_PAD_PROBE_REMOVE;
  }
};

// An EOS the application sends while the sink prerolls the result's first buffer (the
// pipeline not PLAYING yet, as `gst-launch-1.0 -e` interrupted at the start) returns at once,
// and the stream ends once the pipeline plays. Placed: the test holds the pipeline's state
// lock (as gst_element_send_event does) from before the task is created until the EOS was
// sent, so the state change to PLAYING waits meanwhile. An EOS handed to the child source
// from the sending thread waits for its streaming thread, which waits for PLAYING: for ever.
GST_START_TEST(test_eos_during_preroll_ends_the_stream) {
  auto emu = kirin_test_start_emulator(kKey);
  Pipeline p = make_pipeline(*emu);
  PrerollEos seen;
  GstPad *pad = gst_element_get_static_pad(p.sink, "sink");
  gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER, PrerollEos::probe, &seen, nullptr);
  gst_object_unref(pad);
  emu->hold(Route::Create);
  fail_if(gst_element_set_state(p.pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE);
  fail_unless_equals_int(emu->wait_held(Route::Create, 1, kWaitMs), 1);
  // The application's thread: the pipeline's state lock, then the EOS once the sink prerolls.
  std::thread app([&] {
    GST_STATE_LOCK(p.pipeline);
    emu->release(Route::Create);
    std::unique_lock<std::mutex> guard(seen.lock);
    if (seen.changed.wait_for(guard, std::chrono::milliseconds(3 * kWaitMs),
                              [&] { return seen.buffer_came; })) {
      guard.unlock();
      gst_element_send_event(p.pipeline, gst_event_new_eos());
      guard.lock();
    }
    GST_STATE_UNLOCK(p.pipeline);
    seen.eos_returned = true;
    seen.changed.notify_all();
  });
  {
    std::unique_lock<std::mutex> guard(seen.lock);
    fail_unless(seen.changed.wait_for(guard, std::chrono::milliseconds(4 * kWaitMs),
                                      [&] { return seen.eos_returned; }),
                "the EOS sent while the sink prerolled did not return");
    fail_unless(seen.buffer_came, "no buffer reached the sink");
  }
  app.join();
  GstBus *bus = gst_element_get_bus(p.pipeline);
  GstMessage *end = gst_bus_timed_pop_filtered(bus, kWaitMs * GST_MSECOND,
                                               GstMessageType(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
  fail_unless(end && GST_MESSAGE_TYPE(end) == GST_MESSAGE_EOS, "the stream did not end with EOS");
  gst_message_unref(end);
  gst_object_unref(bus);
  gst_element_set_state(p.pipeline, GST_STATE_NULL);
  gst_object_unref(p.pipeline);
}
GST_END_TEST;

static Suite *stop_suite() {
  Suite *s = suite_create("stop");
  TCase *tc = tcase_create("general");
  suite_add_tcase(s, tc);
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_ready_while_polling_polls_no_more);
  tcase_add_test(tc, test_ready_while_creating_follows_no_answer);
  tcase_add_test(tc, test_a_retry_caught_in_its_timer_is_not_sent_after_the_stop);
  tcase_add_test(tc, test_eos_during_preroll_ends_the_stream);
  return s;
}

int main(int argc, char **argv) {
  kirin_test_init(&argc, &argv, "stop");
  return gst_check_run_suite(stop_suite(), "stop", __FILE__);
}
