// kirin-bench: the in-process measurements behind tests/bench/run. Each subcommand measures
// one thing once and prints one JSON object on stdout; the driver repeats the runs, takes
// medians, compares them with their references and prints the table.
//
//   kirin-bench fetch --source element|souphttpsrc --url URL [--api-url URL --api-key KEY]
//   kirin-bench first-byte --reps N [--poll-interval MS] [--callback yes]
//   kirin-bench wait --api-url URL --api-key KEY --seconds S
//   kirin-bench scale --url URL --sha256 HEX --count N [--sample-ms MS] [--journal none|PATH]
//   kirin-bench emulator (the scale run's helper: commands on stdin)
#include "emulator.h"

#include <gst/gst.h>

#include <unistd.h>

#include <sys/resource.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

namespace {

constexpr const char *kVideoId = "demo-5s"; // seeded in every emulator

gint64 now_us() {
  return g_get_monotonic_time();
}

// --name value or --name=value after the subcommand.
class Args {
public:
  Args(int argc, char **argv) {
    for (int i = 2; i < argc; i++) {
      std::string arg = argv[i];
      if (arg.rfind("--", 0) != 0)
        continue;
      size_t equals = arg.find('=');
      if (equals != std::string::npos)
        values_[arg.substr(2, equals - 2)] = arg.substr(equals + 1);
      else if (i + 1 < argc)
        values_[arg.substr(2)] = argv[++i];
    }
  }
  std::string get(const std::string &name, const std::string &fallback = {}) const {
    auto found = values_.find(name);
    return found == values_.end() ? fallback : found->second;
  }
  long number(const std::string &name, long fallback) const {
    std::string text = get(name);
    return text.empty() ? fallback : std::strtol(text.c_str(), nullptr, 10);
  }

private:
  std::map<std::string, std::string> values_;
};

// A flat JSON object, printed in insertion order; nested values are added as raw JSON.
class Json {
public:
  Json &num(const std::string &key, double value) {
    if (!std::isfinite(value))
      return raw(key, "null");
    char text[64];
    std::snprintf(text, sizeof text, "%.6g", value);
    return raw(key, text);
  }
  Json &integer(const std::string &key, long long value) { return raw(key, std::to_string(value)); }
  Json &boolean(const std::string &key, bool value) { return raw(key, value ? "true" : "false"); }
  Json &str(const std::string &key, const std::string &value) { return raw(key, quote(value)); }
  Json &raw(const std::string &key, const std::string &json) {
    fields_.emplace_back(key, json);
    return *this;
  }
  std::string text() const {
    std::string out = "{";
    for (size_t i = 0; i < fields_.size(); i++)
      out += (i ? ", " : "") + quote(fields_[i].first) + ": " + fields_[i].second;
    return out + "}";
  }
  void print() const { std::printf("%s\n", text().c_str()); }

  static std::string quote(const std::string &value) {
    std::string out = "\"";
    for (unsigned char c : value) {
      if (c == '"' || c == '\\') {
        out += '\\';
        out += char(c);
      } else if (c < 0x20) {
        char escaped[8];
        std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
        out += escaped;
      } else {
        out += char(c);
      }
    }
    return out + "\"";
  }

private:
  std::vector<std::pair<std::string, std::string>> fields_;
};

std::string json_array(const std::vector<std::string> &items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); i++)
    out += (i ? ", " : "") + items[i];
  return out + "]";
}

// ---- what the process uses, from /proc and getrusage ----

