// The ledger of paid tasks: by default one SQLite database per user
// ($XDG_CACHE_HOME/gst-kirin/journal.db) that every process of the user shares, or a
// PostgreSQL database a fleet of machines shares (docs/journal.md). One row per step of a
// chain per "take" of a request. Before a create is sent, a process claims the request: the
// claim is a row plus a lock that lives as long as its claimer (an flock() on a lock file,
// or a session-level advisory lock on the claimer's connection), so another process (or
// another element of this one) sees "busy" while the claimer lives and "abandoned" once it
// died, without timeouts. Knows nothing of GStreamer elements.
//
// Calls block (disk I/O, the network, up to the busy timeout when another process writes)
// and are made from one thread of a process at a time. Several Ledger objects, in this
// process or others, may use the same journal at once.
#pragma once

#include "task.h"

#include <glib.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace kirin {

// What makes two runs "the same" step: the provider account that pays, where it is sent,
// what is sent, the user's external task ID and the step of the chain of `extensions` steps.
// The callback URL is not part of it (it only says where to notify); the API key is never
// stored, only its keyed hash (ledger_account).
struct LedgerRequest {
  std::string account; // ledger_account() of the run's API key; "" in rows from before accounts
  std::string api_url;
  CreateRequest request; // external_task_id as the user set it ("" when not set)
  guint extensions = 1;
  guint step = 1;
};

// The provider account an API key pays with, as the journal knows it: 64 hex digits, the
// HMAC-SHA-256 keyed with the API key of a fixed message. Every process and machine computes
// the same for the same key, and the key cannot be recovered from it (docs/journal.md).
std::string ledger_account(const std::string &api_key);

// 64 hex digits: the SHA-256 of every field of the request with its length. The account is
// one of them when set; without one, the key is the one a request had before the journal
// knew accounts (ledger_key_without_account).
std::string ledger_key(const LedgerRequest &request);
// The key of the same request without its account: where rows from before accounts are.
std::string ledger_key_without_account(const LedgerRequest &request);

// g_get_user_cache_dir()/gst-kirin/journal.db
std::string default_ledger_path();

// The journal is a PostgreSQL server: a postgresql:// (or postgres://) URI, which libpq
// reads (with its environment variables: PGPASSFILE, PGSSLMODE...).
bool journal_on_server(const std::string &journal);
// The journal is a libpq keyword=value string ("host=... dbname=..."), which is not taken
// (validate() refuses it): it starts with one of libpq's connection keywords and '='.
bool journal_is_keyword_string(const std::string &journal);
// The journal for messages and property reads: a path as it is, a URI or a keyword string
// without its password.
std::string journal_display_name(const std::string &journal);
// libpq can read the server's URI (it says nothing yet of the server). Implemented in
// ledger-pg.cpp, which the plugin loads as a module (ledger-server.h); in the plugin, true
// when that module cannot be loaded (Ledger::open's warning then says why).
bool journal_uri_readable(const std::string &uri);

// One row: one take of one step.
struct LedgerRow {
  gint64 id = 0;
  std::string request_key;
  gint64 take = 0;
  LedgerRequest request;        // its account too: ledger_key(request) is request_key
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
  std::string claimer_host; // on a server's journal; "" in a file's
  // A create that left and got no task ID: what came back instead (create_answer_text in
  // run-journal.cpp), so that a later run can say it; "" when nothing was recorded.
  std::string create_answer;
};

// A journal's hold on one claimed take (ledger-claim.cpp for a file, ledger-pg-claim.cpp for
// a server). Destroying it lets the claim go: the row goes when the create was not sent, so
// the next claim creates; after mark_sending the row stays, and others see it abandoned
// (the provider may have the task).
struct ClaimHold {
  virtual ~ClaimHold() = default;
  const void *owner = nullptr; // what it was taken on, so no other journal settles it
  gint64 row_id = 0;
  bool sending = false; // the create may have left: the row stays when the hold goes
};

// The right to create one take of a request. Move-only; dropping it (or Ledger::release)
// without a recorded task ID lets the claim go as ClaimHold says.
class Claim {
public:
  Claim() = default;
  explicit Claim(std::unique_ptr<ClaimHold> hold) : hold_(std::move(hold)) {}

