// The ledger of paid tasks (gst/kirin/ledger.h): claims within a process and across
// processes (racing, dying before and after sending), and the files it cannot use (corrupt,
// unwritable, full). Every test has its own directory, also as XDG_CACHE_HOME. The tests
// of claims run twice: on a file, and on a PostgreSQL server of the test's own on loopback,
// where the same rules must hold.
#include "ledger.h"
#include "ledger-pg.h"
#include "pg-server.h"

#include <gst/check/gstcheck.h>
#include <glib/gstdio.h>

#include <csignal>
#include <cstring>
#include <ftw.h>
#include <atomic>
#include <map>
#include <string>
#include <sys/resource.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

using kirin::ClaimOutcome;
using kirin::ClaimResult;
using kirin::Ledger;
using kirin::LedgerRequest;

namespace {

// The server of the "server" test case: each test starts one of its own, in its own
// process. (Started once in the suite's process instead, it would leave GLib's worker
// thread there, and every forked test would inherit memory only that thread points to,
// which LeakSanitizer reports as leaked.)
PgServer *server = nullptr;
bool on_server = false; // in a test of the "server" case

void start_server() {
  on_server = true;
  server = new PgServer();
  std::string error;
  fail_unless(server->start(error), "PostgreSQL did not start: %s", error.c_str());
}

void stop_server() {
  delete server;
  server = nullptr;
}

struct TestDir {
  std::string dir, path;
  std::string journal; // what Ledger::open is given: `path`, or the test's database
  TestDir() {
    g_autofree char *made = g_dir_make_tmp("kirin-ledger-test-XXXXXX", nullptr);
    fail_unless(made != nullptr);
    dir = made;
    g_setenv("XDG_CACHE_HOME", made, TRUE);
    path = dir + "/gst-kirin/journal.db";
    journal = on_server ? server->uri() : path;
  }
  ~TestDir() {
    nftw(
        dir.c_str(),
        [](const char *file, const struct stat *, int, struct FTW *) { return remove(file); }, 16,
        FTW_DEPTH | FTW_PHYS);
  }
};

LedgerRequest request(const char *prompt = "rain") {
  LedgerRequest r;
  r.api_url = "https://api.example/v1";
  r.request.video_id = "vid-1";
  r.request.prompt = prompt;
  return r;
}

std::unique_ptr<Ledger> open_ok(const std::string &path) {
  std::string warning;
  auto ledger = Ledger::open(path, warning);
  fail_unless(ledger != nullptr);
  fail_unless(warning.empty(), "unexpected warning: %s", warning.c_str());
  return ledger;
}

ClaimOutcome claim_ok(Ledger &ledger, const LedgerRequest &r, bool fresh = false,
                      const char *generated = "gen-1") {
  ClaimOutcome out;
  std::string error;
  fail_unless(ledger.claim(r, fresh, generated, out, error), "claim: %s", error.c_str());
  return out;
}

// Claims, sends and records `task_id`: a whole create.
void create_ok(Ledger &ledger, const LedgerRequest &r, const char *task_id) {
  ClaimOutcome out = claim_ok(ledger, r);
  fail_unless(out.result == ClaimResult::Claimed);
  std::string error;
  fail_unless(ledger.mark_sending(out.claim, error), "%s", error.c_str());
  fail_unless(ledger.record_task_id(out.claim, task_id, error), "%s", error.c_str());
}

int wait_child(pid_t pid) {
  int status = 0;
  fail_unless(waitpid(pid, &status, 0) == pid);
  return status;
}

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

// One racer: claims until it created the task or found it recorded. Writes
// "<claimed|recorded|error> <task id> <busy answers>" on `out`.
[[noreturn]] void racer(const std::string &path, int start, int out) {
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
    if (claim.result == ClaimResult::Busy) {
      busy++;
      g_usleep(10 * 1000);
    } else if (claim.result == ClaimResult::Recorded) {
      kind = "recorded";
      task_id = claim.row.task_id;
    } else if (claim.result == ClaimResult::Claimed) {
      task_id = "task-" + std::to_string(getpid());
      // Held a while, so the others find it busy.
      if (ledger->mark_sending(claim.claim, error)) {
        g_usleep(300 * 1000);
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
  int start[2], results[2];
  fail_unless(pipe(start) == 0 && pipe(results) == 0);
  pid_t pids[kRacers];
  for (pid_t &pid : pids) {
    pid = fork();
    fail_unless(pid >= 0);
    if (pid == 0) {
      close(start[1]);
      close(results[0]);
      racer(t.journal, start[0], results[1]);
    }
  }
  close(start[0]);
  close(results[1]);
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
  fail_unless(busy_total > 0, "no racer found the claim busy");
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

std::string read_file(const std::string &path) {
  g_autofree char *contents = nullptr;
  gsize length = 0;
  fail_unless(g_file_get_contents(path.c_str(), &contents, &length, nullptr), "%s", path.c_str());
  return std::string(contents, length);
}

// The one file of `dir` whose name starts with `prefix`.
std::string find_file(const std::string &dir, const std::string &prefix) {
  GDir *d = g_dir_open(dir.c_str(), 0, nullptr);
  fail_unless(d != nullptr);
  std::string found;
  while (const char *name = g_dir_read_name(d))
    if (g_str_has_prefix(name, prefix.c_str()) && !g_str_has_suffix(name, "-wal") &&
        !g_str_has_suffix(name, "-shm"))
      found = dir + "/" + name;
  g_dir_close(d);
  return found;
}

void check_replaces_corrupt_file(const std::string &path, const std::string &garbage) {
  std::string warning;
  auto ledger = Ledger::open(path, warning);
  fail_unless(ledger != nullptr);
  fail_unless_equals_string(ledger->path().c_str(), path.c_str());
  fail_unless(warning.find(path + " ") != std::string::npos, "warning: %s", warning.c_str());
  g_autofree char *dir = g_path_get_dirname(path.c_str());
  std::string aside = find_file(dir, "journal.db.corrupt-");
  fail_if(aside.empty(), "nothing moved aside");
  fail_unless(warning.find(aside) != std::string::npos, "warning: %s", warning.c_str());
  fail_unless(read_file(aside) == garbage, "the corrupt file was not kept as it was");
  create_ok(*ledger, request(), "task-new");
  ledger.reset();
  auto again = open_ok(path);
  fail_unless(claim_ok(*again, request()).result == ClaimResult::Recorded);
}

GST_START_TEST(test_garbage_file_is_moved_aside) {
  TestDir t;
  g_mkdir_with_parents((t.dir + "/gst-kirin").c_str(), 0700);
  std::string garbage;
  for (int i = 0; i < 8192; i++)
    garbage += (char)("not a database\n"[i % 15]);
  fail_unless(g_file_set_contents(t.path.c_str(), garbage.data(), garbage.size(), nullptr));
  check_replaces_corrupt_file(t.path, garbage);
}
GST_END_TEST;

// A real database whose pages past the header were overwritten.
GST_START_TEST(test_damaged_database_is_moved_aside) {
  TestDir t;
  {
    auto ledger = open_ok(t.path);
    for (int i = 0; i < 50; i++)
      create_ok(*ledger, request((std::to_string(i) + std::string(200, 'p')).c_str()), "task");
  }
  std::string damaged = read_file(t.path);
  fail_unless(damaged.size() > 4 * 4096, "size %zu", damaged.size());
  for (size_t i = 4096; i < damaged.size(); i++)
    damaged[i] = (char)(i * 7919 % 251);
  fail_unless(g_file_set_contents(t.path.c_str(), damaged.data(), damaged.size(), nullptr));
  check_replaces_corrupt_file(t.path, damaged);
}
GST_END_TEST;

GST_START_TEST(test_unwritable_path_falls_back_to_memory) {
  TestDir t;
  std::string file = t.dir + "/a-file";
  fail_unless(g_file_set_contents(file.c_str(), "x", 1, nullptr));
  std::string path = file + "/journal.db", warning;
  auto ledger = Ledger::open(path, warning);
  fail_unless(ledger != nullptr);
  fail_unless(warning.find(path) != std::string::npos, "warning: %s", warning.c_str());
  fail_unless_equals_string(ledger->path().c_str(), "");
  create_ok(*ledger, request(), "task-m");
  // The process's in-memory ledger is one, whichever object opens it.
  auto other = open_ok("");
  ClaimOutcome out = claim_ok(*other, request());
  fail_unless(out.result == ClaimResult::Recorded);
  fail_unless_equals_string(out.row.task_id.c_str(), "task-m");
}
GST_END_TEST;

// In a child that may not write the directory (as root, that means another user).
GST_START_TEST(test_permission_denied_falls_back_to_memory) {
  TestDir t;
  fail_unless(g_mkdir_with_parents((t.dir + "/gst-kirin").c_str(), 0700) == 0);
  // The directory is there to read, but not to write in.
  fail_unless(g_chmod(t.dir.c_str(), 0755) == 0);
  fail_unless(g_chmod((t.dir + "/gst-kirin").c_str(), 0555) == 0);
  pid_t pid = fork();
  fail_unless(pid >= 0);
  if (pid == 0) {
    if (getuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
      _exit(2);
    std::string warning, error;
    auto ledger = Ledger::open(t.path, warning);
    g_printerr("permission denied: %s\n", warning.c_str());
    ClaimOutcome out;
    _exit(ledger && ledger->path().empty() && warning.find(t.path) != std::string::npos &&
                  ledger->claim(request(), false, "gen", out, error) &&
                  out.result == ClaimResult::Claimed
              ? 0
              : 3);
  }
  int status = wait_child(pid);
  fail_unless(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
  g_chmod((t.dir + "/gst-kirin").c_str(), 0700);
}
GST_END_TEST;

// In a child whose files cannot grow: the ledger's calls fail with a reason, and the
// in-memory ledger takes over.
[[noreturn]] void disk_full_child(const TestDir &t) {
  std::string warning, error;
  auto ledger = Ledger::open(t.path, warning);
  signal(SIGXFSZ, SIG_IGN);
  struct rlimit limit = {64 * 1024, 64 * 1024};
  if (!ledger || setrlimit(RLIMIT_FSIZE, &limit) != 0)
    _exit(2);
  ClaimOutcome out;
  if (ledger->claim(request(std::string(1 << 20, 'p').c_str()), false, "gen", out, error) ||
      error.empty())
    _exit(3);
  g_printerr("disk full, as expected: %s\n", error.c_str());
  auto memory = Ledger::open_memory(error);
  if (!memory || !memory->claim(request(), false, "gen", out, error) ||
      out.result != ClaimResult::Claimed || !memory->mark_sending(out.claim, error) ||
      !memory->record_task_id(out.claim, "task-m", error))
    _exit(4);
  // A new file cannot even get its schema: the in-memory ledger, with a warning.
  limit.rlim_cur = 0;
  if (setrlimit(RLIMIT_FSIZE, &limit) != 0)
    _exit(5);
  auto fallback = Ledger::open(t.dir + "/other/journal.db", warning);
  g_printerr("opening a full disk: %s\n", warning.c_str());
  if (!fallback || warning.empty() || !fallback->path().empty())
    _exit(6);
  _exit(fallback->claim(request(), false, "gen", out, error) && out.result == ClaimResult::Recorded
            ? 0
            : 7);
}

GST_START_TEST(test_disk_full_is_an_error_not_a_crash) {
  TestDir t;
  open_ok(t.path); // the file exists before its disk fills
  pid_t pid = fork();
  fail_unless(pid >= 0);
  if (pid == 0)
    disk_full_child(t);
  int status = wait_child(pid);
  fail_unless(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
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

GST_START_TEST(test_server_names_without_password) {
  const std::pair<const char *, const char *> cases[] = {
      {"postgresql://kirin:s3cret@db:5432/media?sslmode=require",
       "postgresql://kirin@db:5432/media?sslmode=require"},
      {"postgres://db/media?password=s3cret&connect_timeout=3",
       "postgres://db/media?connect_timeout=3"},
      {"postgresql://db/m?pass%77ord=s3cret", "postgresql://db/m"},
      {"postgresql://u:a%40b@h", "postgresql://u@h"},
      {"postgresql:///media", "postgresql:///media"},
      {"/home/me/journal.db", "/home/me/journal.db"},
  };
  for (const auto &[journal, shown] : cases) {
    const std::string name = kirin::journal_display_name(journal);
    fail_unless_equals_string(name.c_str(), shown);
  }
  fail_unless(kirin::journal_on_server("postgres://h/d"));
  fail_if(kirin::journal_on_server("/tmp/postgresql://x"));
  fail_unless(kirin::journal_uri_readable("postgresql://u:p@h:5/d?sslmode=disable"));
  fail_if(kirin::journal_uri_readable("postgresql://h/d?no_such_option=1"));
}
GST_END_TEST;

// A server that is not there, or has a newer schema: the in-memory ledger, and a warning
// that names the server without the password.
GST_START_TEST(test_server_unusable_falls_back_to_memory) {
  TestDir t;
  std::string warning;
  auto ledger = Ledger::open(t.journal, warning);
  fail_unless(ledger && warning.empty(), "%s", warning.c_str());
  ledger.reset();
  std::string name = t.journal.substr(t.journal.rfind('/') + 1);
  server->query_in(name, "UPDATE gst_kirin.schema_version SET version = 3");
  ledger = Ledger::open(t.journal, warning);
  fail_unless(ledger && ledger->path().empty());
  fail_unless(warning.find("newer") != std::string::npos, "%s", warning.c_str());
  fail_unless(warning.find(kirin::journal_display_name(t.journal)) != std::string::npos, "%s",
              warning.c_str());
  fail_unless(warning.find(server->password) == std::string::npos, "%s", warning.c_str());

  // Nothing listens on the port.
  std::string absent = "postgresql://kirin:" + server->password +
                       "@127.0.0.1:" + std::to_string(kirin_test_free_port()) + "/kirin";
  ledger = Ledger::open(absent, warning);
  fail_unless(ledger && ledger->path().empty());
  fail_unless(warning.find(kirin::journal_display_name(absent)) != std::string::npos, "%s",
              warning.c_str());
  fail_unless(warning.find(server->password) == std::string::npos, "%s", warning.c_str());
  g_print("%s\n", warning.c_str());
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
  tcase_add_test(tc, test_garbage_file_is_moved_aside);
  tcase_add_test(tc, test_damaged_database_is_moved_aside);
  tcase_add_test(tc, test_unwritable_path_falls_back_to_memory);
  tcase_add_test(tc, test_permission_denied_falls_back_to_memory);
  tcase_add_test(tc, test_disk_full_is_an_error_not_a_crash);
  tcase_add_test(tc, test_ledger_key_covers_every_field);
  tcase_add_test(tc, test_ledger_account_is_a_keyed_hash);
  tcase_add_test(tc, test_evict_media_by_last_use);
  tcase_add_test(tc, test_server_names_without_password);

  // The same rules on a server the fleet shares.
  TCase *pg = tcase_create("server");
  tcase_set_timeout(pg, 120);
  tcase_add_checked_fixture(pg, start_server, stop_server);
  suite_add_tcase(s, pg);
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
  tcase_add_test(pg, test_server_unusable_falls_back_to_memory);
  return s;
}

GST_CHECK_MAIN(ledger);
