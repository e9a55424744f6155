// The element under churn: stopped from every phase over and over, and many at once.
#include "common.h"

#include "emulator-fixture.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <set>
#include <vector>

namespace {

constexpr const char *kKey = "stress-key";

std::unique_ptr<kirin_emu::Emulator> small_results_emulator(guint pending_ms, guint processing_ms) {
  auto options = kirin_test_emulator_options(kKey, pending_ms, processing_ms);
  options.width = 64; // small results: many tasks render quickly
  options.height = 48;
  return kirin_test_start_emulator(options);
}

std::atomic<int> finalized{0};

void count_finalized(gpointer, GObject *) {
  finalized++;
}

// Every element made must be finalized soon after its pipeline is dropped.
bool all_finalized(int made) {
  gint64 deadline = g_get_monotonic_time() + 5 * G_USEC_PER_SEC;
  while (finalized.load() < made && g_get_monotonic_time() < deadline)
    g_usleep(1000);
  return finalized.load() == made;
}

GstPadProbeReturn on_first_buffer(GstPad *, GstPadProbeInfo *, gpointer data) {
  g_async_queue_push(static_cast<GAsyncQueue *>(data), GINT_TO_POINTER(1));
  return GST_PAD_PROBE_REMOVE;
}

// Runs one task of its own (`external_id`) to EOS and returns the element's string property
// `property` (its task-id, its result-url) once it ended.
std::string run_one_task(const kirin_emu::Emulator &emu, const char *external_id,
                         const char *property) {
  GstElement *pipeline = gst_pipeline_new(nullptr);
  GstElement *src = kirin_test_make_src(emu, 20, 120);
  g_object_set(src, "video-id", "demo-5s", "external-task-id", external_id, nullptr);
  GstElement *sink = gst_element_factory_make("fakesink", nullptr);
  gst_bin_add_many(GST_BIN(pipeline), src, sink, nullptr);
  gst_element_link(src, sink);
  RunResult result;
  kirin_test_run(pipeline, 60, result);
  fail_unless(result.eos);
  g_autofree char *value = nullptr;
  g_object_get(src, property, &value, nullptr);
  gst_object_unref(pipeline);
  return value ? value : "";
}

} // namespace

// Stopping from submitting, polling and downloading, at random moments: no deadlock, no
// leaked element, and no stop waits for the provider. The create or poll in flight is held
// at the emulator until after the stop returned: the stop ends without its answer, and the
// client gives the request up.
GST_START_TEST(test_stop_from_every_phase_1000_times) {
  auto emu = small_results_emulator(60000, 1000); // new tasks stay pending for the whole test
  // One finished task to download again and again.
  emu->set_timing(0, 50);
  const std::string done_task = run_one_task(*emu, "warm-up", "task-id");
  emu->set_timing(60000, 1000);

  const int cycles = 1000;
  gint64 slowest_stop_us = 0;
  int phases[3] = {0, 0, 0}, stuck = 0;
  GRand *rand = g_rand_new_with_seed(4711);
  for (int i = 0; i < cycles; i++) {
    int phase = i % 3; // 0 submitting, 1 polling, 2 downloading
    GstElement *pipeline = gst_pipeline_new(nullptr);
    GstElement *src = kirin_test_make_src(*emu, 20, 120);
    g_object_weak_ref(G_OBJECT(src), count_finalized, nullptr);
    if (phase == 2)
      g_object_set(src, "task-id", done_task.c_str(), nullptr);
    else // a request of its own: a new task, not the journal's record of an earlier cycle's
      g_object_set(src, "video-id", "demo-5s", "external-task-id",
                   ("cycle-" + std::to_string(i)).c_str(), nullptr);
    GstElement *slow = gst_element_factory_make("identity", nullptr);
    g_object_set(slow, "sleep-time", 2000, nullptr); // keeps a download going
    GstElement *sink = gst_element_factory_make("fakesink", nullptr);
    gst_bin_add_many(GST_BIN(pipeline), src, slow, sink, nullptr);
    gst_element_link_many(src, slow, sink, nullptr);
    GAsyncQueue *first_buffer = g_async_queue_new();
    GstPad *pad = gst_element_get_static_pad(src, "src");
    gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER, on_first_buffer, first_buffer, nullptr);
    gst_object_unref(pad);

    const kirin_emu::Route held = phase == 0 ? kirin_emu::Route::Create : kirin_emu::Route::Poll;
    if (phase != 2)
      emu->hold(held);
    gst_element_set_state(pipeline, GST_STATE_PLAYING);
    if (phase == 2)
      fail_unless(g_async_queue_timeout_pop(first_buffer, 10 * G_USEC_PER_SEC) != nullptr);
    else if (phase == 1 || g_rand_boolean(rand)) // else: stopped before its create may leave
      fail_unless(emu->wait_held(held, 1, 10000) >= 1, "cycle %d: nothing held", i);
    if (phase == 1 && g_rand_boolean(rand))
      emu->release_one(held); // the first poll answered: the next one waits its interval
    g_usleep(g_rand_int_range(rand, 0, 20) * 1000);
    gint64 took = kirin_test_stop_within(*emu, pipeline, 10);
    stuck += took < 0;
    slowest_stop_us = MAX(slowest_stop_us, took);
    if (phase != 2)
      kirin_test_assert_held_given_up(*emu, held, i);
    gst_object_unref(pipeline);
    g_async_queue_unref(first_buffer);
    phases[phase]++;
  }
  g_rand_free(rand);
  g_print("stop cycles: %d (submitting %d, polling %d, downloading %d); slowest stop %.1f ms\n",
          cycles, phases[0], phases[1], phases[2], slowest_stop_us / 1000.0);
  fail_unless_equals_int(stuck, 0);
  fail_unless(all_finalized(cycles), "%d of %d elements finalized", finalized.load(), cycles);
}
GST_END_TEST;

