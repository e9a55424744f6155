// What a run pays once, end to end against the emulator: the cache-dir journal across a
// crash (attached, then replayed), its keys and chains, a failed task forgotten, a cache-dir
// it cannot use; a task resumed by its ID, a pipeline played twice.
#include "kirinextendsrc-fixture.h"

#include <sqlite3.h>

#include <signal.h>
#include <sys/wait.h>

namespace {

struct JournalFile {
  bool exists = false;
  std::string status, task_id, media_file;
};

// The newest row of this test's journal ($XDG_CACHE_HOME/gst-kirin/journal.db), which
// another process may be writing.
JournalFile read_journal() {
  JournalFile entry;
  std::string path = std::string(g_getenv("XDG_CACHE_HOME")) + "/gst-kirin/journal.db";
  sqlite3 *db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt *row = nullptr;
    const char *sql = "SELECT status, COALESCE(task_id, ''), COALESCE(media_file, '') "
                      "FROM tasks ORDER BY id DESC LIMIT 1";
    if (sqlite3_prepare_v2(db, sql, -1, &row, nullptr) == SQLITE_OK &&
        sqlite3_step(row) == SQLITE_ROW) {
      auto text = [row](int column) {
        const unsigned char *value = sqlite3_column_text(row, column);
        return std::string(value ? (const char *)value : "");
      };
      entry.exists = true;
      entry.status = text(0);
      entry.task_id = text(1);
      entry.media_file = text(2);
    }
    sqlite3_finalize(row);
  }
  sqlite3_close(db);
  return entry;
}

std::string make_temp_dir() {
  g_autofree char *dir = g_dir_make_tmp("kirin-cache-XXXXXX", nullptr);
  fail_unless(dir != nullptr);
  return dir;
}

void remove_dir(const std::string &dir) {
  GDir *listing = g_dir_open(dir.c_str(), 0, nullptr);
  if (listing) {
    while (const char *name = g_dir_read_name(listing))
      g_unlink((dir + "/" + name).c_str());
    g_dir_close(listing);
  }
  g_rmdir(dir.c_str());
}

// A replayed task says so, and reports no cost: nothing was paid by this run.
bool replayed_message_seen(const RunResult &result) {
  for (const GstStructure *s : result.task_messages) {
    gboolean replayed = FALSE;
    if (gst_structure_get_boolean(s, "replayed", &replayed) && replayed)
      return !gst_structure_has_field(s, "cost");
  }
  return false;
}

// Runs gst-launch-1.0 kirinextendsrc with `dir` as its cache-dir in another process, and kills
// it once its journal has recorded the task; returns that row.
JournalFile run_killed_after_create(const kirin_emu::Emulator &emu, const std::string &dir) {
  g_autofree char *api_url_arg = g_strdup_printf("api-url=%s", emu.api_url().c_str());
  g_autofree char *cache_arg = g_strdup_printf("cache-dir=%s", dir.c_str());
  const char *argv[] = {"gst-launch-1.0",
                        "-q",
                        "kirinextendsrc",
                        api_url_arg,
                        "video-id=demo-5s",
                        "external-task-id=order-17",
                        "poll-interval=50",
                        cache_arg,
                        "!",
                        "fakesink",
                        nullptr};
  char **env = g_environ_setenv(g_get_environ(), "VTRIX_API_KEY", kKey, TRUE);
  GPid pid;
  GError *error = nullptr;
  fail_unless(g_spawn_async(nullptr, (char **)argv, env,
                            (GSpawnFlags)(G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD), nullptr,
                            nullptr, &pid, &error),
              "gst-launch-1.0: %s", error ? error->message : "?");
  g_strfreev(env);
  JournalFile recorded;
  for (gint64 end = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;
       g_get_monotonic_time() < end && recorded.task_id.empty(); g_usleep(10 * 1000))
    recorded = read_journal();
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  g_spawn_close_pid(pid);
  return recorded;
}

} // namespace

