// What kirin-bench's figures share: the command line, the JSON they print, what the process
// uses (/proc, getrusage), the client's log lines as timestamps, and pipelines to measure.
#pragma once

#include <gst/gst.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace kirin_bench {

inline gint64 now_us() {
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

std::string json_array(const std::vector<std::string> &items);

// ---- what the process uses, from /proc and getrusage ----

std::string read_file(const std::string &path);
long status_field(const std::string &status, const char *name);
long rss_kb();

struct ThreadInfo {
  std::string name;
  long switches = 0; // voluntary + involuntary context switches
  double cpu_ms = 0;
};

// Every thread of the process by TID.
std::map<long, ThreadInfo> threads();

struct Usage {
  double cpu_ms = 0;
  long switches = 0; // of all threads, including those that ended
};

Usage usage();

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
                     gint, GObject *, GstDebugMessage *message, gpointer data);

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
extern std::string journal_setting;

// A kirinextendsrc asking `api_url` for a task of its own; exits the process when there is
// no such element.
GstElement *make_extend_src(const std::string &api_url, const std::string &api_key);
// `source ! fakesink sync=false`, the way a user would drain a source as fast as it goes.
GstElement *make_pipeline(GstElement *source, bool async_sink = true);
// Plays until EOS, an error or `max_seconds`; returns the error ("" on EOS).
std::string run_to_eos(GstElement *pipeline, double max_seconds);

// Bytes and times of what leaves a pad. Written by the streaming thread, read once it ended.
struct Flow {
  std::atomic<gint64> first_us{0}, second_us{0}, eos_us{0};
  std::atomic<guint64> bytes{0}, buffers{0};
  GChecksum *checksum = nullptr; // when the content must be compared
  // Downloads between their first buffer and EOS, shared by many flows, and its maximum.
  std::atomic<int> *active = nullptr, *peak_active = nullptr;
  std::mutex lock;
  std::condition_variable first_buffer;

  void take(GstBuffer *buffer);
  static GstPadProbeReturn probe(GstPad *, GstPadProbeInfo *info, gpointer data);
  // Watches the `src` pad of `element`.
  void watch(GstElement *element);
};

// The file the kirin plugin was loaded from.
std::string plugin_file();

// ---- the figures: each a subcommand, printing one JSON object ----

int run_fetch(const Args &args);      // bench-fetch.cpp
int run_first_byte(const Args &args); // bench-first-byte.cpp
int run_wait(const Args &args);       // bench-wait.cpp
int run_scale(const Args &args);      // bench-scale.cpp
int run_emulator(const Args &args);   // bench-scale.cpp: the scale run's emulator process

} // namespace kirin_bench
