// kirin-extend: extends a video with kirinextendsrc and saves the result, showing the task's
// progress while the provider works on it.
//
//   kirin-extend [--api-url URL] [--prompt TEXT] [--poll-interval MS] [--timeout S]
//                [--extensions N] [--fresh] [--task-id ID] VIDEO_ID OUTPUT.mp4
//
// The API key comes from VTRIX_API_KEY only: a key on the command line is visible to every
// user of the machine (ps). The pipeline is `kirinextendsrc ! filesink`; everything shown
// comes from the bus (the `kirin-task` element messages, errors and their details).
#include "kirin-extend-options.h"
#include "remaining-time.h"

#include <glib-unix.h>
#include <glib/gstdio.h>
#include <gst/gst.h>

#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

using kirin_extend::kUnset;
using kirin_extend::Options;
using kirin_extend::parse_options;

namespace {

// Exit codes a script can tell apart (also in --help and the man page).
constexpr int kExitFailed = 1;        // anything else: no plugin, the output cannot be written...
constexpr int kExitUsage = 2;         // the command line, or no VTRIX_API_KEY
constexpr int kExitSettings = 3;      // the element refused its settings (the message names which)
constexpr int kExitProvider = 4;      // the provider refused the task, or the task failed there
constexpr int kExitTimeout = 5;       // the wait ended first (the task ID is printed, to resume),
                                      // or the provider could not be reached
constexpr int kExitAnswerLost = 6;    // no task ID for a create that left: the task may exist
constexpr int kExitInterrupted = 130; // what shells report for a command ended by SIGINT
constexpr guint kRedrawMs = 250;
constexpr int kBarWidth = 24;

struct CompletedTask {
  std::string task_id, video_id, cost;
  double duration_s = -1;
  // False for a task this run attached to (--task-id) or replayed: it was paid for earlier.
  bool paid_now = true;
};

struct App {
  Options options;
  std::string partial_path; // filesink writes here; renamed to the output once complete
  GMainLoop *loop = nullptr;
  GstElement *pipeline = nullptr, *source = nullptr, *sink = nullptr;
  bool terminal = false;  // stdout is a terminal: redraw one line instead of printing lines
  bool line_open = false; // a redrawn line is on screen, not yet ended by a newline
  gint64 started_us = 0;

  std::string task_id;
  std::string status = "starting";
  guint step = 1;
  double progress = -1; // of the task, 0-1; -1 = not reported
  RemainingTime remaining;
  bool downloading = false;
  std::string last_logged; // in line mode: the state printed last, to print only changes
  std::vector<CompletedTask> completed;
  bool last_task_failed = false;

