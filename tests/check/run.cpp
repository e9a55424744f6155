// A stopped pipeline never pays, and nothing of a stopped run happens later: stops placed
// at every point of the windows where a run decides (the emulator holds an answer until the
// test releases it, or a sync bus handler holds the deciding thread at a message), between
// chain steps and during a URL refresh. The application's own state changes: run-states.cpp.
#include "run-fixture.h"

namespace {

// The URL of a result the emulator rendered for a run of its own, for faults that point
// other runs' tasks at it.
std::string rendered_result_url(const kirin_emu::Emulator &emu, const std::string &run) {
  Pipeline p = make_pipeline(emu, "demo-5s", 1, run);
  RunResult result;
  kirin_test_run(p.pipeline, 60, result);
  fail_unless(result.eos);
  g_autofree char *url = nullptr;
  g_object_get(p.src, "result-url", &url, nullptr);
  gst_object_unref(p.pipeline);
  return url ? url : "";
}

// When the element made each of its download sources (its source-setup signal). The times
// outlive this object: the handler keeps them for as long as the element may emit.
class SourcesMade {
public:
  explicit SourcesMade(GstElement *src) : state_(std::make_shared<State>()) {
    g_signal_connect_data(
        src, "source-setup", G_CALLBACK(+[](GstElement *, GstElement *, gpointer data) {
          State &state = **static_cast<std::shared_ptr<State> *>(data);
          std::lock_guard<std::mutex> guard(state.lock);
          state.times.push_back(g_get_monotonic_time());
        }),
        new std::shared_ptr<State>(state_),
        [](gpointer data, GClosure *) { delete static_cast<std::shared_ptr<State> *>(data); },
        GConnectFlags(0));
  }
  std::vector<gint64> times() const {
    std::lock_guard<std::mutex> guard(state_->lock);
    return state_->times;
  }

private:
  struct State {
    std::mutex lock;
    std::vector<gint64> times;
  };
  std::shared_ptr<State> state_;
};

} // namespace

// a. Between chain step 1's completion and step 2's create, a stop at each point of the
// window: the completing poll answer held; the completed kirin-task message; the progress
// that closes step 1; the progress that opens step 2 (just before its create is decided).
// Each from the deciding thread itself and from the test thread while it waits.
GST_START_TEST(test_stop_between_chain_steps_never_pays) {
  auto emu = kirin_test_start_emulator(kKey, 0, 20);
  {
    // The window is real: without a stop, step 2 is created.
    Pipeline p = make_pipeline(*emu, "demo-5s", 2, "window-whole");
    RunResult result;
    kirin_test_run(p.pipeline, 60, result);
    fail_unless(result.eos, "the unstopped chain did not finish");
    fail_unless_equals_int(creates_of(*emu, "window-whole-step2"), 1);
    gst_object_unref(p.pipeline);
  }
  const std::string url = emu->base_url() + "/files/not-downloaded.mp4";
  struct Point {
    const char *name;
    Match match;
    bool from_handler;
  };
  const Point points[] = {
      {"held completion", nullptr, false},
      {"completed message", [](GstMessage *m) { return is_task_message(m, "completed", 1); },
       false},
      {"completed message", [](GstMessage *m) { return is_task_message(m, "completed", 1); }, true},
      {"step 1 complete",
       [](GstMessage *m) { return is_progress(m, GST_PROGRESS_TYPE_COMPLETE, "completed"); },
       false},
      {"step 1 complete",
       [](GstMessage *m) { return is_progress(m, GST_PROGRESS_TYPE_COMPLETE, "completed"); }, true},
      {"step 2 start",
       [](GstMessage *m) { return is_progress(m, GST_PROGRESS_TYPE_START, "(step 2 of 2)"); },
       false},
      {"step 2 start",
       [](GstMessage *m) { return is_progress(m, GST_PROGRESS_TYPE_START, "(step 2 of 2)"); },
       true},
  };
  const int n_points = G_N_ELEMENTS(points);
  std::map<std::string, gint64> stops;
  for (int i = 0; i < 500; i++) {
    const Point &point = points[i % n_points];
    std::string run = "window-" + std::to_string(i);
    fail_unless(emu->push_fault(kirin_emu::Route::Task, "url:" + url));
    Pipeline p = make_pipeline(*emu, "demo-5s", 2, run);
    std::shared_ptr<StopPoint> stop;
    if (point.match)
      stop = stop_at(p.pipeline, point.match, point.from_handler);
    else
      emu->hold(kirin_emu::Route::Poll, {"", true});
    gst_element_set_state(p.pipeline, GST_STATE_PLAYING);
    if (stop) {
      fail_unless(stop->wait_and_stop(), "%s: never reached (%s)", run.c_str(), point.name);
      stops[run] = stop->stop_us;
    } else {
      fail_unless(emu->wait_held(kirin_emu::Route::Poll, 1, kWaitMs) == 1);
      gst_element_set_state(p.pipeline, GST_STATE_READY);
      stops[run] = g_get_monotonic_time();
      emu->release(kirin_emu::Route::Poll);
    }
    fail_unless_equals_int(creates_of(*emu, run), 1);
    drop_pipeline(p);
  }
  assert_nothing_late(*emu, stops);
  for (const auto &entry : stops)
    fail_unless_equals_int(creates_of(*emu, entry.first + "-step2"), 0);
}
GST_END_TEST;