// A run killed between the task's creation and its completion: the next run with the
// same parameters attaches to the recorded task instead of paying again, keeps the result,
// and the run after that replays the kept file without any request.
GST_START_TEST(test_cache_survives_a_crash_then_replays) {
  auto emu = kirin_test_start_emulator(kKey);
  std::string dir = make_temp_dir();
  fail_unless(emu->push_fault(kirin_emu::Route::Task, "stuck"));

  // The first run is another process, killed once the provider has its task.
  JournalFile recorded = run_killed_after_create(*emu, dir);
  fail_if(recorded.task_id.empty(), "the first run recorded no task in %s", dir.c_str());
  assert_same_text(recorded.status, "created");
  fail_unless_equals_int(emu->create_count(), 1);

  // The provider finishes the task meanwhile; the next run attaches to it.
  emu->complete_now(recorded.task_id);
  GstElement *src = kirin_test_make_src(*emu);
  gst_object_ref(src);
  g_object_set(src, "video-id", "demo-5s", "external-task-id", "order-17", "cache-dir", dir.c_str(),
               nullptr);
  RunResult second;
  std::string bytes = run_to_file(src, second);
  assert_error_free_eos(second);
  fail_unless_equals_int(emu->create_count(), 1);
  assert_same_text(get_string_property(src, "task-id"), recorded.task_id);
  std::string served = kirin_test_read_file(emu->task_result_path(recorded.task_id));
  fail_unless(!served.empty() && bytes == served, "attached run streamed other bytes");
  JournalFile completed = read_journal();
  assert_same_text(completed.status, "completed");
  fail_if(completed.media_file.empty(), "the downloaded result was not kept");
  fail_unless(g_str_has_prefix(completed.media_file.c_str(), dir.c_str()));
  fail_unless(kirin_test_read_file(completed.media_file) == served);
  gst_object_unref(src);

  // Third run: from the cache, without a single request to the provider.
  guint polls = emu->poll_count(), downloads = emu->download_count();
  src = kirin_test_make_src(*emu);
  gst_object_ref(src);
  g_object_set(src, "video-id", "demo-5s", "external-task-id", "order-17", "cache-dir", dir.c_str(),
               nullptr);
  RunResult third;
  bytes = run_to_file(src, third);
  assert_error_free_eos(third);
  fail_unless(bytes == served, "the replayed result differs");
  fail_unless(replayed_message_seen(third), "no kirin-task message says replayed=true");
  fail_unless_equals_int(emu->create_count(), 1);
  fail_unless_equals_int(emu->poll_count(), polls);
  fail_unless_equals_int(emu->download_count(), downloads);
  assert_same_text(get_string_property(src, "task-id"), recorded.task_id);
  gst_object_unref(src);

  // A damaged copy is not replayed: the task is polled for its URL and downloaded again.
  fail_unless(g_file_set_contents(completed.media_file.c_str(), "x", 1, nullptr));
  src = kirin_test_make_src(*emu);
  g_object_set(src, "video-id", "demo-5s", "external-task-id", "order-17", "cache-dir", dir.c_str(),
               nullptr);
  RunResult fourth;
  bytes = run_to_file(src, fourth);
  assert_error_free_eos(fourth);
  fail_unless(bytes == served, "the re-downloaded result differs");
  fail_unless_equals_int(emu->create_count(), 1);
  fail_unless(emu->download_count() > downloads);
  fail_unless(kirin_test_read_file(completed.media_file) == served,
              "the damaged copy was not replaced");
  remove_dir(dir);
}
GST_END_TEST;

// Other parameters or another external-task-id are other work: paid for, recorded apart.
// A chain replays every step from the journal.
GST_START_TEST(test_cache_keys_and_chains) {
  auto emu = kirin_test_start_emulator(kKey);
  std::string dir = make_temp_dir();
  auto run = [&](const char *prompt, const char *external_id, guint extensions) {
    GstElement *src = kirin_test_make_src(*emu);
    g_object_set(src, "video-id", "demo-5s", "prompt", prompt, "external-task-id", external_id,
                 "extensions", extensions, "cache-dir", dir.c_str(), nullptr);
    RunResult result;
    std::string bytes = run_to_file(src, result);
    assert_error_free_eos(result);
    return bytes;
  };
  std::string first = run("rain", "a", 1);
  fail_unless_equals_int(emu->create_count(), 1);
  fail_unless(run("rain", "a", 1) == first);
  fail_unless_equals_int(emu->create_count(), 1);
  run("snow", "a", 1);
  fail_unless_equals_int(emu->create_count(), 2);
  run("rain", "b", 1);
  fail_unless_equals_int(emu->create_count(), 3);

  // Two steps; the first is the entry of run "rain"/"c"; both recorded, both replayed.
  std::string chained = run("rain", "c", 2);
  fail_unless_equals_int(emu->create_count(), 5);
  guint polls = emu->poll_count();
  fail_unless(run("rain", "c", 2) == chained, "the replayed chain streamed other bytes");
  fail_unless_equals_int(emu->create_count(), 5);
  fail_unless_equals_int(emu->poll_count(), polls);
  remove_dir(dir);
}
GST_END_TEST;

