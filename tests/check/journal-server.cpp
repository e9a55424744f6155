// A server's journal (gst/kirin/journal/journal-server.h) on its own, on a PostgreSQL server of the
// test's own on loopback: what it remembers of this process's rows through an outage, and
// that a process living for weeks remembers a bounded number of them.
#include "journal-server.h"
#include "journal.h"
#include "pg-server.h"

#include <sqlite3.h>

#include <gst/check/gstcheck.h>

#include <memory>
#include <string>

using kirin::ClaimOutcome;
using kirin::ClaimResult;
using kirin::LedgerRequest;
using kirin::ServerJournal;

namespace {

// Each test starts a server of its own, in its own process (see ledger-fixture.h).
PgServer *server = nullptr;

void start_server() {
  server = new PgServer();
  std::string error;
  fail_unless(server->start(error), "PostgreSQL did not start: %s", error.c_str());
}

void stop_server() {
  delete server;
  server = nullptr;
}

LedgerRequest request(const std::string &prompt) {
  LedgerRequest r;
  r.api_url = "https://api.example/v1";
  r.request.video_id = "vid-1";
  r.request.prompt = prompt;
  return r;
}

std::shared_ptr<ServerJournal> open_ok() {
  std::string warning;
  auto journal = ServerJournal::open(server->uri(), warning);
  fail_unless(journal != nullptr);
  fail_unless(warning.empty(), "unexpected warning: %s", warning.c_str());
  return journal;
}

ClaimOutcome claim_ok(ServerJournal &journal, const LedgerRequest &r) {
  ClaimOutcome out;
  std::string error;
  fail_unless(journal.claim(r, false, "gen-" + r.request.prompt, out, error), "claim: %s",
              error.c_str());
  return out;
}

// Claims, sends and records a task ID: a whole create. The runs' id of its row.
gint64 create_ok(ServerJournal &journal, const LedgerRequest &r, const std::string &task_id) {
  ClaimOutcome out = claim_ok(journal, r);
  fail_unless(out.result == ClaimResult::Claimed);
  std::string error;
  fail_unless(journal.mark_sending(out.claim, error), "%s", error.c_str());
  fail_unless(journal.record_task_id(out.claim, task_id, error), "%s", error.c_str());
  return out.row.id;
}

void complete_ok(ServerJournal &journal, gint64 id) {
  std::string error;
  fail_unless(
      journal.record_completed(id, "https://media.example/r.mp4", "vid-r", 10, "0.28", error), "%s",
      error.c_str());
}

// The rows of the process's own in-memory ledger (the one a file journal falls back to).
int rows_in_process_memory() {
  sqlite3 *db = nullptr;
  fail_unless(sqlite3_open_v2("file:/kirin-ledger?vfs=memdb", &db,
                              SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI,
                              nullptr) == SQLITE_OK);
  sqlite3_stmt *count = nullptr;
  int rows = 0;
  if (sqlite3_prepare_v2(db, "SELECT count(*) FROM tasks", -1, &count, nullptr) == SQLITE_OK &&
      sqlite3_step(count) == SQLITE_ROW)
    rows = sqlite3_column_int(count, 0);
  sqlite3_finalize(count);
  sqlite3_close(db);
  return rows;
}

// Waits until the server has the row of `prompt`, then until the journal's worker has done
// what it was given with it (writing an outage's rows back and forgetting them is one work).
void wait_until_written_back(const std::string &prompt) {
  const gint64 end = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
  while (server->query("SELECT 1 FROM gst_kirin.tasks WHERE prompt = $1", {prompt}).empty()) {
    fail_unless(g_get_monotonic_time() < end, "%s never reached the server", prompt.c_str());
    g_usleep(20 * 1000);
  }
  kirin::journal_flush(server->uri());
}

} // namespace

// What the journal keeps for an outage: the tasks this process created (replayed from
// memory), the ones whose create may have left (never sent again on their own), and not the
// ones never sent (the next run may create them).
GST_START_TEST(test_an_outage_knows_this_processes_rows) {
  auto journal = open_ok();
  std::string error;
  create_ok(*journal, request("created"), "task-created");
  ClaimOutcome sent = claim_ok(*journal, request("sent"));
  fail_unless(journal->mark_sending(sent.claim, error), "%s", error.c_str());
  ClaimOutcome unsent = claim_ok(*journal, request("unsent"));
  fail_unless(unsent.result == ClaimResult::Claimed);
  fail_unless_equals_int(journal->rows_known().size(), 3);

  server->stop();
  // The server does not answer: the journal goes over to memory.
  ClaimOutcome created = claim_ok(*journal, request("created"));
  fail_unless(created.result == ClaimResult::Recorded, "%d", (int)created.result);
  fail_unless_equals_string(created.row.task_id.c_str(), "task-created");
  fail_unless(journal->take_notices().find("in memory") != std::string::npos);
  ClaimOutcome again = claim_ok(*journal, request("sent"));
  fail_unless(again.result == ClaimResult::Abandoned, "%d", (int)again.result);
  unsent = ClaimOutcome(); // its claim goes: nothing was sent
  fail_unless(claim_ok(*journal, request("unsent")).result == ClaimResult::Claimed);
}
GST_END_TEST;

