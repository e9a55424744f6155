// How a claim is decided, written once for every ledger: a file's (ledger-claim.cpp) and a
// server's (ledger-pg-claim.cpp) differ only in their Store, the database's side of it:
//
//   bool begin(key, error)      opens the claim's transaction (on a server, in the request's
//                               turn: other claimers of the request wait for its end)
//   bool newest(key, row, error)            the newest take's row of the request, or nullopt
//   bool legacy(request, key, row, adopted, error)   ledger.h, legacy_adoptable
//   bool insert_take(request, key, take, external_task_id, error)   the new take's row
//   LockTry lock_take(key, take, error)     a take's lock, which says its claimer lives,
//                                           tried without waiting
//   void unlock_take(bool forget)           lets that lock go (`forget`: and its trace)
//   bool take_over(row, out, error)         a dead claimer's row becomes this process's
//   bool commit(error)
//   Claim hold(row)                          the claim on `row`, with the lock taken
#pragma once

#include "ledger.h"

namespace kirin {

// Outcome of trying a take's lock.
enum class LockTry { Taken, Held, Error };

// The rules of a claim, the same for every journal: what the newest take of a request
// (nullopt: none) means for a claim.
enum class ClaimRule {
  NewTake,  // none yet, `fresh`, or the newest failed (it costs nothing more): a new take
  Recorded, // created or completed
  Contest,  // claimed or sending: alive, its claimer is Busy; dead, see ClaimResult
};

inline ClaimRule claim_rule(const std::optional<LedgerRow> &newest, bool fresh) {
  if (!newest || fresh || newest->status == "failed")
    return ClaimRule::NewTake;
  if (newest->status == "claimed" || newest->status == "sending")
    return ClaimRule::Contest;
  return ClaimRule::Recorded;
}

namespace claiming {

// A new take of the request, claimed by this process: the row and its lock, both or none.
template <class Store>
bool new_take(Store &store, const LedgerRequest &request, const std::string &key, gint64 take,
              const std::string &external_task_id, ClaimOutcome &out, std::string &error) {
  std::optional<LedgerRow> row;
  if (!store.insert_take(request, key, take, external_task_id, error) ||
      !store.newest(key, row, error))
    return false;
  // The lock before the commit: no one ever sees the row claimed without a live claimer.
  LockTry locked = store.lock_take(key, take, error);
  if (locked == LockTry::Held)
    error = "the lock of take " + std::to_string(take) + " is held, but the take is new";
  if (locked != LockTry::Taken)
    return false;
  if (!store.commit(error)) {
    store.unlock_take(true);
    return false;
  }
  out.claim = store.hold(*row);
  out.result = ClaimResult::Claimed;
  out.row = *row;
  return true;
}

// A claimed or sending row: is its claimer alive? Its lock says so.
template <class Store>
bool contest(Store &store, const LedgerRow &row, ClaimOutcome &out, std::string &error) {
  out.row = row;
  LockTry locked = store.lock_take(row.request_key, row.take, error);
  if (locked != LockTry::Taken) {
    out.result = ClaimResult::Busy;
    return locked == LockTry::Held;
  }
  if (row.status == "sending") {
    // The claimer died after sending: the provider may have the task. The lock taken to
    // find out goes again.
    store.unlock_take(true);
    out.result = ClaimResult::Abandoned;
    return true;
  }
  // Claimed by a process that died before sending: ours now, with the lock we hold.
  if (!store.take_over(row, out.row, error) || !store.commit(error)) {
    store.unlock_take(false);
    return false;
  }
  out.claim = store.hold(row);
  out.result = ClaimResult::Claimed;
  return true;
}

} // namespace claiming

// Ledger::claim on `store`, which is fresh for this claim.
template <class Store>
bool claim_in(Store &store, const LedgerRequest &request, bool fresh,
              const std::string &generated_external_id, ClaimOutcome &out, std::string &error) {
  out = ClaimOutcome();
  const std::string key = ledger_key(request);
  std::optional<LedgerRow> newest;
  bool adopted = false;
  if (!store.begin(key, error) || !store.newest(key, newest, error) ||
      (!newest && !store.legacy(request, key, newest, adopted, error)))
    return false;
  switch (claim_rule(newest, fresh)) {
  case ClaimRule::Contest:
    return claiming::contest(store, *newest, out, error);
  case ClaimRule::Recorded:
    // Read only, rolled back; but rows adopted from before accounts stay this account's.
    out.result = ClaimResult::Recorded;
    out.row = *newest;
    return !adopted || store.commit(error);
  case ClaimRule::NewTake:
    break;
  }
  const std::string &external_task_id = request.request.external_task_id.empty()
                                            ? generated_external_id
                                            : request.request.external_task_id;
  return claiming::new_take(store, request, key, newest ? newest->take + 1 : 1, external_task_id,
                            out, error);
}

} // namespace kirin
