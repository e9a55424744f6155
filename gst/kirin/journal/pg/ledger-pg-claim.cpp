// Claims on a server's ledger: who creates a request's task, decided in one transaction per
// claim while holding the request's transaction-level advisory lock (so claimers of one
// request take turns, on every machine), with a session-level advisory lock per claimed
// take that says whether its claimer still lives: the server drops it when the claimer's
// connection ends, whether its process exited, was killed, or its machine went away.
//
// A claimer settles its row (created or failed) and lets its take's lock go inside the
// request's turn, so a claimer that read the row in its turn never sees the lock gone with
// the row unsettled: it would take a settled take for an abandoned one. No deadlock: the
// settler holds the take's lock and waits for the turn, but a claimer holding the turn
// only tries take locks, without waiting.
#include "ledger-pg.h"

#include "ledger-claiming.h"
#include "ledger-db.h"

#include <unistd.h>

namespace kirin {

namespace {

std::string lock_text(gint64 lock_id) {
  return std::to_string(lock_id);
}

// Takes the take's session lock without waiting; false when someone holds it (this process
// too), or on error (then `error` is set).
bool try_take_lock(PgConn &conn, gint64 lock_id, std::string &error) {
  if (conn.held_locks.count(lock_id))
    return false;
  PgResult result;
  if (!pg_exec(conn, "SELECT pg_try_advisory_lock($1::bigint)", {lock_text(lock_id)}, result,
               error))
    return false;
  if (result.text(0, 0) != "t")
    return false;
  conn.held_locks.insert(lock_id);
  return true;
}

void drop_take_lock(PgConn &conn, gint64 lock_id) {
  if (!conn.held_locks.erase(lock_id))
    return;
  std::string ignored;
  pg_exec(conn, "SELECT pg_advisory_unlock($1::bigint)", {lock_text(lock_id)}, ignored);
}

// No row under the request's key: its rows from before accounts (ledger.h,
// legacy_adoptable), in their own request's turn too (`adopted`: re-keyed, to commit), so that
// neither a process of an older version nor another account's claimer looks between the read and
// the re-key. Claimers of new keys take the turns in that order, older versions take the old key's
// only: no cycle.
bool select_legacy(PgConn &conn, const LedgerRequest &request, const std::string &key,
                   std::optional<LedgerRow> &newest, bool &adopted, std::string &error) {
  newest.reset();
  adopted = false;
  if (request.account.empty())
    return true;
  // Most requests have none: their turn is taken only when there are, and the rows read again.
  const std::string legacy = ledger_key_without_account(request);
  if (!pg_select_newest(conn, legacy, newest, error))
    return false;
  if (!newest)
    return true;
  if (!pg_exec(conn, "SELECT pg_advisory_xact_lock($1::bigint)", {request_lock_id(legacy)},
               error) ||
      !pg_select_newest(conn, legacy, newest, error))
    return false;
  if (!newest || !legacy_adoptable(*newest))
    return true;
  adopted = true;
  return pg_exec(conn,
                 "UPDATE gst_kirin.tasks SET request_key = $1, account = $2 WHERE request_key = $3",
                 {key, request.account, legacy}, error) &&
         pg_select_newest(conn, key, newest, error);
}

// The server's side of a claim (ledger-claiming.h): a transaction in the request's turn (its
// transaction-level advisory lock), and a session-level advisory lock per take.
class PgClaimStore {
public:
  explicit PgClaimStore(std::shared_ptr<PgConn> conn) : conn_(std::move(conn)), tx_(*conn_) {}

