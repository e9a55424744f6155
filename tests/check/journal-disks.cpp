// The journal on disks that misbehave (a path that cannot be a file, a full disk, a corrupt
// database), cache-dir's size limit and its leftovers, and journal=none: what a user sees
// on the bus and finds on disk, end to end against the emulator.
#include "common.h"

#include "emulator-fixture.h"
#include "journal-disks-child.h"

#include <sqlite3.h>

#include <algorithm>
#include <ftw.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

constexpr const char *kKey = "test-key-journal-disks";

// A directory of the test's own, removed with everything in it.
struct TempDir {
  std::string path;
  TempDir() {
    g_autofree char *made = g_dir_make_tmp("kirin-disks-XXXXXX", nullptr);
    fail_unless(made != nullptr);
    path = made;
  }
  ~TempDir() {
    nftw(
        path.c_str(),
        [](const char *file, const struct stat *, int, struct FTW *) { return remove(file); }, 16,
        FTW_DEPTH | FTW_PHYS);
  }
};

GstElement *make_src(const kirin_emu::Emulator &emu, const char *prompt) {
  GstElement *src = kirin_test_make_src(emu);
  g_object_set(src, "video-id", "demo-5s", "prompt", prompt, nullptr);
  return src;
}

// Runs src ! filesink and returns the bytes written. `src` is the pipeline's to drop.
std::string run_to_file(GstElement *src, RunResult &result, const std::string &out) {
  GstElement *pipeline = gst_pipeline_new(nullptr);
  GstElement *sink = gst_element_factory_make("filesink", nullptr);
  g_object_set(sink, "location", out.c_str(), nullptr);
  gst_bin_add_many(GST_BIN(pipeline), src, sink, nullptr);
  fail_unless(gst_element_link(src, sink));
  kirin_test_run(pipeline, 60, result);
  gst_object_unref(pipeline);
  std::string bytes = kirin_test_read_file(out);
  g_unlink(out.c_str());
  return bytes;
}

void assert_eos(const RunResult &result) {
  fail_if(result.error, "unexpected error: %s (%s)", result.error ? result.error->message : "",
          result.error_debug.c_str());
  fail_unless(result.eos, "no EOS within the bound");
}

// The warnings on the bus that contain every one of `texts`.
size_t warnings_naming(const RunResult &result, std::initializer_list<std::string> texts) {
  size_t found = 0;
  for (const std::string &warning : result.warnings) {
    bool all = true;
    for (const std::string &text : texts)
      all = all && warning.find(text) != std::string::npos;
    found += all;
  }
  return found;
}

std::string all_warnings(const RunResult &result) {
  std::string text;
  for (const std::string &warning : result.warnings)
    text += "[" + warning + "] ";
  return text;
}

bool replayed(const RunResult &result) {
  for (const GstStructure *s : result.task_messages) {
    gboolean value = FALSE;
    if (gst_structure_get_boolean(s, "replayed", &value) && value)
      return true;
  }
  return false;
}

// One request's run: its bytes and the task it streamed, checked against the emulator.
struct Outcome {
  std::string bytes, task_id;
};

Outcome run_checked(const kirin_emu::Emulator &emu, GstElement *src, RunResult &result,
                    const std::string &out) {
  gst_object_ref(src);
  Outcome outcome;
  outcome.bytes = run_to_file(src, result, out);
  g_autofree char *task_id = nullptr;
  g_object_get(src, "task-id", &task_id, nullptr);
  gst_object_unref(src);
  assert_eos(result);
  outcome.task_id = task_id ? task_id : "";
  std::string served = kirin_test_read_file(emu.task_result_path(outcome.task_id));
  fail_unless(!served.empty() && outcome.bytes == served,
              "task %s: %zu bytes streamed, the emulator serves %zu", outcome.task_id.c_str(),
              outcome.bytes.size(), served.size());
  return outcome;
}

// A row of the journal at `path` by its prompt (the newest take), read as the user's sqlite3
// would: status, media_file ("" when NULL), and whether it exists.
struct Row {
  bool exists = false;
  std::string status, media_file;
};

