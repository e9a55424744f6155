#include "journal.h"

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
  std::unique_ptr<Ledger> ledger = Ledger::open(journal, warning);
  const std::string name = journal_display_name(journal);
  // Ledger::open's warnings name the journal already; say it once.
  if (!warning.empty() && warning.find(name) == std::string::npos)
    warning = "Journal " + name + ": " + warning;
  std::shared_ptr<Ledger> shared(std::move(ledger));
  std::lock_guard<std::mutex> guard(ledgers_lock);
  if (shared)
    open_ledgers()[journal] = shared;
  return shared;
}

// `ledger` refused a write: later runs of this process use the in-memory ledger instead,
// which learns what `ledger` knew of this process's tasks (a server's: the rows its runs
// claimed or read, as they last changed them), so that the process pays once for each.
// Returns the warning for the bus.
std::string fall_back(const Ledger &ledger, const std::string &error) {
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
  return ok ? std::string() : fall_back(ledger, error);
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

// A kept copy answers for a row only when it is the row's own file, whole.
std::string kept_copy(const LedgerRow &row) {
  if (row.media_file.empty() || !g_path_is_absolute(row.media_file.c_str()))
    return {};
  g_autofree char *base = g_path_get_basename(row.media_file.c_str());
  if (media_file_name(row) != base)
    return {};
  GStatBuf st;
  if (g_stat(row.media_file.c_str(), &st) != 0 || !S_ISREG(st.st_mode) ||
      (guint64)st.st_size != row.media_size)
    return {};
  return row.media_file;
}

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

std::string media_file_name(const LedgerRow &row) {
  return row.request_key.substr(0, 32) + "-" + std::to_string(row.take) + ".media";
}

JournalAnswer journal_claim(const JournalQuestion &question) {
  JournalAnswer answer;
  std::shared_ptr<Ledger> ledger = ledger_for(question.journal, answer.warning);
  if (!ledger)
    return answer;
  ClaimOutcome outcome;
  std::string error;
  if (!ledger->claim(question.request, question.fresh, question.external_task_id, outcome, error)) {
    // Once more on the in-memory ledger, so that this process still pays once.
    answer.warning = fall_back(*ledger, error);
    std::string ignored;
    ledger = ledger_for(question.journal, ignored);
    if (!ledger ||
        !ledger->claim(question.request, question.fresh, question.external_task_id, outcome, error))
      return JournalAnswer{nullptr, ClaimResult::Busy, {}, nullptr, {}, answer.warning};
  }
  answer.ledger = ledger;
  answer.result = outcome.result;
  answer.row = outcome.row;
  if (outcome.result == ClaimResult::Claimed)
    // Whichever thread lets go of it last, its end (which may write) runs on the journal's
    // worker.
    answer.claim = std::shared_ptr<Claim>(new Claim(std::move(outcome.claim)),
                                          [journal = question.journal](Claim *claim) {
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

std::string journal_sending(Ledger &ledger, Claim &claim) {
  std::string error;
  return checked(ledger, ledger.mark_sending(claim, error), error);
}

std::string journal_created(Ledger &ledger, Claim &claim, const std::string &task_id) {
  std::string error;
  return checked(ledger, ledger.record_task_id(claim, task_id, error), error);
}

namespace {

struct CreatedRecord {
  std::shared_ptr<Claim> claim;
  std::string task_id;
  std::function<void(const std::string &)> warn;
};

// The task IDs handed over and not yet taken by their ledger's worker. An entry exists only
// while the work that takes it is queued, and that work holds the ledger.
std::mutex created_lock;
std::map<Ledger *, std::vector<CreatedRecord>> &created_waiting() {
  static auto *waiting = new std::map<Ledger *, std::vector<CreatedRecord>>();
  return *waiting;
}

void record_created_waiting(Ledger &ledger) {
  std::vector<CreatedRecord> records;
  {
    std::lock_guard<std::mutex> guard(created_lock);
    auto found = created_waiting().find(&ledger);
    records.swap(found->second);
    created_waiting().erase(found);
  }
  std::vector<std::pair<Claim *, std::string>> batch;
  for (const CreatedRecord &record : records)
    batch.emplace_back(record.claim.get(), record.task_id);
  std::string error;
  if (records.size() > 1 && ledger.record_task_ids(batch, error))
    return;
  // One at a time: this ledger records no batch, or the batch failed and changed nothing.
  for (const CreatedRecord &record : records)
    record.warn(journal_created(ledger, *record.claim, record.task_id));
}

} // namespace

void journal_record_created(const std::string &journal, std::shared_ptr<Ledger> ledger,
                            std::shared_ptr<Claim> claim, const std::string &task_id,
                            std::function<void(const std::string &warning)> warn) {
  std::lock_guard<std::mutex> guard(created_lock);
  std::vector<CreatedRecord> &waiting = created_waiting()[ledger.get()];
  waiting.push_back({std::move(claim), task_id, std::move(warn)});
  if (waiting.size() == 1)
    // Queued under the lock, so that the records reach the worker in the order they came.
    journal_work(journal, [ledger] { record_created_waiting(*ledger); });
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

std::string journal_kept(Ledger &ledger, gint64 row_id, const std::string &media_path, guint64 size,
                         guint64 max_bytes) {
  std::string error;
  if (!ledger.record_media(row_id, media_path, size, error))
    return fall_back(ledger, error);
  if (max_bytes == 0)
    return {};
  g_autofree char *dir = g_path_get_dirname(media_path.c_str());
  std::vector<std::string> evicted;
  if (!ledger.evict_media(dir, max_bytes, evicted, error))
    return fall_back(ledger, error);
  for (const std::string &file : evicted)
    g_unlink(file.c_str());
  return {};
}

} // namespace kirin
