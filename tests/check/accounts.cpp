// One ledger, many accounts (docs/journal.md, "Accounts"): a journal shared by runs that pay
// with different API keys replays a paid result only to the account that paid for it, on a
// file and on a PostgreSQL server of the test's own. The keys never reach the journal, only
// their keyed hashes. Rows of a journal from before accounts are adopted by the first
// account that asks for them, and the journal's schema is migrated. The runs are
// gst-launch-1.0 processes with the key in VTRIX_API_KEY, as a user starts them.
#include "common.h"

#include "emulator-fixture.h"
#include "ledger.h"
#include "pg-server.h"
#include "program.h"

#include <sqlite3.h>

#include <memory>
#include <string>
#include <vector>

namespace {

constexpr const char *kKeyA = "acct-a-secret-5f1c2e77";
constexpr const char *kKeyB = "acct-b-secret-93d0aa41";

using Rows = std::vector<std::vector<std::string>>;

bool contains(const std::string &text, const std::string &part) {
  return text.find(part) != std::string::npos;
}

// The journal under test: a file of the test's own, or the test's server (`server` set).
struct TestJournal {
  WorkDir dir;
  std::unique_ptr<PgServer> server;
  std::string value; // the element's `journal`
  std::string path;  // the file, on a file

  explicit TestJournal(bool on_server) {
    if (on_server) {
      server = std::make_unique<PgServer>();
      std::string error;
      fail_unless(server->start(error), "PostgreSQL did not start: %s", error.c_str());
      value = server->uri();
    } else {
      path = value = dir.file("journal.db");
    }
  }

  // `sql` on a file's own table names (tasks), or the server's (gst_kirin.tasks).
  std::string table(const char *name) const {
    return server ? std::string("gst_kirin.") + name : std::string(name);
  }

  Rows query(const std::string &sql) {
    if (server)
      return server->query(sql);
    sqlite3 *db = nullptr;
    fail_unless(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK);
    Rows rows;
    char *message = nullptr;
    int rc = sqlite3_exec(
        db, sql.c_str(),
        [](void *data, int n, char **values, char **) {
          auto *out = static_cast<Rows *>(data);
          out->emplace_back();
          for (int i = 0; i < n; i++)
            out->back().push_back(values[i] ? values[i] : "");
          return 0;
        },
        &rows, &message);
    std::string error = message ? message : "";
    sqlite3_free(message);
    sqlite3_close(db);
    fail_unless(rc == SQLITE_OK, "%s: %s", sql.c_str(), error.c_str());
    return rows;
  }