Row journal_row(const std::string &path, const char *prompt) {
  Row row;
  sqlite3 *db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt *s = nullptr;
    const char *sql = "SELECT status, COALESCE(media_file, '') FROM tasks WHERE prompt = ?1 "
                      "ORDER BY take DESC LIMIT 1";
    if (sqlite3_prepare_v2(db, sql, -1, &s, nullptr) == SQLITE_OK) {
      sqlite3_bind_text(s, 1, prompt, -1, SQLITE_TRANSIENT);
      if (sqlite3_step(s) == SQLITE_ROW) {
        row.exists = true;
        row.status = (const char *)sqlite3_column_text(s, 0);
        row.media_file = (const char *)sqlite3_column_text(s, 1);
      }
    }
    sqlite3_finalize(s);
  }
  sqlite3_close(db);
  return row;
}

std::string default_journal() {
  return std::string(g_getenv("XDG_CACHE_HOME")) + "/gst-kirin/journal.db";
}

} // namespace

// The journal's path cannot be a file (its directory is a regular file): the run goes on and
// says so, naming the path; within the process an in-memory journal still pays once.
GST_START_TEST(test_unusable_journal_path_warns_and_pays_once) {
  auto emu = kirin_test_start_emulator(kKey);
  TempDir dir;
  const std::string blocker = dir.path + "/not-a-dir";
  fail_unless(g_file_set_contents(blocker.c_str(), "", 0, nullptr));
  const std::string journal = blocker + "/journal.db";
  for (int run = 0; run < 2; run++) {
    GstElement *src = make_src(*emu, "unusable");
    g_object_set(src, "journal", journal.c_str(), nullptr);
    RunResult result;
    run_checked(*emu, src, result, dir.path + "/out.mp4");
    if (run == 0)
      fail_unless(warnings_naming(result, {journal}) >= 1, "no warning names %s: %s",
                  journal.c_str(), all_warnings(result).c_str());
    else
      fail_unless(replayed(result), "the second run did not replay the first one's task");
  }
  fail_unless_equals_int(emu->create_count(), 1);
  fail_unless(g_file_test(blocker.c_str(), G_FILE_TEST_IS_REGULAR), "the file in the way changed");
}
GST_END_TEST;

// Garbage where the journal should be: moved aside byte for byte (never deleted), a new
// journal started at the path, and the warning names both. The new journal works.
GST_START_TEST(test_corrupt_journal_is_moved_aside) {
  auto emu = kirin_test_start_emulator(kKey);
  TempDir out;
  const std::string journal = default_journal();
  g_autofree char *journal_dir = g_path_get_dirname(journal.c_str());
  fail_unless(g_mkdir_with_parents(journal_dir, 0700) == 0);
  std::string garbage;
  for (int i = 0; i < 200; i++)
    garbage += "this is not an SQLite database, line " + std::to_string(i) + "\n";
  fail_unless(g_file_set_contents(journal.c_str(), garbage.data(), garbage.size(), nullptr));

  RunResult first;
  Outcome paid = run_checked(*emu, make_src(*emu, "corrupt"), first, out.path + "/out.mp4");
  // The one file beside the journal whose name says it was moved aside.
  std::string aside;
  GDir *listing = g_dir_open(journal_dir, 0, nullptr);
  fail_unless(listing != nullptr);
  while (const char *name = g_dir_read_name(listing)) {
    if (g_str_has_prefix(name, "journal.db.corrupt-") && !g_str_has_suffix(name, "-wal") &&
        !g_str_has_suffix(name, "-shm")) {
      fail_unless(aside.empty(), "two files moved aside: %s and %s", aside.c_str(), name);
      aside = std::string(journal_dir) + "/" + name;
    }
  }
  g_dir_close(listing);
  fail_if(aside.empty(), "the corrupt journal was not moved aside");
  fail_unless(kirin_test_read_file(aside) == garbage, "%s is not the garbage", aside.c_str());
  fail_unless(warnings_naming(first, {journal, aside}) >= 1, "no warning names %s and %s: %s",
              journal.c_str(), aside.c_str(), all_warnings(first).c_str());
  assert_same_text(journal_row(journal, "corrupt").status, "completed");

  RunResult second;
  Outcome again = run_checked(*emu, make_src(*emu, "corrupt"), second, out.path + "/out.mp4");
  fail_unless(replayed(second), "the new journal did not replay the task");
  assert_same_text(again.task_id, paid.task_id);
  fail_unless_equals_int(emu->create_count(), 1);
  fail_unless(second.warnings.empty(), "warnings on the second run: %s",
              all_warnings(second).c_str());
}
GST_END_TEST;

// ---- a full disk: the element in a child process whose files cannot grow ----

