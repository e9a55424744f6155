// The ledger of paid tasks (gst/kirin/journal/ledger.h): claims within a process and across
// processes (racing, dying before and after sending), the key and account of a request, and
// the kept copies it evicts. Every test has its own directory, also as XDG_CACHE_HOME. The
// tests of claims run twice: on a file, and on a PostgreSQL server of the test's own on
// loopback, where the same rules must hold. The journals it cannot use: ledger-fallback.cpp.
#include "ledger-fixture.h"
#include "ledger-pg.h"

#include <glib/gstdio.h>
#include <poll.h>

#include <atomic>
#include <csignal>
#include <cstring>
#include <map>
#include <thread>

namespace {

// A child that claims and then reports on `report` and waits to be killed (or exits at once
// when `exit_at_once`), having sent the create when `send`.
pid_t start_claimer(const std::string &path, bool send, bool exit_at_once, int report[2]) {
  fail_unless(pipe(report) == 0);
  pid_t pid = fork();
  fail_unless(pid >= 0);
  if (pid > 0) {
    close(report[1]);
    return pid;
  }
  close(report[0]);
  std::string warning, error;
  auto ledger = Ledger::open(path, warning);
  ClaimOutcome out;
  if (!ledger || !ledger->claim(request(), false, "gen-child", out, error) ||
      out.result != ClaimResult::Claimed || (send && !ledger->mark_sending(out.claim, error)))
    _exit(2);
  gint64 id = out.row.id;
  if (write(report[1], &id, sizeof id) != (ssize_t)sizeof id)
    _exit(3);
  if (exit_at_once)
    _exit(0); // no destructor runs: the row stays, as after a crash
  for (;;)
    pause();
}

gint64 read_report(int fd) {
  gint64 id = 0;
  fail_unless(read(fd, &id, sizeof id) == (ssize_t)sizeof id, "the claimer did not claim");
  close(fd);
  return id;
}

// The server learns of a dead client's end a moment after the kernel closed its
// connection: waits for the server to let go of the take's lock, as the claims of other
// machines would find it. Nothing to wait for with a file (flock goes with the process).
void wait_until_released(gint64 row_id, const std::string &journal) {
  if (!on_server)
    return;
  std::string name = journal.substr(journal.rfind('/') + 1);
  auto rows = server->query_in(name, "SELECT request_key, take FROM gst_kirin.tasks WHERE id = " +
                                         std::to_string(row_id));
  fail_unless_equals_int(rows.size(), 1);
  std::string lock = std::to_string(kirin::take_lock_id(rows[0][0], std::stoll(rows[0][1])));
  // Blocks until the dead claimer's backend has ended, then lets go at once: left to the end
  // of this connection, the lock would go only once its backend exits, a moment after the
  // connection closed, and the next claim could find it held.
  server->query_in(name, "DO $$BEGIN PERFORM pg_advisory_lock(" + lock +
                             "); PERFORM pg_advisory_unlock(" + lock + "); END$$");
}

} // namespace

GST_START_TEST(test_claim_send_record_then_recorded) {
  TestDir t;
  auto ledger = open_ok(t.journal);
  const std::string name = kirin::journal_display_name(t.journal);
  fail_unless_equals_string(ledger->path().c_str(), name.c_str());
  if (!on_server) {
    // Prompts and task IDs are the user's only.
    GStatBuf file, dir;
    fail_unless(g_stat(t.path.c_str(), &file) == 0 && (file.st_mode & 0777) == 0600);
    fail_unless(g_stat((t.dir + "/gst-kirin").c_str(), &dir) == 0 && (dir.st_mode & 0777) == 0700);
  }
  ClaimOutcome out = claim_ok(*ledger, request(), false, "gen-1");
  fail_unless(out.result == ClaimResult::Claimed);
  fail_unless(out.claim.held());
  fail_unless_equals_int(out.row.take, 1);
  fail_unless_equals_string(out.row.status.c_str(), "claimed");
  fail_unless_equals_string(out.row.external_task_id.c_str(), "gen-1");
  fail_unless_equals_int(out.row.claimer_pid, getpid());
  std::string error;
  fail_unless(ledger->mark_sending(out.claim, error), "%s", error.c_str());
  fail_unless(ledger->record_task_id(out.claim, "task-1", error), "%s", error.c_str());
  fail_if(out.claim.held(), "recording the task ID lets the claim go");

  ClaimOutcome again = claim_ok(*ledger, request());
  fail_unless(again.result == ClaimResult::Recorded);
  fail_unless_equals_string(again.row.task_id.c_str(), "task-1");
  fail_unless_equals_string(again.row.status.c_str(), "created");
  fail_unless(
      ledger->record_completed(again.row.id, "https://cdn/r.mp4", "vid-2", 9.5, "0.28", error));
  std::optional<kirin::LedgerRow> row;
  fail_unless(ledger->lookup(request(), row, error) && row);
  fail_unless_equals_string(row->status.c_str(), "completed");
  fail_unless_equals_string(row->result_video_id.c_str(), "vid-2");
  fail_unless_equals_string(row->cost.c_str(), "0.28");
  fail_unless(row->duration == 9.5);

  ClaimOutcome fresh = claim_ok(*ledger, request(), true, "gen-2");
  fail_unless(fresh.result == ClaimResult::Claimed);
  fail_unless_equals_int(fresh.row.take, 2);
  fail_unless_equals_string(fresh.row.external_task_id.c_str(), "gen-2");
}
GST_END_TEST;

