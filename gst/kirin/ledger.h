// The ledger of paid tasks: one SQLite database per user
// ($XDG_CACHE_HOME/gst-kirin/journal.db, docs/journal.md) that every process of the user
// shares. One row per step of a chain per "take" of a request. Before a create is sent, a
// process claims the request: the claim is a row plus an flock() on a lock file, so another
// process (or another element of this one) sees "busy" while the claimer lives and
// "abandoned" once it died, without timeouts. Knows nothing of GStreamer elements.
//
// Calls block (disk I/O, up to the busy timeout when another process writes) and are made
// from one thread of a process at a time. Several Ledger objects, in this process or
// others, may use the same file at once.
#pragma once

#include "task.h"

#include <glib.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace kirin {

// What makes two runs "the same" step: where it is sent, what is sent, the user's external
// task ID and the step of the chain of `extensions` steps. The callback URL is not part of
// it (it only says where to notify); the API key is never stored.
struct LedgerRequest {
  std::string api_url;
  CreateRequest request; // external_task_id as the user set it ("" when not set)
  guint extensions = 1;
  guint step = 1;
};

// 64 hex digits: the SHA-256 of every field of the request with its length.
std::string ledger_key(const LedgerRequest &request);

// g_get_user_cache_dir()/gst-kirin/journal.db
std::string default_ledger_path();

// One row: one take of one step.
struct LedgerRow {
  gint64 id = 0;
  std::string request_key;
  gint64 take = 0;
  LedgerRequest request;
  std::string external_task_id; // the one sent (the user's or a generated one)
  std::string task_id;          // "" until the provider answered the create
  std::string status;           // "claimed", "sending", "created", "completed", "failed"
  std::string result_video_id;
  std::string result_url;
  double duration = -1; // -1 when unknown
  std::string cost;     // as the provider wrote it
  std::string media_file;
  guint64 media_size = 0;
  // Unix seconds; 0 when not (yet) set.
  gint64 media_used_at = 0;
  gint64 claimed_at = 0;
  gint64 created_at = 0;
  gint64 completed_at = 0;
  gint64 updated_at = 0;
  gint64 claimer_pid = 0;
};

struct LedgerDb; // the connection and the claims directory; shared by a ledger and its claims

// The right to create one take of a request: its row and the lock that tells others its
// claimer lives. Move-only. Dropping it (or Ledger::release) without a recorded task ID
// deletes the row when the create was not sent, so the next run creates; after
// mark_sending the row stays, and others see it abandoned (the provider may have the task).
class Claim {
public:
  Claim() = default;
  ~Claim();
  Claim(Claim &&other) noexcept;
  Claim &operator=(Claim &&other) noexcept;
  Claim(const Claim &) = delete;
  Claim &operator=(const Claim &) = delete;

  bool held() const { return lock_fd_ >= 0; }
  gint64 row_id() const { return row_id_; }

private:
  friend struct ClaimAccess; // ledger-claim.cpp
  void reset();

  std::shared_ptr<LedgerDb> db_;
  gint64 row_id_ = 0;
  int lock_fd_ = -1;
  std::string lock_path_;
  bool sending_ = false;
};

enum class ClaimResult {
  Claimed,   // create it: `claim` holds the row, `row` says which external ID to send
  Recorded,  // the provider has the task: attach to or replay `row`
  Busy,      // another claimer, alive, is creating it: claim again in a moment
  Abandoned, // a claimer died after sending the create: the provider may have `row`'s
             // task; do not create again (a `fresh` claim makes a new take)
};

struct ClaimOutcome {
  ClaimResult result = ClaimResult::Busy;
  Claim claim;   // held when Claimed
  LedgerRow row; // the newest take's row after the claim
};

class Ledger {
public:
  // Opens or creates the ledger at `path` (its directory too, 0700). Never fails for want
  // of a file: when the path cannot be used the ledger is the process's in-memory one, and
  // a corrupt file is moved aside to `<path>.corrupt-<unix time>` and replaced; both say
  // what happened in `warning` ("" otherwise). "" is the in-memory ledger, without warning.
  // Returns nullptr only when not even the in-memory ledger opens.
  static std::unique_ptr<Ledger> open(const std::string &path, std::string &warning);
  // The in-memory ledger shared by the whole process (for a caller whose file stopped
  // taking writes: see the methods' errors).
  static std::unique_ptr<Ledger> open_memory(std::string &error);

  ~Ledger();
  Ledger(const Ledger &) = delete;
  Ledger &operator=(const Ledger &) = delete;

  // The file's path, or "" for the in-memory ledger.
  const std::string &path() const;

  // Every method below returns false with the reason in `error` when the database refused
  // (disk full, I/O error...); nothing was changed then. A caller may switch to
  // open_memory() for the rest of its run.

  // Decides, in one transaction, whether this caller creates the step's task (see
  // ClaimResult). `fresh` makes a new take whatever the earlier ones are; a failed take
  // also makes a new one. `generated_external_id` is sent when the user gave none. A claim
  // `out` held before is let go first.
  bool claim(const LedgerRequest &request, bool fresh, const std::string &generated_external_id,
             ClaimOutcome &out, std::string &error);
  // Must return true BEFORE the create request leaves: from then on the provider may have
  // the task, and a claimer that dies leaves the row abandoned rather than free. On false,
  // do not send.
  bool mark_sending(Claim &claim, std::string &error);
  // The provider answered the create: status "created", and the claim is let go, so
  // others attach. On false the claim is kept (others wait while this process lives).
  bool record_task_id(Claim &claim, const std::string &task_id, std::string &error);
  // The provider certainly made no task (it refused the create): status "failed", so the
  // next claim makes a new take. The claim is let go.
  bool record_create_refused(Claim &claim, std::string &error);
  // Lets the claim go early (as its destructor does).
  void release(Claim &claim);

  bool record_completed(gint64 id, const std::string &result_url,
                        const std::string &result_video_id, double duration,
                        const std::string &cost, std::string &error);
  bool record_failed(gint64 id, std::string &error);
  // A complete download of the result, kept at `media_file` (a path); used now.
  bool record_media(gint64 id, const std::string &media_file, guint64 media_size,
                    std::string &error);
  // The kept download was replayed now (for eviction, the least recently used goes first).
  bool touch_media(gint64 id, std::string &error);
  // The kept download is gone.
  bool forget_media(gint64 id, std::string &error);

  // The newest take's row of a request, without claiming anything; nullopt when none.
  bool lookup(const LedgerRequest &request, std::optional<LedgerRow> &row, std::string &error);

  // Makes the kept downloads in `dir` fit in `max_bytes`: returns in `evicted` the files to
  // delete, least recently used first, and clears their rows' media columns (the rows
  // stay).
  bool evict_media(const std::string &dir, guint64 max_bytes, std::vector<std::string> &evicted,
                   std::string &error);

private:
  explicit Ledger(std::shared_ptr<LedgerDb> db);

  std::shared_ptr<LedgerDb> db_;
};

} // namespace kirin