  // Everything the journal holds, as stored: the file's bytes (with its write-ahead log), or
  // the server's rows as text.
  std::string stored() {
    if (!server) {
      std::string bytes;
      for (const char *suffix : {"", "-wal", "-shm"})
        bytes += kirin_test_read_file(path + suffix);
      fail_if(bytes.empty());
      return bytes;
    }
    std::string text;
    for (const char *sql :
         {"SELECT t::text FROM gst_kirin.tasks t", "SELECT k::text FROM gst_kirin.kept k"})
      for (const auto &row : server->query(sql))
        text += row.at(0) + "\n";
    return text;
  }
};

// gst-launch-1.0 paying with `key` (VTRIX_API_KEY), on `journal`, with a cache of its own
// and `extra` properties; it must end well within 60 s.
std::unique_ptr<Program> run_as(const kirin_emu::Emulator &emu, TestJournal &journal,
                                const char *key, const std::string &name,
                                const std::vector<std::string> &extra = {}) {
  std::string cache = journal.dir.file(name + "-cache");
  g_mkdir_with_parents(cache.c_str(), 0700);
  std::vector<std::string> args{"gst-launch-1.0",          "-m",
                                "kirinextendsrc",          "api-url=" + emu.api_url(),
                                "video-id=demo-5s",        "poll-interval=50",
                                "journal=" + journal.value};
  args.insert(args.end(), extra.begin(), extra.end());
  args.insert(args.end(), {"!", "filesink", "location=" + journal.dir.file(name + ".mp4")});
  auto program = kirin_test_spawn(args, journal.dir, name,
                                  {{"VTRIX_API_KEY", key}, {"XDG_CACHE_HOME", cache}});
  fail_unless(kirin_test_wait_up_to(*program, 60), "%s did not end: %s", name.c_str(),
              program->both().c_str());
  fail_unless(program->exit_status == 0, "%s: exit %d: %s", name.c_str(), program->exit_status,
              program->both().c_str());
  fail_if(contains(program->out(), "in memory"), "%s left the journal: %s", name.c_str(),
          program->out().c_str());
  return program;
}

std::vector<kirin_emu::RequestRecord> since(const kirin_emu::Emulator &emu, size_t from) {
  auto all = emu.requests();
  return {all.begin() + (long)std::min(from, all.size()), all.end()};
}

// The one create since `from`, made with `key`: its task.
std::string created_by(const kirin_emu::Emulator &emu, size_t from, const char *key) {
  std::vector<kirin_emu::RequestRecord> creates;
  for (const auto &r : since(emu, from))
    if (r.route == kirin_emu::Route::Create)
      creates.push_back(r);
  fail_unless_equals_int(creates.size(), 1);
  assert_same_text(creates[0].header("Authorization"), std::string("Bearer ") + key);
  fail_if(creates[0].task_id.empty());
  return creates[0].task_id;
}

// Since `from`: no create, and downloads (`downloads`: at least one, or none at all) of
// `task`'s result only.
void replayed_since(const kirin_emu::Emulator &emu, size_t from, const std::string &task,
                    bool downloads, const Program &run) {
  int fetched = 0;
  for (const auto &r : since(emu, from)) {
    fail_if(r.route == kirin_emu::Route::Create, "a create: %s", run.both().c_str());
    if (r.route == kirin_emu::Route::Download) {
      assert_same_text(r.task_id, task);
      fetched++;
    }
  }
  fail_unless(downloads ? fetched > 0 : fetched == 0, "%d downloads", fetched);
  fail_unless(contains(run.out(), "replayed=(boolean)true") && contains(run.out(), "at no charge"),
              "no replay on the bus: %s", run.out().c_str());
}

// The key of the test's request (demo-5s, nothing else set) for `account`.
kirin::LedgerRequest test_request(const kirin_emu::Emulator &emu, const std::string &account) {
  kirin::LedgerRequest r;
  r.account = account;
  r.api_url = emu.api_url();
  r.request.model = "kirin_duration_extension";
  r.request.video_id = "demo-5s";
  return r;
}

// A pays; B, with the same request on the same journal, pays for a task of its own and
// streams that one; A again replays its own at no charge. Neither key is stored; each row
// carries its account's hash.
void accounts_stay_apart(bool on_server) {
  TestJournal journal(on_server);
  auto options = kirin_test_emulator_options(kKeyA);
  options.other_api_keys = {kKeyB};
  auto emu = kirin_test_start_emulator(options);

  auto a = run_as(*emu, journal, kKeyA, "a");
  const std::string task_a = created_by(*emu, 0, kKeyA);
  size_t mark = emu->requests().size();
  auto b = run_as(*emu, journal, kKeyB, "b");
  const std::string task_b = created_by(*emu, mark, kKeyB);
  fail_if(task_a == task_b);
  fail_if(contains(b->out(), "replayed=(boolean)true"), "B replayed: %s", b->out().c_str());
  fail_if(contains(b->out(), task_a), "B was told of A's task: %s", b->out().c_str());
  for (const auto &r : since(*emu, mark))
    fail_if(r.route == kirin_emu::Route::Download && r.task_id != task_b,
            "B downloaded %s's result", r.task_id.c_str());

  mark = emu->requests().size();
  auto again = run_as(*emu, journal, kKeyA, "a-again");
  replayed_since(*emu, mark, task_a, true, *again);
  fail_unless_equals_int(emu->create_count(), 2);

  Rows rows = journal.query("SELECT task_id, account, request_key, status FROM " +
                            journal.table("tasks") + " ORDER BY id");
  fail_unless_equals_int(rows.size(), 2);
  const std::string accounts[] = {kirin::ledger_account(kKeyA), kirin::ledger_account(kKeyB)};
  const std::string tasks[] = {task_a, task_b};
  for (int i = 0; i < 2; i++) {
    assert_same_text(rows[i][0], tasks[i]);
    assert_same_text(rows[i][1], accounts[i]);
    assert_same_text(rows[i][2], kirin::ledger_key(test_request(*emu, accounts[i])));
    assert_same_text(rows[i][3], "completed");
  }
  const std::string stored = journal.stored();
  fail_unless(contains(stored, task_a) && contains(stored, accounts[0]));
  for (const char *key : {kKeyA, kKeyB})
    fail_if(contains(stored, key), "the journal holds the API key %s", key);
}

// What a journal of the release before accounts holds: the rows under the keys without an
// account, no `account` column, the schema's version 1; a kept copy named after the old key.
void as_before_accounts(TestJournal &journal, const kirin_emu::Emulator &emu) {
  const kirin::LedgerRequest request = test_request(emu, kirin::ledger_account(kKeyA));
  const std::string key = kirin::ledger_key(request);
  const std::string old_key = kirin::ledger_key_without_account(request);
  const std::string tasks = journal.table("tasks");
  Rows kept = journal.query(journal.server ? "SELECT media_file FROM gst_kirin.kept"
                                           : "SELECT media_file FROM tasks");
  fail_unless_equals_int(kept.size(), 1);
  const std::string file = kept[0][0];
  const std::string old_file =
      file.substr(0, file.rfind('/') + 1) + old_key.substr(0, 32) + "-1.media";
  fail_unless(g_str_has_suffix(file.c_str(), (key.substr(0, 32) + "-1.media").c_str()), "%s",
              file.c_str());
  fail_unless(g_rename(file.c_str(), old_file.c_str()) == 0);
  journal.query("UPDATE " + tasks + " SET request_key = '" + old_key + "' WHERE request_key = '" +
                key + "'");
  journal.query(std::string("UPDATE ") + (journal.server ? "gst_kirin.kept" : "tasks") +
                " SET media_file = '" + old_file + "'");
  journal.query("ALTER TABLE " + tasks + " DROP COLUMN account");
  journal.query("ALTER TABLE " + tasks + " DROP COLUMN create_answer");
  journal.query(journal.server ? "UPDATE gst_kirin.schema_version SET version = 1"
                               : "PRAGMA user_version = 1");
}

std::string schema_version(TestJournal &journal) {
  return journal
      .query(journal.server ? "SELECT max(version) FROM gst_kirin.schema_version"
                            : "PRAGMA user_version")
      .at(0)
      .at(0);
}

// A journal written before accounts: after the upgrade, A asks first and replays its task from
// the kept copy, with no request at all; the row is A's from then on. B then pays for its own,
// and A still replays.
void rows_before_accounts_adopted(bool on_server) {
  TestJournal journal(on_server);
  auto options = kirin_test_emulator_options(kKeyA);
  options.other_api_keys = {kKeyB};
  auto emu = kirin_test_start_emulator(options);
  const std::string kept_dir = journal.dir.file("kept");
  const std::vector<std::string> keep{"cache-dir=" + kept_dir};

  run_as(*emu, journal, kKeyA, "before", keep);
  const std::string task_a = created_by(*emu, 0, kKeyA);
  as_before_accounts(journal, *emu);
  assert_same_text(schema_version(journal), "1");

  size_t mark = emu->requests().size();
  auto upgraded = run_as(*emu, journal, kKeyA, "upgraded", keep);
  replayed_since(*emu, mark, task_a, false, *upgraded);
  fail_unless(contains(upgraded->out(), kept_dir), "not from the kept copy: %s",
              upgraded->out().c_str());
  assert_same_text(kirin_test_read_file(journal.dir.file("upgraded.mp4")),
                   kirin_test_read_file(emu->task_result_path(task_a)));
  assert_same_text(schema_version(journal), "2");
  const std::string account_a = kirin::ledger_account(kKeyA);
  Rows rows = journal.query("SELECT request_key, account FROM " + journal.table("tasks"));
  fail_unless_equals_int(rows.size(), 1);
  assert_same_text(rows[0][0], kirin::ledger_key(test_request(*emu, account_a)));
  assert_same_text(rows[0][1], account_a);

  mark = emu->requests().size();
  run_as(*emu, journal, kKeyB, "b", keep);
  created_by(*emu, mark, kKeyB);
  mark = emu->requests().size();
  auto again = run_as(*emu, journal, kKeyA, "a-again", keep);
  replayed_since(*emu, mark, task_a, false, *again);
  fail_unless_equals_int(emu->create_count(), 2);
}

kirin::LedgerRequest asked(const std::string &account, const char *prompt) {
  kirin::LedgerRequest r;
  r.account = account;
  r.api_url = "https://api.example/v1";
  r.request.video_id = "vid-1";
  r.request.prompt = prompt;
  return r;
}

kirin::ClaimOutcome claim_ok(kirin::Ledger &ledger, const kirin::LedgerRequest &r) {
  kirin::ClaimOutcome out;
  std::string error;
  fail_unless(ledger.claim(r, false, "gen-1", out, error), "claim: %s", error.c_str());
  return out;
}

// Sends the claimed create and records `task_id` (nullptr: the provider refused it).
void settle(kirin::Ledger &ledger, kirin::ClaimOutcome &out, const char *task_id) {
  std::string error;
  fail_unless(out.result == kirin::ClaimResult::Claimed);
  fail_unless(ledger.mark_sending(out.claim, error), "%s", error.c_str());
  fail_unless(task_id ? ledger.record_task_id(out.claim, task_id, error)
                      : ledger.record_create_refused(out.claim, error),
              "%s", error.c_str());
}

std::string count_under(TestJournal &journal, const std::string &key) {
  return journal.query("SELECT count(*) FROM " + journal.table("tasks") + " WHERE request_key = '" +
                       key + "'")[0][0];
}

// The rule for rows from before accounts, on the ledger itself (rows claimed without an
// account are what such a release wrote): a settled request is the first asking account's,
// all its takes; another account then claims a take of its own. A take an older process is
// still creating is contested where it is, busy while its claimer lives, and adopted once
// settled.
void adoption_rules(bool on_server) {
  TestJournal journal(on_server);
  std::string warning, error;
  auto ledger = kirin::Ledger::open(journal.value, warning);
  fail_unless(ledger && warning.empty(), "%s", warning.c_str());
  const std::string x = kirin::ledger_account(kKeyA), y = kirin::ledger_account(kKeyB);

  kirin::ClaimOutcome refused = claim_ok(*ledger, asked("", "rain"));
  settle(*ledger, refused, nullptr);
  kirin::ClaimOutcome paid = claim_ok(*ledger, asked("", "rain"));
  fail_unless_equals_int(paid.row.take, 2);
  settle(*ledger, paid, "task-old");
  fail_unless(
      ledger->record_completed(paid.row.id, "https://cdn/r.mp4", "vid-2", 10, "0.28", error));

  kirin::ClaimOutcome adopted = claim_ok(*ledger, asked(x, "rain"));
  fail_unless(adopted.result == kirin::ClaimResult::Recorded);
  assert_same_text(adopted.row.task_id, "task-old");
  assert_same_text(adopted.row.request.account, x);
  assert_same_text(adopted.row.request_key, kirin::ledger_key(asked(x, "rain")));
  assert_same_text(count_under(journal, kirin::ledger_key(asked(x, "rain"))), "2");
  assert_same_text(count_under(journal, kirin::ledger_key(asked("", "rain"))), "0");
  kirin::ClaimOutcome other = claim_ok(*ledger, asked(y, "rain"));
  fail_unless(other.result == kirin::ClaimResult::Claimed);
  fail_unless_equals_int(other.row.take, 1);
  other.claim.release();
  kirin::ClaimOutcome again = claim_ok(*ledger, asked(x, "rain"));
  fail_unless(again.result == kirin::ClaimResult::Recorded && again.row.id == paid.row.id);

  kirin::ClaimOutcome creating = claim_ok(*ledger, asked("", "snow"));
  kirin::ClaimOutcome waits = claim_ok(*ledger, asked(x, "snow"));
  fail_unless(waits.result == kirin::ClaimResult::Busy);
  assert_same_text(waits.row.request_key, kirin::ledger_key(asked("", "snow")));
  settle(*ledger, creating, "task-snow");
  kirin::ClaimOutcome later = claim_ok(*ledger, asked(x, "snow"));
  fail_unless(later.result == kirin::ClaimResult::Recorded);
  assert_same_text(later.row.task_id, "task-snow");
  assert_same_text(later.row.request_key, kirin::ledger_key(asked(x, "snow")));
}

} // namespace

