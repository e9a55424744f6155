#include "journal.h"

#include "journal-server.h"
#include "serial-worker.h"

#include <glib/gstdio.h>

#include <map>
#include <mutex>

namespace kirin {
namespace {

// How long a stopping element waits for its server journal's last writes.
constexpr gint64 kServerFlushUs = 2 * G_USEC_PER_SEC;

// The process's ledgers, by journal. Each is used on its journal's worker only; the map is
// shared by the workers.
std::mutex ledgers_lock;
std::map<std::string, std::shared_ptr<Ledger>> &open_ledgers() {
  static auto *ledgers = new std::map<std::string, std::shared_ptr<Ledger>>();
  return *ledgers;
}

std::shared_ptr<Ledger> ledger_for(const std::string &journal, std::string &warning) {
  {
    std::lock_guard<std::mutex> guard(ledgers_lock);
    auto found = open_ledgers().find(journal);
    if (found != open_ledgers().end())
      return found->second;
  }
  // A server's journal is the same object for the whole process, through its outages.
  std::shared_ptr<Ledger> shared;
  if (journal_on_server(journal))
    shared = ServerJournal::open(journal, warning);
  else
    shared = Ledger::open(journal, warning);
  const std::string name = journal_display_name(journal);
  // The warnings of opening name the journal already; say it once.
  if (!warning.empty() && warning.find(name) == std::string::npos)
    warning = "Journal " + name + ": " + warning;
  std::lock_guard<std::mutex> guard(ledgers_lock);
  if (shared)
    open_ledgers()[journal] = shared;
  return shared;
}

// What a server's journal has to tell since it was last asked ("" for any other).
std::string notices_of(Ledger &ledger) {
  auto *server = dynamic_cast<ServerJournal *>(&ledger);
  return server ? server->take_notices() : std::string();
}

std::string and_then(const std::string &first, const std::string &second) {
  return first.empty() ? second : second.empty() ? first : first + "; " + second;
}

// journal_tell_next_run's warnings, by journal, until a claim takes them.
std::mutex told_later_lock;
std::map<std::string, std::string> &told_later() {
  static auto *later = new std::map<std::string, std::string>();
  return *later;
}

std::string take_told_later(const std::string &journal) {
  std::lock_guard<std::mutex> guard(told_later_lock);
  auto found = told_later().find(journal);
  if (found == told_later().end())
    return {};
  std::string text = std::move(found->second);
  told_later().erase(found);
  return text;
}

// `ledger` refused a write: later runs of this process use the in-memory ledger instead,
// which learns what `ledger` knew of this process's tasks, so that the process pays once for
// each. A server's journal stays: it goes over to memory by itself during an outage, and
// back (journal-server.h); what failed is only this step. Returns the warning for the bus.
std::string fall_back(Ledger &ledger, const std::string &error) {
  if (dynamic_cast<ServerJournal *>(&ledger))
    return and_then(notices_of(ledger), "Journal " + ledger.path() + ": " + error);
  std::string text = "Journal " +
                     (ledger.path().empty() ? std::string("(in memory)") : ledger.path()) + ": " +
                     error + "; this process goes on with a journal in memory";
  if (ledger.path().empty())
    return text;
  std::string memory_error;
  std::unique_ptr<Ledger> memory = Ledger::open_memory(memory_error);
  if (memory && !memory->adopt(ledger.rows_known(), memory_error))
    text += " (which does not know this process's earlier tasks: " + memory_error + ")";
  std::lock_guard<std::mutex> guard(ledgers_lock);
  for (auto &[journal, open] : open_ledgers()) {
    if (open.get() != &ledger)
      continue;
    if (memory)
      open = std::shared_ptr<Ledger>(std::move(memory));
    else
      open_ledgers().erase(journal);
    break;
  }
  return text;
}

std::string checked(Ledger &ledger, bool ok, const std::string &error) {
  return ok ? notices_of(ledger) : fall_back(ledger, error);
}

// A server's own worker, made on first use and kept: serial like the file worker.
SerialWorker *server_worker(const std::string &journal) {
  static std::mutex lock;
  static auto *workers = new std::map<std::string, SerialWorker *>();
  std::lock_guard<std::mutex> guard(lock);
  SerialWorker *&worker = (*workers)[journal];
  if (!worker)
    worker = serial_worker("kirin-journal");
  return worker;
}

// The file name of a kept copy made before the journal knew accounts: named after the key
// its row had then, which a claim of its account adopted since (ledger.h).
std::string name_before_accounts(const LedgerRow &row) {
  if (row.request.account.empty())
    return {};
  return ledger_key_without_account(row.request).substr(0, 32) + "-" + std::to_string(row.take) +
         ".media";
}

// A kept copy answers for a row only when it is the row's own file, whole.
std::string kept_copy(const LedgerRow &row) {
  if (row.media_file.empty() || !g_path_is_absolute(row.media_file.c_str()))
    return {};
  g_autofree char *base = g_path_get_basename(row.media_file.c_str());
  if (media_file_name(row) != base && name_before_accounts(row) != base)
    return {};
  GStatBuf st;
  if (g_stat(row.media_file.c_str(), &st) != 0 || !S_ISREG(st.st_mode) ||
      (guint64)st.st_size != row.media_size)
    return {};
  return row.media_file;
}

// What was handed over for one journal (or ledger) and not yet taken by its worker: the
// work that takes it all is queued once, by the first handed over since the last take.
// Queued under the lock, so that what is handed over reaches the worker in the order it
// came.
template <typename Key, typename Item> class Gathering {
public:
  void add(const Key &key, Item item, const std::function<void()> &queue_take) {
    std::lock_guard<std::mutex> guard(lock_);
    std::vector<Item> &items = waiting_[key];
    items.push_back(std::move(item));
    if (items.size() == 1)
      queue_take();
  }
  std::vector<Item> take(const Key &key) {
    std::lock_guard<std::mutex> guard(lock_);
    auto found = waiting_.find(key);
    std::vector<Item> items = std::move(found->second);
    waiting_.erase(found);
    return items;
  }

private:
  std::mutex lock_;
  std::map<Key, std::vector<Item>> waiting_;
};

} // namespace

void journal_work(const std::string &journal, std::function<void()> work) {
  if (journal_on_server(journal))
    serial_push(server_worker(journal), std::move(work));
  else
    file_work(std::move(work));
}

void journal_flush(const std::string &journal) {
  if (journal_on_server(journal))
    serial_flush(server_worker(journal), kServerFlushUs);
}

void journal_tell_next_run(const std::string &journal, const std::string &warning) {
  std::lock_guard<std::mutex> guard(told_later_lock);
  std::string &later = told_later()[journal];
  later = and_then(later, warning);
}

std::string media_file_name(const LedgerRow &row) {
  return row.request_key.substr(0, 32) + "-" + std::to_string(row.take) + ".media";
}

namespace {

// What a claim on `ledger` answers the run.
JournalAnswer answer_of(const std::string &journal, const std::shared_ptr<Ledger> &ledger,
                        ClaimOutcome &outcome, std::string warning) {
  JournalAnswer answer;
  answer.warning = and_then(take_told_later(journal), and_then(warning, notices_of(*ledger)));
  answer.ledger = ledger;
  answer.result = outcome.result;
  answer.row = outcome.row;
  if (outcome.result == ClaimResult::Claimed)
    // Whichever thread lets go of it last, its end (which may write) runs on the journal's
    // worker.
    answer.claim =
        std::shared_ptr<Claim>(new Claim(std::move(outcome.claim)), [journal](Claim *claim) {
          journal_work(journal, [claim] { delete claim; });
        });
  if (outcome.result == ClaimResult::Recorded && outcome.row.status == "completed") {
    answer.media = kept_copy(outcome.row);
    std::string touch_error;
    if (!answer.media.empty() && !ledger->touch_media(outcome.row.id, touch_error))
      answer.warning = fall_back(*ledger, touch_error);
  }
  return answer;
}

struct PendingClaim {
  JournalQuestion question;
  std::function<void(const JournalAnswer &)> done;
};

// By journal: the ledger may not be open yet.
Gathering<std::string, PendingClaim> &gathered_claims() {
  static auto *gathered = new Gathering<std::string, PendingClaim>();
  return *gathered;
}

// Several claims in one transaction, where the journal's ledger can; empty otherwise, with
// in `warning` what opening the ledger said (for the first of the claims made one by one).
std::vector<JournalAnswer> claim_together(const std::string &journal,
                                          const std::vector<PendingClaim> &pending,
                                          std::string &warning) {
  std::string error;
  std::shared_ptr<Ledger> ledger = ledger_for(journal, warning);
  if (!ledger)
    return {};
  std::vector<ClaimAsk> asks;
  for (const PendingClaim &claim : pending)
    asks.push_back(
        {&claim.question.request, claim.question.fresh, claim.question.external_task_id});
  std::vector<ClaimOutcome> outcomes;
  if (!ledger->claim_all(asks, outcomes, error))
    return {}; // changed nothing; asked one by one, they meet the same error
  std::vector<JournalAnswer> answers;
  for (ClaimOutcome &outcome : outcomes) {
    // The ledger's opening warning, once, as the first of one-by-one claims would say it.
    answers.push_back(answer_of(journal, ledger, outcome, warning));
    warning.clear();
  }
  return answers;
}

void claim_pending(const std::string &journal) {
  std::vector<PendingClaim> pending = gathered_claims().take(journal);
  std::vector<JournalAnswer> answers;
  std::string warning;
  if (pending.size() > 1)
    answers = claim_together(journal, pending, warning);
  if (answers.empty()) {
    for (const PendingClaim &claim : pending)
      answers.push_back(journal_claim(claim.question));
    JournalAnswer &first = answers.front();
    if (!warning.empty())
      first.warning = first.warning.empty() ? warning : warning + "; " + first.warning;
  }
  for (size_t i = 0; i < pending.size(); i++)
    pending[i].done(answers[i]);
}

} // namespace

JournalAnswer journal_claim(const JournalQuestion &question) {
  std::string warning;
  std::shared_ptr<Ledger> ledger = ledger_for(question.journal, warning);
  if (!ledger)
    return JournalAnswer{nullptr, ClaimResult::Busy, {}, nullptr, {}, warning};
  ClaimOutcome outcome;
  std::string error;
  if (auto *server = dynamic_cast<ServerJournal *>(ledger.get())) {
    bool away = false;
    if (!server->claim_or_wait(question.request, question.fresh, question.external_task_id,
                               question.create_alone, outcome, away, error))
      return JournalAnswer{nullptr, ClaimResult::Busy, {}, nullptr, {}, fall_back(*ledger, error)};
    JournalAnswer answer = answer_of(question.journal, ledger, outcome, warning);
    answer.server_away = away;
    return answer;
  }
  if (!ledger->claim(question.request, question.fresh, question.external_task_id, outcome, error)) {
    // Once more on the in-memory ledger, so that this process still pays once.
    warning = fall_back(*ledger, error);
    std::string ignored;
    ledger = ledger_for(question.journal, ignored);
    if (!ledger ||
        !ledger->claim(question.request, question.fresh, question.external_task_id, outcome, error))
      return JournalAnswer{nullptr, ClaimResult::Busy, {}, nullptr, {}, warning};
  }
  return answer_of(question.journal, ledger, outcome, warning);
}

void journal_claim_soon(const JournalQuestion &question,
                        std::function<void(const JournalAnswer &)> done) {
  const std::string &journal = question.journal;
  gathered_claims().add(journal, {question, std::move(done)}, [&journal] {
    journal_work(journal, [journal] { claim_pending(journal); });
  });
}

std::string journal_sending(Ledger &ledger, Claim &claim) {
  std::string error;
  return checked(ledger, ledger.mark_sending(claim, error), error);
}

std::string journal_created(Ledger &ledger, Claim &claim, const std::string &task_id) {
  std::string error;
  return checked(ledger, ledger.record_task_id(claim, task_id, error), error);
}

namespace {

struct PendingStep {
  std::shared_ptr<Claim> claim;
  ClaimStep::Kind kind;
  std::string task_id; // Created only
  std::function<void(const std::string &)> done;
};

// By ledger: the work that takes them holds it, so no other can have its address meanwhile.
Gathering<Ledger *, PendingStep> &gathered_steps() {
  static auto *gathered = new Gathering<Ledger *, PendingStep>();
  return *gathered;
}

void write_pending_steps(Ledger &ledger) {
  std::vector<PendingStep> pending = gathered_steps().take(&ledger);
  std::vector<ClaimStep> steps;
  for (const PendingStep &step : pending)
    steps.push_back({step.claim.get(), step.kind, step.task_id});
  std::string error;
  if (pending.size() > 1 && ledger.write_claim_steps(steps, error)) {
    for (const PendingStep &step : pending)
      step.done("");
    return;
  }
  // One at a time: this ledger takes no batch, or the batch failed and changed nothing.
  for (const PendingStep &step : pending)
    step.done(step.kind == ClaimStep::Kind::Sending
                  ? journal_sending(ledger, *step.claim)
                  : journal_created(ledger, *step.claim, step.task_id));
}

void add_pending_step(const std::string &journal, std::shared_ptr<Ledger> ledger,
                      PendingStep step) {
  Ledger *key = ledger.get();
  gathered_steps().add(key, std::move(step), [&journal, &ledger] {
    journal_work(journal, [ledger] { write_pending_steps(*ledger); });
  });
}

} // namespace

void journal_mark_sending(const std::string &journal, std::shared_ptr<Ledger> ledger,
                          std::shared_ptr<Claim> claim,
                          std::function<void(const std::string &failure)> done) {
  add_pending_step(journal, std::move(ledger),
                   {std::move(claim), ClaimStep::Kind::Sending, "", std::move(done)});
}

void journal_record_created(const std::string &journal, std::shared_ptr<Ledger> ledger,
                            std::shared_ptr<Claim> claim, const std::string &task_id,
                            std::function<void(const std::string &warning)> done) {
  add_pending_step(journal, std::move(ledger),
                   {std::move(claim), ClaimStep::Kind::Created, task_id, std::move(done)});
}

std::string journal_create_refused(Ledger &ledger, Claim &claim) {
  std::string error;
  return checked(ledger, ledger.record_create_refused(claim, error), error);
}

std::string journal_completed(Ledger &ledger, gint64 row_id, const Task &task) {
  std::string error;
  bool ok = ledger.record_completed(row_id, task.video_url, task.video_id, task.duration, task.cost,
                                    error);
  return checked(ledger, ok, error);
}

std::string journal_failed(Ledger &ledger, gint64 row_id) {
  std::string error;
  return checked(ledger, ledger.record_failed(row_id, error), error);
}

std::string journal_create_answer(Ledger &ledger, gint64 row_id, const std::string &answer) {
  std::string error;
  return checked(ledger, ledger.record_create_answer(row_id, answer, error), error);
}

std::string journal_kept(Ledger &ledger, gint64 row_id, const std::string &media_path, guint64 size,
                         guint64 max_bytes) {
  std::string error;
  if (!ledger.record_media(row_id, media_path, size, error))
    return fall_back(ledger, error);
  if (max_bytes == 0)
    return notices_of(ledger);
  g_autofree char *dir = g_path_get_dirname(media_path.c_str());
  std::vector<std::string> evicted;
  if (!ledger.evict_media(dir, max_bytes, evicted, error))
    return fall_back(ledger, error);
  for (const std::string &file : evicted)
    g_unlink(file.c_str());
  return notices_of(ledger);
}

} // namespace kirin