// A task that failed at the provider is no result to keep: its row says failed, and the
// next run with the same parameters creates a new task (a new take) instead of attaching
// to the failed one.
GST_START_TEST(test_cache_forgets_a_failed_task) {
  auto emu = kirin_test_start_emulator(kKey);
  std::string dir = make_temp_dir();
  fail_unless(emu->push_fault(kirin_emu::Route::Task, "fail:014002095"));
  auto run = [&](RunResult &result) {
    GstElement *src = kirin_test_make_src(*emu);
    g_object_set(src, "video-id", "demo-5s", "external-task-id", "retry-me", "cache-dir",
                 dir.c_str(), nullptr);
    run_to_file(src, result);
  };
  RunResult failed;
  run(failed);
  fail_unless(failed.error != nullptr, "the failed task ended without an error");
  assert_same_text(read_journal().status, "failed");
  RunResult again;
  run(again);
  assert_error_free_eos(again);
  fail_unless_equals_int(emu->create_count(), 2);
  assert_same_text(read_journal().status, "completed");
  remove_dir(dir);
}
GST_END_TEST;

GST_START_TEST(test_cache_dir_must_be_usable) {
  auto emu = kirin_test_start_emulator(kKey);
  std::string file = temp_path("not-a-dir");
  fail_unless(g_file_set_contents(file.c_str(), "", 0, nullptr));
  GstElement *src = kirin_test_make_src(*emu);
  g_object_set(src, "video-id", "demo-5s", "cache-dir", file.c_str(), nullptr);
  assert_settings_error(src, *emu, "cache-dir");
  g_unlink(file.c_str());
}
GST_END_TEST;

// Each step's result, one stream after the other: its own stream-start, its own bytes, and
// a single EOS after the last.
GST_START_TEST(test_resume_by_task_id_without_create) {
  auto emu = kirin_test_start_emulator(kKey);
  std::string task_id;
  {
    GstElement *src = kirin_test_make_src(*emu);
    gst_object_ref(src);
    g_object_set(src, "video-id", "demo-5s", nullptr);
    RunResult result;
    run_to_file(src, result);
    assert_error_free_eos(result);
    task_id = get_string_property(src, "task-id");
    gst_object_unref(src);
  }
  fail_unless_equals_int(emu->create_count(), 1);

  GstElement *src = kirin_test_make_src(*emu);
  g_object_set(src, "task-id", task_id.c_str(), nullptr);
  RunResult result;
  std::string bytes = run_to_file(src, result);
  assert_error_free_eos(result);
  fail_unless_equals_int(emu->create_count(), 1);
  fail_unless(bytes == kirin_test_read_file(emu->task_result_path(task_id)));
}
GST_END_TEST;

GST_START_TEST(test_restart_does_not_pay_twice) {
  auto emu = kirin_test_start_emulator(kKey);
  GstElement *src = kirin_test_make_src(*emu);
  g_object_set(src, "video-id", "demo-5s", nullptr);
  std::string path = temp_path("restart.mp4");
  GstElement *pipeline = make_file_pipeline(src, path);
  for (int run = 0; run < 2; run++) {
    RunResult result;
    kirin_test_run(pipeline, 60, result);
    assert_error_free_eos(result);
  }
  gst_object_unref(pipeline);
  g_unlink(path.c_str());
  fail_unless_equals_int(emu->create_count(), 1);
}
GST_END_TEST;

// Set from the element's weak-ref notify, on whichever thread drops the last reference.
static Suite *kirinextendsrc_cache_suite() {
  Suite *s = suite_create("kirinextendsrc-cache");
  TCase *tc = add_general_case(s);
  tcase_add_test(tc, test_cache_survives_a_crash_then_replays);
  tcase_add_test(tc, test_cache_keys_and_chains);
  tcase_add_test(tc, test_cache_forgets_a_failed_task);
  tcase_add_test(tc, test_cache_dir_must_be_usable);
  tcase_add_test(tc, test_resume_by_task_id_without_create);
  tcase_add_test(tc, test_restart_does_not_pay_twice);
  return s;
}

int main(int argc, char **argv) {
  kirin_test_init(&argc, &argv, "kirinextendsrc-cache");
  return gst_check_run_suite(kirinextendsrc_cache_suite(), "kirinextendsrc-cache", __FILE__);
}
