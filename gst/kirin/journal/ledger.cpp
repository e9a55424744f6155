#include "ledger.h"

#include "ledger-db.h"
#include "ledger-schema.h"
#include "ledger-server.h"

#include <glib/gstdio.h>

#include <atomic>
#include <cerrno>
#include <fcntl.h>
#include <functional>
#include <mutex>
#include <unistd.h>

namespace kirin {

namespace {

// The process's in-memory ledger. The memdb VFS shares a database among the connections of
// a process that name it, with the usual locking (unlike shared-cache mode, where the busy
// timeout does not apply); it lives while one connection is open, so one is kept forever.
constexpr int kBusyTimeoutMs = 5000;

constexpr const char *kMemoryUri = "file:/kirin-ledger?vfs=memdb";

bool is_corruption(sqlite3 *db) {
  int code = sqlite3_errcode(db) & 0xff;
  return code == SQLITE_NOTADB || code == SQLITE_CORRUPT;
}

// WAL, so readers never wait for a writer; FULL, so a committed "sending" survives a power
// cut and the task is not created twice after a reboot.
bool configure_file(sqlite3 *db, bool &corrupt, std::string &error) {
  Stmt wal(db, "PRAGMA journal_mode = WAL");
  int rc = wal.step();
  // Switching a new file to WAL needs it to itself, and SQLite answers "busy" at once rather
  // than calling the busy handler: while other processes open the same new file, wait here
  // (up to the busy timeout), since giving up would split them onto private ledgers.
  for (int waited_ms = 0; (rc & 0xff) == SQLITE_BUSY && waited_ms < kBusyTimeoutMs;
       waited_ms += 20) {
    g_usleep(20 * 1000);
    sqlite3_reset(wal.get());
    rc = wal.step();
  }
  if (rc != SQLITE_ROW || wal.text(0) != "wal") {
    corrupt = is_corruption(db);
    error = rc == SQLITE_ROW ? "it cannot use write-ahead logging" : sqlite3_errmsg(db);
    return false;
  }
  // SQLite opens a file it may not write read-only, without a word.
  if (sqlite3_db_readonly(db, "main") == 1) {
    error = "it is read-only";
    return false;
  }
  if (!sql_exec(db, "PRAGMA synchronous = FULL", error))
    return false;
  Stmt check(db, "PRAGMA quick_check");
  rc = check.step();
  if (rc != SQLITE_ROW || check.text(0) != "ok") {
    corrupt = rc == SQLITE_ROW || is_corruption(db);
    error = rc == SQLITE_ROW ? "quick_check: " + check.text(0) : sqlite3_errmsg(db);
    return false;
  }
  return true;
}

bool read_version(sqlite3 *db, gint64 &version, std::string &error) {
  Stmt s(db, "PRAGMA user_version");
  if (s.step() != SQLITE_ROW) {
    error = sql_error(db, "cannot read the schema version");
    return false;
  }
  version = s.integer(0);
  return true;
}

// Creates the schema on first use, or migrates an older one (its version is kept in PRAGMA
// user_version), in a write transaction that looks again, so two processes starting at once
// do not both do it.
bool ensure_schema(sqlite3 *db, std::string &error) {
  gint64 found = 0;
  if (!read_version(db, found, error))
    return false;
  if (found < kLedgerSchemaVersion) {
    Transaction tx(db);
    if (!tx.begin(error) || !read_version(db, found, error))
      return false;
    const std::string set_version = "PRAGMA user_version = " + std::to_string(kLedgerSchemaVersion);
    if (found < kLedgerSchemaVersion) {
      if (!sql_exec(db,
                    (found == 0 ? ledger_schema(LedgerDialect::File)
                                : ledger_migration_from_v1(LedgerDialect::File))
                        .c_str(),
                    error) ||
          !sql_exec(db, set_version.c_str(), error) || !tx.commit(error))
        return false;
      found = kLedgerSchemaVersion;
    }
  }
  if (found != kLedgerSchemaVersion) {
    error = "it was written by a newer gst-kirin (schema version " + std::to_string(found) + ")";
    return false;
  }
  return true;
}

sqlite3 *connect(const char *name, int flags, std::string &error) {
  sqlite3 *db = nullptr;
  if (sqlite3_open_v2(name, &db, flags | SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
      SQLITE_OK) {
    error = sql_error(db, std::string("cannot open ") + name);
    sqlite3_close_v2(db);
    return nullptr;
  }
  sqlite3_extended_result_codes(db, 1);
  // Another process's write transaction lasts milliseconds; wait that long, not forever.
  sqlite3_busy_timeout(db, kBusyTimeoutMs);
  return db;
}

// The connection to the file at `path`, or nullptr with the reason; `corrupt` tells a file
// that is not a usable database from one that cannot be opened or written.
std::shared_ptr<LedgerDb> open_file(const std::string &path, bool &corrupt, std::string &error) {
  corrupt = false;
  auto ledger = std::make_shared<LedgerDb>();
  ledger->path = path;
  ledger->claims_dir = path + ".claims";
  // Prompts and task IDs are the user's business: the file is theirs alone (SQLite would
  // make it 0644; its -wal and -shm files take the mode of the database).
  int fd = g_open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd >= 0)
    close(fd);
  ledger->db = connect(path.c_str(), 0, error);
  if (!ledger->db || !configure_file(ledger->db, corrupt, error))
    return nullptr;
  if (!ensure_schema(ledger->db, error)) {
    corrupt = is_corruption(ledger->db);
    return nullptr;
  }
  if (g_mkdir_with_parents(ledger->claims_dir.c_str(), 0700) != 0) {
    error = "cannot create " + ledger->claims_dir + ": " + g_strerror(errno);
    return nullptr;
  }
  return ledger;
}

// Keeps a corrupt file (someone may want to recover its tasks) under a new name, with its
// write-ahead log and shared memory, and returns that name.
bool move_aside(const std::string &path, std::string &aside, std::string &error) {
  std::string base = path + ".corrupt-" + std::to_string(now_seconds());
  aside = base;
  for (int n = 1; g_file_test(aside.c_str(), G_FILE_TEST_EXISTS); n++)
    aside = base + "-" + std::to_string(n);
  if (g_rename(path.c_str(), aside.c_str()) != 0) {
    error = "cannot move it to " + aside + ": " + g_strerror(errno);
    return false;
  }
  for (const char *suffix : {"-wal", "-shm"})
    g_rename((path + suffix).c_str(), (aside + suffix).c_str());
  return true;
}

// The file's ledger; a corrupt file is moved aside and replaced. nullptr with `problem`
// when the path cannot be used.
std::shared_ptr<LedgerDb> open_path(const std::string &path, std::string &warning,
                                    std::string &problem) {
  g_autofree char *dir = g_path_get_dirname(path.c_str());
  if (g_mkdir_with_parents(dir, 0700) != 0) {
    problem = std::string("cannot create ") + dir + ": " + g_strerror(errno);
    return nullptr;
  }
  GStatBuf before;
  bool existed = g_stat(path.c_str(), &before) == 0;
  bool corrupt = false;
  auto ledger = open_file(path, corrupt, problem);
  if (ledger || !corrupt)
    return ledger;
  // Another process may have moved the file aside since we looked: then it is not ours to
  // move, and the new file is opened as it is.
  GStatBuf now;
  bool same = existed && g_stat(path.c_str(), &now) == 0 && now.st_ino == before.st_ino &&
              now.st_dev == before.st_dev;
  std::string reason = problem, aside;
  if (same && !move_aside(path, aside, problem))
    return nullptr;
  ledger = open_file(path, corrupt, problem);
  if (!ledger && same)
    problem += " (the corrupt file was moved to " + aside + ")";
  if (ledger && same)
    warning = path + " is not a usable journal (" + reason + "): moved it to " + aside +
              " and started a new one";
  return ledger;
}

// The in-memory ledger's lock files live in a directory of this process's own, made when
// the ledger is first needed. The process's normal exit removes it, with the lock files of
// claims still held then, so that processes that fell back to memory leave nothing in /tmp.
// A forked child inherits the directory but is not its owner: its exit leaves it.
struct ProcessClaimsDir {
  std::string path;
  pid_t owner = 0;
  ~ProcessClaimsDir() {
    if (!path.empty() && getpid() == owner)
      remove_claims_dir(path);
  }
};

std::mutex memory_mutex;
sqlite3 *memory_keeper = nullptr; // never closed: it keeps the in-memory ledger alive
ProcessClaimsDir memory_claims_dir;

// The process's claims directory, made on first use (memory_mutex held). The transient
// in-memory ledgers make theirs inside it, so that an exit during an outage leaves nothing.
const std::string &process_claims_dir(std::string &error) {
  if (memory_claims_dir.path.empty()) {
    memory_claims_dir.path = make_claims_dir(g_get_tmp_dir(), error);
    memory_claims_dir.owner = getpid();
  }
  return memory_claims_dir.path;
}

std::shared_ptr<LedgerDb> open_memory_db(std::string &error) {
  std::lock_guard<std::mutex> lock(memory_mutex);
  if (!memory_keeper) {
    if (process_claims_dir(error).empty())
      return nullptr;
    memory_keeper = connect(kMemoryUri, SQLITE_OPEN_URI, error);
    if (!memory_keeper || !ensure_schema(memory_keeper, error)) {
      sqlite3_close_v2(memory_keeper);
      memory_keeper = nullptr;
      return nullptr;
    }
  }
  auto ledger = std::make_shared<LedgerDb>();
  ledger->claims_dir = memory_claims_dir.path;
  ledger->db = connect(kMemoryUri, SQLITE_OPEN_URI, error);
  return ledger->db ? ledger : nullptr;
}

} // namespace

namespace {

// Every field with its length, so no two requests give the same text; the account only when
// set, so that a request without one has the key it had before the journal knew accounts.
std::string key_of(const LedgerRequest &request, bool with_account) {
  const CreateRequest &r = request.request;
  std::string text = "kirin-ledger-1\n";
  auto add = [&text](const char *name, const std::string &value) {
    text += std::string(name) + "=" + std::to_string(value.size()) + ":" + value + "\n";
  };
  if (with_account && !request.account.empty())
    add("account", request.account);
  add("api_url", request.api_url);
  add("model", r.model);
  add("video_id", r.video_id);
  add("prompt", r.prompt);
  add("negative_prompt", r.negative_prompt);
  if (r.cfg_scale) {
    char number[G_ASCII_DTOSTR_BUF_SIZE];
    add("cfg_scale", g_ascii_dtostr(number, sizeof number, *r.cfg_scale));
  }
  add("external_task_id", r.external_task_id);
  add("extensions", std::to_string(request.extensions));
  add("step", std::to_string(request.step));
  g_autofree char *digest =
      g_compute_checksum_for_data(G_CHECKSUM_SHA256, (const guchar *)text.data(), text.size());
  return digest;
}

// What the API key signs: fixed, so that every process of a fleet computes the same account
// for the same key, also one that started while the fleet's server was away.
constexpr const char *kAccountMessage = "gst-kirin account 1";

} // namespace

std::string ledger_account(const std::string &api_key) {
  if (api_key.empty())
    return {};
  g_autofree char *digest = g_compute_hmac_for_string(
      G_CHECKSUM_SHA256, (const guchar *)api_key.data(), api_key.size(), kAccountMessage, -1);
  return digest;
}

std::string ledger_key(const LedgerRequest &request) {
  return key_of(request, true);
}

std::string ledger_key_without_account(const LedgerRequest &request) {
  return key_of(request, false);
}

bool legacy_adoptable(const LedgerRow &newest) {
  return newest.status != "claimed" && newest.status != "sending";
}

std::string default_ledger_path() {
  g_autofree char *path =
      g_build_filename(g_get_user_cache_dir(), "gst-kirin", "journal.db", nullptr);
  return path;
}

std::unique_ptr<Ledger> Ledger::open(const std::string &path, std::string &warning) {
  warning.clear();
  if (path.empty())
    return open_memory(warning);
  std::string problem;
  if (journal_on_server(path)) {
    if (auto ledger = open_pg_ledger(path, problem))
      return ledger;
  } else if (auto db = open_path(path, warning, problem)) {
    return std::make_unique<FileLedger>(std::move(db));
  }
  std::string error;
  auto memory = open_memory(error);
  warning = "cannot use the journal " + journal_display_name(path) + " (" + problem +
            "): this process keeps its tasks in memory only";
  if (!memory)
    warning += ", and that failed too: " + error;
  return memory;
}

std::unique_ptr<Ledger> Ledger::open_memory(std::string &error) {
  auto db = open_memory_db(error);
  return db ? std::make_unique<FileLedger>(std::move(db)) : nullptr;
}

std::unique_ptr<Ledger> Ledger::open_transient_memory(std::string &error) {
  static std::atomic<guint64> made{0};
  auto db = std::make_shared<LedgerDb>();
  {
    std::lock_guard<std::mutex> lock(memory_mutex);
    const std::string &parent = process_claims_dir(error);
    if (parent.empty())
      return nullptr;
    db->claims_dir = make_claims_dir(parent, error);
  }
  if (db->claims_dir.empty())
    return nullptr;
  db->owns_claims_dir = true;
  // A memdb database of its own name: freed when its one connection closes.
  const std::string uri = "file:/kirin-ledger-transient-" + std::to_string(getpid()) + "-" +
                          std::to_string(made++) + "?vfs=memdb";
  db->db = connect(uri.c_str(), SQLITE_OPEN_URI, error);
  if (!db->db || !ensure_schema(db->db, error))
    return nullptr;
  return std::make_unique<FileLedger>(std::move(db));
}

namespace {

// Runs an UPDATE of row ?1 (?2 is the time now; `bind` sets the others), which must exist.
bool update_row(sqlite3 *db, gint64 id, const char *sql, const std::function<void(Stmt &)> &bind,
                std::string &error) {
  Stmt s(db, sql);
  s.bind(1, id);
  s.bind(2, now_seconds());
  bind(s);
  if (!s.run(error))
    return false;
  if (sqlite3_changes(db) == 1)
    return true;
  error = "the journal has no row " + std::to_string(id);
  return false;
}

void bind_nothing(Stmt &) {}

// media_used_at: finer than the other times, because eviction orders copies by it and a
// copy kept, replayed and evicted within one second must still go in the order of use (in
// whole seconds, ties fall back to the row's age: the oldest row, not the least used).
double used_now() {
  return g_get_real_time() / (double)G_USEC_PER_SEC;
}

constexpr const char *kForgetMedia = "UPDATE tasks SET media_file = NULL, media_size = NULL, "
                                     "media_used_at = NULL, updated_at = ?2 WHERE id = ?1";

} // namespace

bool FileLedger::record_completed(gint64 id, const std::string &result_url,
                                  const std::string &result_video_id, double duration,
                                  const std::string &cost, std::string &error) {
  return update_row(
      db_->db, id,
      "UPDATE tasks SET status = 'completed', result_url = ?3, result_video_id = ?4, "
      "duration = ?5, cost = ?6, completed_at = ?2, updated_at = ?2 WHERE id = ?1",
      [&](Stmt &s) {
        s.bind(3, result_url);
        s.bind(4, result_video_id);
        s.bind(5, duration >= 0 ? std::optional<double>(duration) : std::nullopt);
        s.bind(6, cost);
      },
      error);
}

bool FileLedger::record_failed(gint64 id, std::string &error) {
  return update_row(db_->db, id,
                    "UPDATE tasks SET status = 'failed', updated_at = ?2 WHERE id = ?1",
                    bind_nothing, error);
}

bool FileLedger::record_create_answer(gint64 id, const std::string &answer, std::string &error) {
  return update_row(
      db_->db, id, "UPDATE tasks SET create_answer = ?3, updated_at = ?2 WHERE id = ?1",
      [&](Stmt &s) { s.bind(3, answer); }, error);
}

bool FileLedger::record_media(gint64 id, const std::string &media_file, guint64 media_size,
                              std::string &error) {
  return update_row(
      db_->db, id,
      "UPDATE tasks SET media_file = ?3, media_size = ?4, media_used_at = ?5, "
      "updated_at = ?2 WHERE id = ?1",
      [&](Stmt &s) {
        s.bind(3, media_file);
        s.bind(4, (gint64)media_size);
        s.bind(5, used_now());
      },
      error);
}

bool FileLedger::touch_media(gint64 id, std::string &error) {
  return update_row(
      db_->db, id, "UPDATE tasks SET media_used_at = ?3 WHERE id = ?1",
      [](Stmt &s) { s.bind(3, used_now()); }, error);
}

bool FileLedger::forget_media(gint64 id, std::string &error) {
  return update_row(db_->db, id, kForgetMedia, bind_nothing, error);
}

bool FileLedger::lookup(const LedgerRequest &request, std::optional<LedgerRow> &row,
                        std::string &error) {
  return select_newest(db_->db, ledger_key(request), row, error);
}

bool FileLedger::evict_media(const std::string &dir, guint64 max_bytes,
                             std::vector<std::string> &evicted, std::string &error) {
  evicted.clear();
  sqlite3 *db = db_->db;
  // One transaction: two processes evicting at once agree on what goes.
  Transaction tx(db);
  if (!tx.begin(error))
    return false;
  Stmt s(db, "SELECT id, media_file, media_size FROM tasks WHERE media_file IS NOT NULL "
             "ORDER BY media_used_at, id");
  struct Media {
    gint64 id;
    std::string file;
    guint64 size;
  };
  std::vector<Media> kept;
  guint64 total = 0;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) {
    std::string file = s.text(1);
    g_autofree char *file_dir = g_path_get_dirname(file.c_str());
    g_autofree char *wanted = g_canonicalize_filename(dir.c_str(), nullptr);
    g_autofree char *found = g_canonicalize_filename(file_dir, nullptr);
    if (g_strcmp0(wanted, found) != 0)
      continue; // another cache directory's, with its own limit
    kept.push_back({s.integer(0), file, (guint64)s.integer(2)});
    total += kept.back().size;
  }
  if (rc != SQLITE_DONE) {
    error = sql_error(db, "cannot read the journal");
    return false;
  }
  std::vector<std::string> files;
  for (const Media &media : kept) {
    if (total <= max_bytes)
      break;
    if (!update_row(db, media.id, kForgetMedia, bind_nothing, error))
      return false;
    files.push_back(media.file);
    total -= media.size;
  }
  if (!tx.commit(error))
    return false;
  evicted = std::move(files);
  return true;
}

