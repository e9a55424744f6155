// The element's side of the ledger (ledger.h): the process's open ledgers by journal (a path
// or a server's URI), and the steps a run records in them. Every function here but
// journal_work and journal_flush runs on the journal's worker (journal_work): they block on
// the disk, the network and other processes' transactions. A file's ledger that cannot be
// opened, or stops taking writes, is replaced for the rest of the process by the process's
// in-memory one; a server's journal uses memory during an outage only, and writes what it
// recorded meanwhile to the server once it answers again (journal-server.h). The caller gets
// a warning naming the journal (never a password) for the bus.
#pragma once

#include "ledger.h"

#include <functional>
#include <memory>
#include <string>

namespace kirin {

// What a run asks before a step: may it create, or does a task exist already?
struct JournalQuestion {
  std::string journal; // journal_path(): a file, or a server's URI
  LedgerRequest request;
  bool fresh = false;
  std::string external_task_id; // sent with a create when the user set none
  // A server's journal that does not answer: may this run create on the process's journal
  // alone? If not, nothing is claimed and the answer says `server_away`.
  bool create_alone = true;
};

struct JournalAnswer {
  std::shared_ptr<Ledger> ledger; // null: no journal at all for this step (see warning)
  ClaimResult result = ClaimResult::Busy;
  LedgerRow row;
  std::shared_ptr<Claim> claim; // Claimed; its end runs on the journal's worker, whoever drops it
  std::string media;            // Recorded and completed: its kept copy, present and whole
  std::string warning;          // for the bus: the path and what went wrong
  bool server_away = false;     // Busy: the server does not answer, and !create_alone
};

// Runs `work` on the journal's worker: the file worker (workers.h) for a file, a worker of
// the server's own for a server, so that a slow or unreachable server delays only the runs
// that use it. A journal's work runs in order, one piece at a time.
void journal_work(const std::string &journal, std::function<void()> work);
// For a server's journal: waits until what was handed to its worker before is done, 2 s at
// most (its writes go on after, unless the process ends). A file's journal is the file
// worker's (file_work_flush).
void journal_flush(const std::string &journal);

JournalAnswer journal_claim(const JournalQuestion &question);
// From the calling thread: the journal's worker claims (as journal_claim) together with the
// other claims for the same journal that reach it before it gets to this one, in one
// transaction where the ledger can, and hands `done` the answer, on the worker.
void journal_claim_soon(const JournalQuestion &question,
                        std::function<void(const JournalAnswer &)> done);

// The steps of a claimed or recorded task. Each returns "" or a warning for the bus.
std::string journal_sending(Ledger &ledger, Claim &claim);
std::string journal_created(Ledger &ledger, Claim &claim, const std::string &task_id);
std::string journal_create_refused(Ledger &ledger, Claim &claim);
// The two steps of a claimed create, from the calling thread: the journal's worker takes
// each together with the other claims' steps that reach `ledger` before it gets to them, in
// one transaction where the ledger can (one fsync on a file), so that a thousand elements
// starting together wait on the disk once rather than a thousand times each. `done` gets
// the step's answer, as journal_sending or journal_created return it, on the worker, once the
// step is on disk.
// - the create is about to leave (journal_sending): send it only on "";
void journal_mark_sending(const std::string &journal, std::shared_ptr<Ledger> ledger,
                          std::shared_ptr<Claim> claim,
                          std::function<void(const std::string &failure)> done);
// - the provider answered with the paid task's ID (journal_created).
void journal_record_created(const std::string &journal, std::shared_ptr<Ledger> ledger,
                            std::shared_ptr<Claim> claim, const std::string &task_id,
                            std::function<void(const std::string &warning)> done);
std::string journal_completed(Ledger &ledger, gint64 row_id, const Task &task);
std::string journal_failed(Ledger &ledger, gint64 row_id);
// The create of `row_id` left and got `answer` instead of a task ID.
std::string journal_create_answer(Ledger &ledger, gint64 row_id, const std::string &answer);
// A kept copy is complete at `media_path`: recorded, then the copies in its directory are
// trimmed to `max_bytes` (0: no bound), the least recently used deleted first.
std::string journal_kept(Ledger &ledger, gint64 row_id, const std::string &media_path, guint64 size,
                         guint64 max_bytes);

// A warning for a run that was over when it came: the next claim on `journal` in this
// process (journal_claim, journal_claim_soon) carries it in its answer's warning.
void journal_tell_next_run(const std::string &journal, const std::string &warning);

// The file name (in cache-dir) of a row's kept copy: one per take of a request's step.
std::string media_file_name(const LedgerRow &row);

} // namespace kirin
