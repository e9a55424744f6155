// Behaviours of the journal that a user relies on without seeing them, end to end against
// the emulator: a run stopped while its create was being marked as leaving sends nothing; a
// create whose answer may have been lost is never paid again by the next run; a kept copy of
// a download that broke off is never kept or replayed.
#include "common.h"

#include "emulator-fixture.h"
#include "threads-named.h"

#include <glib/gstdio.h>
#include <sqlite3.h>

#include <condition_variable>
#include <mutex>
#include <string>

namespace {

constexpr const char *kKey = "guards-key";

using kirin_emu::Route;

std::string journal_file() {
  return std::string(g_getenv("XDG_CACHE_HOME")) + "/gst-kirin/journal.db";
}

// The newest row of the test's journal for a request with this external-task-id, read as a
// user's sqlite3 would while the element runs.
struct Row {
  bool exists = false;
  std::string status, task_id, media_file, create_answer;
};

Row journal_row(const std::string &external_id) {
  Row entry;
  sqlite3 *db = nullptr;
  if (sqlite3_open_v2(journal_file().c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt *row = nullptr;
    const char *sql = "SELECT status, COALESCE(task_id, ''), COALESCE(media_file, ''), "
                      "COALESCE(create_answer, '') FROM tasks WHERE user_external_task_id = ?1 "
                      "ORDER BY id DESC LIMIT 1";
    if (sqlite3_prepare_v2(db, sql, -1, &row, nullptr) == SQLITE_OK &&
        sqlite3_bind_text(row, 1, external_id.c_str(), -1, SQLITE_TRANSIENT) == SQLITE_OK &&
        sqlite3_step(row) == SQLITE_ROW) {
      auto text = [row](int column) {
        const unsigned char *value = sqlite3_column_text(row, column);
        return std::string(value ? (const char *)value : "");
      };
      entry.exists = true;
      entry.status = text(0);
      entry.task_id = text(1);
      entry.media_file = text(2);
      entry.create_answer = text(3);
    }
    sqlite3_finalize(row);
  }
  sqlite3_close(db);
  return entry;
}

// kirinextendsrc (video demo-5s, this external-task-id) ! fakesink, the bytes collected.
struct Pipeline {
  GstElement *pipeline = gst_pipeline_new(nullptr);
  GstElement *src;
  GstElement *sink = gst_element_factory_make("fakesink", nullptr);
  std::mutex lock;
  std::string bytes;

  Pipeline(const kirin_emu::Emulator &emu, const std::string &external_id)
      : src(kirin_test_make_src(emu)) {
    g_object_set(src, "video-id", "demo-5s", "external-task-id", external_id.c_str(), nullptr);
    g_object_set(sink, "signal-handoffs", TRUE, "sync", FALSE, nullptr);
    g_signal_connect(sink, "handoff", G_CALLBACK(on_handoff), this);
    gst_bin_add_many(GST_BIN(pipeline), src, sink, nullptr);
    fail_unless(gst_element_link(src, sink));
  }
  ~Pipeline() {
    gst_element_set_state(pipeline, GST_STATE_NULL);
    gst_object_unref(pipeline);
  }
  Pipeline(const Pipeline &) = delete;
  Pipeline &operator=(const Pipeline &) = delete;

  static void on_handoff(GstElement *, GstBuffer *buffer, GstPad *, gpointer data) {
    auto *self = static_cast<Pipeline *>(data);
    GstMapInfo map;
    if (!gst_buffer_map(buffer, &map, GST_MAP_READ))
      return;
    std::lock_guard<std::mutex> guard(self->lock);
    self->bytes.append((const char *)map.data, map.size);
    gst_buffer_unmap(buffer, &map);
  }

  std::string property(const char *name) const {
    g_autofree char *value = nullptr;
    g_object_get(src, name, &value, nullptr);
    return value ? value : "";
  }
};

bool contains(const std::string &text, const std::string &part) {
  return text.find(part) != std::string::npos;
}

std::string error_text(const RunResult &result) {
  return result.error ? result.error->message : "(no error)";
}

// ---- a stop while the journal records that the create leaves ----

// Waits (bounded) until the file worker has a thread (`running`) or none.
bool file_worker_is(bool running) {
  const gint64 end = g_get_monotonic_time() + gint64(10 * G_USEC_PER_SEC * kirin_test_slowdown());
  while ((threads_named("kirin-files") > 0) != running && g_get_monotonic_time() < end)
    g_usleep(1000);
  return (threads_named("kirin-files") > 0) == running;
}

// Holds the journal's write lock from the moment the run announces its create (its START
// progress message, delivered before the create is marked as leaving), as another process's
// long transaction would: the run's mark waits on it until released. Until the file worker
// is idle (no thread), the run is kept from going on (the message is delivered on the
// element's outbox thread, which hands the mark over next): from then on, a thread of the
// file worker is the mark, waiting for the lock.
struct JournalHold {
  std::mutex lock;
  std::condition_variable changed;
  sqlite3 *db = nullptr;
  bool held = false;

  static GstBusSyncReply on_message(GstBus *, GstMessage *message, gpointer data) {
    GstProgressType type;
    g_autofree char *text = nullptr;
    if (GST_MESSAGE_TYPE(message) != GST_MESSAGE_PROGRESS)
      return GST_BUS_PASS;
    gst_message_parse_progress(message, &type, nullptr, &text);
    if (type == GST_PROGRESS_TYPE_START && g_str_has_prefix(text, "Extending video"))
      static_cast<JournalHold *>(data)->take();
    return GST_BUS_PASS;
  }

  void take() {
    std::lock_guard<std::mutex> guard(lock);
    if (held)
      return;
    fail_unless(sqlite3_open(journal_file().c_str(), &db) == SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    fail_unless(sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK,
                "cannot lock the journal: %s", sqlite3_errmsg(db));
    fail_unless(file_worker_is(false), "the file worker stayed busy");
    held = true;
    changed.notify_all();
  }

  bool wait_held(double seconds) {
    std::unique_lock<std::mutex> guard(lock);
    auto deadline = std::chrono::duration<double>(seconds * kirin_test_slowdown());
    return changed.wait_for(guard, deadline, [this] { return held; });
  }

  void release() {
    std::lock_guard<std::mutex> guard(lock);
    if (db) {
      sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
      sqlite3_close(db);
      db = nullptr;
    }
  }
};

// Waits (bounded) until the request's row leaves `status`; returns the row as last read.
Row wait_row_leaves(const std::string &external_id, const char *status) {
  Row row = journal_row(external_id);
  const gint64 end = g_get_monotonic_time() + gint64(30 * G_USEC_PER_SEC * kirin_test_slowdown());
  while ((!row.exists || row.status == status) && g_get_monotonic_time() < end) {
    g_usleep(5 * 1000);
    row = journal_row(external_id);
  }
  return row;
}

} // namespace

// An application stops a run (here with an EOS, as gst-launch-1.0 -e does on Ctrl-C) while
// the journal is still recording that its create is about to leave: once the journal
// answers, the create is not sent, and the journal says it was not (the row is not left
// "sending", which would make the next run fail as if the task might exist).
GST_START_TEST(test_stop_while_the_create_is_marked_sends_nothing) {
  auto emu = kirin_test_start_emulator(kKey);
  Pipeline run(*emu, "stopped-while-marked");
  JournalHold hold;
  GstBus *bus = gst_element_get_bus(run.pipeline);
  gst_bus_set_sync_handler(bus, JournalHold::on_message, &hold, nullptr);
  fail_if(gst_element_set_state(run.pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE);
  fail_unless(hold.wait_held(30), "the run announced no create within 30 s");
  assert_same_text(journal_row("stopped-while-marked").status, "claimed");
  fail_unless(file_worker_is(true), "the create was not handed to the journal to mark");

  fail_unless(gst_element_send_event(run.src, gst_event_new_eos()));
  hold.release();
  Row row = wait_row_leaves("stopped-while-marked", "claimed");
  row = row.status == "sending" ? wait_row_leaves("stopped-while-marked", "sending") : row;
  gst_bus_set_sync_handler(bus, nullptr, nullptr, nullptr);
  gst_object_unref(bus);
  gst_element_set_state(run.pipeline, GST_STATE_NULL);

  fail_unless_equals_int(emu->create_count(), 0);
  fail_unless(row.status == "failed" && row.task_id.empty(),
              "the journal says '%s' (task '%s'), not that the create was not sent",
              row.status.c_str(), row.task_id.c_str());
}
GST_END_TEST;

// The provider answered the create with a server error: it may have made the task and
// charged it. Running the same request again pays nothing: it fails, naming the request's
// external-task-id and fresh=true, and sends no second create.
// Run with the loop's index: a server error, then a create that got no answer within
// request-timeout. The second run says what the first one's create got back, as the journal kept
// it.
GST_START_TEST(test_a_create_that_may_exist_is_not_paid_again) {
  struct Case {
    const char *fault, *external_id, *answer;
  };
  const Case cases[] = {
      {"http:500", "answered-500", "a server error (HTTP 500)"},
      {"hang", "answer-lost",
       "no answer (the connection failed or timed out after the request was sent)"}};
  const Case &c = cases[__i__];
  auto emu = kirin_test_start_emulator(kKey);
  fail_unless(emu->push_fault(Route::Create, c.fault));
  for (int attempt = 0; attempt < 2; attempt++) {
    Pipeline run(*emu, c.external_id);
    g_object_set(run.src, "request-timeout", 1u, nullptr);
    RunResult result;
    kirin_test_run(run.pipeline, 60, result);
    fail_if(result.eos, "run %d streamed a result", attempt + 1);
    fail_unless(contains(error_text(result), c.external_id), "run %d: %s", attempt + 1,
                error_text(result).c_str());
    if (attempt == 1) {
      fail_unless(contains(error_text(result), "fresh=true"), "%s", error_text(result).c_str());
      fail_unless(contains(error_text(result),
                           std::string("and got ") + c.answer + " instead of a task ID"),
                  "%s", error_text(result).c_str());
      assert_same_text(result.detail("error-kind"), "abandoned");
    }
    fail_unless_equals_int(emu->create_count(), 1);
  }
  Row row = journal_row(c.external_id);
  assert_same_text(row.status, "sending");
  assert_same_text(row.create_answer, c.answer);
}
GST_END_TEST;

// With cache-dir, the download breaks off mid-body and its retries fail (the result host went
// away): nothing is kept or recorded, and the next run downloads the whole result again
// instead of replaying the part that came.
GST_START_TEST(test_a_broken_download_is_not_kept) {
  auto emu = kirin_test_start_emulator(kKey);
  g_autofree char *made = g_dir_make_tmp("kirin-guards-cache-XXXXXX", nullptr);
  const std::string cache = made;
  fail_unless(emu->push_fault(Route::Download, "drop:200000"));
  // The source's retry after the drop is held, then the host goes away under it.
  emu->hold(Route::Download);
  RunResult broken;
  {
    Pipeline run(*emu, "broken-download");
    g_object_set(run.src, "cache-dir", cache.c_str(), nullptr);
    fail_if(gst_element_set_state(run.pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE);
    fail_unless_equals_int(emu->wait_held(Route::Download, 1, 30000), 1);
    emu->set_offline(true);
    kirin_test_run(run.pipeline, 60, broken);
    fail_unless(run.bytes.size() >= 200000, "only %zu bytes came", run.bytes.size());
  }
  emu->set_offline(false);
  emu->release(Route::Download);
  fail_if(broken.eos, "the broken download ended as if complete");
  fail_unless(broken.error != nullptr, "the broken download raised no error");
  Row row = journal_row("broken-download");
  assert_same_text(row.status, "completed");
  assert_same_text(row.media_file, "");
  GDir *kept = g_dir_open(cache.c_str(), 0, nullptr);
  fail_unless(kept != nullptr);
  const char *name = g_dir_read_name(kept);
  fail_if(name && g_str_has_suffix(name, ".media"), "%s was kept", name);
  g_dir_close(kept);

  const size_t before = emu->requests().size();
  Pipeline again(*emu, "broken-download");
  g_object_set(again.src, "cache-dir", cache.c_str(), nullptr);
  RunResult result;
  kirin_test_run(again.pipeline, 60, result);
  fail_unless(result.eos, "the next run: %s", error_text(result).c_str());
  fail_unless_equals_int(emu->create_count(), 1);
  std::string served = kirin_test_read_file(emu->task_result_path(row.task_id));
  fail_unless(!served.empty() && again.bytes == served, "the next run streamed %zu bytes of %zu",
              again.bytes.size(), served.size());
  auto requests = emu->requests();
  fail_unless(requests.size() > before && requests.back().route == Route::Download,
              "the next run did not download the result");
  Row kept_now = journal_row("broken-download");
  fail_if(kept_now.media_file.empty(), "the whole download was not kept");
  g_unlink(kept_now.media_file.c_str());
  g_rmdir(cache.c_str());
}
GST_END_TEST;

static Suite *guards_suite() {
  Suite *s = suite_create("guards");
  TCase *tc = tcase_create("guards");
  tcase_set_timeout(tc, 120);
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_stop_while_the_create_is_marked_sends_nothing);
  tcase_add_loop_test(tc, test_a_create_that_may_exist_is_not_paid_again, 0, 2);
  tcase_add_test(tc, test_a_broken_download_is_not_kept);
  return s;
}

int main(int argc, char **argv) {
  kirin_test_init(&argc, &argv, "guards");
  return gst_check_run_suite(guards_suite(), "guards", __FILE__);
}
