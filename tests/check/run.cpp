// A stopped pipeline never pays, and nothing of a stopped run happens later: stops placed
// at every point of the windows where a run decides (the emulator holds an answer until the
// test releases it, or a sync bus handler holds the deciding thread at a message), stops
// from inside the element's own messages, a child kept by the application, and random
// state-change cycles.
#include "common.h"
#include "emulator-fixture.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>

namespace {

constexpr const char *kKey = "run-key";
constexpr guint kWaitMs = 30000; // bound of every wait for something that must happen

using Match = std::function<bool(GstMessage *)>;

// Stops a pipeline at the first bus message that matches, placed by a sync handler: either
// from the handler itself (on the thread that posted the message), or from the test thread
// while the poster waits in the handler until the stop has returned.
struct StopPoint {
  GstElement *pipeline = nullptr;
  Match match;
  bool from_handler = true;
  GstState target = GST_STATE_READY;
  bool or_at_end = false; // EOS or an error counts as the point, when the run ends first
  bool at_end = false;    // ... and it did

  std::mutex lock;
  std::condition_variable changed;
  bool armed = true, reached = false, stopped = false;
  int notifications_left = 0; // stop_at_notify: the one to stop at
  gint64 stop_us = 0;

  void mark_stopped() {
    std::lock_guard<std::mutex> guard(lock);
    stop_us = g_get_monotonic_time();
    stopped = true;
    changed.notify_all();
  }

  static GstBusSyncReply on_message(GstBus *, GstMessage *message, gpointer data) {
    auto &point = **static_cast<std::shared_ptr<StopPoint> *>(data);
    bool end = point.or_at_end && (GST_MESSAGE_TYPE(message) == GST_MESSAGE_EOS ||
                                   GST_MESSAGE_TYPE(message) == GST_MESSAGE_ERROR);
    {
      std::lock_guard<std::mutex> guard(point.lock);
      if (!point.armed || !(end || point.match(message)))
        return GST_BUS_PASS;
      point.armed = false;
      if (end) {
        // Posted from a streaming thread, which a state change joins: the test stops.
        point.at_end = true;
        point.reached = true;
        point.changed.notify_all();
        return GST_BUS_PASS;
      }
    }
    point.arrive();
    return GST_BUS_PASS;
  }

  // On the thread that reached the point: stops from here, or waits until the test thread
  // has stopped.
  void arrive() {
    if (from_handler) {
      gst_element_set_state(pipeline, target);
      mark_stopped();
      return;
    }
    std::unique_lock<std::mutex> guard(lock);
    reached = true;
    changed.notify_all();
    changed.wait_for(guard, std::chrono::milliseconds(kWaitMs), [&] { return stopped; });
  }

  static void on_notify(GObject *, GParamSpec *, gpointer data) {
    auto &point = **static_cast<std::shared_ptr<StopPoint> *>(data);
    {
      std::lock_guard<std::mutex> guard(point.lock);
      if (!point.armed || --point.notifications_left > 0)
        return;
      point.armed = false;
    }
    point.arrive();
  }