  bool succeeded = false;
  bool interrupted = false;
  int failure = kExitFailed; // the exit status when it did not succeed
};

double elapsed_s(const App &app) {
  return (g_get_monotonic_time() - app.started_us) / (double)G_USEC_PER_SEC;
}

std::string clock_text(double seconds) {
  long total = (long)(seconds + 0.5);
  char text[32];
  if (total >= 3600)
    g_snprintf(text, sizeof text, "%ld:%02ld:%02ld", total / 3600, total / 60 % 60, total % 60);
  else
    g_snprintf(text, sizeof text, "%ld:%02ld", total / 60, total % 60);
  return text;
}

std::string megabytes(gint64 bytes) {
  char text[32];
  g_snprintf(text, sizeof text, "%.1f MB", bytes / 1e6);
  return text;
}

// Ends a redrawn progress line, so the next output starts on a line of its own.
void end_line(App &app) {
  if (app.line_open) {
    std::fputs("\n", stdout);
    std::fflush(stdout);
    app.line_open = false;
  }
}

// How far the download is, in bytes: what filesink wrote and the size the HTTP source
// reported. False until the source knows its size.
bool download_position(App &app, gint64 &written, gint64 &total) {
  written = total = 0;
  GstPad *sink_pad = gst_element_get_static_pad(app.sink, "sink");
  bool known = gst_pad_peer_query_duration(sink_pad, GST_FORMAT_BYTES, &total) && total > 0;
  gst_object_unref(sink_pad);
  if (!gst_element_query_position(app.sink, GST_FORMAT_BYTES, &written))
    written = 0;
  return known;
}

void show_progress(App &app) {
  const double now = elapsed_s(app);
  std::string status = app.downloading ? "downloading" : app.status;
  if (app.options.extensions > 1)
    status = "step " + std::to_string(app.step) + "/" + std::to_string(app.options.extensions) +
             " " + status;
  double fraction = app.downloading ? -1 : app.progress;
  std::string sizes;
  if (app.downloading && app.terminal) {
    gint64 written, total;
    if (download_position(app, written, total)) {
      fraction = (double)written / total;
      sizes = "  " + megabytes(written) + " of " + megabytes(total);
    }
  }
  const int percent = fraction >= 0 ? (int)(fraction * 100 + 0.5) : -1;
  const std::string percent_text = percent >= 0 ? std::to_string(percent) + "%" : "?%";
  const double left = app.downloading ? -1 : app.remaining.seconds(now);
  const std::string left_text = left >= 0 ? clock_text(left) : "?";

  if (!app.terminal) {
    // One line per change of status or whole percent; the times ride along.
    std::string state = status;
    if (percent >= 0)
      state += " " + percent_text;
    if (state == app.last_logged)
      return;
    app.last_logged = state;
    std::printf("[%s] %s%s\n", clock_text(now).c_str(), state.c_str(),
                percent >= 0 ? (", " + left_text + " left").c_str() : "");
    std::fflush(stdout);
    return;
  }
  const int filled = fraction >= 0 ? (int)(fraction * kBarWidth + 0.5) : 0;
  std::string bar(filled, '#');
  bar.append(kBarWidth - filled, '-');
  // \r returns to the start of the line; \033[K clears what a longer earlier line left.
  std::printf("\r%-20s [%s] %4s  %s elapsed, %s left%s\033[K", status.c_str(), bar.c_str(),
              percent_text.c_str(), clock_text(now).c_str(), left_text.c_str(), sizes.c_str());
  std::fflush(stdout);
  app.line_open = true;
}

gboolean redraw(gpointer data) {
  show_progress(*static_cast<App *>(data));
  return G_SOURCE_CONTINUE;
}

std::string string_field(const GstStructure *s, const char *name) {
  const char *value = gst_structure_get_string(s, name);
  return value ? value : "";
}

// Quoted for a POSIX shell when it needs to be (as Python's shlex.quote does).
std::string shell_quoted(const std::string &word) {
  const bool plain =
      !word.empty() && word.find_first_not_of("abcdefghijklmnopqrstuvwxyz"
                                              "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                              "0123456789_@%+=:,./-") == std::string::npos;
  if (plain)
    return word;
  g_autofree char *quoted = g_shell_quote(word.c_str());
  return quoted;
}

// The command that continues where this run stopped, ready to paste: the given task, and
// the steps of a chain that had not started yet.
std::string resume_command(const App &app, const std::string &task_id) {
  std::string command = "kirin-extend --task-id " + shell_quoted(task_id);
  if (!app.options.api_url.empty())
    command += " --api-url " + shell_quoted(app.options.api_url);
  const int steps_left = app.options.extensions - (int)app.step + 1;
  if (steps_left > 1)
    command += " --extensions " + std::to_string(steps_left);
  return command + " " + shell_quoted(app.options.output);
}

// When the provider has not told us a task ID, the external task ID we sent is how the
// provider knows the task, if it was created.
std::string external_task_id(App &app) {
  g_autofree char *external = nullptr;
  g_object_get(app.source, "external-task-id", &external, nullptr);
  return external ? external : "";
}

// Whether a failure without a task ID may still have made one: a create request that ended
// in a network failure or a 5xx after it was sent (the element reports those as FAILED). A
// 4xx answer means the provider refused it; other errors come before any request.
bool may_have_created(const GError *error, guint http_status) {
  return g_error_matches(error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_FAILED) &&
         (http_status == 0 || http_status >= 500);
}

void on_task_message(App &app, const GstStructure *s) {
  const std::string task_id = string_field(s, "task-id");
  const std::string status = string_field(s, "status");
  guint step = 1;
  gst_structure_get_uint(s, "step", &step);
  double progress = -1;
  if (!gst_structure_get_double(s, "progress", &progress))
    progress = -1;

  if (task_id != app.task_id && !task_id.empty()) {
    app.task_id = task_id;
    end_line(app);
    // Attached by --task-id, the element does not know the external ID: say nothing then.
    const std::string external = string_field(s, "external-task-id");
    std::printf("Task %s%s%s\n", task_id.c_str(),
                app.options.extensions > 1 ? (" for step " + std::to_string(step) + " of " +
                                              std::to_string(app.options.extensions))
                                                 .c_str()
                                           : "",
                external.empty() ? "" : (" (external ID " + external + ")").c_str());
    std::fflush(stdout);
  }
  if (status != app.status || step != app.step)
    app.remaining.reset(); // a new phase moves at its own pace
  app.status = status;
  app.step = step;
  app.progress = progress;
  if (status == "processing" && progress >= 0)
    app.remaining.add(elapsed_s(app), progress);
  app.last_task_failed = status == "failed";

  if (status == "completed") {
    CompletedTask done;
    done.task_id = task_id;
    done.video_id = string_field(s, "video-id");
    done.cost = string_field(s, "cost");
    gboolean replayed = FALSE;
    gst_structure_get_boolean(s, "replayed", &replayed);
    // --task-id attaches to step 1's task; later steps of a chain are created now.
    done.paid_now = !replayed && !(step == 1 && !app.options.task_id.empty());
    gst_structure_get_double(s, "duration", &done.duration_s);
    app.completed.push_back(done);
    // After the last step the element starts downloading; earlier steps chain on.
    app.downloading = (int)step >= app.options.extensions;
  }
  show_progress(app);
}

// The exit status for an error, from its `error-kind` (docs/user-guide.md, "Errors").
int exit_status_of(const GError *error, const std::string &kind) {
  if (kind == "settings" || g_error_matches(error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS))
    return kExitSettings;
  // Both are "not now": the provider may answer later, and running again may work.
  if (kind == "timeout" || kind == "network")
    return kExitTimeout;
  if (kind == "ambiguous" || kind == "abandoned")
    return kExitAnswerLost;
  for (const char *refused :
       {"unauthorized", "forbidden", "rejected", "not-found", "task-failed", "bad-response"})
    if (kind == refused)
      return kExitProvider;
  return kExitFailed;
}

void on_error(App &app, GstMessage *message) {
  GError *error = nullptr;
  char *debug = nullptr;
  gst_message_parse_error(message, &error, &debug);
  const GstStructure *details = nullptr;
  gst_message_parse_error_details(message, &details);
  std::string task_id = details ? string_field(details, "task-id") : "";
  std::string code = details ? string_field(details, "kirin-error-code") : "";
  if (strstr(error->message, code.c_str()))
    code.clear(); // the message says it already ("failed (error CODE: text)")
  const std::string kind = details ? string_field(details, "error-kind") : "";
  app.failure = exit_status_of(error, kind);
  guint http_status = 0;
  if (details)
    gst_structure_get_uint(details, "http-status", &http_status);
  if (task_id.empty())
    task_id = app.task_id;

  end_line(app);
  g_printerr("kirin-extend: %s\n", error->message);
  if (http_status && !code.empty())
    g_printerr("  (HTTP status %u, error code %s)\n", http_status, code.c_str());
  else if (http_status)
    g_printerr("  (HTTP status %u)\n", http_status);
  else if (!code.empty())
    g_printerr("  (error code %s)\n", code.c_str());
  if (!task_id.empty()) {
    g_printerr("Task ID: %s\n", task_id.c_str());
    if (app.last_task_failed)
      g_printerr("The task failed at the provider; running again creates (and pays for) a new "
                 "task.\n");
    else
      g_printerr("Resume without paying again: %s\n", resume_command(app, task_id).c_str());
  } else if (kind == "abandoned") {
    g_printerr("If the provider has no such task, run again with --fresh to pay for a new one.\n");
  } else if (std::string external = external_task_id(app);
             may_have_created(error, http_status) && !external.empty()) {
    g_printerr("No task ID was received. If the task was created, the provider knows it by the "
               "external task ID %s.\n",
               external.c_str());
  }
  g_error_free(error);
  g_free(debug);
}

gboolean on_bus_message(GstBus *, GstMessage *message, gpointer data) {
  auto &app = *static_cast<App *>(data);
  switch (GST_MESSAGE_TYPE(message)) {
  case GST_MESSAGE_ELEMENT: {
    const GstStructure *s = gst_message_get_structure(message);
    if (GST_MESSAGE_SRC(message) == GST_OBJECT(app.source) && s &&
        gst_structure_has_name(s, "kirin-task"))
      on_task_message(app, s);
    break;
  }
  case GST_MESSAGE_WARNING: {
    // For example a chain that stopped before passing the 3-minute limit.
    GError *warning = nullptr;
    gst_message_parse_warning(message, &warning, nullptr);
    end_line(app);
    g_printerr("kirin-extend: warning: %s\n", warning->message);
    g_error_free(warning);
    break;
  }
  case GST_MESSAGE_ERROR:
    on_error(app, message);
    g_main_loop_quit(app.loop);
    break;
  case GST_MESSAGE_EOS:
    app.succeeded = true;
    g_main_loop_quit(app.loop);
    break;
  default:
    break;
  }
  return G_SOURCE_CONTINUE;
}

gboolean on_interrupt(gpointer data) {
  auto &app = *static_cast<App *>(data);
  app.interrupted = true;
  g_main_loop_quit(app.loop);
  return G_SOURCE_CONTINUE;
}

// What this run paid: a task attached to or replayed was paid for when it was created, and
// counting it again would report money that was not spent.
std::string cost_text(const std::vector<CompletedTask> &completed) {
  std::string costs, earlier;
  double total_cost = 0;
  int paid = 0;
  for (const CompletedTask &task : completed) {
    if (!task.paid_now) {
      earlier += (earlier.empty() ? "" : ", ") + task.task_id;
      continue;
    }
    costs += (costs.empty() ? "$" : " + $") + task.cost;
    total_cost += g_ascii_strtod(task.cost.c_str(), nullptr);
    paid++;
  }
  if (paid > 1) {
    char total[32];
    g_snprintf(total, sizeof total, " = $%.2f", total_cost);
    costs += total;
  }
  if (earlier.empty())
    return costs + " (USD)";
  std::string note = "paid for when it was created, not by this run (" + earlier + ")";
  return paid ? costs + " (USD); " + note : "nothing now: " + note;
}

void print_summary(const App &app) {
  if (app.completed.empty())
    return;
  const CompletedTask &last = app.completed.back();
  std::string tasks;
  for (const CompletedTask &task : app.completed)
    tasks += (tasks.empty() ? "" : ", ") + task.task_id;
  GStatBuf info;
  const long long size = g_stat(app.options.output.c_str(), &info) == 0 ? info.st_size : -1;
  std::printf("Done in %s.\n", clock_text(elapsed_s(app)).c_str());
  std::printf("Task:   %s\n", tasks.c_str());
  std::printf("Video:  %s, %.1f s (its ID can be extended again)\n", last.video_id.c_str(),
              last.duration_s);
  std::printf("Cost:   %s\n", cost_text(app.completed).c_str());
  std::printf("Saved:  %s (%lld bytes)\n", app.options.output.c_str(), size);
}

// The pipeline kirinextendsrc ! filesink, set from the command line: 0, or the exit status
// of what is missing.
int make_pipeline(App &app) {
  app.source = gst_element_factory_make("kirinextendsrc", "extend");
  if (!app.source) {
    g_printerr("kirin-extend: GStreamer has no element kirinextendsrc: set GST_PLUGIN_PATH to "
               "the directory of libgstkirin.so (build/gst/kirin in the build tree)\n");
    return kExitFailed;
  }
  app.sink = gst_element_factory_make("filesink", "save");
  if (!app.sink) {
    g_printerr("kirin-extend: GStreamer has no element filesink (gstreamer1.0 core elements)\n");
    gst_object_unref(app.source);
    return kExitFailed;
  }
  const Options &o = app.options;
  if (!o.api_url.empty())
    g_object_set(app.source, "api-url", o.api_url.c_str(), nullptr);
  if (!o.video_id.empty())
    g_object_set(app.source, "video-id", o.video_id.c_str(), nullptr);
  if (!o.prompt.empty())
    g_object_set(app.source, "prompt", o.prompt.c_str(), nullptr);
  if (!o.task_id.empty())
    g_object_set(app.source, "task-id", o.task_id.c_str(), nullptr);
  if (o.poll_interval_ms != kUnset)
    g_object_set(app.source, "poll-interval", (guint)o.poll_interval_ms, nullptr);
  if (o.timeout_s != kUnset)
    g_object_set(app.source, "timeout", (guint)o.timeout_s, nullptr);
  if (o.extensions > 1)
    g_object_set(app.source, "extensions", (guint)o.extensions, nullptr);
  if (o.fresh)
    g_object_set(app.source, "fresh", TRUE, nullptr);
  // A file that exists under the output name is always complete: an interrupted or failed
  // run leaves neither a truncated result nor a clobbered earlier one.
  app.partial_path = o.output + ".part";
  g_object_set(app.sink, "location", app.partial_path.c_str(), nullptr);

  app.pipeline = gst_pipeline_new("kirin-extend");
  gst_bin_add_many(GST_BIN(app.pipeline), app.source, app.sink, nullptr);
  gst_element_link(app.source, app.sink);
  return 0;
}

// Plays the pipeline until it ends, fails or is interrupted, showing the progress.
void play(App &app) {
  app.loop = g_main_loop_new(nullptr, FALSE);
  app.terminal = isatty(fileno(stdout));
  app.started_us = g_get_monotonic_time();
  GstBus *bus = gst_element_get_bus(app.pipeline);
  gst_bus_add_watch(bus, on_bus_message, &app);
  const guint sigint = g_unix_signal_add(SIGINT, on_interrupt, &app);
  const guint sigterm = g_unix_signal_add(SIGTERM, on_interrupt, &app);
  // Elapsed and remaining time move on between the provider's answers.
  const guint redraw_timer = app.terminal ? g_timeout_add(kRedrawMs, redraw, &app) : 0;

  show_progress(app);
  // A failure here (bad settings, an unwritable output) is explained by the error it
  // posted on the bus, which the loop then reports.
  gst_element_set_state(app.pipeline, GST_STATE_PLAYING);
  g_main_loop_run(app.loop);

  if (redraw_timer)
    g_source_remove(redraw_timer);
  g_source_remove(sigint);
  g_source_remove(sigterm);
  // Never waits on the network: the element cancels its requests and lets go.
  gst_element_set_state(app.pipeline, GST_STATE_NULL);
  gst_bus_remove_watch(bus);
  gst_object_unref(bus);
}

// The result saved under its name and summed up, or the failure or interruption told (with
// the task to resume): the exit status.
int finish(App &app) {
  int status = 0;
  if (app.succeeded && g_rename(app.partial_path.c_str(), app.options.output.c_str()) != 0) {
    g_printerr("kirin-extend: cannot rename %s to %s: %s\n", app.partial_path.c_str(),
               app.options.output.c_str(), g_strerror(errno));
    app.succeeded = false;
  }
  if (app.succeeded) {
    end_line(app);
    print_summary(app);
  } else {
    g_unlink(app.partial_path.c_str());
    status = app.failure;
  }
  if (app.interrupted) {
    end_line(app);
    status = kExitInterrupted;
    if (!app.task_id.empty())
      g_printerr("Interrupted. Task %s goes on at the provider: resume it without paying again "
                 "with\n  %s\n",
                 app.task_id.c_str(), resume_command(app, app.task_id).c_str());
    else if (std::string external = external_task_id(app); !external.empty())
      g_printerr("Interrupted before the provider named the task. If it was created, it is "
                 "known by the external task ID %s.\n",
                 external.c_str());
    else
      g_printerr("Interrupted before any task was created.\n");
  }
  return status;
}

} // namespace

int main(int argc, char **argv) {
  App app;
  if (!parse_options(argc, argv, app.options))
    return kExitUsage;
  const char *key = g_getenv("VTRIX_API_KEY");
  if (!key || !*key) {
    g_printerr("kirin-extend: set the environment variable VTRIX_API_KEY to your API key\n");
    return kExitUsage;
  }
  if (int status = make_pipeline(app))
    return status;
  play(app);
  int status = finish(app);
  gst_object_unref(app.pipeline);
  g_main_loop_unref(app.loop);
  return status;
}
