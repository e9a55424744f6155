// A server's journal through an outage (journal-server.h): the in-memory ledger that stands
// in for the server, and the attempts that reach the server again.
#include "journal-server.h"

#include "journal.h"
#include "ledger-server.h"

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

} // namespace

bool ServerJournal::open_memory(std::string &error) {
  if (!memory_)
    memory_ = Ledger::open_transient_memory(error);
  return memory_ != nullptr;
}

// The server has every row again: the in-memory ledger goes (claims on it keep it until they
// end). The next one's rows get runs' ids above every one given so far.
void ServerJournal::forget_memory() {
  memory_.reset();
  memory_ids_from_ = memory_ids_end_;
  by_memory_id_.clear();
  for (auto &[id, row] : rows_)
    row.memory_id = 0;
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
  if (push_unsent(error))
    forget_memory();
  else
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