GST_START_TEST(test_users_external_id_is_sent) {
  TestDir t;
  auto ledger = open_ok(t.journal);
  LedgerRequest r = request();
  r.request.external_task_id = "order-17";
  ClaimOutcome out = claim_ok(*ledger, r, false, "gen-1");
  fail_unless_equals_string(out.row.external_task_id.c_str(), "order-17");
  fail_unless_equals_string(out.row.request.request.external_task_id.c_str(), "order-17");
}
GST_END_TEST;

GST_START_TEST(test_failed_or_refused_take_makes_a_new_one) {
  TestDir t;
  auto ledger = open_ok(t.journal);
  create_ok(*ledger, request(), "task-1");
  std::optional<kirin::LedgerRow> row;
  std::string error;
  fail_unless(ledger->lookup(request(), row, error) && row);
  fail_unless(ledger->record_failed(row->id, error), "%s", error.c_str());
  ClaimOutcome out = claim_ok(*ledger, request());
  fail_unless(out.result == ClaimResult::Claimed);
  fail_unless_equals_int(out.row.take, 2);
  fail_unless(ledger->mark_sending(out.claim, error));
  fail_unless(ledger->record_create_refused(out.claim, error), "%s", error.c_str());
  fail_if(out.claim.held());
  ClaimOutcome third = claim_ok(*ledger, request());
  fail_unless(third.result == ClaimResult::Claimed);
  fail_unless_equals_int(third.row.take, 3);
}
GST_END_TEST;

GST_START_TEST(test_dropped_claim_frees_the_request) {
  TestDir t;
  auto ledger = open_ok(t.journal);
  {
    ClaimOutcome out = claim_ok(*ledger, request());
    fail_unless(out.result == ClaimResult::Claimed);
  }
  std::optional<kirin::LedgerRow> row;
  std::string error;
  fail_unless(ledger->lookup(request(), row, error));
  fail_if(row.has_value(), "an unsent claim leaves no row");
  ClaimOutcome out = claim_ok(*ledger, request());
  fail_unless(out.result == ClaimResult::Claimed);
  fail_unless_equals_int(out.row.take, 1);
  ledger->release(out.claim);
  fail_unless(ledger->lookup(request(), row, error));
  fail_if(row.has_value());
}
GST_END_TEST;

// Two ledgers of one process on one file: two elements of one pipeline.
GST_START_TEST(test_two_ledgers_of_one_process_exclude_each_other) {
  TestDir t;
  auto a = open_ok(t.journal);
  auto b = open_ok(t.journal);
  ClaimOutcome first = claim_ok(*a, request());
  fail_unless(first.result == ClaimResult::Claimed);
  fail_unless(claim_ok(*b, request()).result == ClaimResult::Busy);
  std::string error;
  fail_unless(a->mark_sending(first.claim, error));
  fail_unless(claim_ok(*b, request()).result == ClaimResult::Busy);
  fail_unless(a->record_task_id(first.claim, "task-a", error));
  ClaimOutcome second = claim_ok(*b, request());
  fail_unless(second.result == ClaimResult::Recorded);
  fail_unless_equals_string(second.row.task_id.c_str(), "task-a");
}
GST_END_TEST;