namespace {

// A journal at `journal` that holds a completed row, and the file size past which the child
// can write nothing to it (nor SQLite's 32 KiB of shared memory, so that opening works and
// the first write is the one that fails).
guint64 fill_journal(const kirin_emu::Emulator &emu, const std::string &journal) {
  ChildRun filling = run_child(emu, journal, "before the disk filled", 0);
  assert_same_text(filling.values["eos"], "1");
  fail_unless(filling.warnings.empty(), "warned on a good disk: %s", filling.warnings[0].c_str());
  assert_same_text(journal_row(journal, "before the disk filled").status, "completed");
  guint64 limit = 32768;
  for (const char *suffix : {"", "-wal"})
    limit = std::max(limit, kirin_file_size(journal + suffix));
  return limit;
}

std::string sha256_of_result(const kirin_emu::Emulator &emu, const std::string &task_id) {
  std::string served = kirin_test_read_file(emu.task_result_path(task_id));
  fail_unless(!served.empty(), "the emulator serves no result for task '%s'", task_id.c_str());
  g_autofree char *sum =
      g_compute_checksum_for_data(G_CHECKSUM_SHA256, (const guchar *)served.data(), served.size());
  return sum;
}

} // namespace

// The journal's disk is full once it holds some rows: the run goes on with the journal in
// memory and a warning naming the path, and the file keeps what it held.
GST_START_TEST(test_full_disk_warns_and_the_run_goes_on) {
  auto emu = kirin_test_start_emulator(kKey);
  TempDir dir;
  const std::string journal = dir.path + "/journal.db";
  guint64 limit = fill_journal(*emu, journal);
  ChildRun full = run_child(*emu, journal, "after the disk filled", limit);
  assert_same_text(full.values["eos"], "1");
  assert_same_text(full.values["error"], "");
  assert_same_text(full.values["sha256"], sha256_of_result(*emu, full.values["task"]));
  bool named = false;
  for (const std::string &warning : full.warnings) {
    named = named || warning.find(journal) != std::string::npos;
    g_printerr("the full disk's warning: %s\n", warning.c_str());
  }
  fail_unless(named, "no warning names %s (%zu warnings)", journal.c_str(), full.warnings.size());
  fail_unless_equals_int(emu->create_count(), 2);
  // The file holds what it held, and nothing of the run that could not write.
  assert_same_text(journal_row(journal, "before the disk filled").status, "completed");
  fail_if(journal_row(journal, "after the disk filled").exists);
}
GST_END_TEST;

// The journal's disk fills once the journal is open: the process goes on with a journal in
// memory, so a second element with the same request, later in the same process, attaches to
// the task the first one paid for (replayed, the same bytes) instead of paying again.
GST_START_TEST(test_full_disk_the_process_still_pays_once) {
  auto emu = kirin_test_start_emulator(kKey);
  TempDir dir;
  const std::string journal = dir.path + "/journal.db";
  guint64 limit = fill_journal(*emu, journal);
  ChildRun full = run_child(*emu, journal, "twice on a full disk", limit, 2);
  for (const char *run : {"", "-2"}) {
    auto value = [&](const char *key) { return full.values[std::string(key) + run]; };
    assert_same_text(value("eos"), "1");
    assert_same_text(value("error"), "");
    assert_same_text(value("sha256"), sha256_of_result(*emu, value("task")));
  }
  fail_unless_equals_int(emu->create_count(), 2);
  assert_same_text(full.values["task-2"], full.values["task"]);
  assert_same_text(full.values["replayed-2"], "1");
  fail_if(journal_row(journal, "twice on a full disk").exists);
}
GST_END_TEST;

// ---- cache-dir ----

namespace {

bool exists(const std::string &path) {
  return g_file_test(path.c_str(), G_FILE_TEST_EXISTS);
}

} // namespace