// Two hundred elements in one process, each with its own task, all to EOS.
GST_START_TEST(test_two_hundred_elements_at_once) {
  auto emu = small_results_emulator(100, 300);
  const int count = 200;
  // One result, rendered once, that every task below completes with: the emulator renders
  // no video per task, so how long the tasks take does not depend on how busy the machine is.
  const std::string url = run_one_task(*emu, "rendered-once", "result-url");
  for (int i = 0; i < count; i++)
    fail_unless(emu->push_fault(kirin_emu::Route::Task, "url:" + url));
  GstElement *pipeline = gst_pipeline_new(nullptr);
  std::vector<GstElement *> sources;
  for (int i = 0; i < count; i++) {
    GstElement *src = kirin_test_make_src(*emu, 20, 120);
    // 200 different requests (the same one would be one task, which the others wait for).
    g_object_set(src, "video-id", "demo-5s", "poll-interval", 200, "external-task-id",
                 ("element-" + std::to_string(i)).c_str(), nullptr);
    GstElement *sink = gst_element_factory_make("fakesink", nullptr);
    gst_bin_add_many(GST_BIN(pipeline), src, sink, nullptr);
    fail_unless(gst_element_link(src, sink));
    sources.push_back(GST_ELEMENT(gst_object_ref(src)));
  }
  // The pipeline posts EOS once every sink got one.
  RunResult result;
  kirin_test_run(pipeline, 240, result);
  fail_if(result.error, "%s", result.error ? result.error->message : "");
  fail_unless(result.eos, "not all %d elements reached EOS", count);
  fail_unless_equals_int(emu->create_count(), count + 1);
  std::set<std::string> task_ids;
  for (GstElement *src : sources) {
    g_autofree char *task = nullptr;
    g_object_get(src, "task-id", &task, nullptr);
    task_ids.insert(task ? task : "");
    gst_object_unref(src);
  }
  fail_unless_equals_int(task_ids.size(), count);
  g_print("%d elements: all reached EOS in %.1f s\n", count, result.seconds);
  gst_object_unref(pipeline);
}
GST_END_TEST;

// `count` elements in one pipeline, each with a request of its own, on the journal of none
// (the creates are what is counted here).
GstElement *many_elements(const kirin_emu::Emulator &emu, int count) {
  GstElement *pipeline = gst_pipeline_new(nullptr);
  for (int i = 0; i < count; i++) {
    GstElement *src = kirin_test_make_src(emu, 200, 120);
    g_object_set(src, "video-id", "demo-5s", "journal", "none", "external-task-id",
                 ("turn-" + std::to_string(i)).c_str(), nullptr);
    GstElement *sink = gst_element_factory_make("fakesink", nullptr);
    gst_bin_add_many(GST_BIN(pipeline), src, sink, nullptr);
    fail_unless(gst_element_link(src, sink));
  }
  return pipeline;
}

size_t creates_sent(const kirin_emu::Emulator &emu) {
  size_t creates = 0;
  for (const kirin_emu::RequestRecord &r : emu.requests())
    creates += r.route == kirin_emu::Route::Create;
  return creates;
}

