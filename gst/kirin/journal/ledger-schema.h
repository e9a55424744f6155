// The ledger's tables and rows, written once for both databases (docs/journal.md describes
// every column): the schema each ledger creates, the columns it selects for a row, and the
// row read from them. A file's ledger (SQLite) and a server's (PostgreSQL) differ only in
// what their databases differ in: types, how times are kept, and where the kept copies are
// (columns of the row on a file; a table of their own, by host, on a server).
#pragma once

#include "ledger.h"

#include <string>

namespace kirin {

enum class LedgerDialect { File, Server };

// The version written by ledger_schema; a change of meaning needs a new version and a
// migration. Version 1 had no account and no create_answer (ledger_migration_from_v1).
constexpr int kLedgerSchemaVersion = 2;

// The statements that create a new ledger's tables (on a server, in schema gst_kirin, which
// exists already).
std::string ledger_schema(LedgerDialect dialect);
// From version 1: the columns; the rows keep their keys until a claim adopts them.
std::string ledger_migration_from_v1(LedgerDialect dialect);

// What a row select reads, in read_ledger_row's order, from table `tasks` (on a server, as
// `t`, with its kept copy of this host, $1, as `k`): "SELECT <columns> FROM ... ".
std::string ledger_row_select(LedgerDialect dialect);

// The columns of ledger_row_select, by position.
enum RowColumn : int {
  kColId,
  kColRequestKey,
  kColTake,
  kColStep,
  kColExtensions,
  kColApiUrl,
  kColModel,
  kColVideoId,
  kColPrompt,
  kColNegativePrompt,
  kColCfgScale,
  kColUserExternalTaskId,
  kColExternalTaskId,
  kColTaskId,
  kColStatus,
  kColResultVideoId,
  kColResultUrl,
  kColDuration,
  kColCost,
  kColMediaFile,
  kColMediaSize,
  kColMediaUsedAt,
  kColClaimedAt,
  kColCreatedAt,
  kColCompletedAt,
  kColUpdatedAt,
  kColClaimerPid,
  kColClaimerHost,
  kColAccount,
  kColCreateAnswer,
  kRowColumnCount
};

// A row from a result of ledger_row_select: `result` reads a column as is_null(column),
// text(column) ("" for NULL), integer(column) (0 for NULL) and real(column).
template <class Result> LedgerRow read_ledger_row(const Result &result) {
  LedgerRow row;
  row.id = result.integer(kColId);
  row.request_key = result.text(kColRequestKey);
  row.take = result.integer(kColTake);
  row.request.step = (guint)result.integer(kColStep);
  row.request.extensions = (guint)result.integer(kColExtensions);
  row.request.api_url = result.text(kColApiUrl);
  CreateRequest &r = row.request.request;
  r.model = result.text(kColModel);
  r.video_id = result.text(kColVideoId);
  r.prompt = result.text(kColPrompt);
  r.negative_prompt = result.text(kColNegativePrompt);
  if (!result.is_null(kColCfgScale))
    r.cfg_scale = result.real(kColCfgScale);
  r.external_task_id = result.text(kColUserExternalTaskId);
  row.external_task_id = result.text(kColExternalTaskId);
  row.task_id = result.text(kColTaskId);
  row.status = result.text(kColStatus);
  row.result_video_id = result.text(kColResultVideoId);
  row.result_url = result.text(kColResultUrl);
  row.duration = result.is_null(kColDuration) ? -1 : result.real(kColDuration);
  row.cost = result.text(kColCost);
  row.media_file = result.text(kColMediaFile);
  row.media_size = (guint64)result.integer(kColMediaSize);
  row.media_used_at = result.integer(kColMediaUsedAt);
  row.claimed_at = result.integer(kColClaimedAt);
  row.created_at = result.integer(kColCreatedAt);
  row.completed_at = result.integer(kColCompletedAt);
  row.updated_at = result.integer(kColUpdatedAt);
  row.claimer_pid = result.integer(kColClaimerPid);
  row.claimer_host = result.text(kColClaimerHost);
  row.request.account = result.text(kColAccount);
  row.create_answer = result.text(kColCreateAnswer);
  return row;
}

} // namespace kirin