std::string read_file(const std::string &path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

long status_field(const std::string &status, const char *name) {
  size_t at = status.find(name);
  return at == std::string::npos ? -1
                                 : std::strtol(status.c_str() + at + strlen(name), nullptr, 10);
}

long rss_kb() {
  return status_field(read_file("/proc/self/status"), "VmRSS:");
}

struct ThreadInfo {
  std::string name;
  long switches = 0; // voluntary + involuntary context switches
  double cpu_ms = 0;
};

// Every thread of the process by TID.
std::map<long, ThreadInfo> threads() {
  std::map<long, ThreadInfo> out;
  GDir *dir = g_dir_open("/proc/self/task", 0, nullptr);
  if (!dir)
    return out;
  static const double ms_per_tick = 1000.0 / sysconf(_SC_CLK_TCK);
  while (const char *entry = g_dir_read_name(dir)) {
    std::string base = std::string("/proc/self/task/") + entry;
    ThreadInfo info;
    info.name = read_file(base + "/comm");
    if (!info.name.empty() && info.name.back() == '\n')
      info.name.pop_back();
    std::string status = read_file(base + "/status");
    info.switches = status_field(status, "voluntary_ctxt_switches:") +
                    status_field(status, "nonvoluntary_ctxt_switches:");
    // utime and stime are fields 14 and 15 of stat, after the parenthesised name.
    std::string stat = read_file(base + "/stat");
    size_t close = stat.rfind(')');
    if (close != std::string::npos) {
      std::istringstream fields(stat.substr(close + 2));
      std::string field;
      long utime = 0, stime = 0;
      for (int i = 3; fields >> field; i++) {
        if (i == 14)
          utime = std::strtol(field.c_str(), nullptr, 10);
        if (i == 15) {
          stime = std::strtol(field.c_str(), nullptr, 10);
          break;
        }
      }
      info.cpu_ms = (utime + stime) * ms_per_tick;
    }
    out[std::strtol(entry, nullptr, 10)] = info;
  }
  g_dir_close(dir);
  return out;
}

struct Usage {
  double cpu_ms = 0;
  long switches = 0; // of all threads, including those that ended
};

Usage usage() {
  struct rusage ru = {};
  getrusage(RUSAGE_SELF, &ru);
  Usage out;
  out.cpu_ms = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000.0 +
               (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000.0;
  out.switches = ru.ru_nvcsw + ru.ru_nivcsw;
  return out;
}

// ---- the client's own log lines, as timestamps ----

// Records when the client thread created each task, sent each poll and took each callback,
// from its debug lines ("created task X", "polling task X", "callback for task X: ..."), so
// the timing of polls can be measured from outside without changing the client.
class ClientLog {
public:
  static ClientLog &get() {
    static ClientLog log;
    return log;
  }

  void install() {
    gst_debug_set_active(TRUE);
    gst_debug_remove_log_function(gst_debug_log_default);
    gst_debug_add_log_function(&ClientLog::on_log, this, nullptr);
    gst_debug_set_threshold_for_name("kirinclient", GST_LEVEL_LOG);
  }

  gint64 created_us(const std::string &task_id) {
    std::lock_guard<std::mutex> guard(lock_);
    auto found = created_.find(task_id);
    return found == created_.end() ? 0 : found->second;
  }
  std::vector<gint64> polls(const std::string &task_id) {
    std::lock_guard<std::mutex> guard(lock_);
    return polls_[task_id];
  }
  std::vector<gint64> callbacks(const std::string &task_id) {
    std::lock_guard<std::mutex> guard(lock_);
    return callbacks_[task_id];
  }
  size_t poll_count_between(gint64 from_us, gint64 to_us) {
    std::lock_guard<std::mutex> guard(lock_);
    size_t count = 0;
    for (const auto &[task, times] : polls_)
      for (gint64 t : times)
        count += t >= from_us && t < to_us;
    return count;
  }
  // The first task created, waiting up to `timeout_ms`.
  std::string wait_first_task(guint timeout_ms) {
    std::unique_lock<std::mutex> guard(lock_);
    changed_.wait_for(guard, std::chrono::milliseconds(timeout_ms),
                      [this] { return !first_task_.empty(); });
    return first_task_;
  }
  void forget_first_task() {
    std::lock_guard<std::mutex> guard(lock_);
    first_task_.clear();
  }

private:
  static void on_log(GstDebugCategory *category, GstDebugLevel level, const gchar *, const gchar *,
                     gint, GObject *, GstDebugMessage *message, gpointer data) {
    const gint64 at = now_us();
    const char *text = gst_debug_message_get(message);
    if (level <= GST_LEVEL_WARNING) {
      g_printerr("%s: %s\n", gst_debug_category_get_name(category), text);
      return;
    }
    if (g_strcmp0(gst_debug_category_get_name(category), "kirinclient") != 0 || !text)
      return;
    auto *self = static_cast<ClientLog *>(data);
    std::lock_guard<std::mutex> guard(self->lock_);
    if (g_str_has_prefix(text, "polling task ")) {
      self->polls_[text + strlen("polling task ")].push_back(at);
    } else if (g_str_has_prefix(text, "callback for task ")) {
      std::string task = text + strlen("callback for task ");
      self->callbacks_[task.substr(0, task.find(':'))].push_back(at);
    } else if (g_str_has_prefix(text, "created task ")) {
      std::string task = text + strlen("created task ");
      self->created_[task] = at;
      if (self->first_task_.empty())
        self->first_task_ = task;
      self->changed_.notify_all();
    }
  }

  std::mutex lock_;
  std::condition_variable changed_;
  std::map<std::string, gint64> created_;
  std::map<std::string, std::vector<gint64>> polls_;
  std::map<std::string, std::vector<gint64>> callbacks_; // notifications that made it poll
  std::string first_task_;
};

// ---- pipelines ----

// The elements' `journal` ("": the default, in XDG_CACHE_HOME). `scale --journal none` shows
// what the journal's share of starting 1000 elements is.
std::string journal_setting;

GstElement *make_extend_src(const std::string &api_url, const std::string &api_key) {
  GstElement *src = gst_element_factory_make("kirinextendsrc", nullptr);
  if (!src) {
    g_printerr("kirin-bench: no kirinextendsrc (is GST_PLUGIN_PATH set to build/gst/kirin?)\n");
    std::exit(1);
  }
  // Every element is a request of its own, a new task: the same request would be one task
  // for all (the journal's claim), or a replay of an earlier run's.
  static int made = 0;
  std::string external_id = "bench-" + std::to_string(getpid()) + "-" + std::to_string(made++);
  g_object_set(src, "api-url", api_url.c_str(), "api-key", api_key.c_str(), "video-id", kVideoId,
               "external-task-id", external_id.c_str(), nullptr);
  if (!journal_setting.empty())
    g_object_set(src, "journal", journal_setting.c_str(), nullptr);
  return src;
}

// `source ! fakesink sync=false`, the way a user would drain a source as fast as it goes.
GstElement *make_pipeline(GstElement *source, bool async_sink = true) {
  GstElement *pipeline = gst_pipeline_new(nullptr);
  GstElement *sink = gst_element_factory_make("fakesink", nullptr);
  g_object_set(sink, "sync", FALSE, "async", async_sink ? TRUE : FALSE, nullptr);
  gst_bin_add_many(GST_BIN(pipeline), source, sink, nullptr);
  if (!gst_element_link(source, sink)) {
    g_printerr("kirin-bench: cannot link the source to fakesink\n");
    std::exit(1);
  }
  return pipeline;
}

// Plays until EOS, an error or `max_seconds`; returns the error ("" on EOS).
std::string run_to_eos(GstElement *pipeline, double max_seconds) {
  GstBus *bus = gst_element_get_bus(pipeline);
  const gint64 deadline = now_us() + gint64(max_seconds * G_USEC_PER_SEC);
  gst_element_set_state(pipeline, GST_STATE_PLAYING);
  std::string error = "timed out";
  for (gint64 left = deadline - now_us(); left > 0; left = deadline - now_us()) {
    GstMessage *msg = gst_bus_timed_pop_filtered(
        bus, left * GST_USECOND, GstMessageType(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
    if (!msg)
      continue;
    if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR) {
      GError *gerror = nullptr;
      gst_message_parse_error(msg, &gerror, nullptr);
      error = gerror->message;
      g_error_free(gerror);
    } else {
      error.clear();
    }
    gst_message_unref(msg);
    break;
  }
  gst_element_set_state(pipeline, GST_STATE_NULL);
  gst_object_unref(bus);
  return error;
}

// Bytes and times of what leaves a pad. Written by the streaming thread, read once it ended.
struct Flow {
  std::atomic<gint64> first_us{0}, second_us{0}, eos_us{0};
  std::atomic<guint64> bytes{0}, buffers{0};
  GChecksum *checksum = nullptr; // when the content must be compared
  // Downloads between their first buffer and EOS, shared by many flows, and its maximum.
  std::atomic<int> *active = nullptr, *peak_active = nullptr;
  std::mutex lock;
  std::condition_variable first_buffer;

  void take(GstBuffer *buffer) {
    if (checksum) {
      GstMapInfo map;
      if (gst_buffer_map(buffer, &map, GST_MAP_READ)) {
        g_checksum_update(checksum, map.data, map.size);
        gst_buffer_unmap(buffer, &map);
      }
    }
    bytes += gst_buffer_get_size(buffer);
    buffers++;
  }

  static GstPadProbeReturn probe(GstPad *, GstPadProbeInfo *info, gpointer data) {
    auto *flow = static_cast<Flow *>(data);
    const gint64 at = now_us();
    if (info->type & GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM) {
      if (GST_EVENT_TYPE(GST_PAD_PROBE_INFO_EVENT(info)) == GST_EVENT_EOS) {
        flow->eos_us = at;
        if (flow->active && flow->first_us != 0)
          (*flow->active)--;
      }
      return GST_PAD_PROBE_OK;
    }
    if (info->type & GST_PAD_PROBE_TYPE_BUFFER) {
      flow->take(GST_PAD_PROBE_INFO_BUFFER(info));
    } else {
      GstBufferList *list = GST_PAD_PROBE_INFO_BUFFER_LIST(info);
      for (guint i = 0; i < gst_buffer_list_length(list); i++)
        flow->take(gst_buffer_list_get(list, i));
    }
    if (flow->first_us != 0 && flow->second_us == 0)
      flow->second_us = at;
    if (flow->first_us == 0) {
      if (flow->active) {
        int now_active = ++(*flow->active);
        int peak = *flow->peak_active;
        while (now_active > peak && !flow->peak_active->compare_exchange_weak(peak, now_active)) {
        }
      }
      std::lock_guard<std::mutex> guard(flow->lock);
      flow->first_us = at;
      flow->first_buffer.notify_all();
    }
    return GST_PAD_PROBE_OK;
  }

  void watch(GstElement *element) {
    GstPad *pad = gst_element_get_static_pad(element, "src");
    gst_pad_add_probe(pad,
                      GstPadProbeType(GST_PAD_PROBE_TYPE_BUFFER | GST_PAD_PROBE_TYPE_BUFFER_LIST |
                                      GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM),
                      &Flow::probe, this, nullptr);
    gst_object_unref(pad);
  }
};

std::string plugin_file() {
  GstPlugin *plugin = gst_registry_find_plugin(gst_registry_get(), "kirin");
  std::string file =
      plugin && gst_plugin_get_filename(plugin) ? gst_plugin_get_filename(plugin) : "";
  if (plugin)
    gst_object_unref(plugin);
  return file;
}

// ---- fetch: the download phase only, first buffer to EOS ----

int run_fetch(const Args &args) {
  const std::string kind = args.get("source", "element");
  const std::string url = args.get("url");
  GstElement *source;
  if (kind == "element") {
    source = make_extend_src(args.get("api-url"), args.get("api-key", "test-key"));
  } else {
    source = gst_element_factory_make("souphttpsrc", nullptr);
    g_object_set(source, "location", url.c_str(), nullptr);
  }
  Flow flow;
  flow.watch(source);
  GstElement *pipeline = make_pipeline(source);
  std::string error = run_to_eos(pipeline, args.number("max-seconds", 300));
  gst_object_unref(pipeline);
  const double seconds = (flow.eos_us - flow.first_us) / 1e6;
  Json out;
  out.str("source", kind).integer("bytes", flow.bytes).integer("buffers", flow.buffers);
  out.num("seconds", seconds).num("bytes_per_s", seconds > 0 ? flow.bytes / seconds : 0);
  out.num("first_gap_ms", (flow.second_us - flow.first_us) / 1000.0);
  out.str("error", error).str("plugin", plugin_file());
  out.print();
  return error.empty() ? 0 : 1;
}

// ---- first-byte: from the emulator marking the task completed to the first buffer out ----

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

// ---- wait: what an element costs while its task stays pending ----

int run_wait(const Args &args) {
  ClientLog::get().install();
  const long seconds = args.number("seconds", 60);
  GstElement *src = make_extend_src(args.get("api-url"), args.get("api-key", "test-key"));
  GstElement *pipeline = make_pipeline(src);
  gst_element_set_state(pipeline, GST_STATE_PLAYING);
  std::string task = ClientLog::get().wait_first_task(10000);
  if (task.empty()) {
    g_printerr("kirin-bench: no task was created\n");
    return 1;
  }
  // From here on the element only waits: nothing else in the process has work to do.
  const auto threads_before = threads();
  const Usage before = usage();
  const gint64 start = now_us();
  g_usleep(seconds * G_USEC_PER_SEC);
  const gint64 end = now_us();
  const Usage after = usage();
  const auto threads_after = threads();

  std::vector<std::string> per_thread;
  for (const auto &[tid, info] : threads_after) {
    auto old = threads_before.find(tid);
    long switches = info.switches - (old == threads_before.end() ? 0 : old->second.switches);
    double cpu = info.cpu_ms - (old == threads_before.end() ? 0 : old->second.cpu_ms);
    Json item;
    item.str("name", info.name).integer("switches", switches).num("cpu_ms", cpu);
    per_thread.push_back(item.text());
  }
  GstState state = GST_STATE_VOID_PENDING;
  gst_element_get_state(pipeline, &state, nullptr, 0);
  gchar *task_after = nullptr;
  g_object_get(src, "task-id", &task_after, nullptr);
  Json out;
  out.num("seconds", (end - start) / 1e6).num("cpu_ms", after.cpu_ms - before.cpu_ms);
  out.integer("wakeups", after.switches - before.switches);
  out.integer("polls", ClientLog::get().poll_count_between(start, end));
  out.integer("threads", threads_after.size()).raw("per_thread", json_array(per_thread));
  out.str("task", task).boolean("still_waiting", task_after && task == task_after);
  out.str("plugin", plugin_file());
  out.print();
  g_free(task_after);
  gst_element_set_state(pipeline, GST_STATE_NULL);
  gst_object_unref(pipeline);
  return 0;
}

// ---- scale: many elements in one process, each with its own task ----

struct Branch {
  int index = 0;
  GstElement *pipeline = nullptr;
  Flow flow;
  std::string error;
  bool waiting = false, completed = false, ended = false;
};

enum class BranchEvent { Waiting, Completed, Ended };

struct ScaleState {
  GAsyncQueue *events = g_async_queue_new(); // (index << 2 | event), as pointers
  std::mutex lock;                           // guards Branch::error
};
ScaleState *scale_state = nullptr;

// The elements' souphttpsrc that are started (READY to PAUSED, back at PAUSED to READY) at
// once, and the most: each runs a session thread of its own while started. That thread has
// no name of its own (it shows under the name of the thread that started the source), so
// the sources are counted instead.
std::atomic<int> started_http_sources{0}, peak_http_sources{0};

void count_http_source(GstMessage *msg) {
  GstObject *src = GST_MESSAGE_SRC(msg);
  GstElementFactory *factory =
      src && GST_IS_ELEMENT(src) ? gst_element_get_factory(GST_ELEMENT(src)) : nullptr;
  if (!factory || g_strcmp0(GST_OBJECT_NAME(factory), "souphttpsrc") != 0)
    return;
  GstState old_state, new_state;
  gst_message_parse_state_changed(msg, &old_state, &new_state, nullptr);
  if (old_state == GST_STATE_READY && new_state == GST_STATE_PAUSED) {
    int now = ++started_http_sources, peak = peak_http_sources;
    while (now > peak && !peak_http_sources.compare_exchange_weak(peak, now)) {
    }
  } else if (old_state == GST_STATE_PAUSED && new_state == GST_STATE_READY) {
    started_http_sources--;
  }
}

void push_event(int index, BranchEvent event) {
  g_async_queue_push(scale_state->events, GINT_TO_POINTER((index << 2 | int(event)) + 1));
}

// Every bus message is handled here and dropped, so a thousand idle buses hold nothing.
GstBusSyncReply scale_bus_handler(GstBus *, GstMessage *msg, gpointer data) {
  auto *branch = static_cast<Branch *>(data);
  switch (GST_MESSAGE_TYPE(msg)) {
  case GST_MESSAGE_ELEMENT: {
    const GstStructure *s = gst_message_get_structure(msg);
    const char *status = s && gst_structure_has_name(s, "kirin-task")
                             ? gst_structure_get_string(s, "status")
                             : nullptr;
    if (g_strcmp0(status, "pending") == 0)
      push_event(branch->index, BranchEvent::Waiting);
    else if (g_strcmp0(status, "completed") == 0)
      push_event(branch->index, BranchEvent::Completed);
    break;
  }
  case GST_MESSAGE_ERROR: {
    GError *error = nullptr;
    gst_message_parse_error(msg, &error, nullptr);
    {
      std::lock_guard<std::mutex> guard(scale_state->lock);
      if (branch->error.empty())
        branch->error = error->message;
    }
    g_error_free(error);
    push_event(branch->index, BranchEvent::Ended);
    break;
  }
  case GST_MESSAGE_EOS:
    push_event(branch->index, BranchEvent::Ended);
    break;
  case GST_MESSAGE_STATE_CHANGED:
    count_http_source(msg);
    break;
  default:
    break;
  }
  return GST_BUS_DROP;
}

// The names only (one read a thread, not threads()'s three): sampled while a thousand
// downloads run.
std::vector<std::string> thread_names() {
  std::vector<std::string> names;
  GDir *dir = g_dir_open("/proc/self/task", 0, nullptr);
  if (!dir)
    return names;
  while (const char *entry = g_dir_read_name(dir)) {
    std::string name = read_file(std::string("/proc/self/task/") + entry + "/comm");
    if (!name.empty() && name.back() == '\n')
      name.pop_back();
    names.push_back(name);
  }
  g_dir_close(dir);
  std::sort(names.begin(), names.end());
  return names;
}

// The process's threads now, from /proc/self/status: cheap enough to sample every 100 ms
// with two thousand threads.
long thread_count() {
  return status_field(read_file("/proc/self/status"), "Threads:");
}

// How many threads have each name, as a JSON object.
std::string thread_name_counts() {
  std::map<std::string, int> counts;
  for (const std::string &name : thread_names())
    counts[name]++;
  Json out;
  for (const auto &[name, n] : counts)
    out.integer(name, n);
  return out.text();
}

// Names in `after` that are not in `before` (as multisets), as a JSON array.
std::string new_thread_names(std::vector<std::string> before,
                             const std::vector<std::string> &after) {
  std::vector<std::string> added;
  for (const std::string &name : after) {
    auto found = std::find(before.begin(), before.end(), name);
    if (found != before.end())
      before.erase(found);
    else
      added.push_back(Json::quote(name));
  }
  return json_array(added);
}

// The emulator in a child process (so its threads, memory and CPU stay out of the
// figures), driven over a pipe: the bench decides when tasks complete.
class EmulatorProcess {
public:
  bool start(const std::string &pending_ms) {
    const char *argv[] = {"/proc/self/exe", "emulator", "--pending-ms", pending_ms.c_str(),
                          nullptr};
    int to_child = -1, from_child = -1;
    GError *error = nullptr;
    // Plain spawn without a child watch: GSubprocess would start GLib's worker thread in
    // this process before the thread count is taken.
    if (!g_spawn_async_with_pipes(nullptr, const_cast<char **>(argv), nullptr,
                                  G_SPAWN_DO_NOT_REAP_CHILD, nullptr, nullptr, &pid_, &to_child,
                                  &from_child, nullptr, &error)) {
      g_printerr("kirin-bench: cannot start the emulator: %s\n", error->message);
      g_error_free(error);
      return false;
    }
    to_ = fdopen(to_child, "w");
    from_ = fdopen(from_child, "r");
    std::string line = read_line();
    const std::string prefix = "listening on ";
    if (line.rfind(prefix, 0) != 0)
      return false;
    api_url_ = line.substr(prefix.size());
    return true;
  }
  ~EmulatorProcess() {
    if (to_)
      fclose(to_); // the child exits at the end of its input
    if (from_)
      fclose(from_);
    if (pid_ > 0) {
      int status;
      waitpid(pid_, &status, 0);
      g_spawn_close_pid(pid_);
    }
  }
  const std::string &api_url() const { return api_url_; }
  void send(const std::string &command) { std::fprintf(to_, "%s\n", command.c_str()); }
  // Returns once every command sent before has been carried out.
  bool sync() {
    send("sync");
    std::fflush(to_);
    return read_line() == "ok";
  }

private:
  std::string read_line() {
    char buffer[4096];
    if (!std::fgets(buffer, sizeof buffer, from_))
      return {};
    std::string line = buffer;
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r'))
      line.pop_back();
    return line;
  }

  GPid pid_ = 0;
  FILE *to_ = nullptr, *from_ = nullptr;
  std::string api_url_;
};

// The child side: `fault ROUTE SPEC`, `complete TASK`, `sync` (answered "ok"), one a line.
int run_emulator(const Args &args) {
  kirin_emu::Options options;
  options.pending_ms = guint(args.number("pending-ms", 3600 * 1000));
  options.processing_ms = 0;
  options.width = 64;
  options.height = 48;
  kirin_emu::Emulator emulator(options);
  GError *error = nullptr;
  if (!emulator.start(&error)) {
    g_printerr("kirin-bench emulator: %s\n", error->message);
    return 1;
  }
  std::printf("listening on %s\n", emulator.api_url().c_str());
  std::fflush(stdout);
  static const std::map<std::string, kirin_emu::Route> routes = {
      {"create", kirin_emu::Route::Create},
      {"poll", kirin_emu::Route::Poll},
      {"download", kirin_emu::Route::Download},
      {"task", kirin_emu::Route::Task}};
  char buffer[8192];
  while (std::fgets(buffer, sizeof buffer, stdin)) {
    std::string line = buffer;
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r'))
      line.pop_back();
    std::istringstream words(line);
    std::string command, first;
    words >> command >> first;
    if (command == "fault") {
      std::string spec;
      words >> spec;
      auto route = routes.find(first);
      if (route == routes.end() || !emulator.push_fault(route->second, spec))
        g_printerr("kirin-bench emulator: unusable fault: %s\n", line.c_str());
    } else if (command == "complete") {
      emulator.complete_now(first);
    } else if (command == "sync") {
      std::printf("ok\n");
      std::fflush(stdout);
    }
  }
  return 0;
}

int run_scale(const Args &args) {
  const int count = int(args.number("count", 1000));
  const std::string result_url = args.get("url"), expected_sha256 = args.get("sha256");
  const gint64 sample_us = args.number("sample-ms", 5000) * 1000;
  const double max_seconds = double(args.number("max-seconds", 240));
  journal_setting = args.get("journal");
  std::vector<gint64> waiting_at; // when each element had its task, in order
  ScaleState state;
  scale_state = &state;

  // A pipeline's bus holds a pair of file descriptors.
  struct rlimit files;
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }

  EmulatorProcess emulator;
  if (!emulator.start(args.get("pending-ms", "3600000")))
    return 1;
  // Every task completes with the static server's file, only when told to.
  for (int i = 0; i < count; i++)
    emulator.send("fault task url:" + result_url);
  if (!emulator.sync())
    return 1;

  const auto names_before = thread_names();
  const long threads_before = long(names_before.size());
  const long rss_before = rss_kb();
  const gint64 start = now_us();
  std::atomic<int> active_downloads{0}, peak_active_downloads{0};

  std::vector<std::unique_ptr<Branch>> branches;
  for (int i = 0; i < count; i++) {
    auto branch = std::make_unique<Branch>();
    branch->index = i;
    branch->flow.checksum = g_checksum_new(G_CHECKSUM_SHA256);
    branch->flow.active = &active_downloads;
    branch->flow.peak_active = &peak_active_downloads;
    GstElement *src = make_extend_src(emulator.api_url(), "test-key");
    gst_object_set_name(GST_OBJECT(src), "bench-src");
    branch->flow.watch(src);
    // async=false: a sink that waited for preroll would hold its download open until every
    // other pipeline had one too.
    branch->pipeline = make_pipeline(src, false);
    GstBus *bus = gst_element_get_bus(branch->pipeline);
    gst_bus_set_sync_handler(bus, scale_bus_handler, branch.get(), nullptr);
    gst_object_unref(bus);
    branches.push_back(std::move(branch));
  }
  for (auto &branch : branches)
    gst_element_set_state(branch->pipeline, GST_STATE_PLAYING);

  int waiting = 0, completed = 0, ended = 0;
  long max_threads_waiting = 0, max_rss_waiting = 0, peak_threads = 0, peak_rss = 0;
  // From the first `complete` sent to the last pipeline ended: every result downloads.
  long completion_peak_threads = 0, completion_peak_rss = 0;
  gint64 all_waiting_us = 0, complete_start_us = 0, complete_sent_us = 0;
  std::string names_waiting, peak_names, completion_peak_names;
  std::vector<std::string> threads_timeline; // threads each second while all wait
  gint64 next_timeline = 0;
  const gint64 deadline = start + gint64(max_seconds * G_USEC_PER_SEC);
  gint64 next_sample = 0;
  while (ended < count && now_us() < deadline) {
    // Every 100 ms; every 10 ms once the tasks complete, where a download of a MiB from
    // loopback and the threads it takes last only a few milliseconds.
    const gint64 sample_every = complete_start_us ? 10000 : 100000;
    gpointer item = g_async_queue_timeout_pop(state.events, std::min<gint64>(20000, sample_every));
    gint64 now = now_us();
    if (item) {
      const int packed = GPOINTER_TO_INT(item) - 1;
      Branch &branch = *branches[packed >> 2];
      switch (BranchEvent(packed & 3)) {
      case BranchEvent::Waiting:
        if (!branch.waiting) {
          branch.waiting = true;
          waiting_at.push_back(now - start);
          if (++waiting == count)
            all_waiting_us = now;
        }
        break;
      case BranchEvent::Completed:
        if (!branch.completed) {
          branch.completed = true;
          completed++;
        }
        break;
      case BranchEvent::Ended:
        if (!branch.ended) {
          branch.ended = true;
          ended++;
          // Ended pipelines go away at once, as an application would drop them.
          gst_element_set_state(branch.pipeline, GST_STATE_NULL);
          gst_object_unref(branch.pipeline);
          branch.pipeline = nullptr;
        }
        break;
      }
    }
    if (now >= next_sample) {
      next_sample = now + sample_every;
      const long threads_now = thread_count(), rss_now = rss_kb();
      if (threads_now > peak_threads)
        peak_names = thread_name_counts();
      peak_threads = std::max(peak_threads, threads_now);
      peak_rss = std::max(peak_rss, rss_now);
      if (complete_start_us) {
        if (threads_now > completion_peak_threads)
          completion_peak_names = thread_name_counts();
        completion_peak_threads = std::max(completion_peak_threads, threads_now);
        completion_peak_rss = std::max(completion_peak_rss, rss_now);
      }
      if (all_waiting_us && !complete_sent_us) {
        max_threads_waiting = std::max(max_threads_waiting, threads_now);
        max_rss_waiting = std::max(max_rss_waiting, rss_now);
        if (threads_now == max_threads_waiting)
          names_waiting = new_thread_names(names_before, thread_names());
        if (now >= next_timeline) {
          next_timeline = now + G_USEC_PER_SEC;
          threads_timeline.push_back(std::to_string(threads_now));
        }
      }
    }
    // All wait for `sample_us`; then every task completes at once.
    if (all_waiting_us && !complete_sent_us && now >= all_waiting_us + sample_us) {
      complete_start_us = now;
      for (auto &branch : branches) {
        gchar *task_id = nullptr;
        if (branch->pipeline) {
          GstElement *src = gst_bin_get_by_name(GST_BIN(branch->pipeline), "bench-src");
          g_object_get(src, "task-id", &task_id, nullptr);
          gst_object_unref(src);
        }
        if (task_id && *task_id)
          emulator.send(std::string("complete ") + task_id);
        g_free(task_id);
      }
      emulator.sync();
      complete_sent_us = now_us();
    }
  }

  int identical = 0, errors = 0;
  gint64 last_eos_us = 0;
  std::vector<std::string> error_samples;
  for (auto &branch : branches) {
    last_eos_us = std::max(last_eos_us, gint64(branch->flow.eos_us));
    if (branch->pipeline) {
      gst_element_set_state(branch->pipeline, GST_STATE_NULL);
      gst_object_unref(branch->pipeline);
    }
    if (!branch->error.empty()) {
      errors++;
      if (error_samples.size() < 5)
        error_samples.push_back(Json::quote(branch->error));
    } else if (branch->ended && g_checksum_get_string(branch->flow.checksum) == expected_sha256) {
      identical++;
    }
    g_checksum_free(branch->flow.checksum);
  }
  Json out;
  out.integer("count", count).integer("waiting", waiting).integer("completed", completed);
  out.integer("ended", ended).integer("identical", identical).integer("errors", errors);
  out.raw("error_samples", json_array(error_samples));
  out.num("seconds_to_all_waiting", all_waiting_us ? (all_waiting_us - start) / 1e6 : -1);
  // When the first, the 10th, 50th and 90th percentile element had its task.
  for (const auto &[name, share] :
       {std::pair<const char *, double>{"first", 0}, {"p10", 0.1}, {"p50", 0.5}, {"p90", 0.9}})
    if (!waiting_at.empty())
      out.num(std::string("seconds_to_waiting_") + name,
              waiting_at[size_t(share * double(waiting_at.size() - 1))] / 1e6);
  out.integer("threads_before", threads_before).integer("threads_waiting", max_threads_waiting);
  out.raw("new_threads_waiting", names_waiting.empty() ? "[]" : names_waiting);
  out.raw("threads_waiting_each_second", json_array(threads_timeline));
  out.integer("rss_before_kb", rss_before).integer("rss_waiting_kb", max_rss_waiting);
  out.integer("peak_threads", peak_threads).raw("peak_thread_names", peak_names);
  out.integer("peak_rss_kb", peak_rss);
  out.integer("peak_active_downloads", peak_active_downloads);
  // The completion phase alone (sampled every 10 ms).
  out.integer("completion_peak_threads", completion_peak_threads);
  out.raw("completion_peak_thread_names",
          completion_peak_names.empty() ? "{}" : completion_peak_names);
  out.integer("completion_peak_rss_kb", completion_peak_rss);
  out.integer("peak_started_http_sources", peak_http_sources);
  // From telling the emulator to complete every task to the last EOS leaving an element.
  out.num("completion_seconds",
          complete_sent_us && ended == count ? (last_eos_us - complete_sent_us) / 1e6 : -1);
  out.str("plugin", plugin_file());
  out.print();
  g_async_queue_unref(state.events);
  return identical == count ? 0 : 1;
}

} // namespace

int main(int argc, char **argv) {
  gst_init(&argc, &argv);
  const std::string command = argc > 1 ? argv[1] : "";
  Args args(argc, argv);
  if (command == "fetch")
    return run_fetch(args);
  if (command == "first-byte")
    return run_first_byte(args);
  if (command == "wait")
    return run_wait(args);
  if (command == "scale")
    return run_scale(args);
  if (command == "emulator")
    return run_emulator(args);
  g_printerr("usage: kirin-bench fetch|first-byte|wait|scale|emulator [--option value]...\n"
             "(see tests/bench/README.md; tests/bench/run runs them all)\n");
  return 2;
}
