// What the run suites share (run, run-states): stops placed at a bus message or a property's
// notification (from the deciding thread or the test thread), which message is which, the
// pipelines the runs play in, and what the emulator saw of each run after its stop.
#pragma once

#include "common.h"
#include "emulator-fixture.h"

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

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

inline std::shared_ptr<StopPoint> stop_at(GstElement *pipeline, Match match, bool from_handler,
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
inline std::shared_ptr<StopPoint> stop_at_notify(GstElement *pipeline, GstElement *element,
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

inline bool is_task_message(GstMessage *message, const char *status, guint step) {
  const GstStructure *s = gst_message_get_structure(message);
  guint message_step = 0;
  return GST_MESSAGE_TYPE(message) == GST_MESSAGE_ELEMENT && s &&
         gst_structure_has_name(s, "kirin-task") &&
         g_strcmp0(gst_structure_get_string(s, "status"), status) == 0 &&
         gst_structure_get_uint(s, "step", &message_step) && message_step == step;
}

inline bool is_progress(GstMessage *message, GstProgressType type, const char *text_part) {
  if (GST_MESSAGE_TYPE(message) != GST_MESSAGE_PROGRESS)
    return false;
  GstProgressType message_type;
  g_autofree char *text = nullptr;
  gst_message_parse_progress(message, &message_type, nullptr, &text);
  return message_type == type && text && strstr(text, text_part);
}

// The element's own messages: kirin-task and its progress.
inline bool is_kirin_message(GstMessage *message) {
  if (GST_MESSAGE_TYPE(message) == GST_MESSAGE_PROGRESS)
    return true;
  const GstStructure *s = gst_message_get_structure(message);
  return GST_MESSAGE_TYPE(message) == GST_MESSAGE_ELEMENT && s &&
         gst_structure_has_name(s, "kirin-task");
}

// The n-th (0-based) of the element's own messages.
inline Match nth_kirin_message(int n) {
  auto seen = std::make_shared<int>(0);
  return [seen, n](GstMessage *message) { return is_kirin_message(message) && (*seen)++ == n; };
}

// ---- pipelines ----

struct Pipeline {
  GstElement *pipeline;
  GstElement *src;
};

inline Pipeline make_pipeline(const kirin_emu::Emulator &emu, const char *video_id,
                              guint extensions, const std::string &external_task_id) {
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

inline void drop_pipeline(Pipeline &p) {
  gst_element_set_state(p.pipeline, GST_STATE_NULL);
  gst_object_unref(p.pipeline);
  p = {};
}

// What the emulator saw of each run, by the run's external task ID ("" when unknown).
inline std::map<std::string, std::vector<kirin_emu::RequestRecord>>
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
inline void wait_until(gint64 us) {
  while (g_get_monotonic_time() < us)
    g_usleep(MIN(us - g_get_monotonic_time(), G_USEC_PER_SEC / 10) + 1);
}

// Nothing of a stopped run reaches the emulator more than 1 s after its stop. `stops` maps
// each run's external task ID to the time of its stop; a chain step's ID carries a suffix.
inline void assert_nothing_late(const kirin_emu::Emulator &emu,
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

inline guint creates_of(const kirin_emu::Emulator &emu, const std::string &run) {
  guint count = 0;
  for (const auto &r : emu.requests())
    count += r.route == kirin_emu::Route::Create && r.external_task_id == run;
  return count;
}
