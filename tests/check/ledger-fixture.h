// What the ledger suites share (ledger, ledger-fallback): each test's own directory (also
// as XDG_CACHE_HOME) and journal, on a file or, in the "server" case, on a PostgreSQL server
// of the test's own, and the claims and creates the tests make.
#pragma once

#include "ledger.h"
#include "pg-server.h"

#include <gst/check/gstcheck.h>

#include <ftw.h>
#include <memory>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

using kirin::ClaimOutcome;
using kirin::ClaimResult;
using kirin::Ledger;
using kirin::LedgerRequest;

// The server of the "server" test case: each test starts one of its own, in its own
// process. (Started once in the suite's process instead, it would leave GLib's worker
// thread there, and every forked test would inherit memory only that thread points to,
// which LeakSanitizer reports as leaked.)
inline PgServer *server = nullptr;
inline bool on_server = false; // in a test of the "server" case

inline void start_server() {
  on_server = true;
  server = new PgServer();
  std::string error;
  fail_unless(server->start(error), "PostgreSQL did not start: %s", error.c_str());
}

inline void stop_server() {
  delete server;
  server = nullptr;
}

// Adds a suite's "server" case: each of its tests with a PostgreSQL server of its own.
inline TCase *add_server_case(Suite *s) {
  TCase *pg = tcase_create("server");
  tcase_set_timeout(pg, 120);
  tcase_add_checked_fixture(pg, start_server, stop_server);
  suite_add_tcase(s, pg);
  return pg;
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

inline LedgerRequest request(const char *prompt = "rain") {
  LedgerRequest r;
  r.api_url = "https://api.example/v1";
  r.request.video_id = "vid-1";
  r.request.prompt = prompt;
  return r;
}

inline std::unique_ptr<Ledger> open_ok(const std::string &path) {
  std::string warning;
  auto ledger = Ledger::open(path, warning);
  fail_unless(ledger != nullptr);
  fail_unless(warning.empty(), "unexpected warning: %s", warning.c_str());
  return ledger;
}

inline ClaimOutcome claim_ok(Ledger &ledger, const LedgerRequest &r, bool fresh = false,
                             const char *generated = "gen-1") {
  ClaimOutcome out;
  std::string error;
  fail_unless(ledger.claim(r, fresh, generated, out, error), "claim: %s", error.c_str());
  return out;
}

// Claims, sends and records `task_id`: a whole create.
inline void create_ok(Ledger &ledger, const LedgerRequest &r, const char *task_id) {
  ClaimOutcome out = claim_ok(ledger, r);
  fail_unless(out.result == ClaimResult::Claimed);
  std::string error;
  fail_unless(ledger.mark_sending(out.claim, error), "%s", error.c_str());
  fail_unless(ledger.record_task_id(out.claim, task_id, error), "%s", error.c_str());
}

inline int wait_child(pid_t pid) {
  int status = 0;
  fail_unless(waitpid(pid, &status, 0) == pid);
  return status;
}
