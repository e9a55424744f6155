#include "journal.h"

#include "workers.h"

#include <glib/gstdio.h>

#include <map>

namespace kirin {
namespace {

// The file worker's ledgers, by path. Only the file worker touches this map.
std::map<std::string, std::shared_ptr<Ledger>> &open_ledgers() {
  static auto *ledgers = new std::map<std::string, std::shared_ptr<Ledger>>();
  return *ledgers;
}

std::shared_ptr<Ledger> ledger_for(const std::string &path, std::string &warning) {
  auto &ledgers = open_ledgers();
  auto found = ledgers.find(path);
  if (found != ledgers.end())
    return found->second;
  std::unique_ptr<Ledger> ledger = Ledger::open(path, warning);
  // Ledger::open's warnings name the path already; say it once.
  if (!warning.empty() && warning.find(path) == std::string::npos)
    warning = "Journal " + path + ": " + warning;
  std::shared_ptr<Ledger> shared(std::move(ledger));
  if (shared)
    ledgers[path] = shared;
  return shared;
}

// The ledger at `ledger.path()` refused a write: later runs of this process use the
// in-memory one. Returns the warning for the bus.
std::string fall_back(const Ledger &ledger, const std::string &error) {
  const std::string path = ledger.path();
  std::string text = "Journal " + (path.empty() ? std::string("(in memory)") : path) + ": " +
                     error + "; this process goes on with a journal in memory";
  if (path.empty())
    return text;
  std::string memory_error;
  std::unique_ptr<Ledger> memory = Ledger::open_memory(memory_error);
  if (memory)
    open_ledgers()[path] = std::shared_ptr<Ledger>(std::move(memory));
  else
    open_ledgers().erase(path);
  return text;
}

std::string checked(Ledger &ledger, bool ok, const std::string &error) {
  return ok ? std::string() : fall_back(ledger, error);
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

std::string media_file_name(const LedgerRow &row) {
  return row.request_key.substr(0, 32) + "-" + std::to_string(row.take) + ".media";
}

JournalAnswer journal_claim(const JournalQuestion &question) {
  JournalAnswer answer;
  std::shared_ptr<Ledger> ledger = ledger_for(question.path, answer.warning);
  if (!ledger)
    return answer;
  ClaimOutcome outcome;
  std::string error;
  if (!ledger->claim(question.request, question.fresh, question.external_task_id, outcome, error)) {
    // Once more on the in-memory ledger, so that this process still pays once.
    answer.warning = fall_back(*ledger, error);
    std::string ignored;
    ledger = ledger_for(question.path, ignored);
    if (!ledger ||
        !ledger->claim(question.request, question.fresh, question.external_task_id, outcome, error))
      return JournalAnswer{nullptr, ClaimResult::Busy, {}, nullptr, {}, answer.warning};
  }
  answer.ledger = ledger;
  answer.result = outcome.result;
  answer.row = outcome.row;
  if (outcome.result == ClaimResult::Claimed)
    // Whichever thread lets go of it last, its end (which may write) runs on the file worker.
    answer.claim = std::shared_ptr<Claim>(new Claim(std::move(outcome.claim)), [](Claim *claim) {
      file_work([claim] { delete claim; });
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
