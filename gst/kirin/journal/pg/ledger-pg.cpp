#include "ledger-pg.h"

#include "ledger-db.h"
#include "ledger-schema.h"

#include <cstring>

namespace kirin {

namespace {

// The advisory lock that serialises the making of the schema.
constexpr const char *kSchemaLock = "7165396815361327150";

// Waiting longer for a server than this delays only the runs that use it, but unbounded it
// would hold them for the kernel's TCP timeout (minutes); PGCONNECT_TIMEOUT overrides it.
constexpr const char *kConnectTimeoutS = "10";

// libpq's messages span lines ("...failed: Connection refused\n\tIs the server running...");
// a warning on the bus is one line.
std::string one_line(const char *message) {
  std::string text;
  for (const char *c = message; *c; c++) {
    bool space = *c == '\n' || *c == '\t' || *c == ' ';
    if (!space)
      text += *c;
    else if (!text.empty() && text.back() != ' ')
      text += ' ';
  }
  while (!text.empty() && text.back() == ' ')
    text.pop_back();
  return text;
}

std::string this_host() {
  return g_get_host_name();
}

bool ensure_schema(PgConn &conn, std::string &error) {
  PgTransaction tx(conn);
  PgResult version;
  if (!tx.begin(error) ||
      !pg_exec(conn, "SELECT pg_advisory_xact_lock($1::bigint)", {kSchemaLock}, error) ||
      !pg_exec(conn,
               "CREATE SCHEMA IF NOT EXISTS gst_kirin; CREATE TABLE IF NOT EXISTS "
               "gst_kirin.schema_version (version integer NOT NULL)",
               {}, error) ||
      !pg_exec(conn, "SELECT max(version) FROM gst_kirin.schema_version", {}, version, error))
    return false;
  if (version.is_null(0, 0)) {
    if (!pg_exec(conn, ledger_schema(LedgerDialect::Server).c_str(), {}, error) ||
        !pg_exec(conn, "INSERT INTO gst_kirin.schema_version VALUES ($1)",
                 {std::to_string(kLedgerSchemaVersion)}, error))
      return false;
  } else if (version.integer(0, 0) == 1) {
    if (!pg_exec(conn, ledger_migration_from_v1(LedgerDialect::Server).c_str(), {}, error) ||
        !pg_exec(conn, "UPDATE gst_kirin.schema_version SET version = $1",
                 {std::to_string(kLedgerSchemaVersion)}, error))
      return false;
  } else if (version.integer(0, 0) != kLedgerSchemaVersion) {
    error = "its schema gst_kirin was written by a newer gst-kirin (version " + version.text(0, 0) +
            ")";
    return false;
  }
  return tx.commit(error);
}

std::shared_ptr<PgConn> connect(const std::string &uri, std::string &error) {
  std::vector<const char *> keys, values;
  // Defaults first: the URI and libpq's environment variables override them.
  if (!g_getenv("PGCONNECT_TIMEOUT")) {
    keys.push_back("connect_timeout");
    values.push_back(kConnectTimeoutS);
  }
  if (!g_getenv("PGAPPNAME")) {
    keys.push_back("application_name");
    values.push_back("gst-kirin");
  }
  keys.push_back("dbname");
  values.push_back(uri.c_str());
  keys.push_back(nullptr);
  values.push_back(nullptr);
  auto conn = std::make_shared<PgConn>();
  conn->name = journal_display_name(uri);
  conn->host = this_host();
  conn->conn = PQconnectdbParams(keys.data(), values.data(), 1);
  if (!conn->conn || PQstatus(conn->conn) != CONNECTION_OK) {
    error = conn->conn ? one_line(PQerrorMessage(conn->conn)) : "out of memory";
    return nullptr;
  }
  // The server's notices ("schema already exists, skipping") are not the user's business:
  // libpq would print them on stderr.
  PQsetNoticeProcessor(
      conn->conn, [](void *, const char *) {}, nullptr);
  if (!pg_exec(*conn, "SET TIME ZONE 'UTC'", {}, error))
    return nullptr;
  return conn;
}

} // namespace

PgConn::~PgConn() {
  if (conn)
    PQfinish(conn); // the server lets go of what this connection still held
}

bool pg_exec(PgConn &conn, const char *sql, const PgParams &params, PgResult &result,
             std::string &error) {
  std::vector<const char *> values;
  for (const auto &param : params)
    values.push_back(param ? param->c_str() : nullptr);
  // Without parameters, several statements may go at once (the schema).
  PGresult *answer = params.empty() ? PQexec(conn.conn, sql)
                                    : PQexecParams(conn.conn, sql, (int)values.size(), nullptr,
                                                   values.data(), nullptr, nullptr, 0);
  result.reset(answer);
  ExecStatusType status = answer ? PQresultStatus(answer) : PGRES_FATAL_ERROR;
  if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK)
    return true;
  const char *message = answer ? PQresultErrorMessage(answer) : "";
  if (!*message)
    message = PQerrorMessage(conn.conn);
  error = one_line(message);
  return false;
}

