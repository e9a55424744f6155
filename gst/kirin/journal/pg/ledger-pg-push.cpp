// Rows this process recorded while the server was unreachable, written to the server once it
// answers again (Ledger::push_row; journal-server.cpp decides what to push). Each row is
// written in its request's turn, the advisory lock claimers take, so a claim on another
// machine never reads the request between the look for the row and its insert.
#include "ledger-pg.h"
#include "ledger-schema.h"

#include "ledger-db.h"

#include <unistd.h>

namespace kirin {

namespace {

// How far along a row is: a push never takes a row back to an earlier status.
int rank(const std::string &status) {
  if (status == "sending")
    return 1;
  if (status == "created")
    return 2;
  if (status == "completed")
    return 3;
  if (status == "failed")
    return 4; // refused, failed or gone at the provider: nothing comes after
  return 0;   // claimed
}

std::optional<std::string> text_or_null(const std::string &text) {
  return text.empty() ? std::nullopt : std::optional<std::string>(text);
}

std::optional<std::string> seconds_or_null(gint64 seconds) {
  return seconds > 0 ? std::optional<std::string>(std::to_string(seconds)) : std::nullopt;
}

std::optional<std::string> real_or_null(double value, bool present) {
  char number[G_ASCII_DTOSTR_BUF_SIZE];
  if (!present)
    return std::nullopt;
  return std::string(g_ascii_dtostr(number, sizeof number, value));
}

// The server's row that is `row`: `id_hint`, or the take of the request that sent the same
// external_task_id and has the same task ID (or none yet).
bool find_same(PgConn &conn, const LedgerRow &row, gint64 id_hint, std::optional<LedgerRow> &found,
               std::string &error) {
  found.reset();
  const std::string sql = ledger_row_select(LedgerDialect::Server) +
                          "WHERE t.request_key = $2 AND (t.id = $3 OR (t.external_task_id = $4 AND "
                          "(t.task_id IS NULL OR $5 = '' OR t.task_id = $5))) "
                          "ORDER BY (t.id = $3) DESC, t.take DESC LIMIT 1";
  PgResult result;
  if (!pg_exec(
          conn, sql.c_str(),
          {conn.host, row.request_key, std::to_string(id_hint), row.external_task_id, row.task_id},
          result, error))
    return false;
  if (result.rows() == 1)
    found = pg_read_row(result, 0);
  return true;
}

// The paid takes of the request the server holds under other task IDs.
bool other_takes(PgConn &conn, const LedgerRow &row, std::vector<LedgerRow> &others,
                 std::string &error) {
  const std::string sql = ledger_row_select(LedgerDialect::Server) +
                          "WHERE t.request_key = $2 AND t.task_id IS NOT NULL AND t.task_id <> $3 "
                          "AND t.status <> 'failed' ORDER BY t.take";
  PgResult result;
  if (!pg_exec(conn, sql.c_str(), {conn.host, row.request_key, row.task_id}, result, error))
    return false;
  for (int i = 0; i < result.rows(); i++)
    others.push_back(pg_read_row(result, i));
  return true;
}

bool advance(PgConn &conn, gint64 id, const LedgerRow &row, std::string &error) {
  return pg_exec(
      conn,
      "UPDATE gst_kirin.tasks SET status = $2, task_id = coalesce($3, task_id), "
      "result_video_id = coalesce($4, result_video_id), result_url = coalesce($5, result_url), "
      "duration = coalesce($6::double precision, duration), cost = coalesce($7, cost), "
      "created_at = coalesce(created_at, to_timestamp($8::bigint)), "
      "completed_at = coalesce(completed_at, to_timestamp($9::bigint)), "
      "create_answer = coalesce($10, create_answer), updated_at = now() WHERE id = $1",
      {std::to_string(id), row.status, text_or_null(row.task_id), text_or_null(row.result_video_id),
       text_or_null(row.result_url), real_or_null(row.duration, row.duration >= 0),
       text_or_null(row.cost), seconds_or_null(row.created_at), seconds_or_null(row.completed_at),
       text_or_null(row.create_answer)},
      error);
}

// `row` as the request's newest take; its new id in `id`.
bool insert_take(PgConn &conn, const LedgerRow &row, gint64 &id, std::string &error) {
  const LedgerRequest &request = row.request;
  const CreateRequest &r = request.request;
  PgResult result;
  if (!pg_exec(
          conn,
          "INSERT INTO gst_kirin.tasks (request_key, take, step, extensions, api_url, model, "
          "video_id, prompt, negative_prompt, cfg_scale, user_external_task_id, external_task_id, "
          "task_id, status, result_video_id, result_url, duration, cost, claimed_at, created_at, "
          "completed_at, updated_at, claimer_host, claimer_pid, account, create_answer) VALUES "
          "($1, "
          "(SELECT coalesce(max(take), 0) + 1 FROM gst_kirin.tasks WHERE request_key = $1), $2, "
          "$3, $4, $5, $6, $7, $8, $9::double precision, $10, $11, $12, $13, $14, $15, "
          "$16::double precision, $17, coalesce(to_timestamp($18::bigint), now()), "
          "to_timestamp($19::bigint), to_timestamp($20::bigint), now(), $21, $22, $23, $24) "
          "RETURNING id",
          {row.request_key,
           std::to_string(request.step),
           std::to_string(request.extensions),
           request.api_url,
           r.model,
           r.video_id,
           r.prompt,
           r.negative_prompt,
           real_or_null(r.cfg_scale.value_or(0), r.cfg_scale.has_value()),
           r.external_task_id,
           row.external_task_id,
           text_or_null(row.task_id),
           row.status,
           text_or_null(row.result_video_id),
           text_or_null(row.result_url),
           real_or_null(row.duration, row.duration >= 0),
           text_or_null(row.cost),
           seconds_or_null(row.claimed_at),
           seconds_or_null(row.created_at),
           seconds_or_null(row.completed_at),
           conn.host,
           std::to_string(getpid()),
           text_or_null(request.account),
           text_or_null(row.create_answer)},
          result, error))
    return false;
  id = result.integer(0, 0);
  return true;
}

bool keep_copy(PgConn &conn, gint64 id, const LedgerRow &row, std::string &error) {
  if (row.media_file.empty())
    return true;
  return pg_exec(conn,
                 "INSERT INTO gst_kirin.kept (host, media_file, task_row, media_size, used_at) "
                 "VALUES ($1, $2, $3, $4, coalesce(to_timestamp($5::bigint), clock_timestamp())) "
                 "ON CONFLICT (host, media_file) DO UPDATE SET task_row = $3, media_size = $4, "
                 "used_at = excluded.used_at",
                 {conn.host, row.media_file, std::to_string(id), std::to_string(row.media_size),
                  seconds_or_null(row.media_used_at)},
                 error);
}

} // namespace

bool PgLedger::push_row(const LedgerRow &row, gint64 id_hint, PushOutcome &out,
                        std::string &error) {
  out = PushOutcome();
  if (row.status == "claimed") {
    error = "a claimed row is not pushed";
    return false;
  }
  PgTransaction tx(*conn_);
  std::optional<LedgerRow> same;
  if (!tx.begin(error) ||
      !pg_exec(*conn_, "SELECT pg_advisory_xact_lock($1::bigint)",
               {request_lock_id(row.request_key)}, error) ||
      !find_same(*conn_, row, id_hint, same, error))
    return false;
  gint64 id = same ? same->id : 0;
  std::vector<LedgerRow> others;
  // Further along, or what its create got back, which the server's row lacks; never back.
  const bool further = same && rank(row.status) > rank(same->status);
  if (same && (further || (!row.create_answer.empty() && same->create_answer.empty()))) {
    LedgerRow newer = row;
    newer.status = further ? row.status : same->status;
    if (!advance(*conn_, id, newer, error))
      return false;
  }
  if (!same && (!other_takes(*conn_, row, others, error) || !insert_take(*conn_, row, id, error)))
    return false;
  PgResult result;
  const std::string sql = ledger_row_select(LedgerDialect::Server) + "WHERE t.id = $2";
  if (!keep_copy(*conn_, id, row, error) ||
      !pg_exec(*conn_, sql.c_str(), {conn_->host, std::to_string(id)}, result, error) ||
      !tx.commit(error))
    return false;
  out.row = pg_read_row(result, 0);
  out.others = std::move(others);
  return true;
}

} // namespace kirin