// b. The same for the URL refresh: the CDN refuses the result (403), the element polls for a
// fresh URL and streams it. A stop while that poll is out, or once its answer was queued for
// streaming (from the deciding thread, or from the test thread while it waits there),
// streams nothing more: no download source is made after the stop returned. (The emulator's
// arrival times cannot tell: a download whose source was made just before the stop may be
// read whole by the emulator just after it. assert_nothing_late allows for that.)
GST_START_TEST(test_stop_during_a_url_refresh_streams_nothing) {
  auto emu = kirin_test_start_emulator(kirin_test_emulator_options(kKey, 0, 20));
  // One rendered result, downloaded by every run below.
  const std::string url = rendered_result_url(*emu, "refresh-setup");
  std::map<std::string, gint64> stops;
  std::map<std::string, SourcesMade> made;
  for (int i = 0; i < 500; i++) {
    std::string run = "refresh-" + std::to_string(i);
    fail_unless(emu->push_fault(kirin_emu::Route::Task, "url:" + url));
    fail_unless(emu->push_fault(kirin_emu::Route::Download, "http:403"));
    Pipeline p = make_pipeline(*emu, "demo-5s", 1, run);
    SourcesMade sources(p.src);
    // The fresh URL is the second result-url the element announces; it does so from its
    // outbox just before it hands over that result for streaming.
    std::shared_ptr<StopPoint> stop;
    if (i % 3)
      stop = stop_at_notify(p.pipeline, p.src, "result-url", 2, i % 3 == 1);
    else
      emu->hold(kirin_emu::Route::Download);
    gst_element_set_state(p.pipeline, GST_STATE_PLAYING);
    if (stop) {
      fail_unless(stop->wait_and_stop(), "%s: the URL was never refreshed", run.c_str());
      stops[run] = stop->stop_us;
    } else {
      // Stop while the refreshing poll is held.
      fail_unless(emu->wait_held(kirin_emu::Route::Download, 1, kWaitMs) == 1);
      emu->hold(kirin_emu::Route::Poll);
      emu->release(kirin_emu::Route::Download);
      fail_unless(emu->wait_held(kirin_emu::Route::Poll, 1, kWaitMs) == 1);
      gst_element_set_state(p.pipeline, GST_STATE_READY);
      stops[run] = g_get_monotonic_time();
      emu->release(kirin_emu::Route::Poll);
    }
    drop_pipeline(p);
    made.emplace(run, sources);
    for (gint64 made_us : sources.times())
      fail_if(made_us > stops[run],
              "%s: a download source was made %" G_GINT64_FORMAT " us after the stop", run.c_str(),
              made_us - stops[run]);
  }
  assert_nothing_late(*emu, stops);
  // Also no source made later, by an element that outlived its pipeline.
  for (const auto &[run, sources] : made)
    for (gint64 made_us : sources.times())
      fail_if(made_us > stops[run], "%s: a download source was made after the stop", run.c_str());
  for (const auto &r : emu->requests())
    fail_if(r.route == kirin_emu::Route::Create &&
            r.external_task_id.find("-step") != std::string::npos);
}
GST_END_TEST;

// Holds the child's streaming thread inside the element's refresh window: after the element
// decided that a refused result URL is to be refreshed (its "polling for a fresh one"
// warning, logged on the child's streaming thread) and before anything of that decision
// leaves the element. The thread waits there until a stop has begun to take the child down
// (GStreamer logs the child's "set_state to READY"): the stop cannot finish earlier, since
// it joins that thread.
struct RefreshWindow {
  GstElement *src = nullptr;
  std::mutex lock;
  std::condition_variable changed;
  bool armed = true, reached = false, child_stopping = false;