// Reads `count` bytes from `fd`, for at most `seconds`.
static void wait_for_bytes(int fd, int count, int seconds) {
  const gint64 deadline = g_get_monotonic_time() + seconds * G_TIME_SPAN_SECOND;
  char byte;
  while (count > 0 && g_get_monotonic_time() < deadline) {
    struct pollfd readable = {fd, POLLIN, 0};
    if (poll(&readable, 1, 100) == 1 && read(fd, &byte, 1) == 1)
      count--;
  }
}

// One racer: claims until it created the task or found it recorded. Writes
// "<claimed|recorded|error> <task id> <busy answers>" on `out`. After its first answer, a
// racer that did not win writes a byte on `asked`; the winner holds its claim until it has
// read one from each of the `others`, so every other racer's first answer is "busy".
[[noreturn]] void racer(const std::string &path, int start, int out, int asked[2], int others) {
  char go;
  if (read(start, &go, 1) != 0)
    _exit(2);
  std::string warning, error, kind = "error", task_id;
  int busy = 0;
  auto ledger = Ledger::open(path, warning);
  if (!warning.empty()) {
    // On a private ledger of its own, a racer would create a second task.
    g_printerr("racer %d: %s\n", (int)getpid(), warning.c_str());
    _exit(4);
  }
  for (int attempt = 0; ledger && attempt < 1000 && kind == "error"; attempt++) {
    ClaimOutcome claim;
    if (!ledger->claim(request(), false, "gen-race", claim, error))
      break;
    if (attempt == 0 && claim.result != ClaimResult::Claimed && write(asked[1], "a", 1) != 1)
      _exit(5);
    if (claim.result == ClaimResult::Busy) {
      busy++;
      g_usleep(10 * 1000);
    } else if (claim.result == ClaimResult::Recorded) {
      kind = "recorded";
      task_id = claim.row.task_id;
    } else if (claim.result == ClaimResult::Claimed) {
      task_id = "task-" + std::to_string(getpid());
      // Held until every other racer has asked once (or 30 s passed).
      if (ledger->mark_sending(claim.claim, error)) {
        wait_for_bytes(asked[0], others, 30);
        if (ledger->record_task_id(claim.claim, task_id, error))
          kind = "claimed";
      }
    } else {
      error = "the claim was abandoned";
      break;
    }
  }
  if (kind == "error")
    g_printerr("racer %d: %s\n", (int)getpid(), error.c_str());
  std::string line = kind + " " + task_id + " " + std::to_string(busy) + "\n";
  _exit(write(out, line.data(), line.size()) == (ssize_t)line.size() ? 0 : 3);
}

GST_START_TEST(test_processes_race_for_one_claim) {
  TestDir t;
  const int kRacers = 8;
  int start[2], results[2], asked[2];
  fail_unless(pipe(start) == 0 && pipe(results) == 0 && pipe(asked) == 0);
  pid_t pids[kRacers];
  for (pid_t &pid : pids) {
    pid = fork();
    fail_unless(pid >= 0);
    if (pid == 0) {
      close(start[1]);
      close(results[0]);
      racer(t.journal, start[0], results[1], asked, kRacers - 1);
    }
  }
  close(start[0]);
  close(results[1]);
  close(asked[0]);
  close(asked[1]);
  close(start[1]); // all start at once
  for (pid_t pid : pids) {
    int status = wait_child(pid);
    fail_unless(WIFEXITED(status) && WEXITSTATUS(status) == 0, "racer status %d", status);
  }
  char buffer[4096];
  ssize_t size = read(results[0], buffer, sizeof buffer - 1);
  close(results[0]);
  fail_unless(size > 0);
  buffer[size] = '\0';
  int claimed = 0, recorded = 0, busy_total = 0;
  std::string winner;
  g_auto(GStrv) lines = g_strsplit(g_strstrip(buffer), "\n", -1);
  for (char **line = lines; *line; line++) {
    char kind[16], task[64];
    int busy = 0;
    fail_unless(sscanf(*line, "%15s %63s %d", kind, task, &busy) == 3, "racer said: %s", *line);
    busy_total += busy;
    if (strcmp(kind, "claimed") == 0) {
      claimed++;
      winner = task;
    } else {
      fail_unless_equals_string(kind, "recorded");
      recorded++;
    }
  }
  fail_unless_equals_int(claimed, 1);
  fail_unless_equals_int(recorded, kRacers - 1);
  // Each racer but the winner found the claim busy at least once: the winner held it.
  fail_unless(busy_total >= kRacers - 1, "%d busy answers", busy_total);
  for (char **line = lines; *line; line++)
    fail_unless(strstr(*line, winner.c_str()) != nullptr, "%s: not %s", *line, winner.c_str());
}
GST_END_TEST;

