#include "ledger-db.h"

#include "ledger-schema.h"

#include <glib/gstdio.h>

#include <cerrno>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

namespace kirin {

LedgerDb::~LedgerDb() {
  // close_v2: statements are all finalized by then, but be lenient rather than leak.
  if (db)
    sqlite3_close_v2(db);
  if (owns_claims_dir)
    remove_claims_dir(claims_dir);
}

std::string sql_error(sqlite3 *db, const std::string &what) {
  return what + ": " + (db ? sqlite3_errmsg(db) : "out of memory");
}

bool sql_exec(sqlite3 *db, const char *sql, std::string &error) {
  char *message = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &message) == SQLITE_OK)
    return true;
  error = std::string(sql) + ": " + (message ? message : sqlite3_errmsg(db));
  sqlite3_free(message);
  return false;
}

Stmt::Stmt(sqlite3 *db, const char *sql) : db_(db) {
  if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK) {
    sqlite3_finalize(stmt_);
    stmt_ = nullptr;
  }
}

void Stmt::bind(int index, const std::string &value) {
  sqlite3_bind_text(stmt_, index, value.data(), (int)value.size(), SQLITE_TRANSIENT);
}

void Stmt::bind(int index, gint64 value) {
  sqlite3_bind_int64(stmt_, index, value);
}

void Stmt::bind(int index, double value) {
  sqlite3_bind_double(stmt_, index, value);
}

void Stmt::bind(int index, const std::optional<double> &value) {
  if (value)
    bind(index, *value);
  else
    bind_null(index);
}

void Stmt::bind_null(int index) {
  sqlite3_bind_null(stmt_, index);
}

int Stmt::step() {
  return stmt_ ? sqlite3_step(stmt_) : SQLITE_ERROR;
}

bool Stmt::run(std::string &error) {
  if (!stmt_) {
    error = sql_error(db_, "cannot prepare a statement");
    return false;
  }
  if (step() == SQLITE_DONE)
    return true;
  error = sql_error(db_, sqlite3_sql(stmt_));
  return false;
}

bool Stmt::is_null(int column) const {
  return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
}

std::string Stmt::text(int column) const {
  const unsigned char *value = sqlite3_column_text(stmt_, column);
  if (!value)
    return "";
  return std::string((const char *)value, (size_t)sqlite3_column_bytes(stmt_, column));
}

gint64 Stmt::integer(int column) const {
  return sqlite3_column_int64(stmt_, column);
}

double Stmt::real(int column) const {
  return sqlite3_column_double(stmt_, column);
}

Transaction::~Transaction() {
  rollback();
}

bool Transaction::begin(std::string &error) {
  if (outer_ && !outer_->open_) {
    error = "the journal's batch transaction is not open";
    return false;
  }
  open_ = sql_exec(db_, outer_ ? "SAVEPOINT step" : "BEGIN IMMEDIATE", error);
  return open_;
}

bool Transaction::commit(std::string &error) {
  if (!sql_exec(db_, outer_ ? "RELEASE step" : "COMMIT", error))
    return false; // the destructor rolls back what is left
  open_ = false;
  return true;
}

void Transaction::rollback() {
  if (!open_)
    return;
  std::string ignored;
  if (outer_)
    sql_exec(db_, "ROLLBACK TO step; RELEASE step", ignored);
  else
    sql_exec(db_, "ROLLBACK", ignored);
  open_ = false;
}

LockTry lock_try(const std::string &path, int &fd, std::string &error) {
  fd = -1;
  // A claimer unlinks its lock file when it lets go. If that happened between our open()
  // and flock(), we hold a lock on a file no one else will open: check that the path still
  // names the locked file, and start again when it does not.
  for (int attempt = 0; attempt < 8; attempt++) {
    int candidate = g_open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (candidate < 0 && errno == ENOENT) {
      // The claims directory went (someone cleaned the cache): made again as needed.
      g_autofree char *dir = g_path_get_dirname(path.c_str());
      if (g_mkdir_with_parents(dir, 0700) == 0)
        candidate = g_open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    }
    if (candidate < 0) {
      error = "cannot open " + path + ": " + g_strerror(errno);
      return LockTry::Error;
    }
    if (flock(candidate, LOCK_EX | LOCK_NB) != 0) {
      int saved = errno;
      close(candidate);
      if (saved == EWOULDBLOCK)
        return LockTry::Held;
      error = "cannot lock " + path + ": " + g_strerror(saved);
      return LockTry::Error;
    }
    struct stat opened, named;
    if (fstat(candidate, &opened) == 0 && stat(path.c_str(), &named) == 0 &&
        opened.st_dev == named.st_dev && opened.st_ino == named.st_ino) {
      fd = candidate;
      return LockTry::Taken;
    }
    close(candidate);
  }
  error = "cannot lock " + path + ": it keeps being replaced";
  return LockTry::Error;
}