bool pg_exec(PgConn &conn, const char *sql, const PgParams &params, std::string &error) {
  PgResult ignored;
  return pg_exec(conn, sql, params, ignored, error);
}

PgTransaction::~PgTransaction() {
  std::string ignored;
  if (open_)
    pg_exec(conn_, "ROLLBACK", {}, ignored);
}

bool PgTransaction::begin(std::string &error) {
  open_ = pg_exec(conn_, "BEGIN", {}, error);
  return open_;
}

bool PgTransaction::commit(std::string &error) {
  if (!pg_exec(conn_, "COMMIT", {}, error))
    return false;
  open_ = false;
  return true;
}

namespace {

gint64 lock_id_of(const std::string &text) {
  g_autofree char *digest = g_compute_checksum_for_string(G_CHECKSUM_SHA256, text.c_str(), -1);
  return (gint64)g_ascii_strtoull(std::string(digest, 16).c_str(), nullptr, 16);
}

} // namespace

std::string request_lock_id(const std::string &request_key) {
  return std::to_string(lock_id_of("kirin-request-" + request_key));
}

gint64 take_lock_id(const std::string &request_key, gint64 take) {
  return lock_id_of("kirin-take-" + request_key + "-" + std::to_string(take));
}

namespace {

// One row of a result, as read_ledger_row reads it.
struct PgRow {
  const PgResult &result;
  int row;
  bool is_null(int column) const { return result.is_null(row, column); }
  std::string text(int column) const { return result.text(row, column); }
  gint64 integer(int column) const { return result.integer(row, column); }
  double real(int column) const { return result.real(row, column); }
};

} // namespace

LedgerRow pg_read_row(const PgResult &result, int row) {
  return read_ledger_row(PgRow{result, row});
}

bool pg_select_newest(PgConn &conn, const std::string &key, std::optional<LedgerRow> &row,
                      std::string &error) {
  row.reset();
  PgResult result;
  std::string sql = ledger_row_select(LedgerDialect::Server) +
                    "WHERE t.request_key = $2 ORDER BY t.take DESC LIMIT 1";
  if (!pg_exec(conn, sql.c_str(), {conn.host, key}, result, error))
    return false;
  if (result.rows() == 1)
    row = pg_read_row(result, 0);
  return true;
}

bool journal_uri_readable(const std::string &uri) {
  char *message = nullptr; // may quote the URI, password and all: never shown
  PQconninfoOption *options = PQconninfoParse(uri.c_str(), &message);
  PQfreemem(message);
  PQconninfoFree(options);
  return options != nullptr;
}

std::unique_ptr<Ledger> open_pg_ledger(const std::string &uri, std::string &error) {
  std::shared_ptr<PgConn> conn = connect(uri, error);
  if (conn && !ensure_schema(*conn, error))
    conn.reset();
  if (!conn)
    return nullptr;
  return std::make_unique<PgLedger>(std::move(conn));
}

bool PgLedger::update_task(gint64 id, const char *sql, PgParams params, std::string &error) {
  params.insert(params.begin(), std::to_string(id));
  PgResult result;
  if (!pg_exec(*conn_, sql, params, result, error))
    return false;
  if (result.changed() == 1)
    return true;
  error = "the journal has no row " + std::to_string(id);
  return false;
}