bool FileLedger::adopt(const std::vector<LedgerRow> &rows, std::string &error) {
  Transaction tx(db_->db);
  if (!tx.begin(error))
    return false;
  for (const LedgerRow &row : rows) {
    if (row.status == "claimed")
      continue;
    Stmt s(db_->db,
           "INSERT INTO tasks (request_key, take, step, extensions, api_url, model, video_id, "
           "prompt, negative_prompt, cfg_scale, user_external_task_id, external_task_id, account, "
           "task_id, status, result_video_id, result_url, duration, cost, claimed_at, "
           "created_at, completed_at, updated_at, claimer_pid, create_answer) VALUES (?1, ?2, ?3, "
           "?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, NULLIF(?13, ''), NULLIF(?14, ''), ?15, "
           "NULLIF(?16, ''), NULLIF(?17, ''), ?18, NULLIF(?19, ''), ?20, NULLIF(?21, 0), "
           "NULLIF(?22, 0), ?23, ?24, NULLIF(?25, '')) "
           "ON CONFLICT (request_key, take) DO UPDATE SET task_id = excluded.task_id, "
           "status = excluded.status, result_video_id = excluded.result_video_id, "
           "result_url = excluded.result_url, duration = excluded.duration, "
           "cost = excluded.cost, created_at = excluded.created_at, "
           "completed_at = excluded.completed_at, updated_at = excluded.updated_at, "
           "create_answer = excluded.create_answer");
    bind_request_columns(s, row.request_key, row.take, row.request, row.external_task_id);
    s.bind(14, row.task_id);
    s.bind(15, row.status);
    s.bind(16, row.result_video_id);
    s.bind(17, row.result_url);
    s.bind(18, row.duration >= 0 ? std::optional<double>(row.duration) : std::nullopt);
    s.bind(19, row.cost);
    s.bind(20, row.claimed_at ? row.claimed_at : now_seconds());
    s.bind(21, row.created_at);
    s.bind(22, row.completed_at);
    s.bind(23, now_seconds());
    s.bind(24, row.claimer_pid);
    s.bind(25, row.create_answer);
    if (!s.run(error))
      return false;
  }
  return tx.commit(error);
}

} // namespace kirin
