// The child mode of test-journal-disks: the element in a process of its own whose files
// cannot grow past a limit once it starts, as on a full disk (RLIMIT_FSIZE), so that the
// journal it opened stops taking writes; and the test's side that starts it and reads what
// it saw.
#pragma once

#include "common.h"

#include "emulator-fixture.h"

#include <csignal>
#include <cstring>
#include <map>
#include <string>
#include <sys/resource.h>
#include <vector>

// Environment of the child mode (main() of journal-disks.cpp starts it with
// KIRIN_DISKS_CHILD set).
constexpr const char *kChildJournal = "KIRIN_DISKS_CHILD_JOURNAL";
constexpr const char *kChildPrompt = "KIRIN_DISKS_CHILD_PROMPT";
constexpr const char *kChildFileLimit = "KIRIN_DISKS_CHILD_FSIZE";
constexpr const char *kChildRuns = "KIRIN_DISKS_CHILD_RUNS";

inline void kirin_child_count_bytes(GstElement *, GstBuffer *buffer, GstPad *, gpointer checksum) {
  GstMapInfo map;
  if (gst_buffer_map(buffer, &map, GST_MAP_READ)) {
    g_checksum_update(static_cast<GChecksum *>(checksum), map.data, map.size);
    gst_buffer_unmap(buffer, &map);
  }
}

inline std::string kirin_child_one_line(std::string text) {
  for (char &c : text)
    if (c == '\n')
      c = ' ';
  return text;
}

// One run of the element in the child, printed as "<key><suffix> <value>" lines.
inline bool kirin_child_run_once(const std::string &suffix) {
  GstElement *pipeline = gst_pipeline_new(nullptr);
  GstElement *src = gst_element_factory_make("kirinextendsrc", nullptr);
  GstElement *sink = gst_element_factory_make("fakesink", nullptr);
  g_object_set(src, "video-id", "demo-5s", "prompt", g_getenv(kChildPrompt), "journal",
               g_getenv(kChildJournal), "poll-interval", 50, nullptr);
  g_autoptr(GChecksum) checksum = g_checksum_new(G_CHECKSUM_SHA256);
  g_object_set(sink, "signal-handoffs", TRUE, "sync", FALSE, nullptr);
  g_signal_connect(sink, "handoff", G_CALLBACK(kirin_child_count_bytes), checksum);
  gst_bin_add_many(GST_BIN(pipeline), src, sink, nullptr);
  if (!gst_element_link(src, sink))
    return false;
  RunResult result;
  kirin_test_run(pipeline, 60, result);
  g_autofree char *task_id = nullptr;
  g_object_get(src, "task-id", &task_id, nullptr);
  gboolean replayed = FALSE;
  for (const GstStructure *s : result.task_messages)
    if (!replayed)
      gst_structure_get_boolean(s, "replayed", &replayed);
  const char *k = suffix.c_str();
  g_print("eos%s %d\n", k, result.eos ? 1 : 0);
  g_print("error%s %s\n", k,
          result.error ? kirin_child_one_line(result.error->message).c_str() : "");
  g_print("task%s %s\n", k, task_id ? task_id : "");
  g_print("sha256%s %s\n", k, g_checksum_get_string(checksum));
  g_print("replayed%s %d\n", k, replayed ? 1 : 0);
  for (const std::string &warning : result.warnings)
    g_print("warning %s\n", kirin_child_one_line(warning).c_str());
  gst_object_unref(pipeline);
  return true;
}

// The child: KIRIN_DISKS_CHILD_RUNS runs (1 when unset) of the element, one after the other
// in the same process, with the journal in KIRIN_DISKS_CHILD_JOURNAL, the bytes into a
// checksum (no file written), no file allowed past KIRIN_DISKS_CHILD_FSIZE bytes once it
// starts. What it saw goes to stdout, a pipe to the test, one item a line; the keys of the
// second run end in "-2", and so on.
inline int kirin_child_main(int *argc, char ***argv) {
  kirin_test_init(argc, argv, "journal-disks-child");
  guint64 limit = g_ascii_strtoull(g_getenv(kChildFileLimit), nullptr, 10);
  if (limit > 0) {
    // A write past the limit then fails with EFBIG, as on a full disk, instead of a signal.
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {(rlim_t)limit, (rlim_t)limit};
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
      return 3;
  }
  const char *runs_text = g_getenv(kChildRuns);
  const guint64 runs = runs_text ? g_ascii_strtoull(runs_text, nullptr, 10) : 1;
  for (guint64 run = 1; run <= runs; run++)
    if (!kirin_child_run_once(run == 1 ? "" : "-" + std::to_string(run)))
      return 2;
  return 0;
}

// What a child printed: the first value of each key, and every warning.
struct ChildRun {
  std::map<std::string, std::string> values;
  std::vector<std::string> warnings;
};

inline ChildRun run_child(const kirin_emu::Emulator &emu, const std::string &journal,
                          const char *prompt, guint64 file_limit, guint runs = 1) {
  g_autofree char *self = g_file_read_link("/proc/self/exe", nullptr);
  fail_unless(self != nullptr);
  char **env = g_get_environ();
  env = g_environ_setenv(env, "KIRIN_DISKS_CHILD", "1", TRUE);
  env = g_environ_setenv(env, kChildJournal, journal.c_str(), TRUE);
  env = g_environ_setenv(env, kChildPrompt, prompt, TRUE);
  env = g_environ_setenv(env, kChildFileLimit, std::to_string(file_limit).c_str(), TRUE);
  env = g_environ_setenv(env, kChildRuns, std::to_string(runs).c_str(), TRUE);
  env = g_environ_setenv(env, "VTRIX_API_URL", emu.api_url().c_str(), TRUE);
  env = g_environ_setenv(env, "VTRIX_API_KEY", emu.api_key().c_str(), TRUE);
  const char *argv[] = {self, nullptr};
  g_autofree char *out = nullptr, *err = nullptr;
  int status = 0;
  GError *error = nullptr;
  bool spawned = g_spawn_sync(nullptr, (char **)argv, env, G_SPAWN_DEFAULT, nullptr, nullptr, &out,
                              &err, &status, &error);
  g_strfreev(env);
  fail_unless(spawned, "cannot start the child: %s", error ? error->message : "?");
  fail_unless(g_spawn_check_wait_status(status, nullptr), "the child failed (%d): %s", status,
              err ? err : "");
  ChildRun run;
  g_auto(GStrv) lines = g_strsplit(out ? out : "", "\n", -1);
  for (char **line = lines; *line; line++) {
    const char *space = strchr(*line, ' ');
    if (!space)
      continue;
    std::string key(*line, space - *line), value(space + 1);
    if (key == "warning")
      run.warnings.push_back(value);
    else
      run.values.emplace(key, value);
  }
  return run;
}

inline guint64 kirin_file_size(const std::string &path) {
  GStatBuf st;
  return g_stat(path.c_str(), &st) == 0 ? (guint64)st.st_size : 0;
}
