// Claims on a file's ledger: who creates a request's task, decided in one transaction per
// claim, with an flock() per claimed take that says whether its claimer still lives.
#include "ledger-claiming.h"
#include "ledger-db.h"

#include <unistd.h>

namespace kirin {

FileClaimHold::~FileClaimHold() {
  if (lock_fd >= 0 && !sending) {
    // Nothing was sent: the row goes, so the next claim creates. The lock goes inside the
    // transaction, as no claimer can look between the two. Should the delete fail, the
    // row is left claimed by no one, which the next claim takes over just the same.
    Transaction tx(db->db);
    std::string ignored;
    if (tx.begin(ignored)) {
      Stmt s(db->db, "DELETE FROM tasks WHERE id = ?1 AND status = 'claimed'");
      s.bind(1, row_id);
      s.run(ignored);
      lock_drop(lock_path, lock_fd, true);
      tx.commit(ignored);
    }
  }
  // After mark_sending the row stays "sending": with its lock gone, it is abandoned.
  lock_drop(lock_path, lock_fd, true);
}

namespace {

// The file's side of a claim (ledger-claiming.h): a transaction (a savepoint of claim_all's
// batch), and a lock file per take.
class FileClaimStore {
public:
  FileClaimStore(std::shared_ptr<LedgerDb> ledger, const Transaction *batch)
      : ledger_(std::move(ledger)), tx_(ledger_->db, batch) {}
  ~FileClaimStore() { lock_drop(lock_path_, lock_fd_, false); }

