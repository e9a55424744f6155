// A journal on a PostgreSQL server as the element's side holds it for the whole process
// (journal.cpp keeps one per server URI): the server's ledger while it answers, and during
// an outage the process's in-memory ledger, so that the process still pays once per
// request. What the process records meanwhile (and what it had recorded on the server
// before, as it last changed it) is written to the server once it answers again, row by row
// (Ledger::push_row), so that the fleet learns of every task this process paid for.
//
// Reconnection: a thread of this journal's own, alive only during the outage, tries again
// after 100 ms, doubling up to 1 s, each delay jittered by 20 %; a run that needs the journal
// tries at once when the last attempt is older than 100 ms. An attempt that connects hands
// the new ledger to the journal's worker (journal_work), which writes the rows and from then
// on uses the server. Every other function runs on the journal's worker.
//
// Runs see one ledger throughout: rows of the server keep their ids; rows made in memory get
// ids above kMemoryRowIds, which the server never reaches, and keep them once written to the
// server.
//
// Memory stays bounded in a process that lives for weeks: once the server has every row
// again, the in-memory ledger goes (the next outage starts a new one from the rows below),
// and of the rows settled (on the server, completed or failed, no claim held) only the
// kRowsRemembered most recently used are remembered. A row forgotten is still written to
// while the server answers (by its id there); during an outage its later changes (its kept
// copy) are not recorded, and a run asking for it again pays again unless the server
// answers first.
#pragma once

#include "ledger.h"

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace kirin {

class ServerJournal final : public Ledger, public std::enable_shared_from_this<ServerJournal> {
public:
  // The journal `uri` names (journal_on_server). Connects; when the server cannot be used,
  // starts in an outage and says so in `warning` (naming the server, never its password).
  // nullptr only when not even the in-memory ledger opens.
  static std::shared_ptr<ServerJournal> open(const std::string &uri, std::string &warning);
  ~ServerJournal() override;

  // What the user must hear of since the last call, for the bus (the server lost, a row
  // written back as a take of its own); "" when nothing.
  std::string take_notices();

  const std::string &path() const override { return name_; }
  bool claim(const LedgerRequest &request, bool fresh, const std::string &generated_external_id,
             ClaimOutcome &out, std::string &error) override;
  // As claim(); but when the server does not answer and the request would be created on
  // this process's journal alone, it is claimed only if `create_alone`: otherwise nothing
  // is, `out` is Busy and `server_away` true (the run waits for the server).
  bool claim_or_wait(const LedgerRequest &request, bool fresh,
                     const std::string &generated_external_id, bool create_alone, ClaimOutcome &out,
                     bool &server_away, std::string &error);
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
  std::vector<LedgerRow> rows_known() const override;
  bool adopt(const std::vector<LedgerRow> &rows, std::string &error) override;

  // Runs' ids of rows made in memory start here.
  static constexpr gint64 kMemoryRowIds = G_GINT64_CONSTANT(1) << 52;

  // Settled rows remembered (see above); and how long a row not settled (its run stopped
  // between create and answer) is remembered after its last use.
  static constexpr size_t kRowsRemembered = 1000;
  static constexpr gint64 kUnsettledRowUs = G_GINT64_CONSTANT(3600) * G_USEC_PER_SEC;

  // A claim of row `id` ended (its hold went); if its create was not sent, the row goes.
  void claim_ended(gint64 id, bool sending);

private:
  // A row of this process's: as it last changed it, where it is, and whether the server
  // has that change.
  struct Tracked {
    LedgerRow row;        // row.id is the runs' id
    gint64 server_id = 0; // 0: not on the server yet
    gint64 memory_id = 0; // 0: not in memory
    bool unsent = false;  // changed since the server last had it
    bool held = false;    // a run holds its claim
    guint64 use = 0;      // when last used, in the order of uses (by_use_)
    gint64 used_at_us = 0;
  };
  using Write = std::function<bool(Ledger &, gint64 id, std::string &error)>;

  explicit ServerJournal(const std::string &uri);

  gint64 id_of_server_row(gint64 server_id) const;
  gint64 id_of_memory_row(gint64 memory_id);
  void wrap(ClaimOutcome &inner, bool on_server, ClaimOutcome &out);
  void touch(gint64 id, Tracked &row);
  void forget_old_rows();
  bool write_forgotten(gint64 id, const Write &op, std::string &error);
  bool write(gint64 id, const std::function<void(LedgerRow &)> &change, const Write &op,
             std::string &error);
  bool settle(Claim &claim, const std::function<void(LedgerRow &)> &change, const Write &op,
              const std::function<bool(Ledger &, Claim &, std::string &)> &claim_op,
              std::string &error);
  bool remember_in_memory(Tracked &row, std::string &error);
  bool push(gint64 id, std::string &error);
  bool push_unsent(std::string &error);

  // The outage and its end.
  void lose_server(const std::string &error);
  bool open_memory(std::string &error);
  void forget_memory();
  void reconnect_now_if_due();
  void install(std::shared_ptr<Ledger> server);
  void start_attempts();
  void attempts();

  const std::string uri_, name_;
  std::shared_ptr<Ledger> server_;         // null during an outage
  std::shared_ptr<Ledger> memory_;         // during an outage and until the server has its rows
  gint64 memory_ids_from_ = kMemoryRowIds; // runs' id of memory_'s row 0
  gint64 memory_ids_end_ = kMemoryRowIds;  // above every runs' id given a memory row
  guint64 generation_ = 0;                 // of server_: claims of a lost connection are lost
  std::map<gint64, Tracked> rows_;         // by the runs' id
  std::map<gint64, gint64> by_server_id_, by_memory_id_;
  std::map<guint64, gint64> by_use_; // runs' ids, least recently used first
  guint64 uses_ = 0;
  // The server's ids of forgotten rows that were made in memory, by the runs' id (bounded).
  std::map<gint64, gint64> forgotten_server_ids_;
  std::vector<std::string> notices_;

  // Shared with the attempts' thread.
  std::mutex lock_;
  std::condition_variable changed_;
  bool connected_ = false;         // the worker uses the server (attempts end)
  bool attempting_ = false;        // a connection is being made
  bool wanted_ = false;            // a run needed the server: the next attempt comes soon
  std::shared_ptr<Ledger> handed_; // connected by the attempts' thread, for the worker
  bool thread_running_ = false;
  gint64 last_attempt_us_ = 0; // monotonic
};

} // namespace kirin