// Three requests, room for two results: keeping the third evicts the least recently used
// copy (a replay is a use), whose row stays and whose request then replays from its URL;
// a kept one replays without any request.
GST_START_TEST(test_cache_max_size_evicts_the_least_recently_used) {
  auto emu = kirin_test_start_emulator(kKey);
  TempDir cache, out;
  const std::string journal = default_journal();
  guint64 limit = 0; // until the size of a result is known
  auto run = [&](const char *prompt, RunResult &result) {
    GstElement *src = make_src(*emu, prompt);
    g_object_set(src, "cache-dir", cache.path.c_str(), "cache-max-size", limit, nullptr);
    return run_checked(*emu, src, result, out.path + "/out.mp4");
  };
  // Runs a request whose result is kept: no request reaches the provider.
  auto replay_kept = [&](const char *prompt) {
    guint creates = emu->create_count(), polls = emu->poll_count();
    guint downloads = emu->download_count();
    RunResult result;
    run(prompt, result);
    fail_unless(replayed(result), "%s was not replayed", prompt);
    fail_unless(emu->create_count() == creates && emu->poll_count() == polls &&
                    emu->download_count() == downloads,
                "replaying the kept %s made requests", prompt);
  };
  RunResult a_run, b_run, c_run;
  const size_t a_size = run("a", a_run).bytes.size();
  limit = 2 * a_size + a_size / 2; // two results like the first, not three
  const size_t b_size = run("b", b_run).bytes.size();
  const std::string a_file = journal_row(journal, "a").media_file;
  const std::string b_file = journal_row(journal, "b").media_file;
  fail_unless(exists(a_file) && exists(b_file), "not kept: '%s', '%s'", a_file.c_str(),
              b_file.c_str());
  fail_unless(g_str_has_prefix(a_file.c_str(), cache.path.c_str()));

  // "a" was kept first but is used now: "b" becomes the least recently used.
  replay_kept("a");
  const size_t c_size = run("c", c_run).bytes.size();
  fail_unless(
      a_size + b_size + c_size > limit && a_size + c_size <= limit && b_size + c_size <= limit,
      "results of %zu, %zu and %zu bytes do not fit this test's limit of %" G_GUINT64_FORMAT,
      a_size, b_size, c_size, limit);
  const std::string c_file = journal_row(journal, "c").media_file;
  fail_unless(exists(a_file), "the recently replayed copy was evicted");
  fail_unless(exists(c_file), "the new copy was not kept");
  fail_if(exists(b_file), "the least recently used copy is still there");
  Row b_row = journal_row(journal, "b");
  assert_same_text(b_row.status, "completed");
  assert_same_text(b_row.media_file, "");
  fail_unless_equals_int(emu->create_count(), 3);

  replay_kept("a");
  guint creates = emu->create_count(), downloads = emu->download_count();
  RunResult b_again;
  run("b", b_again);
  fail_unless(replayed(b_again), "the evicted request was not replayed");
  fail_unless_equals_int(emu->create_count(), creates);
  fail_unless_equals_int(emu->download_count(), downloads + 1);
  // Downloaded again, it is kept again; "c" is the least recently used now.
  fail_unless(exists(a_file) && exists(b_file));
  fail_if(exists(c_file), "the least recently used copy is still there");
}
GST_END_TEST;

// Temporary copies left by processes that are gone are removed when a copy starts; a live
// process's are not (it may still be writing).
GST_START_TEST(test_dead_processes_part_files_are_removed) {
  auto emu = kirin_test_start_emulator(kKey);
  TempDir cache, out;
  pid_t dead = fork();
  fail_unless(dead >= 0);
  if (dead == 0)
    _exit(0);
  fail_unless(waitpid(dead, nullptr, 0) == dead);
  const std::string name = cache.path + "/0123456789abcdef0123456789abcdef-1.media.";
  const std::string dead_part = name + std::to_string(dead) + ".Xq3ZrT.part";
  const std::string live_part = name + std::to_string(getpid()) + ".Lv9KwP.part";
  for (const std::string &part : {dead_part, live_part})
    fail_unless(g_file_set_contents(part.c_str(), "half a download", -1, nullptr));

  GstElement *src = make_src(*emu, "leftovers");
  g_object_set(src, "cache-dir", cache.path.c_str(), nullptr);
  RunResult result;
  run_checked(*emu, src, result, out.path + "/out.mp4");
  fail_unless(exists(journal_row(default_journal(), "leftovers").media_file), "nothing kept");
  fail_if(exists(dead_part), "the dead process's %s is still there", dead_part.c_str());
  assert_same_text(kirin_test_read_file(live_part), "half a download");
}
GST_END_TEST;

