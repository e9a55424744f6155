#include "ledger-schema.h"

namespace kirin {

namespace {

// How a column is kept, in each database's types.
enum class Kind { Key, Text, MaybeText, Int, MaybeInt, MaybeReal, Time, MaybeTime, Status };

struct TaskColumn {
  const char *name;
  Kind kind;
  enum { Both, FileOnly, ServerOnly } where;
  const char *comment; // "" for none
};

// The tasks table: one row per take of a request.
constexpr TaskColumn kTaskColumns[] = {
    {"id", Kind::Key, TaskColumn::Both, ""},
    {"request_key", Kind::Text, TaskColumn::Both, "ledger_key(): SHA-256 of the request's fields"},
    {"account", Kind::MaybeText, TaskColumn::Both,
     "ledger_account() of the API key; NULL before 2"},
    {"take", Kind::Int, TaskColumn::Both, "1, 2, ...: a fresh request or a failed take adds one"},
    {"step", Kind::Int, TaskColumn::Both, "1.. within a chain of `extensions` steps"},
    {"extensions", Kind::Int, TaskColumn::Both, ""},
    {"api_url", Kind::Text, TaskColumn::Both, ""},
    {"model", Kind::Text, TaskColumn::Both, ""},
    {"video_id", Kind::Text, TaskColumn::Both, ""},
    {"prompt", Kind::Text, TaskColumn::Both, ""},
    {"negative_prompt", Kind::Text, TaskColumn::Both, ""},
    {"cfg_scale", Kind::MaybeReal, TaskColumn::Both, "NULL when not set"},
    {"user_external_task_id", Kind::Text, TaskColumn::Both, "'' when the user gave none"},
    {"external_task_id", Kind::Text, TaskColumn::Both, "the one sent"},
    {"task_id", Kind::MaybeText, TaskColumn::Both, "NULL until the provider answered the create"},
    {"status", Kind::Status, TaskColumn::Both, ""},
    {"result_video_id", Kind::MaybeText, TaskColumn::Both, ""},
    {"result_url", Kind::MaybeText, TaskColumn::Both, ""},
    {"duration", Kind::MaybeReal, TaskColumn::Both, ""},
    {"cost", Kind::MaybeText, TaskColumn::Both, "as the provider wrote it, e.g. '0.28'"},
    {"media_file", Kind::MaybeText, TaskColumn::FileOnly, "the kept download, a path"},
    {"media_size", Kind::MaybeInt, TaskColumn::FileOnly, ""},
    {"media_used_at", Kind::MaybeInt, TaskColumn::FileOnly,
     "unix seconds with microseconds (stored REAL), so uses within a second keep their order"},
    {"claimed_at", Kind::Time, TaskColumn::Both, "on a file, unix seconds, as are the other *_at"},
    {"created_at", Kind::MaybeTime, TaskColumn::Both, ""},
    {"completed_at", Kind::MaybeTime, TaskColumn::Both, ""},
    {"updated_at", Kind::Time, TaskColumn::Both, ""},
    {"claimer_host", Kind::Text, TaskColumn::ServerOnly, "the machine of the claimer"},
    {"claimer_pid", Kind::Int, TaskColumn::Both, ""},
    {"create_answer", Kind::MaybeText, TaskColumn::Both,
     "what a create that got no task ID got instead"},
};

const char *type_of(Kind kind, LedgerDialect dialect) {
  const bool file = dialect == LedgerDialect::File;
  switch (kind) {
  case Kind::Key:
    return file ? "INTEGER PRIMARY KEY" : "bigserial PRIMARY KEY";
  case Kind::Text:
    return file ? "TEXT NOT NULL" : "text NOT NULL";
  case Kind::MaybeText:
    return file ? "TEXT" : "text";
  case Kind::Int:
    return file ? "INTEGER NOT NULL" : "integer NOT NULL";
  case Kind::MaybeInt:
    return file ? "INTEGER" : "bigint";
  case Kind::MaybeReal:
    return file ? "REAL" : "double precision";
  case Kind::Time:
    return file ? "INTEGER NOT NULL" : "timestamptz NOT NULL";
  case Kind::MaybeTime:
    return file ? "INTEGER" : "timestamptz";
  case Kind::Status:
    return file ? "TEXT NOT NULL CHECK (status IN ('claimed', 'sending', 'created', 'completed', "
                  "'failed'))"
                : "text NOT NULL CHECK (status IN ('claimed', 'sending', 'created', "
                  "'completed', 'failed'))";
  }
  return "";
}

bool in(const TaskColumn &column, LedgerDialect dialect) {
  return column.where == TaskColumn::Both ||
         (column.where == TaskColumn::FileOnly) == (dialect == LedgerDialect::File);
}

// The kept copies on a server: each machine keeps its own.
constexpr const char *kServerKept = R"sql(
CREATE TABLE gst_kirin.kept (
  host       text   NOT NULL, -- the machine that keeps the copy
  media_file text   NOT NULL, -- a path on that machine
  task_row   bigint NOT NULL REFERENCES gst_kirin.tasks (id) ON DELETE CASCADE,
  media_size bigint NOT NULL,
  used_at    timestamptz NOT NULL,
  PRIMARY KEY (host, media_file)
);
CREATE INDEX kept_task ON gst_kirin.kept (task_row, host);
)sql";

} // namespace