  bool begin(const std::string &, std::string &error) { return tx_.begin(error); }
  bool newest(const std::string &key, std::optional<LedgerRow> &row, std::string &error) {
    return select_newest(ledger_->db, key, row, error);
  }
  bool legacy(const LedgerRequest &request, const std::string &key,
              std::optional<LedgerRow> &newest, bool &adopted, std::string &error) {
    return select_legacy(ledger_->db, request, key, newest, adopted, error);
  }
  bool insert_take(const LedgerRequest &request, const std::string &key, gint64 take,
                   const std::string &external_task_id, std::string &error) {
    Stmt s(ledger_->db,
           "INSERT INTO tasks (request_key, take, step, extensions, api_url, model, video_id, "
           "prompt, negative_prompt, cfg_scale, user_external_task_id, external_task_id, "
           "account, status, claimed_at, updated_at, claimer_pid) "
           "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, NULLIF(?13, ''), "
           "'claimed', ?14, ?14, ?15)");
    bind_request_columns(s, key, take, request, external_task_id);
    s.bind(14, now_seconds());
    s.bind(15, (gint64)getpid());
    return s.run(error);
  }
  LockTry lock_take(const std::string &key, gint64 take, std::string &error) {
    lock_path_ = lock_path(*ledger_, key, take);
    return lock_try(lock_path_, lock_fd_, error);
  }
  void unlock_take(bool forget) { lock_drop(lock_path_, lock_fd_, forget); }
  bool take_over(const LedgerRow &row, LedgerRow &out, std::string &error) {
    gint64 now = now_seconds();
    Stmt s(ledger_->db,
           "UPDATE tasks SET claimer_pid = ?2, claimed_at = ?3, updated_at = ?3 WHERE id = ?1");
    s.bind(1, row.id);
    s.bind(2, (gint64)getpid());
    s.bind(3, now);
    if (!s.run(error))
      return false;
    out.claimer_pid = getpid();
    out.claimed_at = out.updated_at = now;
    return true;
  }
  bool commit(std::string &error) { return tx_.commit(error); }
  Claim hold(const LedgerRow &row) {
    auto hold = std::make_unique<FileClaimHold>();
    hold->owner = ledger_.get();
    hold->row_id = row.id;
    hold->db = ledger_;
    hold->lock_fd = lock_fd_;
    hold->lock_path = lock_path_;
    lock_fd_ = -1; // the hold's now
    return Claim(std::move(hold));
  }

private:
  std::shared_ptr<LedgerDb> ledger_;
  Transaction tx_;
  std::string lock_path_;
  int lock_fd_ = -1;
};

} // namespace

bool FileLedger::claim(const LedgerRequest &request, bool fresh,
                       const std::string &generated_external_id, ClaimOutcome &out,
                       std::string &error) {
  FileClaimStore store(db_, nullptr);
  return claim_in(store, request, fresh, generated_external_id, out, error);
}

bool FileLedger::claim_all(const std::vector<ClaimAsk> &asks, std::vector<ClaimOutcome> &out,
                           std::string &error) {
  out.clear();
  Transaction batch(db_->db);
  if (!batch.begin(error))
    return false;
  out.resize(asks.size());
  bool ok = true;
  for (size_t i = 0; ok && i < asks.size(); i++) {
    FileClaimStore store(db_, &batch);
    ok = claim_in(store, *asks[i].request, asks[i].fresh, asks[i].generated_external_id, out[i],
                  error);
  }
  // Each claim took its lock before its savepoint: no one sees a row without its claimer.
  if (ok && batch.commit(error))
    return true;
  // The rows go first, then the claims' locks (their rows are gone already).
  batch.rollback();
  out.clear();
  return false;
}

bool FileLedger::held(const Claim &claim, std::string &error) const {
  if (claim.hold_on(db_.get()))
    return true;
  error = "the claim is not held on this journal";
  return false;
}

namespace {

bool update_sending(sqlite3 *db, gint64 row_id, std::string &error) {
  Stmt s(db, "UPDATE tasks SET status = 'sending', updated_at = ?2 WHERE id = ?1 AND status = "
             "'claimed'");
  s.bind(1, row_id);
  s.bind(2, now_seconds());
  if (!s.run(error))
    return false;
  if (sqlite3_changes(db) != 1) {
    error = "the claimed row " + std::to_string(row_id) + " is gone";
    return false;
  }
  return true;
}

bool update_created(sqlite3 *db, gint64 row_id, const std::string &task_id, std::string &error) {
  gint64 now = now_seconds();
  Stmt s(db, "UPDATE tasks SET status = 'created', task_id = ?2, created_at = ?3, "
             "updated_at = ?3 WHERE id = ?1");
  s.bind(1, row_id);
  s.bind(2, task_id);
  s.bind(3, now);
  return s.run(error);
}

bool update_step(sqlite3 *db, const ClaimStep &step, std::string &error) {
  return step.kind == ClaimStep::Kind::Sending
             ? update_sending(db, step.claim->row_id(), error)
             : update_created(db, step.claim->row_id(), step.task_id, error);
}

} // namespace

bool FileLedger::mark_sending(Claim &claim, std::string &error) {
  if (!held(claim, error) || !update_sending(db_->db, claim.row_id(), error))
    return false;
  claim.hold_on(db_.get())->sending = true;
  return true;
}

bool FileLedger::record_task_id(Claim &claim, const std::string &task_id, std::string &error) {
  if (!held(claim, error) || !update_created(db_->db, claim.row_id(), task_id, error))
    return false;
  claim.settle();
  return true;
}

bool FileLedger::write_claim_steps(const std::vector<ClaimStep> &steps, std::string &error) {
  for (const ClaimStep &step : steps)
    if (!held(*step.claim, error))
      return false;
  Transaction tx(db_->db);
  if (!tx.begin(error))
    return false;
  for (const ClaimStep &step : steps)
    if (!update_step(db_->db, step, error))
      return false; // rolled back
  if (!tx.commit(error))
    return false;
  // Only now are the steps on disk: a create may leave, a recorded claim may go.
  for (const ClaimStep &step : steps) {
    if (step.kind == ClaimStep::Kind::Sending)
      step.claim->hold_on(db_.get())->sending = true;
    else
      step.claim->settle();
  }
  return true;
}

bool FileLedger::record_create_refused(Claim &claim, std::string &error) {
  if (!held(claim, error))
    return false;
  Stmt s(db_->db, "UPDATE tasks SET status = 'failed', updated_at = ?2 WHERE id = ?1");
  s.bind(1, claim.row_id());
  s.bind(2, now_seconds());
  if (!s.run(error))
    return false;
  claim.settle();
  return true;
}

} // namespace kirin