  bool begin(const std::string &key, std::string &error) {
    // The request's turn: other claimers of it, anywhere, wait for this transaction's end.
    return tx_.begin(error) && pg_exec(*conn_, "SELECT pg_advisory_xact_lock($1::bigint)",
                                       {request_lock_id(key)}, error);
  }
  bool newest(const std::string &key, std::optional<LedgerRow> &row, std::string &error) {
    return pg_select_newest(*conn_, key, row, error);
  }
  bool legacy(const LedgerRequest &request, const std::string &key,
              std::optional<LedgerRow> &newest, bool &adopted, std::string &error) {
    return select_legacy(*conn_, request, key, newest, adopted, error);
  }
  bool insert_take(const LedgerRequest &request, const std::string &key, gint64 take,
                   const std::string &external_task_id, std::string &error) {
    const CreateRequest &r = request.request;
    std::optional<std::string> cfg_scale;
    char number[G_ASCII_DTOSTR_BUF_SIZE];
    if (r.cfg_scale)
      cfg_scale = g_ascii_dtostr(number, sizeof number, *r.cfg_scale);
    return pg_exec(
        *conn_,
        "INSERT INTO gst_kirin.tasks (request_key, take, step, extensions, api_url, model, "
        "video_id, prompt, negative_prompt, cfg_scale, user_external_task_id, "
        "external_task_id, status, claimed_at, updated_at, claimer_host, claimer_pid, "
        "account) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'claimed', "
        "now(), now(), $13, $14, NULLIF($15, ''))",
        {key, std::to_string(take), std::to_string(request.step),
         std::to_string(request.extensions), request.api_url, r.model, r.video_id, r.prompt,
         r.negative_prompt, cfg_scale, r.external_task_id, external_task_id, conn_->host,
         std::to_string(getpid()), request.account},
        error);
  }
  LockTry lock_take(const std::string &key, gint64 take, std::string &error) {
    lock_id_ = take_lock_id(key, take);
    std::string failure;
    if (try_take_lock(*conn_, lock_id_, failure))
      return LockTry::Taken;
    if (failure.empty())
      return LockTry::Held;
    error = failure;
    return LockTry::Error;
  }
  void unlock_take(bool) { drop_take_lock(*conn_, lock_id_); }
  bool take_over(const LedgerRow &row, LedgerRow &out, std::string &error) {
    if (!pg_exec(*conn_,
                 "UPDATE gst_kirin.tasks SET claimer_host = $2, claimer_pid = $3, "
                 "claimed_at = now(), updated_at = now() WHERE id = $1",
                 {std::to_string(row.id), conn_->host, std::to_string(getpid())}, error))
      return false;
    out.claimer_host = conn_->host;
    out.claimer_pid = getpid();
    return true;
  }
  bool commit(std::string &error) { return tx_.commit(error); }
  Claim hold(const LedgerRow &row) {
    auto hold = std::make_unique<PgClaimHold>();
    hold->owner = conn_.get();
    hold->row_id = row.id;
    hold->conn = conn_;
    hold->request_key = row.request_key;
    hold->take = row.take;
    return Claim(std::move(hold));
  }

private:
  std::shared_ptr<PgConn> conn_;
  PgTransaction tx_;
  gint64 lock_id_ = 0;
};

} // namespace

PgClaimHold::~PgClaimHold() {
  gint64 lock_id = take_lock_id(request_key, take);
  if (!sending && conn->held_locks.count(lock_id)) {
    // Nothing was sent: the row goes, so the next claim creates. The lock goes inside the
    // request's turn, as no claimer may look between the two (it would find the take's
    // number free and its lock still held).
    PgTransaction tx(*conn);
    std::string ignored;
    if (tx.begin(ignored) && pg_exec(*conn, "SELECT pg_advisory_xact_lock($1::bigint)",
                                     {request_lock_id(request_key)}, ignored))
      pg_exec(*conn, "DELETE FROM gst_kirin.tasks WHERE id = $1 AND status = 'claimed'",
              {std::to_string(row_id)}, ignored);
    drop_take_lock(*conn, lock_id);
    tx.commit(ignored);
    return;
  }
  // After mark_sending the row stays "sending": with its lock gone, it is abandoned.
  drop_take_lock(*conn, lock_id);
}

bool PgLedger::claim(const LedgerRequest &request, bool fresh,
                     const std::string &generated_external_id, ClaimOutcome &out,
                     std::string &error) {
  PgClaimStore store(conn_);
  return claim_in(store, request, fresh, generated_external_id, out, error);
}

bool PgLedger::held(const Claim &claim, std::string &error) const {
  if (claim.hold_on(conn_.get()))
    return true;
  error = "the claim is not held on this journal";
  return false;
}

bool PgLedger::settle(Claim &claim, const char *sql, PgParams params, std::string &error) {
  // Only this ledger's claims are held on its connection, and they are all PgClaimHolds.
  auto *hold = static_cast<PgClaimHold *>(claim.hold_on(conn_.get()));
  PgTransaction tx(*conn_);
  if (!tx.begin(error) ||
      !pg_exec(*conn_, "SELECT pg_advisory_xact_lock($1::bigint)",
               {request_lock_id(hold->request_key)}, error) ||
      !update_task(claim.row_id(), sql, std::move(params), error))
    return false; // rolled back, the lock still held: the claim stands
  // Before the commit, in the turn: the next claimer reads the settled row, with no lock.
  // (Should the commit fail, the row stays "sending" without its lock: abandoned, as if this
  // process had died.)
  drop_take_lock(*conn_, take_lock_id(hold->request_key, hold->take));
  if (!tx.commit(error))
    return false;
  claim.settle(); // the lock is gone already: dropping it again does nothing
  return true;
}

// mark_sending needs no turn: from "claimed" to "sending" the lock stays held, so a claimer
// that read either finds its claimer alive (Busy) whichever it read.
bool PgLedger::mark_sending(Claim &claim, std::string &error) {
  if (!held(claim, error))
    return false;
  PgResult result;
  if (!pg_exec(*conn_,
               "UPDATE gst_kirin.tasks SET status = 'sending', updated_at = now() WHERE id = $1 "
               "AND status = 'claimed'",
               {std::to_string(claim.row_id())}, result, error))
    return false;
  if (result.changed() != 1) {
    error = "the claimed row " + std::to_string(claim.row_id()) + " is gone";
    return false;
  }
  claim.hold_on(conn_.get())->sending = true;
  return true;
}

bool PgLedger::record_task_id(Claim &claim, const std::string &task_id, std::string &error) {
  if (!held(claim, error))
    return false;
  return settle(claim,
                "UPDATE gst_kirin.tasks SET status = 'created', task_id = $2, created_at = now(), "
                "updated_at = now() WHERE id = $1",
                {task_id}, error);
}

bool PgLedger::record_create_refused(Claim &claim, std::string &error) {
  if (!held(claim, error))
    return false;
  return settle(claim,
                "UPDATE gst_kirin.tasks SET status = 'failed', updated_at = now() WHERE id = $1",
                {}, error);
}

} // namespace kirin