std::string ledger_schema(LedgerDialect dialect) {
  const bool file = dialect == LedgerDialect::File;
  const std::string tasks = file ? "tasks" : "gst_kirin.tasks";
  std::string sql = "CREATE TABLE " + tasks + " (\n";
  for (const TaskColumn &column : kTaskColumns) {
    if (!in(column, dialect))
      continue;
    sql += std::string("  ") + column.name + " " + type_of(column.kind, dialect) + ",";
    if (*column.comment)
      sql += std::string(" -- ") + column.comment;
    sql += "\n";
  }
  sql += "  UNIQUE (request_key, take)\n);\n";
  sql += "CREATE INDEX tasks_result_video ON " + tasks + " (result_video_id);\n";
  if (!file)
    sql += kServerKept;
  return sql;
}

std::string ledger_migration_from_v1(LedgerDialect dialect) {
  return dialect == LedgerDialect::File
             ? "ALTER TABLE tasks ADD COLUMN account TEXT; "
               "ALTER TABLE tasks ADD COLUMN create_answer TEXT"
             : "ALTER TABLE gst_kirin.tasks ADD COLUMN account text, ADD COLUMN create_answer text";
}

std::string ledger_row_select(LedgerDialect dialect) {
  if (dialect == LedgerDialect::File)
    return "SELECT id, request_key, take, step, extensions, api_url, model, video_id, prompt, "
           "negative_prompt, cfg_scale, user_external_task_id, external_task_id, task_id, "
           "status, result_video_id, result_url, duration, cost, media_file, media_size, "
           "media_used_at, claimed_at, created_at, completed_at, updated_at, claimer_pid, '', "
           "account, create_answer FROM tasks ";
  return "SELECT t.id, t.request_key, t.take, t.step, t.extensions, t.api_url, t.model, "
         "t.video_id, t.prompt, t.negative_prompt, t.cfg_scale, t.user_external_task_id, "
         "t.external_task_id, t.task_id, t.status, t.result_video_id, t.result_url, t.duration, "
         "t.cost, k.media_file, k.media_size, extract(epoch FROM k.used_at)::bigint, "
         "extract(epoch FROM t.claimed_at)::bigint, extract(epoch FROM t.created_at)::bigint, "
         "extract(epoch FROM t.completed_at)::bigint, extract(epoch FROM t.updated_at)::bigint, "
         "t.claimer_pid, t.claimer_host, t.account, t.create_answer FROM gst_kirin.tasks t "
         "LEFT JOIN LATERAL (SELECT media_file, media_size, used_at FROM gst_kirin.kept WHERE "
         "task_row = t.id AND host = $1 ORDER BY used_at DESC LIMIT 1) k ON true ";
}

} // namespace kirin
