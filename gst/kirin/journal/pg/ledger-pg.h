// The ledger in a PostgreSQL database that a fleet of machines shares (docs/journal.md,
// "A journal for a fleet"). The same rules as a file's ledger; a claim's lock is a
// session-level advisory lock of the claimer's connection, which the server lets go when
// the claimer's process or machine dies. Internal to ledger-pg*.cpp, which are built into
// libgstkirin-ledger-pg.module (ledger-server.h), the only file of the plugin's that links
// libpq; the tests of the ledger link them directly.
#pragma once

#include "ledger-server.h"

#include <libpq-fe.h>

#include <optional>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace kirin {

// One connection of this process to the server, used from one thread at a time.
struct PgConn {
  PGconn *conn = nullptr;
  std::string name; // the URI without its password
  std::string host; // this machine: who claims, and whose kept copies
  // The take locks this process holds: the server would let the same connection take one
  // again, so two elements of this process are told apart here.
  std::set<gint64> held_locks;
  ~PgConn();
};

// A query's result, cleared with it.
class PgResult {
public:
  PgResult() = default;
  ~PgResult() { PQclear(result_); }
  PgResult(const PgResult &) = delete;
  PgResult &operator=(const PgResult &) = delete;
  void reset(PGresult *result) {
    PQclear(result_);
    result_ = result;
  }
  int rows() const { return PQntuples(result_); }
  int changed() const { return atoi(PQcmdTuples(result_)); }
  bool is_null(int row, int column) const { return PQgetisnull(result_, row, column); }
  std::string text(int row, int column) const { return PQgetvalue(result_, row, column); }
  gint64 integer(int row, int column) const {
    return g_ascii_strtoll(PQgetvalue(result_, row, column), nullptr, 10);
  }
  double real(int row, int column) const {
    return g_ascii_strtod(PQgetvalue(result_, row, column), nullptr);
  }

private:
  PGresult *result_ = nullptr;
};

using PgParams = std::vector<std::optional<std::string>>; // nullopt: NULL

// Runs `sql` with text parameters $1...; false with the server's (or libpq's) message.
bool pg_exec(PgConn &conn, const char *sql, const PgParams &params, PgResult &result,
             std::string &error);
bool pg_exec(PgConn &conn, const char *sql, const PgParams &params, std::string &error);

// A transaction, rolled back unless committed.
class PgTransaction {
public:
  explicit PgTransaction(PgConn &conn) : conn_(conn) {}
  ~PgTransaction();
  bool begin(std::string &error);
  bool commit(std::string &error);

private:
  PgConn &conn_;
  bool open_ = false;
};

// The advisory lock that serialises the claims of one request, and the one that says a
// take's claimer lives: 64 bits of SHA-256, as the server's bigint.
std::string request_lock_id(const std::string &request_key);
gint64 take_lock_id(const std::string &request_key, gint64 take);

// A row of a result of ledger_row_select(LedgerDialect::Server) (ledger-schema.h), whose `$1`
// is this machine's host.
LedgerRow pg_read_row(const PgResult &result, int row);
// The newest take's row of a request key, or nullopt.
bool pg_select_newest(PgConn &conn, const std::string &key, std::optional<LedgerRow> &row,
                      std::string &error);

// A claim on a server's ledger: its row, and the take's advisory lock.
struct PgClaimHold : ClaimHold {
  std::shared_ptr<PgConn> conn;
  std::string request_key;
  gint64 take = 0;
  ~PgClaimHold() override; // ledger-pg-claim.cpp
};

class PgLedger final : public Ledger {
public:
  explicit PgLedger(std::shared_ptr<PgConn> conn) : conn_(std::move(conn)) {}

  const std::string &path() const override { return conn_->name; }
  bool claim(const LedgerRequest &request, bool fresh, const std::string &generated_external_id,
             ClaimOutcome &out, std::string &error) override;
  bool mark_sending(Claim &claim, std::string &error) override;
  bool record_task_id(Claim &claim, const std::string &task_id, std::string &error) override;
  bool record_create_refused(Claim &claim, std::string &error) override;
  bool record_completed(gint64 id, const std::string &result_url,
                        const std::string &result_video_id, double duration,
                        const std::string &cost, std::string &error) override;
  bool record_failed(gint64 id, std::string &error) override;
  bool record_create_answer(gint64 id, const std::string &answer, std::string &error) override;
  bool record_media(gint64 id, const std::string &media_file, guint64 media_size,
                    std::string &error) override;
  bool touch_media(gint64 id, std::string &error) override;
  bool forget_media(gint64 id, std::string &error) override;
  bool lookup(const LedgerRequest &request, std::optional<LedgerRow> &row,
              std::string &error) override;
  bool evict_media(const std::string &dir, guint64 max_bytes, std::vector<std::string> &evicted,
                   std::string &error) override;
  bool adopt(const std::vector<LedgerRow> &rows, std::string &error) override;
  bool push_row(const LedgerRow &row, gint64 id_hint, PushOutcome &out,
                std::string &error) override; // ledger-pg-push.cpp

private:
  bool held(const Claim &claim, std::string &error) const;
  bool update_task(gint64 id, const char *sql, PgParams params, std::string &error);
  // Runs `sql` on the claim's row and lets the claim go, both in the request's turn.
  bool settle(Claim &claim, const char *sql, PgParams params, std::string &error);

  std::shared_ptr<PgConn> conn_;
};

} // namespace kirin