  bool held() const { return hold_ != nullptr; }
  gint64 row_id() const { return hold_ ? hold_->row_id : 0; }
  // The hold, when it was taken on `owner`; nullptr otherwise.
  ClaimHold *hold_on(const void *owner) const {
    return hold_ && hold_->owner == owner ? hold_.get() : nullptr;
  }
  // Ends a claim whose row is settled (created or failed): nothing is deleted.
  void settle() {
    if (hold_)
      hold_->sending = true;
    hold_.reset();
  }
  void release() { hold_.reset(); }

private:
  std::unique_ptr<ClaimHold> hold_;
};

// One claim of several, for Ledger::claim_all: claim()'s arguments.
struct ClaimAsk {
  const LedgerRequest *request = nullptr;
  bool fresh = false;
  std::string generated_external_id;
};

// One step of a claimed create, for Ledger::write_claim_steps.
struct ClaimStep {
  enum class Kind {
    Sending, // the create is leaving: mark_sending
    Created  // the provider answered `task_id`: record_task_id
  };
  Claim *claim = nullptr;
  Kind kind = Kind::Sending;
  std::string task_id; // Created only
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

// What Ledger::push_row did.
struct PushOutcome {
  LedgerRow row; // as the ledger holds it now
  // Inserted as a new take while the ledger held other paid takes of the request (other task
  // IDs, not failed): the same request was paid for twice.
  std::vector<LedgerRow> others;
};

// Rows from before the journal knew accounts are under ledger_key_without_account: a claim that
// finds none under its own key adopts them for its account (the first account to ask owns
// them), once their newest take is settled; a take still claimed or sending is contested
// where it is, and adopted once settled.
bool legacy_adoptable(const LedgerRow &newest);

// A ledger: a SQLite file on this machine (ledger-db.h), the process's in-memory one, or a
// PostgreSQL database a fleet shares (ledger-pg.h, in a module of its own that the plugin
// loads for such a journal only: ledger-server.h). The same rules hold for each.
class Ledger {
public:
  // Opens or creates the ledger `journal` names: a file path (its directory too, 0700), a
  // postgresql:// URI, or "" for the in-memory ledger (without warning). Never fails for
  // want of a file, a server or the module that reaches one: when `journal` cannot be used the
  // ledger is the process's in-memory one, and a corrupt file is moved aside to
  // `<path>.corrupt-<unix time>` and replaced; both say what happened in `warning` ("" otherwise),
  // naming the file or the server (never its password). Returns nullptr only when not even the
  // in-memory ledger opens.
  static std::unique_ptr<Ledger> open(const std::string &journal, std::string &warning);
  // The in-memory ledger shared by the whole process (for a caller whose journal stopped
  // taking writes: see the methods' errors).
  static std::unique_ptr<Ledger> open_memory(std::string &error);
  // An in-memory ledger of its own, apart from the process's: its rows and its claims' lock
  // directory go with its last user (the ledger and the claims taken on it). A server's
  // journal keeps one through each outage, so that a process that lives for weeks through
  // many outages holds only the current one's rows.
  static std::unique_ptr<Ledger> open_transient_memory(std::string &error);

  virtual ~Ledger() = default;
  Ledger(const Ledger &) = delete;
  Ledger &operator=(const Ledger &) = delete;

  // Where it is, for messages: the file's path, the server's URI without its password, or
  // "" for the in-memory ledger.
  virtual const std::string &path() const = 0;

  // Every method below returns false with the reason in `error` when the database refused
  // (disk full, I/O error, server gone...); nothing was changed then. A caller may switch
  // to open_memory() for the rest of its run.