GST_START_TEST(test_adoption_rules_on_file) {
  adoption_rules(false);
}
GST_END_TEST;

GST_START_TEST(test_adoption_rules_on_server) {
  adoption_rules(true);
}
GST_END_TEST;

GST_START_TEST(test_accounts_apart_on_file) {
  accounts_stay_apart(false);
}
GST_END_TEST;

GST_START_TEST(test_accounts_apart_on_server) {
  accounts_stay_apart(true);
}
GST_END_TEST;

GST_START_TEST(test_rows_before_accounts_on_file) {
  rows_before_accounts_adopted(false);
}
GST_END_TEST;

GST_START_TEST(test_rows_before_accounts_on_server) {
  rows_before_accounts_adopted(true);
}
GST_END_TEST;

// One element whose api-key changes between runs (a daemon that serves several accounts),
// without a journal: the task it remembers paying for is attached to again only by the
// account that paid for it.
GST_START_TEST(test_remembered_task_stays_with_its_account) {
  auto options = kirin_test_emulator_options(kKeyA);
  options.other_api_keys = {kKeyB};
  auto emu = kirin_test_start_emulator(options);
  GstElement *pipeline = gst_pipeline_new(nullptr);
  GstElement *src = kirin_test_make_src(*emu);
  g_object_set(src, "video-id", "demo-5s", "journal", "none", nullptr);
  GstElement *sink = gst_element_factory_make("fakesink", nullptr);
  gst_bin_add_many(GST_BIN(pipeline), src, sink, nullptr);
  fail_unless(gst_element_link(src, sink));
  const struct {
    const char *key;
    guint creates;
  } runs[] = {{kKeyA, 1}, {kKeyB, 2}, {kKeyB, 2}};
  for (const auto &run : runs) {
    size_t mark = emu->requests().size();
    g_object_set(src, "api-key", run.key, nullptr);
    RunResult result;
    kirin_test_run(pipeline, 60, result);
    fail_unless(result.eos, "%s", result.error ? result.error->message : "no EOS");
    fail_unless_equals_int(emu->create_count(), run.creates);
    for (const auto &r : since(*emu, mark))
      assert_same_text(r.route == kirin_emu::Route::Download ? std::string("Bearer ") + run.key
                                                             : r.header("Authorization"),
                       std::string("Bearer ") + run.key);
  }
  gst_object_unref(pipeline);
}
GST_END_TEST;

static Suite *accounts_suite() {
  Suite *s = suite_create("accounts");
  TCase *tc = tcase_create("runs");
  tcase_set_timeout(tc, 240);
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_accounts_apart_on_file);
  tcase_add_test(tc, test_accounts_apart_on_server);
  tcase_add_test(tc, test_rows_before_accounts_on_file);
  tcase_add_test(tc, test_rows_before_accounts_on_server);
  tcase_add_test(tc, test_adoption_rules_on_file);
  tcase_add_test(tc, test_adoption_rules_on_server);
  tcase_add_test(tc, test_remembered_task_stays_with_its_account);
  return s;
}

int main(int argc, char **argv) {
  kirin_test_init(&argc, &argv, "accounts");
  return gst_check_run_suite(accounts_suite(), "accounts", __FILE__);
}
