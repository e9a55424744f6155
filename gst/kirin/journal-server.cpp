#include "journal-server.h"

#include "journal.h"
#include "ledger-server.h"

#include <algorithm>
#include <chrono>
#include <thread>

namespace kirin {

namespace {

// Attempts to reach the server again: the first after kFirstRetryUs, each next one twice as
// late up to kMaxRetryUs, every delay jittered by kJitter; a run tries at once when the last
// attempt is older than kFirstRetryUs. An attempt at a server that refuses costs a
// millisecond: a run meets its server again within a second of its return.
constexpr gint64 kFirstRetryUs = 100 * 1000;
constexpr gint64 kMaxRetryUs = 1000 * 1000;
constexpr double kJitter = 0.2;
// How long a run waits for an attempt under way before it goes on in memory.
constexpr auto kAttemptWait = std::chrono::milliseconds(250);

std::chrono::microseconds jittered(gint64 delay_us) {
  return std::chrono::microseconds(
      (gint64)(delay_us * g_random_double_range(1 - kJitter, 1 + kJitter)));
}

// A claim on this journal: the claim on the ledger it was taken on, the server's (of
// `generation`'s connection) or memory's.
struct ServerClaimHold : ClaimHold {
  Claim inner;
  bool on_server = false;
  guint64 generation = 0;
  ServerJournal *journal = nullptr; // it lives as long as the process
  ~ServerClaimHold() override {
    if (!sending)
      journal->forget_unsent_claim(row_id); // the inner claim's end deletes the row
  }
};

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

gint64 ServerJournal::id_of_memory_row(gint64 memory_id) const {
  auto found = by_memory_id_.find(memory_id);
  return found != by_memory_id_.end() ? found->second : kMemoryRowIds + memory_id;
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
  if (inner.result != ClaimResult::Claimed)
    return;
  auto hold = std::make_unique<ServerClaimHold>();
  hold->owner = this;
  hold->row_id = out.row.id;
  hold->inner = std::move(inner.claim);
  hold->on_server = on_server;
  hold->generation = generation_;
  hold->journal = this;
  out.claim = Claim(std::move(hold));
}

void ServerJournal::forget_unsent_claim(gint64 id) {
  auto found = rows_.find(id);
  if (found == rows_.end() || found->second.row.status != "claimed")
    return;
  by_server_id_.erase(found->second.server_id);
  by_memory_id_.erase(found->second.memory_id);
  rows_.erase(found);
}

ServerJournal::Tracked *ServerJournal::tracked(gint64 id, std::string &error) {
  auto found = rows_.find(id);
  if (found != rows_.end())
    return &found->second;
  error = "the journal has no row " + std::to_string(id);
  return nullptr;
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
  Tracked *row = tracked(id, error);
  if (!row)
    return false;
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
    if (!claim_op(*memory_, hold->inner, error))
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
  out = ClaimOutcome();
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
  wrap(inner, false, out);
  return true;
}

bool ServerJournal::mark_sending(Claim &claim, std::string &error) {
  ServerClaimHold *hold = hold_of(this, claim, error);
  if (!hold)
    return false;
  Ledger *ledger = hold->on_server ? server_.get() : memory_.get();
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

// ---- the outage ----

bool ServerJournal::open_memory(std::string &error) {
  if (!memory_)
    memory_ = Ledger::open_memory(error);
  return memory_ != nullptr;
}

// The server stopped answering: from now on memory decides, knowing the rows this process
// created or used (so it still pays once for each), until an attempt reaches the server.
void ServerJournal::lose_server(const std::string &error) {
  if (!server_)
    return;
  server_.reset();
  generation_++;
  std::string text = "Journal " + name_ + ": " + error +
                     "; this process goes on with a journal in memory until the server answers "
                     "again, then writes to it what it recorded meanwhile";
  std::string memory_error;
  for (auto &[id, row] : rows_)
    if (row.row.status != "claimed" && !remember_in_memory(row, memory_error))
      break;
  if (!memory_error.empty())
    text +=
        " (the journal in memory does not know this process's earlier tasks: " + memory_error + ")";
  notices_.push_back(text);
  {
    std::lock_guard<std::mutex> guard(lock_);
    connected_ = false;
  }
  start_attempts();
}

// A run needs the journal: the connection an attempt made is used at once; an attempt under
// way is awaited a moment (it may be the one that reaches the server); otherwise one is made
// now, unless the last was made less than kFirstRetryUs ago: then the attempts' thread makes
// the next one as soon as that is over.
void ServerJournal::reconnect_now_if_due() {
  if (server_)
    return;
  std::shared_ptr<Ledger> server;
  {
    std::unique_lock<std::mutex> guard(lock_);
    changed_.wait_for(guard, kAttemptWait, [this] { return !attempting_; });
    server = std::move(handed_);
    const gint64 now = g_get_monotonic_time();
    if (!server && (attempting_ || now - last_attempt_us_ < kFirstRetryUs)) {
      wanted_ = true;
      changed_.notify_all();
      return;
    }
    if (!server) {
      attempting_ = true;
      last_attempt_us_ = now;
    }
  }
  if (!server) {
    std::string error;
    server = open_pg_ledger(uri_, error);
    std::lock_guard<std::mutex> guard(lock_);
    attempting_ = false;
    changed_.notify_all();
  }
  if (server)
    install(server);
}

// On the worker: the server answers again. What it missed is written first, in the order
// the rows were made; should that fail, the outage goes on.
void ServerJournal::install(std::shared_ptr<Ledger> server) {
  if (server_)
    return; // another attempt connected first
  server_ = std::move(server);
  generation_++;
  {
    std::lock_guard<std::mutex> guard(lock_);
    connected_ = true;
    handed_.reset(); // a connection made meanwhile is not needed
    changed_.notify_all();
  }
  std::string error;
  if (!push_unsent(error))
    lose_server(error);
}

void ServerJournal::start_attempts() {
  std::lock_guard<std::mutex> guard(lock_);
  if (thread_running_)
    return;
  thread_running_ = true;
  std::thread([self = shared_from_this()] { self->attempts(); }).detach();
}

// The attempts' thread: it ends once the worker uses the server again, or has been handed a
// connection to it (handed_, which the worker takes: see reconnect_now_if_due).
void ServerJournal::attempts() {
  std::unique_lock<std::mutex> guard(lock_);
  gint64 delay_us = kFirstRetryUs;
  auto due = std::chrono::steady_clock::now() + jittered(delay_us);
  while (!connected_) {
    if (wanted_) {
      wanted_ = false;
      const gint64 soonest_us = last_attempt_us_ + kFirstRetryUs - g_get_monotonic_time();
      due = std::min(due, std::chrono::steady_clock::now() + std::chrono::microseconds(soonest_us));
    }
    if (changed_.wait_until(guard, due, [this] { return connected_ || wanted_; }))
      continue;
    delay_us = MIN(delay_us * 2, kMaxRetryUs);
    due = std::chrono::steady_clock::now() + jittered(delay_us);
    if (attempting_)
      continue; // a run is trying
    attempting_ = true;
    last_attempt_us_ = g_get_monotonic_time();
    guard.unlock();
    std::string error;
    std::shared_ptr<Ledger> server = open_pg_ledger(uri_, error);
    guard.lock();
    attempting_ = false;
    changed_.notify_all();
    if (server) {
      handed_ = server;
      journal_work(uri_, [self = shared_from_this()] { self->reconnect_now_if_due(); });
      break;
    }
  }
  thread_running_ = false;
}

} // namespace kirin