// journal=none: cache-dir cannot go with it (refused before any request), and without it
// every run pays, and no journal file is written.
GST_START_TEST(test_journal_none) {
  auto emu = kirin_test_start_emulator(kKey);
  TempDir cache, out;
  GstElement *src = make_src(*emu, "none");
  g_object_set(src, "journal", "none", "cache-dir", cache.path.c_str(), nullptr);
  RunResult refused;
  run_to_file(src, refused, out.path + "/out.mp4");
  fail_unless(refused.error != nullptr, "journal=none with cache-dir was accepted");
  fail_unless(g_error_matches(refused.error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS));
  const std::string message = refused.error->message;
  fail_unless(message.find("cache-dir") != std::string::npos &&
                  message.find("journal") != std::string::npos,
              "the error does not name cache-dir and journal: %s", message.c_str());
  fail_unless_equals_int(emu->requests().size(), 0);

  for (guint paid = 1; paid <= 2; paid++) {
    src = make_src(*emu, "none");
    g_object_set(src, "journal", "none", nullptr);
    RunResult result;
    run_checked(*emu, src, result, out.path + "/out.mp4");
    fail_if(replayed(result));
    fail_unless_equals_int(emu->create_count(), paid);
  }
  fail_if(exists(default_journal()), "journal=none wrote %s", default_journal().c_str());
}
GST_END_TEST;

// A request's record belongs to its service: the same request to another api-url (the
// emulator here, the real service there) is another task, paid there, never a replay of
// this one's result.
GST_START_TEST(test_another_api_url_is_another_request) {
  auto here = kirin_test_start_emulator(kKey);
  auto there = kirin_test_start_emulator(kKey);
  const std::string journal_home = g_getenv("XDG_CACHE_HOME"); // one journal for both
  TempDir dir;
  for (kirin_emu::Emulator *emu : {here.get(), there.get(), here.get()}) {
    g_setenv("XDG_CACHE_HOME", journal_home.c_str(), TRUE);
    RunResult result;
    run_checked(*emu, make_src(*emu, "two services"), result, dir.path + "/out.mp4");
  }
  fail_unless_equals_int(here->create_count(), 1);
  fail_unless_equals_int(there->create_count(), 1);
}
GST_END_TEST;

// A kept copy answers only for its own row: a row whose media_file was pointed elsewhere
// (another file of the same size, outside cache-dir) is not streamed; the result comes
// from its URL again.
GST_START_TEST(test_a_row_cannot_point_at_another_file) {
  auto emu = kirin_test_start_emulator(kKey);
  TempDir dir;
  const std::string cache = dir.path + "/cache";
  auto run = [&](RunResult &result) {
    GstElement *src = make_src(*emu, "pointed elsewhere");
    g_object_set(src, "cache-dir", cache.c_str(), nullptr);
    return run_checked(*emu, src, result, dir.path + "/out.mp4");
  };
  RunResult kept;
  Outcome outcome = run(kept);
  const std::string outside = dir.path + "/outside.mp4";
  std::string other(outcome.bytes.size(), 'x');
  fail_unless(g_file_set_contents(outside.c_str(), other.data(), (gssize)other.size(), nullptr));
  sqlite3 *db = nullptr;
  fail_unless(sqlite3_open(default_journal().c_str(), &db) == SQLITE_OK);
  std::string sql = "UPDATE tasks SET media_file = '" + dir.path + "/cache/../outside.mp4'";
  fail_unless(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(db);
  guint downloads = emu->download_count();
  RunResult again;
  run(again); // checks that the bytes are the task's result, not the other file's
  fail_unless(replayed(again));
  fail_unless_equals_int(emu->download_count(), downloads + 1);
  fail_unless_equals_int(emu->create_count(), 1);
}
GST_END_TEST;

static Suite *journal_disks_suite() {
  Suite *s = suite_create("journal-disks");
  TCase *tc = tcase_create("general");
  tcase_set_timeout(tc, 120);
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_unusable_journal_path_warns_and_pays_once);
  tcase_add_test(tc, test_full_disk_warns_and_the_run_goes_on);
  tcase_add_test(tc, test_full_disk_the_process_still_pays_once);
  tcase_add_test(tc, test_corrupt_journal_is_moved_aside);
  tcase_add_test(tc, test_cache_max_size_evicts_the_least_recently_used);
  tcase_add_test(tc, test_dead_processes_part_files_are_removed);
  tcase_add_test(tc, test_journal_none);
  tcase_add_test(tc, test_another_api_url_is_another_request);
  tcase_add_test(tc, test_a_row_cannot_point_at_another_file);
  return s;
}

int main(int argc, char **argv) {
  // The same binary is the child of test_full_disk_warns_and_the_run_goes_on.
  if (g_getenv("KIRIN_DISKS_CHILD"))
    return kirin_child_main(&argc, &argv);
  kirin_test_init(&argc, &argv, "journal-disks");
  return gst_check_run_suite(journal_disks_suite(), "journal-disks", __FILE__);
}