// A hundred creates at once: 64 reach the provider (the connections the client opens to one
// host) and the others wait their turn in the client, each sent when an answer frees one.
GST_START_TEST(test_creates_wait_their_turn) {
  auto emu = small_results_emulator(100, 300);
  emu->hold(kirin_emu::Route::Create);
  GstElement *pipeline = many_elements(*emu, 100);
  gst_element_set_state(pipeline, GST_STATE_PLAYING);
  fail_unless_equals_int(emu->wait_held(kirin_emu::Route::Create, 64, 20000), 64);
  // More would arrive within this bound if the client sent them (a hundred at once did).
  fail_unless_equals_int(emu->wait_held(kirin_emu::Route::Create, 65, 1000), 64);
  fail_unless(emu->release_one(kirin_emu::Route::Create));
  fail_unless_equals_int(emu->wait_held(kirin_emu::Route::Create, 64, 20000), 64);
  fail_unless_equals_int(creates_sent(*emu), 65);
  emu->release(kirin_emu::Route::Create);
  GstBus *bus = gst_element_get_bus(pipeline);
  GstMessage *end = gst_bus_timed_pop_filtered(bus, 120 * GST_SECOND,
                                               GstMessageType(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
  fail_unless(end && GST_MESSAGE_TYPE(end) == GST_MESSAGE_EOS, "not all elements reached EOS");
  gst_message_unref(end);
  gst_object_unref(bus);
  fail_unless_equals_int(emu->create_count(), 100);
  fail_unless_equals_int(creates_sent(*emu), 100);
  gst_element_set_state(pipeline, GST_STATE_NULL);
  gst_object_unref(pipeline);
}
GST_END_TEST;

// Holds the client thread at the first job it cancels (its "cancelling job" line) until the
// test says so: a pipeline stopped meanwhile has cancelled every job before the client
// thread gets to end any request, so no freed turn can go to an element not yet stopped.
struct CancelHold {
  std::mutex lock;
  std::condition_variable changed;
  bool held = false, released = false;
  bool waited_in_vain = false; // held until the deadline: what it waited for never came

  static void log(GstDebugCategory *category, GstDebugLevel, const gchar *, const gchar *, gint,
                  GObject *, GstDebugMessage *message, gpointer data) {
    auto *hold = static_cast<CancelHold *>(data);
    const char *text = gst_debug_message_get(message);
    if (!text || g_strcmp0(gst_debug_category_get_name(category), "kirinclient") != 0 ||
        !strstr(text, "cancelling job"))
      return;
    std::unique_lock<std::mutex> guard(hold->lock);
    if (hold->held)
      return;
    hold->held = true;
    hold->changed.notify_all();
    hold->waited_in_vain =
        !hold->changed.wait_for(guard, std::chrono::seconds(20), [&] { return hold->released; });
  }
  void release() {
    std::lock_guard<std::mutex> guard(lock);
    released = true;
    changed.notify_all();
  }
};

// Stopped while creates wait their turn: those are never sent (nothing was paid for them),
// and the stop waits neither for the held ones nor for the client thread: it returns while
// the client thread is still held in its first cancel. The client thread is held from the first
// cancel until the whole pipeline stopped (CancelHold): a stop of element after element
// would otherwise let one element's freed turn pass to the next element still running, which
// may rightly send its create.
GST_START_TEST(test_stop_sends_no_waiting_create) {
  auto emu = small_results_emulator(100, 300);
  emu->hold(kirin_emu::Route::Create);
  GstElement *pipeline = many_elements(*emu, 100);
  gst_element_set_state(pipeline, GST_STATE_PLAYING);
  fail_unless_equals_int(emu->wait_held(kirin_emu::Route::Create, 64, 20000), 64);
  gst_debug_set_active(TRUE);
  gst_debug_set_threshold_for_name("kirinclient", GST_LEVEL_DEBUG);
  gst_debug_remove_log_function(gst_debug_log_default);
  CancelHold hold;
  gst_debug_add_log_function(CancelHold::log, &hold, nullptr);
  const gint64 stop_start = g_get_monotonic_time();
  gst_element_set_state(pipeline, GST_STATE_NULL);
  const double stop_ms = (g_get_monotonic_time() - stop_start) / 1000.0;
  bool stopped_while_held;
  {
    std::lock_guard<std::mutex> guard(hold.lock);
    stopped_while_held = !hold.held || !hold.waited_in_vain;
  }
  hold.release();
  gst_object_unref(pipeline);
  gst_debug_remove_log_function_by_data(&hold);
  gst_debug_add_log_function(gst_debug_log_default, nullptr, nullptr);
  gst_debug_set_threshold_for_name("kirinclient", GST_LEVEL_INFO);
  emu->release(kirin_emu::Route::Create);
  fail_unless_equals_int(creates_sent(*emu), 64);
  g_print("100 elements stopped in %.0f ms\n", stop_ms);
  fail_unless(stopped_while_held, "the stop waited for the held client thread");
}
GST_END_TEST;

static Suite *stress_suite() {
  Suite *s = suite_create("stress");
  TCase *tc = tcase_create("stress");
  tcase_set_timeout(tc, 600);
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_stop_from_every_phase_1000_times);
  tcase_add_test(tc, test_two_hundred_elements_at_once);
  tcase_add_test(tc, test_creates_wait_their_turn);
  tcase_add_test(tc, test_stop_sends_no_waiting_create);
  return s;
}

int main(int argc, char **argv) {
  kirin_test_init(&argc, &argv, "stress");
  return gst_check_run_suite(stress_suite(), "stress", __FILE__);
}
