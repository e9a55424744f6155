// kirin-bench scale: many elements in one process, each with its own task, from start to
// every result downloaded; and the emulator process it drives (kirin-bench emulator).
#include "bench-common.h"
#include "emulator.h"

#include <sys/resource.h>
#include <sys/wait.h>

#include <algorithm>
#include <memory>
#include <sstream>

namespace kirin_bench {
namespace {

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

// What the scale run has seen so far, for its figures.
struct ScaleRun {
  int count = 0;
  gint64 start = 0;
  std::vector<std::string> names_before;
  long threads_before = 0, rss_before = 0;
  std::vector<gint64> waiting_at; // when each element had its task, in order
  int waiting = 0, completed = 0, ended = 0;
  long max_threads_waiting = 0, max_rss_waiting = 0, peak_threads = 0, peak_rss = 0;
  // From the first `complete` sent to the last pipeline ended: every result downloads.
  long completion_peak_threads = 0, completion_peak_rss = 0;
  gint64 all_waiting_us = 0, complete_start_us = 0, complete_sent_us = 0;
  std::string names_waiting, peak_names, completion_peak_names;
  std::vector<std::string> threads_timeline; // threads each second while all wait
  gint64 next_timeline = 0, next_sample = 0;
};

// How the branches ended, once every pipeline is gone.
struct ScaleTally {
  int identical = 0, errors = 0;
  gint64 last_eos_us = 0;
  std::vector<std::string> error_samples;
};

// A pipeline's bus holds a pair of file descriptors.
void raise_file_limit() {
  struct rlimit files;
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }
}

// `count` pipelines, each of an element with its own task, not started yet.
std::vector<std::unique_ptr<Branch>> make_branches(int count, const std::string &api_url,
                                                   std::atomic<int> &active_downloads,
                                                   std::atomic<int> &peak_active_downloads) {
  std::vector<std::unique_ptr<Branch>> branches;
  for (int i = 0; i < count; i++) {
    auto branch = std::make_unique<Branch>();
    branch->index = i;
    branch->flow.checksum = g_checksum_new(G_CHECKSUM_SHA256);
    branch->flow.active = &active_downloads;
    branch->flow.peak_active = &peak_active_downloads;
    GstElement *src = make_extend_src(api_url, "test-key");
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
  return branches;
}

void take_event(ScaleRun &run, Branch &branch, BranchEvent event, gint64 now) {
  switch (event) {
  case BranchEvent::Waiting:
    if (!branch.waiting) {
      branch.waiting = true;
      run.waiting_at.push_back(now - run.start);
      if (++run.waiting == run.count)
        run.all_waiting_us = now;
    }
    break;
  case BranchEvent::Completed:
    if (!branch.completed) {
      branch.completed = true;
      run.completed++;
    }
    break;
  case BranchEvent::Ended:
    if (!branch.ended) {
      branch.ended = true;
      run.ended++;
      // Ended pipelines go away at once, as an application would drop them.
      gst_element_set_state(branch.pipeline, GST_STATE_NULL);
      gst_object_unref(branch.pipeline);
      branch.pipeline = nullptr;
    }
    break;
  }
}

// The process's threads and memory now, into the peaks of the phase the run is in.
void sample(ScaleRun &run, gint64 now) {
  const long threads_now = thread_count(), rss_now = rss_kb();
  if (threads_now > run.peak_threads)
    run.peak_names = thread_name_counts();
  run.peak_threads = std::max(run.peak_threads, threads_now);
  run.peak_rss = std::max(run.peak_rss, rss_now);
  if (run.complete_start_us) {
    if (threads_now > run.completion_peak_threads)
      run.completion_peak_names = thread_name_counts();
    run.completion_peak_threads = std::max(run.completion_peak_threads, threads_now);
    run.completion_peak_rss = std::max(run.completion_peak_rss, rss_now);
  }
  if (run.all_waiting_us && !run.complete_sent_us) {
    run.max_threads_waiting = std::max(run.max_threads_waiting, threads_now);
    run.max_rss_waiting = std::max(run.max_rss_waiting, rss_now);
    if (threads_now == run.max_threads_waiting)
      run.names_waiting = new_thread_names(run.names_before, thread_names());
    if (now >= run.next_timeline) {
      run.next_timeline = now + G_USEC_PER_SEC;
      run.threads_timeline.push_back(std::to_string(threads_now));
    }
  }
}

// Tells the emulator to complete the task of every pipeline still there.
void complete_all(std::vector<std::unique_ptr<Branch>> &branches, EmulatorProcess &emulator) {
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
}

// Stops what is left of every pipeline and counts how the branches ended.
ScaleTally finish_branches(std::vector<std::unique_ptr<Branch>> &branches,
                           const std::string &expected_sha256) {
  ScaleTally tally;
  for (auto &branch : branches) {
    tally.last_eos_us = std::max(tally.last_eos_us, gint64(branch->flow.eos_us));
    if (branch->pipeline) {
      gst_element_set_state(branch->pipeline, GST_STATE_NULL);
      gst_object_unref(branch->pipeline);
    }
    if (!branch->error.empty()) {
      tally.errors++;
      if (tally.error_samples.size() < 5)
        tally.error_samples.push_back(Json::quote(branch->error));
    } else if (branch->ended && g_checksum_get_string(branch->flow.checksum) == expected_sha256) {
      tally.identical++;
    }
    g_checksum_free(branch->flow.checksum);
  }
  return tally;
}

void print_scale(const ScaleRun &run, const ScaleTally &tally, int peak_active_downloads) {
  const int count = run.count;
  Json out;
  out.integer("count", count).integer("waiting", run.waiting).integer("completed", run.completed);
  out.integer("ended", run.ended).integer("identical", tally.identical);
  out.integer("errors", tally.errors).raw("error_samples", json_array(tally.error_samples));
  out.num("seconds_to_all_waiting",
          run.all_waiting_us ? (run.all_waiting_us - run.start) / 1e6 : -1);
  // When the first, the 10th, 50th and 90th percentile element had its task.
  for (const auto &[name, share] :
       {std::pair<const char *, double>{"first", 0}, {"p10", 0.1}, {"p50", 0.5}, {"p90", 0.9}})
    if (!run.waiting_at.empty())
      out.num(std::string("seconds_to_waiting_") + name,
              run.waiting_at[size_t(share * double(run.waiting_at.size() - 1))] / 1e6);
  out.integer("threads_before", run.threads_before);
  out.integer("threads_waiting", run.max_threads_waiting);
  out.raw("new_threads_waiting", run.names_waiting.empty() ? "[]" : run.names_waiting);
  out.raw("threads_waiting_each_second", json_array(run.threads_timeline));
  out.integer("rss_before_kb", run.rss_before).integer("rss_waiting_kb", run.max_rss_waiting);
  out.integer("peak_threads", run.peak_threads).raw("peak_thread_names", run.peak_names);
  out.integer("peak_rss_kb", run.peak_rss);
  out.integer("peak_active_downloads", peak_active_downloads);
  // The completion phase alone (sampled every 10 ms).
  out.integer("completion_peak_threads", run.completion_peak_threads);
  out.raw("completion_peak_thread_names",
          run.completion_peak_names.empty() ? "{}" : run.completion_peak_names);
  out.integer("completion_peak_rss_kb", run.completion_peak_rss);
  out.integer("peak_started_http_sources", peak_http_sources);
  // From telling the emulator to complete every task to the last EOS leaving an element.
  out.num("completion_seconds", run.complete_sent_us && run.ended == count
                                    ? (tally.last_eos_us - run.complete_sent_us) / 1e6
                                    : -1);
  out.str("plugin", plugin_file());
  out.print();
}

} // namespace

int run_scale(const Args &args) {
  const int count = int(args.number("count", 1000));
  const std::string result_url = args.get("url"), expected_sha256 = args.get("sha256");
  const gint64 sample_us = args.number("sample-ms", 5000) * 1000;
  const double max_seconds = double(args.number("max-seconds", 240));
  journal_setting = args.get("journal");
  ScaleState state;
  scale_state = &state;
  raise_file_limit();

  EmulatorProcess emulator;
  if (!emulator.start(args.get("pending-ms", "3600000")))
    return 1;
  // Every task completes with the static server's file, only when told to.
  for (int i = 0; i < count; i++)
    emulator.send("fault task url:" + result_url);
  if (!emulator.sync())
    return 1;

  ScaleRun run;
  run.count = count;
  run.names_before = thread_names();
  run.threads_before = long(run.names_before.size());
  run.rss_before = rss_kb();
  run.start = now_us();
  std::atomic<int> active_downloads{0}, peak_active_downloads{0};
  auto branches = make_branches(count, emulator.api_url(), active_downloads, peak_active_downloads);
  for (auto &branch : branches)
    gst_element_set_state(branch->pipeline, GST_STATE_PLAYING);

  const gint64 deadline = run.start + gint64(max_seconds * G_USEC_PER_SEC);
  while (run.ended < count && now_us() < deadline) {
    // Every 100 ms; every 10 ms once the tasks complete, where a download of a MiB from
    // loopback and the threads it takes last only a few milliseconds.
    const gint64 sample_every = run.complete_start_us ? 10000 : 100000;
    gpointer item = g_async_queue_timeout_pop(state.events, std::min<gint64>(20000, sample_every));
    gint64 now = now_us();
    if (item) {
      const int packed = GPOINTER_TO_INT(item) - 1;
      take_event(run, *branches[packed >> 2], BranchEvent(packed & 3), now);
    }
    if (now >= run.next_sample) {
      run.next_sample = now + sample_every;
      sample(run, now);
    }
    // All wait for `sample_us`; then every task completes at once.
    if (run.all_waiting_us && !run.complete_sent_us && now >= run.all_waiting_us + sample_us) {
      run.complete_start_us = now;
      complete_all(branches, emulator);
      run.complete_sent_us = now_us();
    }
  }

  const ScaleTally tally = finish_branches(branches, expected_sha256);
  print_scale(run, tally, peak_active_downloads);
  g_async_queue_unref(state.events);
  return tally.identical == count ? 0 : 1;
}

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

} // namespace kirin_bench