  static void log(GstDebugCategory *category, GstDebugLevel, const gchar *, const gchar *, gint,
                  GObject *object, GstDebugMessage *message, gpointer data) {
    auto *window = static_cast<RefreshWindow *>(data);
    const char *text = gst_debug_message_get(message);
    if (!object || !text)
      return;
    std::unique_lock<std::mutex> guard(window->lock);
    if (window->armed && object == G_OBJECT(window->src) &&
        strstr(text, "polling for a fresh one")) {
      window->armed = false;
      window->reached = true;
      window->changed.notify_all();
      window->changed.wait_for(guard, std::chrono::milliseconds(kWaitMs),
                               [&] { return window->child_stopping; });
    } else if (window->reached && !window->child_stopping &&
               g_strcmp0(gst_debug_category_get_name(category), "GST_STATES") == 0 &&
               GST_IS_ELEMENT(object) && GST_OBJECT_PARENT(object) == GST_OBJECT(window->src) &&
               strstr(text, "set_state to READY")) {
      window->child_stopping = true;
      window->changed.notify_all();
    }
  }

  bool wait_reached() {
    std::unique_lock<std::mutex> guard(lock);
    return changed.wait_for(guard, std::chrono::milliseconds(kWaitMs), [&] { return reached; });
  }
};

// b'. A stop inside the element's own refresh window (see RefreshWindow): the refresh it had
// decided is dropped with the run. No request of the run reaches the emulator after the stop.
GST_START_TEST(test_stop_inside_the_refresh_window) {
  auto emu = kirin_test_start_emulator(kirin_test_emulator_options(kKey, 0, 20));
  const std::string url = rendered_result_url(*emu, "window-setup");
  // The hook sees the element's warnings and GStreamer's state changes; nothing is printed.
  gst_debug_set_active(TRUE);
  gst_debug_set_threshold_from_string("kirin*:4,GST_STATES:5", FALSE);
  gst_debug_remove_log_function(gst_debug_log_default);
  std::map<std::string, gint64> stops;
  for (int i = 0; i < 50; i++) {
    std::string run = "window-" + std::to_string(i);
    fail_unless(emu->push_fault(kirin_emu::Route::Task, "url:" + url));
    fail_unless(emu->push_fault(kirin_emu::Route::Download, "http:403"));
    Pipeline p = make_pipeline(*emu, "demo-5s", 1, run);
    RefreshWindow window;
    window.src = p.src;
    gst_debug_add_log_function(RefreshWindow::log, &window, nullptr);
    gst_element_set_state(p.pipeline, GST_STATE_PLAYING);
    fail_unless(window.wait_reached(), "%s: the URL was never refreshed", run.c_str());
    gst_element_set_state(p.pipeline, GST_STATE_READY);
    stops[run] = g_get_monotonic_time();
    gst_debug_remove_log_function_by_data(&window);
    drop_pipeline(p);
  }
  gst_debug_add_log_function(gst_debug_log_default, nullptr, nullptr);
  gst_debug_set_threshold_from_string("GST_STATES:0", FALSE);
  gint64 last = 0;
  for (const auto &entry : stops)
    last = MAX(last, entry.second);
  wait_until(last + G_USEC_PER_SEC);
  for (const auto &[run, records] : requests_by_run(*emu)) {
    auto stop = stops.find(run);
    if (stop == stops.end())
      continue;
    for (const auto &r : records)
      fail_unless(r.arrival_us <= stop->second, "%s: %s %s came after the stop", run.c_str(),
                  r.method.c_str(), r.path.c_str());
  }
}
GST_END_TEST;

static Suite *run_suite() {
  Suite *s = suite_create("run");
  TCase *tc = tcase_create("general");
  suite_add_tcase(s, tc);
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, test_stop_between_chain_steps_never_pays);
  tcase_add_test(tc, test_stop_during_a_url_refresh_streams_nothing);
  tcase_add_test(tc, test_stop_inside_the_refresh_window);
  return s;
}

int main(int argc, char **argv) {
  kirin_test_init(&argc, &argv, "run");
  return gst_check_run_suite(run_suite(), "run", __FILE__);
}
