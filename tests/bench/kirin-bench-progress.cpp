// kirin-bench-progress: how late a finished task is noticed, and at how many polls, for tasks
// of every progress shape the emulator models (tests/bench/README.md, "Waits for real
// tasks"). One process measures one polling policy: the client's, unless the environment
// variable KIRIN_BENCH_POLL_POLICY names another ("backoff": the growing schedule alone,
// "fixed": every poll-interval). tests/bench/run starts one process per policy at once.
//
//   kirin-bench-progress [--per-shape N] [--poll-interval MS] [--min-ms MS] [--max-ms MS]
//
// Prints one JSON object: per task its shape, processing time, delay from completion to the
// first request for the result (ms) and polls.
#include "emulator.h"

#include <gst/gst.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

namespace {

constexpr const char *kShapes[] = {"linear", "steps", "none", "stall", "back"};
constexpr const char *kVideoId = "short"; // a 0.2 s source: small results, rendered quickly
constexpr guint kPendingMs = 500;

struct Settings {
  guint per_shape = 20, poll_interval_ms = 500, min_ms = 4000, max_ms = 30000;
};

struct TaskRun {
  std::string shape;
  guint length_ms = 0;
  GstElement *pipeline = nullptr;
  std::string task_id;
  gint64 due_us = 0, first_download_us = 0;
  guint polls = 0;
};

guint option(int argc, char **argv, const char *name, guint fallback) {
  const std::string flag = std::string("--") + name;
  for (int i = 1; i + 1 < argc; i++)
    if (flag == argv[i])
      return guint(std::strtoul(argv[i + 1], nullptr, 10));
  return fallback;
}

// Lengths spread evenly over [min_ms, max_ms], shapes interleaved so that every shape meets
// the same load.
std::vector<TaskRun> plan_tasks(const Settings &settings) {
  std::vector<TaskRun> tasks;
  for (guint k = 0; k < settings.per_shape; k++) {
    for (const char *shape : kShapes) {
      TaskRun task;
      task.shape = shape;
      const guint span = settings.max_ms - settings.min_ms;
      task.length_ms =
          settings.min_ms + (settings.per_shape > 1 ? span * k / (settings.per_shape - 1) : 0);
      tasks.push_back(task);
    }
  }
  return tasks;
}

GstElement *start_pipeline(const kirin_emu::Emulator &emu, const Settings &settings) {
  GstElement *pipeline = gst_parse_launch(
      "kirinextendsrc name=src journal=none timeout=300 ! fakesink sync=false", nullptr);
  GstElement *src = gst_bin_get_by_name(GST_BIN(pipeline), "src");
  g_object_set(src, "api-url", emu.api_url().c_str(), "api-key", emu.api_key().c_str(), "video-id",
               kVideoId, "poll-interval", settings.poll_interval_ms, nullptr);
  gst_object_unref(src);
  gst_element_set_state(pipeline, GST_STATE_PLAYING);
  return pipeline;
}

// Starts the tasks one at a time, so that the n-th task created takes the n-th fault.
bool start_all(kirin_emu::Emulator &emu, const Settings &settings, std::vector<TaskRun> &tasks) {
  for (size_t i = 0; i < tasks.size(); i++) {
    TaskRun &task = tasks[i];
    emu.push_fault(kirin_emu::Route::Task,
                   "progress:" + task.shape + ":" + std::to_string(task.length_ms));
    task.pipeline = start_pipeline(emu, settings);
    const gint64 give_up = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
    while (emu.create_count() < i + 1 && g_get_monotonic_time() < give_up)
      g_usleep(1000);
    if (emu.create_count() < i + 1)
      return false;
  }
  return true;
}

// Fills in each task's ID, due moment, polls and first download from the emulator's log.
void read_log(const kirin_emu::Emulator &emu, std::vector<TaskRun> &tasks) {
  std::map<std::string, TaskRun *> by_id;
  size_t created = 0;
  for (const kirin_emu::RequestRecord &r : emu.requests()) {
    if (r.route == kirin_emu::Route::Create && r.status == 200 && created < tasks.size()) {
      TaskRun &task = tasks[created++];
      task.task_id = r.task_id;
      task.due_us = r.arrival_us + gint64(kPendingMs + task.length_ms) * 1000;
      by_id[r.task_id] = &task;
      continue;
    }
    auto found = by_id.find(r.task_id);
    if (found == by_id.end())
      continue;
    if (r.route == kirin_emu::Route::Poll)
      found->second->polls++;
    else if (r.route == kirin_emu::Route::Download && g_str_has_suffix(r.path.c_str(), ".mp4") &&
             !found->second->first_download_us)
      found->second->first_download_us = r.arrival_us;
  }
}

// Resets what read_log() counts, so that it can be read again from the start.
void clear_log_counts(std::vector<TaskRun> &tasks) {
  for (TaskRun &task : tasks) {
    task.polls = 0;
    task.first_download_us = 0;
  }
}

bool all_downloading(const kirin_emu::Emulator &emu, std::vector<TaskRun> &tasks) {
  clear_log_counts(tasks);
  read_log(emu, tasks);
  for (const TaskRun &task : tasks)
    if (!task.first_download_us)
      return false;
  return true;
}

guint count_errors(std::vector<TaskRun> &tasks) {
  guint errors = 0;
  for (TaskRun &task : tasks) {
    GstBus *bus = gst_element_get_bus(task.pipeline);
    GstMessage *error = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
    errors += error != nullptr;
    if (error)
      gst_message_unref(error);
    gst_object_unref(bus);
    gst_element_set_state(task.pipeline, GST_STATE_NULL);
    gst_object_unref(task.pipeline);
  }
  return errors;
}

void print_json(const Settings &settings, const std::vector<TaskRun> &tasks, guint errors) {
  const char *policy = g_getenv("KIRIN_BENCH_POLL_POLICY");
  std::printf("{\"policy\": \"%s\", \"poll_interval_ms\": %u, \"errors\": %u, \"tasks\": [",
              policy ? policy : "predict", settings.poll_interval_ms, errors);
  for (size_t i = 0; i < tasks.size(); i++) {
    const TaskRun &t = tasks[i];
    std::printf("%s{\"shape\": \"%s\", \"length_ms\": %u, \"delay_ms\": %.1f, \"polls\": %u}",
                i ? ", " : "", t.shape.c_str(), t.length_ms,
                t.first_download_us ? (t.first_download_us - t.due_us) / 1000.0 : -1.0, t.polls);
  }
  std::printf("]}\n");
}

} // namespace

