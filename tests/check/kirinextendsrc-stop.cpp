// Stopping the element, end to end against the emulator: while it polls (no answer waited
// for), from inside its own callback, and while it downloads; each fast, and the element
// finalized.
#include "kirinextendsrc-fixture.h"

#include <chrono>
#include <condition_variable>
#include <mutex>

struct Finalized {
  std::mutex lock;
  std::condition_variable cond;
  bool done = false;

  static void notify(gpointer data, GObject *) {
    auto *self = static_cast<Finalized *>(data);
    std::lock_guard<std::mutex> guard(self->lock);
    self->done = true;
    self->cond.notify_all();
  }

  // A callback of the client thread or a call-async may hold the element for an instant
  // after the pipeline is gone; it must let go promptly.
  bool wait(std::chrono::milliseconds bound = std::chrono::milliseconds(1000)) {
    std::unique_lock<std::mutex> guard(lock);
    return cond.wait_for(guard, bound, [this] { return done; });
  }
};

// Counts GST_PROGRESS_TYPE_CANCELED as it is posted: the bus is flushed on the way to NULL.
static GstBusSyncReply count_canceled(GstBus *, GstMessage *message, gpointer data) {
  GstProgressType type;
  if (GST_MESSAGE_TYPE(message) == GST_MESSAGE_PROGRESS) {
    gst_message_parse_progress(message, &type, nullptr, nullptr);
    if (type == GST_PROGRESS_TYPE_CANCELED)
      g_atomic_int_inc(static_cast<gint *>(data));
  }
  return GST_BUS_PASS;
}

GST_START_TEST(test_stop_while_polling_waits_for_no_answer) {
  auto options = kirin_test_emulator_options(kKey);
  options.pending_ms = 60000; // the task stays pending for the whole test
  auto emu = kirin_test_start_emulator(options);
  for (int i = 0; i < 20; i++) {
    GstElement *src = kirin_test_make_src(*emu);
    g_object_set(src, "video-id", "demo-5s", nullptr);
    Finalized finalized;
    g_object_weak_ref(G_OBJECT(src), Finalized::notify, &finalized);
    std::string path = temp_path("stop.mp4");
    GstElement *pipeline = make_file_pipeline(src, path);
    GstBus *bus = gst_element_get_bus(pipeline);
    gint canceled = 0;
    gst_bus_set_sync_handler(bus, count_canceled, &canceled, nullptr);
    gst_element_set_state(pipeline, GST_STATE_PLAYING);
    fail_unless(wait_for_message(bus, "pending", 10));
    // The next poll is held: the stop must end without its answer, and give it up.
    emu->hold(kirin_emu::Route::Poll);
    fail_unless(emu->wait_held(kirin_emu::Route::Poll, 1, 10000) == 1);
    fail_unless(kirin_test_stop_within(*emu, pipeline, 10) >= 0, "the stop waited for the poll");
    kirin_test_assert_held_given_up(*emu, kirin_emu::Route::Poll, i);
    // The progress an application shows ends as canceled, once.
    fail_unless_equals_int(g_atomic_int_get(&canceled), 1);
    gst_bus_set_sync_handler(bus, nullptr, nullptr, nullptr);
    gst_object_unref(bus);
    gst_object_unref(pipeline);
    // The job holds no reference: the element is gone with the pipeline.
    fail_unless(finalized.wait(), "element leaked after stop");
    g_unlink(path.c_str());
  }
}
GST_END_TEST;

// Stops the pipeline from where it is called, once: from the client thread, inside one of
// the job's own callbacks.
struct StopFromCallback {
  GstElement *pipeline = nullptr;
  gint stopping = 0;
  GAsyncQueue *results = g_async_queue_new(); // the state change's return, plus one
  GThread *main_thread = g_thread_self();

  ~StopFromCallback() { g_async_queue_unref(results); }

  void stop() {
    if (!g_atomic_int_compare_and_exchange(&stopping, 0, 1))
      return;
    fail_if(g_thread_self() == main_thread);
    GstStateChangeReturn result = gst_element_set_state(pipeline, GST_STATE_NULL);
    g_async_queue_push(results, GINT_TO_POINTER(result + 1));
  }

  static void on_task_id(GObject *, GParamSpec *, gpointer data) {
    static_cast<StopFromCallback *>(data)->stop();
  }

  static GstBusSyncReply on_task_message(GstBus *, GstMessage *message, gpointer data) {
    const GstStructure *s = gst_message_get_structure(message);
    if (GST_MESSAGE_TYPE(message) == GST_MESSAGE_ELEMENT && s &&
        gst_structure_has_name(s, "kirin-task"))
      static_cast<StopFromCallback *>(data)->stop();
    return GST_BUS_PASS;
  }
};

