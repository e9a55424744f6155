// The fleet's journal in the soak: a PostgreSQL server of the soak's own
// (tests/check/pg-server.h) that half the channels record in, restarted while they run, as a
// fleet's database is for maintenance, a minor upgrade or a failover.
#pragma once

#include <glib.h>

#include <atomic>
#include <memory>
#include <set>
#include <string>

struct PgServer;

namespace soak {

class JournalServer {
public:
  JournalServer();
  ~JournalServer();
  // A fresh server; false with the reason in `error`.
  bool start(std::string &error);
  // The journal the channels set (with its password).
  std::string uri() const;
  // Until `running` is false: every `period_s` seconds, stops the server (fast: every session
  // ended) and starts it again `down_s` seconds later. Ends with the server running.
  void restart_while(const std::atomic<bool> &running, int period_s, int down_s);
  int restarts() const { return restarts_; }
  // The external task IDs and task IDs the server holds.
  std::set<std::string> ids() const;
  // Waits up to `max_us` until the server holds every ID of `wanted` (the process writes
  // back what it recorded during an outage once the server is back); returns those it
  // still lacks.
  std::set<std::string> wait_for(const std::set<std::string> &wanted, gint64 max_us) const;

private:
  std::unique_ptr<PgServer> server_;
  int restarts_ = 0;
};

} // namespace soak