bool PgLedger::record_completed(gint64 id, const std::string &result_url,
                                const std::string &result_video_id, double duration,
                                const std::string &cost, std::string &error) {
  char number[G_ASCII_DTOSTR_BUF_SIZE];
  std::optional<std::string> seconds;
  if (duration >= 0)
    seconds = g_ascii_dtostr(number, sizeof number, duration);
  return update_task(id,
                     "UPDATE gst_kirin.tasks SET status = 'completed', result_url = $2, "
                     "result_video_id = $3, duration = $4, cost = $5, completed_at = now(), "
                     "updated_at = now() WHERE id = $1",
                     {result_url, result_video_id, seconds, cost}, error);
}

bool PgLedger::record_failed(gint64 id, std::string &error) {
  return update_task(
      id, "UPDATE gst_kirin.tasks SET status = 'failed', updated_at = now() WHERE id = $1", {},
      error);
}

bool PgLedger::record_create_answer(gint64 id, const std::string &answer, std::string &error) {
  return update_task(
      id, "UPDATE gst_kirin.tasks SET create_answer = $2, updated_at = now() WHERE id = $1",
      {answer}, error);
}

// Kept copies: this machine's rows of gst_kirin.kept. Their times are the statement's own
// (clock_timestamp), so uses within one transaction keep their order.
bool PgLedger::record_media(gint64 id, const std::string &media_file, guint64 media_size,
                            std::string &error) {
  return pg_exec(*conn_,
                 "INSERT INTO gst_kirin.kept (host, media_file, task_row, media_size, used_at) "
                 "VALUES ($1, $2, $3, $4, clock_timestamp()) ON CONFLICT (host, media_file) DO "
                 "UPDATE SET task_row = $3, media_size = $4, used_at = clock_timestamp()",
                 {conn_->host, media_file, std::to_string(id), std::to_string(media_size)}, error);
}

bool PgLedger::touch_media(gint64 id, std::string &error) {
  return pg_exec(*conn_,
                 "UPDATE gst_kirin.kept SET used_at = clock_timestamp() WHERE task_row = $1 AND "
                 "host = $2",
                 {std::to_string(id), conn_->host}, error);
}

bool PgLedger::forget_media(gint64 id, std::string &error) {
  return pg_exec(*conn_, "DELETE FROM gst_kirin.kept WHERE task_row = $1 AND host = $2",
                 {std::to_string(id), conn_->host}, error);
}

bool PgLedger::lookup(const LedgerRequest &request, std::optional<LedgerRow> &row,
                      std::string &error) {
  return pg_select_newest(*conn_, ledger_key(request), row, error);
}

bool PgLedger::adopt(const std::vector<LedgerRow> &, std::string &error) {
  error = "a server's journal takes in no rows";
  return false;
}

bool PgLedger::evict_media(const std::string &dir, guint64 max_bytes,
                           std::vector<std::string> &evicted, std::string &error) {
  evicted.clear();
  // Locked rows: two processes of this machine evicting at once agree on what goes.
  PgTransaction tx(*conn_);
  PgResult kept;
  if (!tx.begin(error) ||
      !pg_exec(*conn_,
               "SELECT media_file, media_size FROM gst_kirin.kept WHERE host = $1 ORDER BY "
               "used_at, task_row FOR UPDATE",
               {conn_->host}, kept, error))
    return false;
  g_autofree char *wanted = g_canonicalize_filename(dir.c_str(), nullptr);
  std::vector<std::pair<std::string, guint64>> in_dir;
  guint64 total = 0;
  for (int i = 0; i < kept.rows(); i++) {
    g_autofree char *file_dir = g_path_get_dirname(kept.text(i, 0).c_str());
    g_autofree char *found = g_canonicalize_filename(file_dir, nullptr);
    if (g_strcmp0(wanted, found) != 0)
      continue; // another cache directory's, with its own limit
    in_dir.emplace_back(kept.text(i, 0), (guint64)kept.integer(i, 1));
    total += in_dir.back().second;
  }
  std::vector<std::string> files;
  for (const auto &[file, size] : in_dir) {
    if (total <= max_bytes)
      break;
    if (!pg_exec(*conn_, "DELETE FROM gst_kirin.kept WHERE host = $1 AND media_file = $2",
                 {conn_->host, file}, error))
      return false;
    files.push_back(file);
    total -= size;
  }
  if (!tx.commit(error))
    return false;
  evicted = std::move(files);
  return true;
}

} // namespace kirin