// An application may stop the pipeline from a handler that the element runs while it
// decides: "notify::task-id" or a sync bus handler for the kirin-task message.
GST_START_TEST(test_stop_from_inside_a_callback) {
  // The task stays pending for the whole test.
  auto emu = kirin_test_start_emulator(kirin_test_emulator_options(kKey, 60000));
  for (bool from_notify : {true, false}) {
    GstElement *src = kirin_test_make_src(*emu);
    g_object_set(src, "video-id", "demo-5s", nullptr);
    Finalized finalized;
    g_object_weak_ref(G_OBJECT(src), Finalized::notify, &finalized);
    std::string path = temp_path("stop-inside.mp4");
    StopFromCallback stopper;
    stopper.pipeline = make_file_pipeline(src, path);
    GstBus *bus = gst_element_get_bus(stopper.pipeline);
    if (from_notify)
      g_signal_connect(src, "notify::task-id", G_CALLBACK(StopFromCallback::on_task_id), &stopper);
    else
      gst_bus_set_sync_handler(bus, StopFromCallback::on_task_message, &stopper, nullptr);
    gst_element_set_state(stopper.pipeline, GST_STATE_PLAYING);
    gpointer result = g_async_queue_timeout_pop(stopper.results, 10 * G_USEC_PER_SEC);
    fail_unless(result != nullptr, "the pipeline was not stopped from the callback");
    fail_unless_equals_int(GPOINTER_TO_INT(result) - 1, GST_STATE_CHANGE_SUCCESS);
    GstMessage *error = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
    fail_if(error != nullptr, "an error from the stop");
    gst_bus_set_sync_handler(bus, nullptr, nullptr, nullptr);
    if (from_notify)
      g_signal_handlers_disconnect_by_data(src, &stopper);
    gst_object_unref(bus);
    gst_object_unref(stopper.pipeline);
    fail_unless(finalized.wait(), "element leaked after a stop from its callback");
    g_unlink(path.c_str());
  }
}
GST_END_TEST;

static GstPadProbeReturn signal_first_buffer(GstPad *, GstPadProbeInfo *, gpointer data) {
  auto *seen = static_cast<GAsyncQueue *>(data);
  g_async_queue_push(seen, GINT_TO_POINTER(1));
  return GST_PAD_PROBE_REMOVE;
}

GST_START_TEST(test_stop_while_downloading_is_fast_and_clean) {
  auto options = kirin_test_emulator_options(kKey);
  options.width = 1280;
  options.height = 720;
  options.jpeg_quality = 90;
  auto emu = kirin_test_start_emulator(options);
  std::string task_id;
  {
    // Render the big result once; the loop below downloads it again and again.
    GstElement *src = kirin_test_make_src(*emu);
    gst_object_ref(src);
    g_object_set(src, "video-id", "demo-5s", nullptr);
    RunResult result;
    run_to_file(src, result, 120);
    assert_error_free_eos(result);
    task_id = get_string_property(src, "task-id");
    gst_object_unref(src);
  }
  for (int i = 0; i < 10; i++) {
    GstElement *pipeline = gst_pipeline_new(nullptr);
    GstElement *src = kirin_test_make_src(*emu);
    g_object_set(src, "task-id", task_id.c_str(), nullptr);
    // A slow consumer keeps the download going while we stop.
    GstElement *slow = gst_element_factory_make("identity", nullptr);
    g_object_set(slow, "sleep-time", 20000, nullptr);
    GstElement *sink = gst_element_factory_make("fakesink", nullptr);
    gst_bin_add_many(GST_BIN(pipeline), src, slow, sink, nullptr);
    fail_unless(gst_element_link_many(src, slow, sink, nullptr));
    Finalized finalized;
    g_object_weak_ref(G_OBJECT(src), Finalized::notify, &finalized);
    GAsyncQueue *first_buffer = g_async_queue_new();
    GstPad *srcpad = gst_element_get_static_pad(src, "src");
    gst_pad_add_probe(srcpad, GST_PAD_PROBE_TYPE_BUFFER, signal_first_buffer, first_buffer,
                      nullptr);
    gst_object_unref(srcpad);
    gst_element_set_state(pipeline, GST_STATE_PLAYING);
    fail_unless(g_async_queue_timeout_pop(first_buffer, 20 * G_USEC_PER_SEC) != nullptr,
                "no data within 20 s");
    gint64 start = g_get_monotonic_time();
    fail_unless(gst_element_set_state(pipeline, GST_STATE_NULL) == GST_STATE_CHANGE_SUCCESS);
    gint64 took_us = g_get_monotonic_time() - start;
    fail_unless(took_us < 500 * 1000, "stopping a download took %" G_GINT64_FORMAT " us", took_us);
    gst_object_unref(pipeline);
    fail_unless(finalized.wait(), "element leaked after stop");
    g_async_queue_unref(first_buffer);
  }
}
GST_END_TEST;

static Suite *kirinextendsrc_stop_suite() {
  Suite *s = suite_create("kirinextendsrc-stop");
  TCase *tc = add_general_case(s);
  tcase_add_test(tc, test_stop_while_polling_waits_for_no_answer);
  tcase_add_test(tc, test_stop_from_inside_a_callback);
  tcase_add_test(tc, test_stop_while_downloading_is_fast_and_clean);
  return s;
}

int main(int argc, char **argv) {
  kirin_test_init(&argc, &argv, "kirinextendsrc-stop");
  return gst_check_run_suite(kirinextendsrc_stop_suite(), "kirinextendsrc-stop", __FILE__);
}