  // Decides, in one transaction, whether this caller creates the step's task (see
  // ClaimResult, and ledger-claiming.h). `generated_external_id` is sent when the user gave none.
  // A claim `out` held before is let go first.
  virtual bool claim(const LedgerRequest &request, bool fresh,
                     const std::string &generated_external_id, ClaimOutcome &out,
                     std::string &error) = 0;
  // Claims for several requests, each as claim() decides, in one transaction: all of
  // them, or none (`out` then empty). Returns false with `error` empty when this ledger
  // claims one at a time only (the default); then call claim for each.
  virtual bool claim_all(const std::vector<ClaimAsk> &asks, std::vector<ClaimOutcome> &out,
                         std::string &error) {
    (void)asks;
    out.clear();
    error.clear();
    return false;
  }
  // Must return true BEFORE the create request leaves: from then on the provider may have
  // the task, and a claimer that dies leaves the row abandoned rather than free. On false,
  // do not send.
  virtual bool mark_sending(Claim &claim, std::string &error) = 0;
  // The provider answered the create: status "created", and the claim is let go, so
  // others attach. On false the claim is kept (others wait while this process lives).
  virtual bool record_task_id(Claim &claim, const std::string &task_id, std::string &error) = 0;
  // Takes several claims' steps, each as mark_sending (ClaimStep::Kind::Sending) or
  // record_task_id does, in one transaction: all of them, or none. Returns false with
  // `error` empty when this ledger takes them one at a time only (the default); then call
  // mark_sending or record_task_id for each.
  virtual bool write_claim_steps(const std::vector<ClaimStep> &steps, std::string &error) {
    (void)steps;
    error.clear();
    return false;
  }
  // The provider certainly made no task (it refused the create): status "failed", so the
  // next claim makes a new take. The claim is let go.
  virtual bool record_create_refused(Claim &claim, std::string &error) = 0;
  // Lets the claim go early (as its destructor does).
  void release(Claim &claim) { claim.release(); }

  virtual bool record_completed(gint64 id, const std::string &result_url,
                                const std::string &result_video_id, double duration,
                                const std::string &cost, std::string &error) = 0;
  virtual bool record_failed(gint64 id, std::string &error) = 0;
  // The create of row `id` left and got no task ID: `answer` says what came back instead.
  // The row stays "sending" (the task may exist); only its create_answer changes.
  virtual bool record_create_answer(gint64 id, const std::string &answer, std::string &error) = 0;
  // A complete download of the result, kept at `media_file` (a path on this machine); used
  // now.
  virtual bool record_media(gint64 id, const std::string &media_file, guint64 media_size,
                            std::string &error) = 0;
  // The kept download was replayed now (for eviction, the least recently used goes first).
  virtual bool touch_media(gint64 id, std::string &error) = 0;
  // The kept download is gone.
  virtual bool forget_media(gint64 id, std::string &error) = 0;

  // The newest take's row of a request, without claiming anything; nullopt when none. Its
  // media columns are this machine's kept copy.
  virtual bool lookup(const LedgerRequest &request, std::optional<LedgerRow> &row,
                      std::string &error) = 0;

  // Makes the kept downloads in `dir` fit in `max_bytes`: returns in `evicted` the files to
  // delete, least recently used first, and clears their rows' media columns (the rows
  // stay).
  virtual bool evict_media(const std::string &dir, guint64 max_bytes,
                           std::vector<std::string> &evicted, std::string &error) = 0;

  // The rows of this process's tasks that this ledger knows, as they last changed, also
  // when the change did not reach the database: a server's journal (journal-server.h)
  // keeps the recent ones, so that its outage loses none of the tasks this process is
  // paying for. Empty for a file's.
  virtual std::vector<LedgerRow> rows_known() const { return {}; }
  // Takes `rows` in (the in-memory ledger, from a ledger that failed): each replaces the
  // take of the same request and number. A row still "claimed" is left out (its create
  // has not left; it comes in once it has).
  virtual bool adopt(const std::vector<LedgerRow> &rows, std::string &error) = 0;

  // Writes a row this process recorded elsewhere (in memory, while a server's journal was
  // unreachable) into this ledger, in the request's turn. Its identity is its request and
  // external_task_id (or `id_hint`, this ledger's id of it when known, 0 otherwise): a row
  // found is advanced to `row`'s status, task ID, result and cost when `row` is further
  // along; otherwise `row` is inserted as a new take, after the request's newest. The kept
  // copy (media_file) is recorded too. Not for rows still "claimed". Returns false with
  // `error` empty when this ledger takes no such rows (the default).
  virtual bool push_row(const LedgerRow &row, gint64 id_hint, PushOutcome &out,
                        std::string &error) {
    (void)row;
    (void)id_hint;
    out = PushOutcome();
    error.clear();
    return false;
  }

protected:
  Ledger() = default;
};

} // namespace kirin