  // Test thread: once the point is reached, stops (unless the handler did). False when the
  // point was never reached.
  bool wait_and_stop() {
    std::unique_lock<std::mutex> guard(lock);
    if (!changed.wait_for(guard, std::chrono::milliseconds(kWaitMs),
                          [&] { return reached || stopped; }))
      return false;
    if (stopped)
      return true;
    guard.unlock();
    gst_element_set_state(pipeline, target);
    mark_stopped();
    return true;
  }
};

std::shared_ptr<StopPoint> stop_at(GstElement *pipeline, Match match, bool from_handler,
                                   GstState target = GST_STATE_READY) {
  auto point = std::make_shared<StopPoint>();
  point->pipeline = pipeline;
  point->match = std::move(match);
  point->from_handler = from_handler;
  point->target = target;
  GstBus *bus = gst_element_get_bus(pipeline);
  // The bus keeps its own reference while a handler call may still be running.
  gst_bus_set_sync_handler(
      bus, StopPoint::on_message, new std::shared_ptr<StopPoint>(point),
      [](gpointer data) { delete static_cast<std::shared_ptr<StopPoint> *>(data); });
  gst_object_unref(bus);
  return point;
}

// Stops at the `nth` notification of `property` of `element` (which the element makes on
// the deciding thread).
std::shared_ptr<StopPoint> stop_at_notify(GstElement *pipeline, GstElement *element,
                                          const char *property, int nth, bool from_handler) {
  auto point = std::make_shared<StopPoint>();
  point->pipeline = pipeline;
  point->from_handler = from_handler;
  point->notifications_left = nth;
  std::string signal = std::string("notify::") + property;
  g_signal_connect_data(
      element, signal.c_str(), G_CALLBACK(StopPoint::on_notify),
      new std::shared_ptr<StopPoint>(point),
      [](gpointer data, GClosure *) { delete static_cast<std::shared_ptr<StopPoint> *>(data); },
      GConnectFlags(0));
  return point;
}

// ---- which message ----

bool is_task_message(GstMessage *message, const char *status, guint step) {
  const GstStructure *s = gst_message_get_structure(message);
  guint message_step = 0;
  return GST_MESSAGE_TYPE(message) == GST_MESSAGE_ELEMENT && s &&
         gst_structure_has_name(s, "kirin-task") &&
         g_strcmp0(gst_structure_get_string(s, "status"), status) == 0 &&
         gst_structure_get_uint(s, "step", &message_step) && message_step == step;
}

bool is_progress(GstMessage *message, GstProgressType type, const char *text_part) {
  if (GST_MESSAGE_TYPE(message) != GST_MESSAGE_PROGRESS)
    return false;
  GstProgressType message_type;
  g_autofree char *text = nullptr;
  gst_message_parse_progress(message, &message_type, nullptr, &text);
  return message_type == type && text && strstr(text, text_part);
}

// The element's own messages: kirin-task and its progress.
bool is_kirin_message(GstMessage *message) {
  if (GST_MESSAGE_TYPE(message) == GST_MESSAGE_PROGRESS)
    return true;
  const GstStructure *s = gst_message_get_structure(message);
  return GST_MESSAGE_TYPE(message) == GST_MESSAGE_ELEMENT && s &&
         gst_structure_has_name(s, "kirin-task");
}

// The n-th (0-based) of the element's own messages.
Match nth_kirin_message(int n) {
  auto seen = std::make_shared<int>(0);
  return [seen, n](GstMessage *message) { return is_kirin_message(message) && (*seen)++ == n; };
}

// ---- pipelines ----

struct Pipeline {
  GstElement *pipeline;
  GstElement *src;
};

Pipeline make_pipeline(const kirin_emu::Emulator &emu, const char *video_id, guint extensions,
                       const std::string &external_task_id) {
  Pipeline p;
  p.pipeline = gst_pipeline_new(nullptr);
  p.src = kirin_test_make_src(emu, 5);
  g_object_set(p.src, "video-id", video_id, "extensions", extensions, "external-task-id",
               external_task_id.c_str(), nullptr);
  GstElement *sink = gst_element_factory_make("fakesink", nullptr);
  g_object_set(sink, "sync", FALSE, nullptr);
  gst_bin_add_many(GST_BIN(p.pipeline), p.src, sink, nullptr);
  fail_unless(gst_element_link(p.src, sink));
  return p;
}

void drop_pipeline(Pipeline &p) {
  gst_element_set_state(p.pipeline, GST_STATE_NULL);
  gst_object_unref(p.pipeline);
  p = {};
}

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

// What the emulator saw of each run, by the run's external task ID ("" when unknown).
std::map<std::string, std::vector<kirin_emu::RequestRecord>>
requests_by_run(const kirin_emu::Emulator &emu) {
  std::map<std::string, std::string> run_of_task;
  std::map<std::string, std::vector<kirin_emu::RequestRecord>> runs;
  for (const auto &r : emu.requests()) {
    std::string run;
    if (r.route == kirin_emu::Route::Create) {
      run = r.external_task_id;
      if (!r.task_id.empty())
        run_of_task[r.task_id] = run;
    } else if (run_of_task.count(r.task_id)) {
      run = run_of_task[r.task_id];
    }
    runs[run].push_back(r);
  }
  return runs;
}

// Waits until `us` has passed: what the emulator receives by then is what came late.
void wait_until(gint64 us) {
  while (g_get_monotonic_time() < us)
    g_usleep(MIN(us - g_get_monotonic_time(), G_USEC_PER_SEC / 10) + 1);
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

// Nothing of a stopped run reaches the emulator more than 1 s after its stop. `stops` maps
// each run's external task ID to the time of its stop; a chain step's ID carries a suffix.
void assert_nothing_late(const kirin_emu::Emulator &emu,
                         const std::map<std::string, gint64> &stops) {
  gint64 last = 0;
  for (const auto &entry : stops)
    last = MAX(last, entry.second);
  wait_until(last + G_USEC_PER_SEC + G_USEC_PER_SEC / 5);
  for (const auto &[run, records] : requests_by_run(emu)) {
    auto stop = stops.find(run.substr(0, run.find("-step")));
    if (stop == stops.end())
      continue;
    for (const auto &r : records)
      fail_unless(r.arrival_us <= stop->second + G_USEC_PER_SEC,
                  "%s: %s %s came %" G_GINT64_FORMAT " ms after the stop", run.c_str(),
                  r.method.c_str(), r.path.c_str(), (r.arrival_us - stop->second) / 1000);
  }
}

guint creates_of(const kirin_emu::Emulator &emu, const std::string &run) {
  guint count = 0;
  for (const auto &r : emu.requests())
    count += r.route == kirin_emu::Route::Create && r.external_task_id == run;
  return count;
}

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

static Suite *run_suite() {
  Suite *s = suite_create("run");
  TCase *tc = tcase_create("general");
  suite_add_tcase(s, tc);
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, test_stop_between_chain_steps_never_pays);
  tcase_add_test(tc, test_stop_during_a_url_refresh_streams_nothing);
  tcase_add_test(tc, test_stop_inside_the_refresh_window);
  tcase_add_test(tc, test_restart_streams_only_the_new_result);
  tcase_add_test(tc, test_set_state_null_from_every_message);
  tcase_add_test(tc, test_child_kept_by_the_application);
  tcase_add_test(tc, test_random_state_cycles);
  return s;
}

int main(int argc, char **argv) {
  kirin_test_init(&argc, &argv, "run");
  return gst_check_run_suite(run_suite(), "run", __FILE__);
}
