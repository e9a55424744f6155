// The ledger in a SQLite file (or the process's in-memory one), and its plumbing: a
// prepared statement, a write transaction, the database connection with its claims
// directory, and the claim lock files. Internal to ledger*.cpp.
#pragma once

#include "ledger-claiming.h"
#include "ledger.h"

#include <glib.h>
#include <sqlite3.h>

#include <optional>
#include <string>

namespace kirin {

struct LedgerDb {
  sqlite3 *db = nullptr;
  std::string path;             // "" for the in-memory ledger
  std::string claims_dir;       // where the claims' lock files are
  bool owns_claims_dir = false; // removed, with its lock files, with the connection
  ~LedgerDb();
};

// A claim on a file's ledger: its row, and the flock() of its lock file.
struct FileClaimHold : ClaimHold {
  std::shared_ptr<LedgerDb> db;
  int lock_fd = -1;
  std::string lock_path;
  ~FileClaimHold() override; // ledger-claim.cpp
};

class Transaction;

class FileLedger final : public Ledger {
public:
  explicit FileLedger(std::shared_ptr<LedgerDb> db) : db_(std::move(db)) {}

  const std::string &path() const override { return db_->path; }
  bool claim(const LedgerRequest &request, bool fresh, const std::string &generated_external_id,
             ClaimOutcome &out, std::string &error) override;
  bool claim_all(const std::vector<ClaimAsk> &asks, std::vector<ClaimOutcome> &out,
                 std::string &error) override;
  bool mark_sending(Claim &claim, std::string &error) override;
  bool record_task_id(Claim &claim, const std::string &task_id, std::string &error) override;
  bool write_claim_steps(const std::vector<ClaimStep> &steps, std::string &error) override;
  bool record_create_refused(Claim &claim, std::string &error) override;
  bool record_completed(gint64 id, const std::string &result_url,
                        const std::string &result_video_id, double duration,
                        const std::string &cost, std::string &error) override;
  bool record_failed(gint64 id, std::string &error) override;
  bool record_create_answer(gint64 id, const std::string &answer, std::string &error) override;
  bool record_media(gint64 id, const std::string &media_file, guint64 media_size,
                    std::string &error) override;
  bool touch_media(gint64 id, std::string &error) override;
  bool forget_media(gint64 id, std::string &error) override;
  bool lookup(const LedgerRequest &request, std::optional<LedgerRow> &row,
              std::string &error) override;
  bool evict_media(const std::string &dir, guint64 max_bytes, std::vector<std::string> &evicted,
                   std::string &error) override;
  bool adopt(const std::vector<LedgerRow> &rows, std::string &error) override;

private:
  bool held(const Claim &claim, std::string &error) const;

  std::shared_ptr<LedgerDb> db_;
};

// The last error of `db`, as "<what>: <SQLite's message>".
std::string sql_error(sqlite3 *db, const std::string &what);

// Runs SQL that returns no rows.
bool sql_exec(sqlite3 *db, const char *sql, std::string &error);

// A prepared statement; binds and reads by 1-based parameter and 0-based column.
class Stmt {
public:
  Stmt(sqlite3 *db, const char *sql);
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(const Stmt &) = delete;
  Stmt &operator=(const Stmt &) = delete;

  bool ok() const { return stmt_ != nullptr; }
  sqlite3_stmt *get() const { return stmt_; }
  void bind(int index, const std::string &value);
  void bind(int index, gint64 value);
  void bind(int index, double value);
  void bind(int index, const std::optional<double> &value);
  void bind_null(int index);
  // SQLITE_ROW, SQLITE_DONE or an error code.
  int step();
  // One step that must finish the statement; false with `error` otherwise.
  bool run(std::string &error);

  bool is_null(int column) const;
  std::string text(int column) const;
  gint64 integer(int column) const;
  double real(int column) const;

private:
  sqlite3 *db_;
  sqlite3_stmt *stmt_ = nullptr;
};

// BEGIN IMMEDIATE: the write lock from the start, so what a transaction read cannot change
// before it writes (SQLite waits up to the busy timeout for it). Given an open `outer`
// transaction (a batch of claims), it is a savepoint of that one instead, written when the
// outer commits; without one, a transaction already open on the connection is an error at
// begin(), never a silent nesting. Rolled back unless committed.
class Transaction {
public:
  explicit Transaction(sqlite3 *db, const Transaction *outer = nullptr) : db_(db), outer_(outer) {}
  ~Transaction();
  bool begin(std::string &error);
  bool commit(std::string &error);
  void rollback();

private:
  sqlite3 *db_;
  const Transaction *outer_;
  bool open_ = false;
};

// Takes the exclusive flock() of `path` (created 0600) without waiting. On Taken, `fd`
// holds it. flock locks belong to the open file description, so two ledgers of one process
// exclude each other too (fcntl locks would not).
LockTry lock_try(const std::string &path, int &fd, std::string &error);
// Unlinks the lock file (when `unlink_file`) and closes `fd`, which lets the lock go.
void lock_drop(const std::string &path, int &fd, bool unlink_file);

// A claims directory of its own for an in-memory ledger (mode 0700, in `parent`): its path,
// or "" with `error`.
std::string make_claims_dir(const std::string &parent, std::string &error);
// Removes such a directory with the lock files and claims directories still in it.
void remove_claims_dir(const std::string &path);

gint64 now_seconds();

// Binds ?1..?13 of an INSERT INTO tasks whose columns start request_key, take, step,
// extensions, api_url, model, video_id, prompt, negative_prompt, cfg_scale,
// user_external_task_id, external_task_id, account (write it NULLIF(?13, '')).
void bind_request_columns(Stmt &s, const std::string &key, gint64 take,
                          const LedgerRequest &request, const std::string &external_task_id);

// The one row `where` selects (`bind` sets its ?1), or nullopt.
bool select_row(sqlite3 *db, const char *where, const std::string &bind,
                std::optional<LedgerRow> &row, std::string &error);
// The newest take's row of a request key, or nullopt.
bool select_newest(sqlite3 *db, const std::string &key, std::optional<LedgerRow> &row,
                   std::string &error);
// No row under the request's key: its rows from before accounts, adopted for its account
// when their newest take is settled (ledger.h, legacy_adoptable), are `newest` now; a take
// still claimed or sending is `newest` as it is. Nothing found leaves `newest` empty.
// `adopted` says whether rows were re-keyed: the transaction must commit then.
bool select_legacy(sqlite3 *db, const LedgerRequest &request, const std::string &key,
                   std::optional<LedgerRow> &newest, bool &adopted, std::string &error);

// The lock file of a take: <claims dir>/<request key>-<take>.lock
std::string lock_path(const LedgerDb &db, const std::string &key, gint64 take);

} // namespace kirin