// A process that lives for weeks: of its settled rows it remembers the most recently used
// kRowsRemembered. A forgotten row is still written to on the server by its id; during an
// outage the recent ones replay from memory, and a change of a forgotten one is refused with
// an error that says so.
GST_START_TEST(test_a_long_lived_process_remembers_a_bounded_number_of_rows) {
  auto journal = open_ok();
  const size_t settled = ServerJournal::kRowsRemembered + 200;
  gint64 first = 0;
  for (size_t i = 0; i < settled; i++) {
    const std::string n = std::to_string(i);
    const gint64 id = create_ok(*journal, request("prompt-" + n), "task-" + n);
    complete_ok(*journal, id);
    first = first ? first : id;
  }
  ClaimOutcome in_flight = claim_ok(*journal, request("in-flight"));
  fail_unless(in_flight.result == ClaimResult::Claimed);
  const size_t known = journal->rows_known().size();
  fail_unless(known <= ServerJournal::kRowsRemembered + 1, "%zu rows remembered", known);

  std::string error;
  fail_unless(journal->record_media(first, "/media/first.mp4", 1234, error), "%s", error.c_str());
  auto kept = server->query("SELECT media_size FROM gst_kirin.kept WHERE media_file = $1",
                            {"/media/first.mp4"});
  fail_unless(kept.size() == 1 && kept[0][0] == "1234", "the server has no kept copy");

  server->stop();
  const std::string last = std::to_string(settled - 1);
  ClaimOutcome replay = claim_ok(*journal, request("prompt-" + last));
  fail_unless(replay.result == ClaimResult::Recorded, "%d", (int)replay.result);
  const std::string last_task = "task-" + last;
  fail_unless_equals_string(replay.row.task_id.c_str(), last_task.c_str());
  fail_if(journal->touch_media(first, error), "a forgotten row changed in an outage");
  fail_unless(error.find("no longer remembers") != std::string::npos, "%s", error.c_str());
}
GST_END_TEST;

// A process that lives for weeks goes through many outages: once the server has an outage's
// rows again, nothing of it stays in memory, whatever the process remembered of its rows.
GST_START_TEST(test_outages_leave_nothing_in_memory) {
  auto journal = open_ok();
  for (int i = 0; i < 20; i++) {
    const std::string n = std::to_string(i);
    complete_ok(*journal, create_ok(*journal, request("before-" + n), "task-before-" + n));
  }
  std::string error;
  for (int outage = 0; outage < 3; outage++) {
    server->stop();
    const std::string prompt = "during-" + std::to_string(outage);
    create_ok(*journal, request(prompt), "task-" + prompt);
    fail_unless(server->start_again(error), "%s", error.c_str());
    wait_until_written_back(prompt);
    fail_unless_equals_int(rows_in_process_memory(), 0);
  }
}
GST_END_TEST;

// What a create got back instead of a task ID reaches the server: at once while it answers,
// and, recorded during an outage, once it answers again.
GST_START_TEST(test_what_a_create_got_back_reaches_the_server) {
  auto journal = open_ok();
  std::string error;
  auto send = [&](const std::string &prompt, const std::string &answer) {
    ClaimOutcome out = claim_ok(*journal, request(prompt));
    fail_unless(out.result == ClaimResult::Claimed);
    fail_unless(journal->mark_sending(out.claim, error), "%s", error.c_str());
    fail_unless(journal->record_create_answer(out.row.id, answer, error), "%s", error.c_str());
  };
  auto answer_of = [](const std::string &prompt) {
    auto rows = server->query(
        "SELECT status, coalesce(create_answer, '') FROM gst_kirin.tasks WHERE prompt = $1",
        {prompt});
    return rows.empty() ? std::string() : rows[0][0] + ": " + rows[0][1];
  };
  send("answered", "a server error (HTTP 502)");
  const std::string answered = answer_of("answered");
  fail_unless_equals_string(answered.c_str(), "sending: a server error (HTTP 502)");

  server->stop();
  send("during", "a server error (HTTP 503)");
  server->start_again(error);
  std::string found;
  for (gint64 end = g_get_monotonic_time() + 5 * G_USEC_PER_SEC;
       found.empty() && g_get_monotonic_time() < end; g_usleep(20 * 1000))
    found = answer_of("during");
  fail_unless_equals_string(found.c_str(), "sending: a server error (HTTP 503)");
}
GST_END_TEST;

static Suite *journal_server_suite() {
  Suite *s = suite_create("journal-server");
  TCase *tc = tcase_create("server");
  tcase_set_timeout(tc, 100);
  tcase_add_checked_fixture(tc, start_server, stop_server);
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_an_outage_knows_this_processes_rows);
  tcase_add_test(tc, test_a_long_lived_process_remembers_a_bounded_number_of_rows);
  tcase_add_test(tc, test_what_a_create_got_back_reaches_the_server);
  tcase_add_test(tc, test_outages_leave_nothing_in_memory);
  return s;
}

GST_CHECK_MAIN(journal_server);