void lock_drop(const std::string &path, int &fd, bool unlink_file) {
  if (fd < 0)
    return;
  // Unlink while the lock is held, so no one can lock this file after we let it go and
  // think it is the current one (lock_try checks the path against the file it locked).
  if (unlink_file)
    g_unlink(path.c_str());
  close(fd);
  fd = -1;
}

std::string make_claims_dir(const std::string &parent, std::string &error) {
  g_autofree char *dir = g_build_filename(parent.c_str(), "kirin-ledger-XXXXXX", nullptr);
  if (g_mkdtemp(dir))
    return dir;
  error = std::string("cannot create ") + dir + ": " + g_strerror(errno);
  return "";
}

void remove_claims_dir(const std::string &path) {
  if (GDir *dir = g_dir_open(path.c_str(), 0, nullptr)) {
    while (const char *name = g_dir_read_name(dir)) {
      const std::string entry = path + G_DIR_SEPARATOR_S + name;
      if (g_str_has_suffix(name, ".lock"))
        g_unlink(entry.c_str());
      else if (g_str_has_prefix(name, "kirin-ledger-"))
        remove_claims_dir(entry);
    }
    g_dir_close(dir);
  }
  g_rmdir(path.c_str());
}

gint64 now_seconds() {
  return g_get_real_time() / G_USEC_PER_SEC;
}

void bind_request_columns(Stmt &s, const std::string &key, gint64 take,
                          const LedgerRequest &request, const std::string &external_task_id) {
  const CreateRequest &r = request.request;
  s.bind(1, key);
  s.bind(2, take);
  s.bind(3, (gint64)request.step);
  s.bind(4, (gint64)request.extensions);
  s.bind(5, request.api_url);
  s.bind(6, r.model);
  s.bind(7, r.video_id);
  s.bind(8, r.prompt);
  s.bind(9, r.negative_prompt);
  s.bind(10, r.cfg_scale);
  s.bind(11, r.external_task_id);
  s.bind(12, external_task_id);
  s.bind(13, request.account);
}

bool select_row(sqlite3 *db, const char *where, const std::string &bind,
                std::optional<LedgerRow> &row, std::string &error) {
  row.reset();
  Stmt s(db, (ledger_row_select(LedgerDialect::File) + "WHERE " + where).c_str());
  s.bind(1, bind);
  int rc = s.step();
  if (rc == SQLITE_ROW)
    row = read_ledger_row(s);
  else if (rc != SQLITE_DONE)
    error = sql_error(db, "cannot read the journal");
  return rc == SQLITE_ROW || rc == SQLITE_DONE;
}

bool select_newest(sqlite3 *db, const std::string &key, std::optional<LedgerRow> &row,
                   std::string &error) {
  return select_row(db, "request_key = ?1 ORDER BY take DESC LIMIT 1", key, row, error);
}

bool select_legacy(sqlite3 *db, const LedgerRequest &request, const std::string &key,
                   std::optional<LedgerRow> &newest, bool &adopted, std::string &error) {
  newest.reset();
  adopted = false;
  const std::string legacy = ledger_key_without_account(request);
  if (request.account.empty())
    return true;
  if (!select_newest(db, legacy, newest, error))
    return false;
  if (!newest || !legacy_adoptable(*newest))
    return true;
  Stmt s(db, "UPDATE tasks SET request_key = ?1, account = ?2 WHERE request_key = ?3");
  s.bind(1, key);
  s.bind(2, request.account);
  s.bind(3, legacy);
  adopted = true;
  return s.run(error) && select_newest(db, key, newest, error);
}

std::string lock_path(const LedgerDb &db, const std::string &key, gint64 take) {
  g_autofree char *path = g_build_filename(
      db.claims_dir.c_str(), (key + "-" + std::to_string(take) + ".lock").c_str(), nullptr);
  return path;
}

} // namespace kirin