int main(int argc, char **argv) {
  gst_init(&argc, &argv);
  Settings settings;
  settings.per_shape = option(argc, argv, "per-shape", settings.per_shape);
  settings.poll_interval_ms = option(argc, argv, "poll-interval", settings.poll_interval_ms);
  settings.min_ms = option(argc, argv, "min-ms", settings.min_ms);
  settings.max_ms = MAX(option(argc, argv, "max-ms", settings.max_ms), settings.min_ms);
  kirin_emu::Options options;
  options.pending_ms = kPendingMs;
  options.width = 64;
  options.height = 48;
  kirin_emu::Emulator emu(options);
  GError *error = nullptr;
  if (!emu.start(&error)) {
    std::fprintf(stderr, "emulator: %s\n", error->message);
    return 1;
  }
  emu.add_video(kVideoId, 0.2);
  std::vector<TaskRun> tasks = plan_tasks(settings);
  if (!start_all(emu, settings, tasks)) {
    std::fprintf(stderr, "a task was not created within 10 s\n");
    return 1;
  }
  const gint64 give_up = g_get_monotonic_time() + gint64(settings.max_ms + 60000) * 1000;
  while (!all_downloading(emu, tasks) && g_get_monotonic_time() < give_up)
    g_usleep(200000);
  const guint errors = count_errors(tasks);
  print_json(settings, tasks, errors);
  return 0;
}