// A connection of the test's own to its server, which plays another claimer.
struct TestConn {
  PGconn *conn;
  TestConn() : conn(PQconnectdb(server->uri().c_str())) {
    fail_unless(PQstatus(conn) == CONNECTION_OK, "%s", PQerrorMessage(conn));
  }
  ~TestConn() { PQfinish(conn); }
  // The first column of the first row of `sql`, with $1 bound to `param` when given.
  std::string value(const std::string &sql, const char *param = nullptr) {
    PGresult *result =
        PQexecParams(conn, sql.c_str(), param ? 1 : 0, nullptr, &param, nullptr, nullptr, 0);
    ExecStatusType status = PQresultStatus(result);
    fail_unless(status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK, "%s: %s", sql.c_str(),
                PQresultErrorMessage(result));
    std::string text = PQntuples(result) > 0 ? PQgetvalue(result, 0, 0) : "";
    PQclear(result);
    return text;
  }
};

// A claimer that read "sending" in the request's turn must not then find the take's lock
// gone while the row is unsettled, or it would take a created task for an abandoned one:
// the owner settles its row and lets the lock go only in the request's turn.
GST_START_TEST(test_owner_settles_in_the_requests_turn) {
  TestDir t;
  auto a = open_ok(t.journal);
  ClaimOutcome claim = claim_ok(*a, request());
  fail_unless(claim.result == ClaimResult::Claimed);
  std::string error;
  fail_unless(a->mark_sending(claim.claim, error), "%s", error.c_str());
  const std::string key = claim.row.request_key;
  const std::string turn = kirin::request_lock_id(key);
  const std::string take = std::to_string(kirin::take_lock_id(key, claim.row.take));
  const std::string id = std::to_string(claim.row.id);

  // Another claimer in its turn, having just read the row "sending".
  TestConn waiter;
  waiter.value("BEGIN");
  waiter.value("SELECT pg_advisory_xact_lock($1::bigint)", turn.c_str());
  const std::string read =
      waiter.value("SELECT status FROM gst_kirin.tasks WHERE id = $1", id.c_str());
  fail_unless_equals_string(read.c_str(), "sending");

  std::atomic<bool> done{false};
  bool recorded = false;
  std::string record_error;
  std::thread owner([&] {
    recorded = a->record_task_id(claim.claim, "task-a", record_error);
    done = true;
  });
  // The owner waits for the turn: polls until its backend waits on an advisory lock.
  bool waiting = false;
  for (gint64 end = g_get_monotonic_time() + 5 * G_TIME_SPAN_SECOND;
       !done && g_get_monotonic_time() < end; g_usleep(2000)) {
    if (waiter.value("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                     "AND pid <> pg_backend_pid()") != "0") {
      waiting = true;
      break;
    }
  }
  // What the waiter sees next, in its turn: the take's lock, then the row.
  bool lock_free = waiter.value("SELECT pg_try_advisory_lock($1::bigint)", take.c_str()) == "t";
  std::string status = waiter.value("SELECT status FROM gst_kirin.tasks WHERE id = $1", id.c_str());
  waiter.value("COMMIT");
  owner.join();
  fail_unless(waiting, "the owner settled its row outside the request's turn (now %s, lock %s)",
              status.c_str(), lock_free ? "free" : "held");
  fail_if(lock_free, "the take's lock went while the waiter held the turn");
  fail_unless_equals_string(status.c_str(), "sending");
  fail_unless(recorded, "%s", record_error.c_str());
  fail_if(claim.claim.held(), "recording the task ID lets the claim go");

  auto b = open_ok(t.journal);
  ClaimOutcome after = claim_ok(*b, request());
  fail_unless(after.result == ClaimResult::Recorded, "result %d", (int)after.result);
  fail_unless_equals_string(after.row.task_id.c_str(), "task-a");
}
GST_END_TEST;

// A claimer that dies before sending leaves a claim the next one takes over.
void check_taken_over_after(bool exit_at_once) {
  TestDir t;
  int report[2];
  pid_t pid = start_claimer(t.journal, false, exit_at_once, report);
  gint64 id = read_report(report[0]);
  auto ledger = open_ok(t.journal);
  if (!exit_at_once) {
    fail_unless(claim_ok(*ledger, request()).result == ClaimResult::Busy, "the claimer lives");
    kill(pid, SIGKILL);
  }
  wait_child(pid);
  wait_until_released(id, t.journal);
  ClaimOutcome out = claim_ok(*ledger, request());
  fail_unless(out.result == ClaimResult::Claimed, "result %d", (int)out.result);
  fail_unless_equals_int(out.row.id, id);
  fail_unless_equals_int(out.row.take, 1);
  fail_unless_equals_int(out.row.claimer_pid, getpid());
  fail_unless(out.claim.held());
}

GST_START_TEST(test_exited_claimer_is_taken_over) {
  check_taken_over_after(true);
}
GST_END_TEST;

GST_START_TEST(test_killed_claimer_is_taken_over) {
  check_taken_over_after(false);
}
GST_END_TEST;

GST_START_TEST(test_killed_sender_is_abandoned) {
  TestDir t;
  int report[2];
  pid_t pid = start_claimer(t.journal, true, false, report);
  gint64 id = read_report(report[0]);
  auto ledger = open_ok(t.journal);
  fail_unless(claim_ok(*ledger, request()).result == ClaimResult::Busy);
  kill(pid, SIGKILL);
  wait_child(pid);
  wait_until_released(id, t.journal);
  for (int i = 0; i < 2; i++) {
    ClaimOutcome out = claim_ok(*ledger, request());
    fail_unless(out.result == ClaimResult::Abandoned, "result %d", (int)out.result);
    fail_unless_equals_int(out.row.id, id);
    fail_unless_equals_string(out.row.external_task_id.c_str(), "gen-child");
    fail_unless_equals_string(out.row.status.c_str(), "sending");
    fail_if(out.claim.held());
  }
  ClaimOutcome fresh = claim_ok(*ledger, request(), true);
  fail_unless(fresh.result == ClaimResult::Claimed);
  fail_unless_equals_int(fresh.row.take, 2);
}
GST_END_TEST;

GST_START_TEST(test_ledger_key_covers_every_field) {
  const LedgerRequest base = request();
  const std::string key = kirin::ledger_key(base);
  fail_unless_equals_int(key.size(), 64);
  fail_unless(kirin::ledger_key(base) == key);
  std::vector<LedgerRequest> changed(10, base);
  changed[0].api_url = "https://other.example/v1";
  changed[1].extensions = 2;
  changed[2].step = 2;
  changed[3].request.cfg_scale = 0.5;
  changed[4].request.model = "other";
  changed[5].request.video_id = "vid-2";
  changed[6].request.negative_prompt = "sun";
  changed[7].request.external_task_id = "order-1";
  changed[8].request.prompt = "rain ";
  changed[9].account = kirin::ledger_account("key-a");
  // Without its account, a request has the key it had before the journal knew accounts.
  fail_unless(kirin::ledger_key_without_account(changed[9]) == key);
  for (size_t i = 0; i < changed.size(); i++)
    fail_if(kirin::ledger_key(changed[i]) == key, "change %zu keeps the key", i);
  LedgerRequest zero = base;
  zero.request.cfg_scale = 0.0;
  fail_if(kirin::ledger_key(zero) == key, "cfg_scale 0 is not unset");
  LedgerRequest callback = base;
  callback.request.callback_url = "https://me.example/cb";
  fail_unless(kirin::ledger_key(callback) == key, "the callback URL is not the request");
  fail_unless(g_str_has_suffix(kirin::default_ledger_path().c_str(), "/gst-kirin/journal.db"));
}
GST_END_TEST;

// The account is the HMAC-SHA-256 of a fixed message keyed with the API key: the same in every
// process and release (a fleet's machines must agree), never the key.
GST_START_TEST(test_ledger_account_is_a_keyed_hash) {
  const std::string a = kirin::ledger_account("key-a");
  fail_unless(a == "a90ef40abffe002444808c81a9270408548a911979ca1349913a618f4e48ee94", "%s",
              a.c_str());
  fail_if(kirin::ledger_account("key-b") == a);
  fail_unless(kirin::ledger_account("").empty());
}
GST_END_TEST;

// Kept copies, evicted by their last use: the order is the journal's own, on either.
GST_START_TEST(test_evict_media_by_last_use) {
  TestDir t;
  auto ledger = open_ok(t.journal);
  std::string error, media = t.dir + "/media";
  std::map<std::string, gint64> ids;
  for (const char *prompt : {"d", "a", "b", "c"}) {
    create_ok(*ledger, request(prompt), prompt);
    std::optional<kirin::LedgerRow> row;
    fail_unless(ledger->lookup(request(prompt), row, error) && row);
    ids[prompt] = row->id;
    // "d", the oldest, is another directory's: neither counted nor evicted.
    std::string dir = prompt[0] == 'd' ? t.dir + "/elsewhere" : media;
    fail_unless(ledger->record_media(row->id, dir + "/" + prompt + ".mp4", 10, error), "%s",
                error.c_str());
  }
  // Replayed since: "c", then "a". "b" was used least recently.
  fail_unless(ledger->touch_media(ids["c"], error) && ledger->touch_media(ids["a"], error));
  std::vector<std::string> evicted;
  fail_unless(ledger->evict_media(media, 25, evicted, error), "%s", error.c_str());
  fail_unless_equals_int(evicted.size(), 1);
  const std::string b_file = media + "/b.mp4", a_file = media + "/a.mp4";
  fail_unless_equals_string(evicted[0].c_str(), b_file.c_str());
  std::optional<kirin::LedgerRow> row;
  fail_unless(ledger->lookup(request("b"), row, error) && row, "the row stays");
  fail_unless_equals_string(row->media_file.c_str(), "");
  fail_unless(ledger->lookup(request("a"), row, error) && row);
  fail_unless_equals_string(row->media_file.c_str(), a_file.c_str());
  fail_unless(ledger->evict_media(media, 25, evicted, error) && evicted.empty());
  fail_unless(ledger->lookup(request("d"), row, error) && row && !row->media_file.empty());
  fail_unless(ledger->forget_media(ids["a"], error));
  fail_unless(ledger->lookup(request("a"), row, error) && row && row->media_file.empty());
}
GST_END_TEST;

static Suite *ledger_suite() {
  Suite *s = suite_create("ledger");
  TCase *tc = tcase_create("general");
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_claim_send_record_then_recorded);
  tcase_add_test(tc, test_users_external_id_is_sent);
  tcase_add_test(tc, test_failed_or_refused_take_makes_a_new_one);
  tcase_add_test(tc, test_dropped_claim_frees_the_request);
  tcase_add_test(tc, test_two_ledgers_of_one_process_exclude_each_other);
  tcase_add_test(tc, test_processes_race_for_one_claim);
  tcase_add_test(tc, test_exited_claimer_is_taken_over);
  tcase_add_test(tc, test_killed_claimer_is_taken_over);
  tcase_add_test(tc, test_killed_sender_is_abandoned);
  tcase_add_test(tc, test_ledger_key_covers_every_field);
  tcase_add_test(tc, test_ledger_account_is_a_keyed_hash);
  tcase_add_test(tc, test_evict_media_by_last_use);

  // The same rules on a server the fleet shares.
  TCase *pg = add_server_case(s);
  tcase_add_test(pg, test_claim_send_record_then_recorded);
  tcase_add_test(pg, test_users_external_id_is_sent);
  tcase_add_test(pg, test_failed_or_refused_take_makes_a_new_one);
  tcase_add_test(pg, test_dropped_claim_frees_the_request);
  tcase_add_test(pg, test_two_ledgers_of_one_process_exclude_each_other);
  tcase_add_test(pg, test_processes_race_for_one_claim);
  tcase_add_test(pg, test_owner_settles_in_the_requests_turn);
  tcase_add_test(pg, test_exited_claimer_is_taken_over);
  tcase_add_test(pg, test_killed_claimer_is_taken_over);
  tcase_add_test(pg, test_killed_sender_is_abandoned);
  tcase_add_test(pg, test_evict_media_by_last_use);
  return s;
}

GST_CHECK_MAIN(ledger);
