#include "journal-server.h"

#include "journal.h"
#include "ledger-server.h"

#include <algorithm>

namespace kirin {

namespace {

// A claim on this journal: the claim on the ledger it was taken on, the server's (of
// `generation`'s connection) or `memory`.
struct ServerClaimHold : ClaimHold {
  Claim inner;
  bool on_server = false;
  guint64 generation = 0;
  std::shared_ptr<Ledger> memory;   // kept while the claim is: the journal may drop it
  ServerJournal *journal = nullptr; // it lives as long as the process
  ~ServerClaimHold() override {
    journal->claim_ended(row_id, sending); // the inner claim's end deletes a row never sent
  }
};

// Forgettable once the server has it as this process last changed it and no run holds its
// claim: settled, or unused for kUnsettledRowUs.
template <typename Tracked> bool forgettable(const Tracked &row, gint64 unused_since_us) {
  if (row.unsent || !row.server_id || row.held)
    return false;
  const std::string &status = row.row.status;
  return status == "completed" || status == "failed" || row.used_at_us < unused_since_us;
}

constexpr size_t kForgottenIdsKept = 65536;

ServerClaimHold *hold_of(ServerJournal *journal, Claim &claim, std::string &error) {
  // Only this journal's claims are held on it, and they are all ServerClaimHolds.
  auto *hold = static_cast<ServerClaimHold *>(claim.hold_on(journal));
  if (!hold)
    error = "the claim is not held on this journal";
  return hold;
}

std::string joined(const std::vector<std::string> &parts) {
  std::string text;
  for (const std::string &part : parts)
    text += (text.empty() ? "" : "; ") + part;
  return text;
}

} // namespace

ServerJournal::ServerJournal(const std::string &uri)
    : uri_(uri), name_(journal_display_name(uri)) {}

ServerJournal::~ServerJournal() = default;

std::shared_ptr<ServerJournal> ServerJournal::open(const std::string &uri, std::string &warning) {
  warning.clear();
  std::shared_ptr<ServerJournal> journal(new ServerJournal(uri));
  std::string problem;
  std::shared_ptr<Ledger> server = open_pg_ledger(uri, problem);
  journal->last_attempt_us_ = g_get_monotonic_time();
  if (server) {
    journal->install(server);
    return journal;
  }
  std::string error;
  if (!journal->open_memory(error)) {
    warning = "cannot use the journal " + journal->name_ + " (" + problem +
              "), nor one in memory: " + error;
    return nullptr;
  }
  warning = "cannot use the journal " + journal->name_ + " (" + problem +
            "): this process keeps its tasks in memory until the server answers, then writes "
            "them to it";
  journal->start_attempts();
  return journal;
}

std::string ServerJournal::take_notices() {
  std::string text = joined(notices_);
  notices_.clear();
  return text;
}

// ---- ids, and the rows of this process ----

gint64 ServerJournal::id_of_server_row(gint64 server_id) const {
  auto found = by_server_id_.find(server_id);
  return found != by_server_id_.end() ? found->second : server_id;
}

gint64 ServerJournal::id_of_memory_row(gint64 memory_id) {
  auto found = by_memory_id_.find(memory_id);
  if (found != by_memory_id_.end())
    return found->second;
  memory_ids_end_ = MAX(memory_ids_end_, memory_ids_from_ + memory_id + 1);
  return memory_ids_from_ + memory_id;
}

// A claim's outcome on the server or in memory, as the runs see it: their ids, and the rows
// this process creates or uses remembered.
void ServerJournal::wrap(ClaimOutcome &inner, bool on_server, ClaimOutcome &out) {
  out.result = inner.result;
  out.row = inner.row;
  const gint64 own_id = inner.row.id;
  out.row.id = on_server ? id_of_server_row(own_id) : id_of_memory_row(own_id);
  if (inner.result != ClaimResult::Claimed && inner.result != ClaimResult::Recorded)
    return;
  Tracked &row = rows_[out.row.id];
  const bool unsent = row.unsent;
  row.row = out.row;
  row.unsent = unsent;
  (on_server ? row.server_id : row.memory_id) = own_id;
  (on_server ? by_server_id_ : by_memory_id_)[own_id] = out.row.id;
  touch(out.row.id, row);
  if (inner.result == ClaimResult::Claimed) {
    auto hold = std::make_unique<ServerClaimHold>();
    hold->owner = this;
    hold->row_id = out.row.id;
    hold->inner = std::move(inner.claim);
    hold->on_server = on_server;
    hold->generation = generation_;
    hold->memory = on_server ? nullptr : memory_;
    hold->journal = this;
    out.claim = Claim(std::move(hold));
    row.held = true;
  }
  forget_old_rows();
}

void ServerJournal::claim_ended(gint64 id, bool sending) {
  auto found = rows_.find(id);
  if (found == rows_.end())
    return;
  found->second.held = false;
  if (sending || found->second.row.status != "claimed")
    return;
  by_server_id_.erase(found->second.server_id);
  by_memory_id_.erase(found->second.memory_id);
  by_use_.erase(found->second.use);
  rows_.erase(found);
}

void ServerJournal::touch(gint64 id, Tracked &row) {
  by_use_.erase(row.use);
  row.use = ++uses_;
  row.used_at_us = g_get_monotonic_time();
  by_use_[row.use] = id;
}

// Bounds the rows remembered: the least recently used forgettable ones go first.
void ServerJournal::forget_old_rows() {
  const gint64 unused_since_us = g_get_monotonic_time() - kUnsettledRowUs;
  for (auto use = by_use_.begin(); rows_.size() > kRowsRemembered && use != by_use_.end();) {
    const gint64 id = use->second;
    auto found = rows_.find(id);
    if (found == rows_.end()) {
      use = by_use_.erase(use);
      continue;
    }
    Tracked &row = found->second;
    if (!forgettable(row, unused_since_us)) {
      ++use;
      continue;
    }
    if (id != row.server_id) {
      forgotten_server_ids_[id] = row.server_id;
      if (forgotten_server_ids_.size() > kForgottenIdsKept)
        forgotten_server_ids_.erase(forgotten_server_ids_.begin());
    }
    by_server_id_.erase(row.server_id);
    by_memory_id_.erase(row.memory_id);
    rows_.erase(found);
    use = by_use_.erase(use);
  }
}

// A change of a row no longer remembered: settled on the server, which takes it by its id
// there while it answers.
bool ServerJournal::write_forgotten(gint64 id, const Write &op, std::string &error) {
  gint64 server_id = id < kMemoryRowIds ? id : 0;
  if (auto found = forgotten_server_ids_.find(id); found != forgotten_server_ids_.end())
    server_id = found->second;
  if (!server_id) {
    error = "the journal has no row " + std::to_string(id);
    return false;
  }
  reconnect_now_if_due();
  if (server_ && op(*server_, server_id, error))
    return true;
  if (server_)
    lose_server(error);
  error = "the journal's server does not answer, and this process no longer remembers its "
          "row " +
          std::to_string(server_id) + " (settled long ago): this change of it is not recorded";
  return false;
}

// In memory: the row as this process last changed it (adopted again at each change, so that
// the other runs of this process read its status), under its take number.
bool ServerJournal::remember_in_memory(Tracked &row, std::string &error) {
  if (!memory_ && !open_memory(error))
    return false;
  std::optional<LedgerRow> found;
  if (!memory_->adopt({row.row}, error))
    return false;
  if (row.memory_id)
    return true;
  if (!memory_->lookup(row.row.request, found, error))
    return false;
  if (found && found->take == row.row.take) {
    row.memory_id = found->id;
    by_memory_id_[found->id] = row.row.id;
  }
  return true;
}

// Writes the row to the server as this process has it; it is no longer unsent. Rows still
// "claimed" wait: their create has not left.
bool ServerJournal::push(gint64 id, std::string &error) {
  Tracked &row = rows_[id];
  if (row.row.status == "claimed")
    return true;
  PushOutcome out;
  if (!server_->push_row(row.row, row.server_id, out, error))
    return false;
  row.server_id = out.row.id;
  by_server_id_[out.row.id] = id;
  row.unsent = false;
  for (const LedgerRow &other : out.others)
    notices_.push_back("Journal " + name_ + ": video " + row.row.request.request.video_id +
                       " was paid for twice while this process could not reach the server: task " +
                       row.row.task_id + " by this process, and task " + other.task_id +
                       " by process " + std::to_string(other.claimer_pid) + " on " +
                       other.claimer_host + " (take " + std::to_string(other.take) + "); task " +
                       row.row.task_id + " is recorded as take " + std::to_string(out.row.take));
  return true;
}

bool ServerJournal::push_unsent(std::string &error) {
  for (auto &[id, row] : rows_)
    if (row.unsent && !push(id, error))
      return false;
  return true;
}

// A change of row `id`: on the server when it answers and has the row, otherwise remembered
// (in memory during an outage) and written to the server as soon as it can be.
bool ServerJournal::write(gint64 id, const std::function<void(LedgerRow &)> &change,
                          const Write &op, std::string &error) {
  auto found = rows_.find(id);
  if (found == rows_.end())
    return write_forgotten(id, op, error);
  Tracked *row = &found->second;
  touch(id, *row);
  change(row->row);
  if (server_ && row->server_id && !row->unsent) {
    if (op(*server_, row->server_id, error))
      return true;
    lose_server(error);
  }
  row->unsent = true;
  if (server_) {
    if (push(id, error))
      return true;
    lose_server(error);
  }
  if (!remember_in_memory(*row, error))
    return false;
  return !row->memory_id || op(*memory_, row->memory_id, error);
}

// A step that settles a claim (the task ID, or the create refused). A claim on a server's
// connection that was lost meanwhile is settled in memory, and the row written to the server
// when it answers again.
bool ServerJournal::settle(Claim &claim, const std::function<void(LedgerRow &)> &change,
                           const Write &op,
                           const std::function<bool(Ledger &, Claim &, std::string &)> &claim_op,
                           std::string &error) {
  ServerClaimHold *hold = hold_of(this, claim, error);
  if (!hold)
    return false;
  const gint64 id = claim.row_id();
  if (hold->on_server && server_ && hold->generation == generation_) {
    change(rows_[id].row);
    if (claim_op(*server_, hold->inner, error)) {
      claim.settle();
      return true;
    }
    lose_server(error);
  }
  if (!hold->on_server) {
    if (!claim_op(*hold->memory, hold->inner, error))
      return false;
    change(rows_[id].row);
    claim.settle();
    rows_[id].unsent = true;
    if (server_ && !push(id, error))
      lose_server(error);
    return true;
  }
  claim.settle(); // the lock went with the connection
  // The server that has the row (again) lacks this step: written as soon as it can be.
  rows_[id].unsent = true;
  return write(id, change, op, error);
}

// ---- the Ledger ----

bool ServerJournal::claim(const LedgerRequest &request, bool fresh,
                          const std::string &generated_external_id, ClaimOutcome &out,
                          std::string &error) {
  bool server_away = false;
  return claim_or_wait(request, fresh, generated_external_id, true, out, server_away, error);
}

bool ServerJournal::claim_or_wait(const LedgerRequest &request, bool fresh,
                                  const std::string &generated_external_id, bool create_alone,
                                  ClaimOutcome &out, bool &server_away, std::string &error) {
  out = ClaimOutcome();
  server_away = false;
  reconnect_now_if_due();
  ClaimOutcome inner;
  for (int tries = 0; server_ && tries < 2; tries++) {
    if (server_->claim(request, fresh, generated_external_id, inner, error)) {
      wrap(inner, true, out);
      return true;
    }
    lose_server(error);
    // Another host of the URI may answer at once (libpq tries each in turn).
    reconnect_now_if_due();
  }
  if (!memory_ && !open_memory(error))
    return false;
  if (!memory_->claim(request, fresh, generated_external_id, inner, error))
    return false;
  if (inner.result == ClaimResult::Claimed && !create_alone) {
    inner = ClaimOutcome(); // let go at once: nothing is created while the run waits
    out.result = ClaimResult::Busy;
    server_away = true;
    return true;
  }
  wrap(inner, false, out);
  return true;
}

bool ServerJournal::mark_sending(Claim &claim, std::string &error) {
  ServerClaimHold *hold = hold_of(this, claim, error);
  if (!hold)
    return false;
  Ledger *ledger = hold->on_server ? server_.get() : hold->memory.get();
  if (hold->on_server && hold->generation != generation_)
    ledger = nullptr;
  if (!ledger) {
    // Its lock went with the connection: another machine may take the row.
    error = "the connection that held the claim was lost";
    return false;
  }
  if (!ledger->mark_sending(hold->inner, error)) {
    if (hold->on_server)
      lose_server(error);
    return false;
  }
  hold->sending = true;
  Tracked &row = rows_[claim.row_id()];
  row.row.status = "sending";
  if (hold->on_server)
    return true;
  row.unsent = true;
  std::string ignored;
  if (server_ && !push(claim.row_id(), ignored))
    lose_server(ignored);
  return true;
}

bool ServerJournal::record_task_id(Claim &claim, const std::string &task_id, std::string &error) {
  auto change = [task_id](LedgerRow &row) {
    row.status = "created";
    row.task_id = task_id;
    row.created_at = g_get_real_time() / G_USEC_PER_SEC;
  };
  // Memory has the row as it now is (write adopts it) when this runs: nothing more.
  auto op = [](Ledger &, gint64, std::string &) { return true; };
  return settle(
      claim, change, op,
      [&task_id](Ledger &ledger, Claim &inner, std::string &e) {
        return ledger.record_task_id(inner, task_id, e);
      },
      error);
}

bool ServerJournal::record_create_refused(Claim &claim, std::string &error) {
  auto change = [](LedgerRow &row) { row.status = "failed"; };
  auto op = [](Ledger &, gint64, std::string &) { return true; };
  return settle(
      claim, change, op,
      [](Ledger &ledger, Claim &inner, std::string &e) {
        return ledger.record_create_refused(inner, e);
      },
      error);
}

bool ServerJournal::record_completed(gint64 id, const std::string &result_url,
                                     const std::string &result_video_id, double duration,
                                     const std::string &cost, std::string &error) {
  return write(
      id,
      [&](LedgerRow &row) {
        row.status = "completed";
        row.result_url = result_url;
        row.result_video_id = result_video_id;
        row.duration = duration;
        row.cost = cost;
        row.completed_at = g_get_real_time() / G_USEC_PER_SEC;
      },
      [&](Ledger &ledger, gint64 own, std::string &e) {
        return ledger.record_completed(own, result_url, result_video_id, duration, cost, e);
      },
      error);
}

bool ServerJournal::record_failed(gint64 id, std::string &error) {
  return write(
      id, [](LedgerRow &row) { row.status = "failed"; },
      [](Ledger &ledger, gint64 own, std::string &e) { return ledger.record_failed(own, e); },
      error);
}

bool ServerJournal::record_create_answer(gint64 id, const std::string &answer, std::string &error) {
  return write(
      id, [&](LedgerRow &row) { row.create_answer = answer; },
      [&](Ledger &ledger, gint64 own, std::string &e) {
        return ledger.record_create_answer(own, answer, e);
      },
      error);
}

bool ServerJournal::record_media(gint64 id, const std::string &media_file, guint64 media_size,
                                 std::string &error) {
  return write(
      id,
      [&](LedgerRow &row) {
        row.media_file = media_file;
        row.media_size = media_size;
        row.media_used_at = g_get_real_time() / G_USEC_PER_SEC;
      },
      [&](Ledger &ledger, gint64 own, std::string &e) {
        return ledger.record_media(own, media_file, media_size, e);
      },
      error);
}

bool ServerJournal::touch_media(gint64 id, std::string &error) {
  return write(
      id, [](LedgerRow &row) { row.media_used_at = g_get_real_time() / G_USEC_PER_SEC; },
      [](Ledger &ledger, gint64 own, std::string &e) { return ledger.touch_media(own, e); }, error);
}

bool ServerJournal::forget_media(gint64 id, std::string &error) {
  return write(
      id,
      [](LedgerRow &row) {
        row.media_file.clear();
        row.media_size = 0;
      },
      [](Ledger &ledger, gint64 own, std::string &e) { return ledger.forget_media(own, e); },
      error);
}

bool ServerJournal::lookup(const LedgerRequest &request, std::optional<LedgerRow> &row,
                           std::string &error) {
  if (server_ && server_->lookup(request, row, error)) {
    if (row)
      row->id = id_of_server_row(row->id);
    return true;
  }
  if (server_)
    lose_server(error);
  if (!memory_ && !open_memory(error))
    return false;
  if (!memory_->lookup(request, row, error))
    return false;
  if (row)
    row->id = id_of_memory_row(row->id);
  return true;
}

bool ServerJournal::evict_media(const std::string &dir, guint64 max_bytes,
                                std::vector<std::string> &evicted, std::string &error) {
  if (server_ && server_->evict_media(dir, max_bytes, evicted, error))
    return true;
  if (server_)
    lose_server(error);
  if (!memory_ && !open_memory(error))
    return false;
  return memory_->evict_media(dir, max_bytes, evicted, error);
}

std::vector<LedgerRow> ServerJournal::rows_known() const {
  std::vector<LedgerRow> rows;
  for (const auto &[id, row] : rows_)
    rows.push_back(row.row);
  return rows;
}

bool ServerJournal::adopt(const std::vector<LedgerRow> &, std::string &error) {
  error = "a server's journal takes in no rows";
  return false;
}

} // namespace kirin
