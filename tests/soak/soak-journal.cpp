#include "soak-journal.h"

#include "pg-server.h"

#include <libpq-fe.h>

namespace soak {

JournalServer::JournalServer() = default;
JournalServer::~JournalServer() = default;

bool JournalServer::start(std::string &error) {
  server_ = std::make_unique<PgServer>();
  return server_->start(error);
}

std::string JournalServer::uri() const {
  return server_->uri();
}

void JournalServer::restart_while(const std::atomic<bool> &running, int period_s, int down_s) {
  auto sleep_while_running = [&running](int seconds) {
    for (int i = 0; i < seconds * 10 && running; i++)
      g_usleep(G_USEC_PER_SEC / 10);
  };
  while (running) {
    sleep_while_running(period_s);
    if (!running)
      break;
    server_->stop();
    g_usleep(gulong(down_s) * G_USEC_PER_SEC); // down for the whole time, even at the end
    std::string error;
    if (!server_->start_again(error))
      g_printerr("soak: the journal's server did not start again: %s\n", error.c_str());
    restarts_++;
  }
}

std::set<std::string> JournalServer::ids() const {
  std::set<std::string> found;
  const std::string conninfo = server_->uri() + "?connect_timeout=10";
  PGconn *conn = PQconnectdb(conninfo.c_str());
  if (PQstatus(conn) == CONNECTION_OK) {
    PGresult *rows = PQexec(conn, "SELECT external_task_id, coalesce(task_id, '') "
                                  "FROM gst_kirin.tasks");
    if (PQresultStatus(rows) == PGRES_TUPLES_OK)
      for (int row = 0; row < PQntuples(rows); row++)
        for (int column = 0; column < 2; column++)
          if (*PQgetvalue(rows, row, column))
            found.insert(PQgetvalue(rows, row, column));
    PQclear(rows);
  }
  PQfinish(conn);
  return found;
}

std::set<std::string> JournalServer::wait_for(const std::set<std::string> &wanted,
                                              gint64 max_us) const {
  const gint64 deadline = g_get_monotonic_time() + max_us;
  std::set<std::string> missing;
  do {
    missing.clear();
    const std::set<std::string> held = ids();
    for (const std::string &id : wanted)
      if (!held.count(id))
        missing.insert(id);
    if (missing.empty())
      break;
    g_usleep(G_USEC_PER_SEC / 10);
  } while (g_get_monotonic_time() < deadline);
  return missing;
}

} // namespace soak
