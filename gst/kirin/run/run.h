// One run of the element: from READY→PAUSED to PAUSED→READY. It owns a snapshot of the
// settings, its step of a chain, its current job and its queue of results to expose. The
// element holds it; jobs, children and queued work hold weak references. Stopping cancels
// the job and marks the run stopped under its lock, and every action that reaches outside
// (a job, an exposure) is taken under that lock after checking it, so nothing of a stopped
// run can start later. The decisions about the task run on the decider thread (workers.h);
// the stop, the choice of the exposure a child streams and the claim of a URL refresh are
// taken on the threads that call them, under the run's lock (docs/design.md, "Threads").
// What the application hears of them goes through the element's outbox (outbox.h).
#pragma once

#include "client.h"
#include "outbox.h"
#include "journal.h"
#include "plan.h"
#include "run-host.h"
#include "settings.h"

#include <gst/gst.h>

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

// The element's category: a run logs as the element it runs for.
GST_DEBUG_CATEGORY_EXTERN(kirin_extend_src_debug);

namespace kirin {

// A result ready to stream: the final one, or with stream-intermediate each step's in turn.
struct Exposure {
  std::string url; // the provider's http(s) URL, or file:// of the kept copy
  bool from_cache = false;
  std::string task_id;
  std::string video_id;
  double duration = -1;
  guint step = 1;
  bool final = true; // its EOS ends the stream; an intermediate one's EOS is dropped
  // With cache-dir: where the download is kept, and the journal row that records it
  // (empty dir: not kept).
  std::string cache_dir;
  std::string media_name;
  guint64 cache_max_size = 0;
  std::string journal; // journal_path(): where `ledger` is used (journal_work)
  std::shared_ptr<Ledger> ledger;
  gint64 row_id = 0;
};

// A strong reference to the element while it exists.
struct ElementRef {
  GstElement *element = nullptr;
  ElementRef() = default;
  explicit ElementRef(GstElement *e) : element(e) {}
  ElementRef(const ElementRef &) = delete;
  ElementRef &operator=(const ElementRef &) = delete;
  ~ElementRef() {
    if (element)
      gst_object_unref(element);
  }
  explicit operator bool() const { return element != nullptr; }
};

class Run : public std::enable_shared_from_this<Run> {
public:
  // The application thread's READY→PAUSED, after validate(): `config` is step 1's job
  // without the plan's choices; `tls_database` the ca-file for a download from the API host;
  // `expose` streams the oldest queued result (the child's side, called through
  // gst_element_call_async so that it runs under the state lock).
  // `host` is the element's side (run-host.h).
  Run(GstElement *element, RunHost &host, Settings settings, JobConfig config, PaidTask paid,
      GObject *tls_database, GstElementCallAsyncFunc expose);
  ~Run();
  Run(const Run &) = delete;
  Run &operator=(const Run &) = delete;

  // Any thread. Hands step 1 to the decider.
  void begin();
  // Any thread, never blocks: cancels the job, forgets the queued results, ends the
  // progress as canceled. Nothing of this run starts after it returns.
  void stop();
  bool stopped() const;
  bool uses_journal() const { return !journal_path_.empty(); }
  const std::string &journal() const { return journal_path_; }

  // For the child source (child.cpp), on GStreamer's threads.
  const Settings &settings() const { return settings_; }
  GObject *tls_database() const { return tls_database_; }
  // The oldest queued result, unless stopped or a child still streams (`replacing`: the
  // streaming child's URL expired and this exposure replaces it).
  bool take_exposure(bool replacing, Exposure &exposure);
  void intermediate_finished(); // an intermediate child reached EOS
  void data_flowed() { data_flowed_ = true; }
  // The streaming child was refused its URL before any data: true when this run polls the
  // task once more for a fresh one (at most once, only for the final result).
  bool claim_refresh();
  bool url_refreshed() const;
  // Any thread: a warning about the journal ("" is none) for the bus, posted from the
  // decider while the run exists.
  // A warning of `journal`'s for the run's bus; once the run is over (its last records are
  // written as its download goes on, and may fail after its EOS), for the next run of this
  // process that asks the same journal (journal_tell_next_run).
  static void journal_warning(const std::weak_ptr<Run> &weak, const std::string &journal,
                              const std::string &warning);
  // Any thread: hands the refresh of `task_id`'s URL to the decider.
  void refresh(const std::string &task_id);

private:
  ElementRef element() const;
  void publish(const std::function<void(Published &)> &change) const;
  // What the application hears of a decision, through the element's outbox (outbox.h), in
  // the order decided: never posted from the decider, which every element shares.
  void tell(GstElement *element, Outbox::Delivery delivery);
  // `work` on the decider once everything told before it was delivered: what follows a
  // message (a create, the next step) waits for the handlers of that message, so a sync
  // handler that stops the pipeline there still prevents it.
  void after_told(GstElement *element, std::function<void(Run &)> work);

  // On the decider thread.
  void start_step();
  // run-journal.cpp: the journal's answer before a step, and what it learns after.
  void on_claim(const JournalAnswer &answer);
  void wait_for_claimer(GstElement *element, const LedgerRow &row);
  void wait_for_server(GstElement *element);
  bool may_create_alone() const;
  void abandoned(GstElement *element, const LedgerRow &row);
  void send_create();
  void sending_not_recorded(const std::string &failure);
  void record_task_id(const std::string &task_id);
  void record_outcome(const JobOutcome &outcome);
  void let_claim_go();
  // What the error of `outcome` adds when it made the journal drop this step's record ("").
  std::string journal_outcome_note(const JobOutcome &outcome) const;
  void keep_download(Exposure &exposure, const Task &task);
  void replay(GstElement *element, const JournalEntry &entry, const std::string &media);

  void act(const JournalEntry *recorded, const std::string &media);
  void start_job(const Plan &plan, bool refresh);
  void on_task_id(const std::string &task_id);
  void on_update(const Task &task);
  void on_finished(const JobOutcome &outcome, bool refresh);
  bool result_url_allowed(GstElement *element, const Task &task);
  void post_outcome_error(GstElement *element, const JobOutcome &outcome);
  bool chain_continues(GstElement *element, const Task &task);
  void step_completed(GstElement *element, const Task &task, const std::string &media,
                      bool refreshed);
  void queue_exposure(GstElement *element, const Task &task, const std::string &media, bool last,
                      bool refreshed);
  // What a stop says: which task goes on at the provider and how to get its result.
  std::string canceled_text() const;
  // What the progress says once the provider named a paid task: how to go on without it.
  std::string created_text(const std::string &task_id) const;
  // Whether a progress message of `type` is due: a start opens the sequence,
  // complete/error/canceled close it once.
  bool progress_due(GstProgressType type);
  // GST_MESSAGE_PROGRESS, through the outbox, when due.
  void progress(GstElement *element, GstProgressType type, const std::string &text,
                double fraction = -1);

  mutable GWeakRef element_;
  const GstElementCallAsyncFunc expose_;
  RunHost &host_;     // any thread, but only while the element is held (ElementRef)
  Settings settings_; // a snapshot: only the destructor changes it (wiping the key)
  JobConfig config_;
  const std::string journal_path_; // the journal's file, when it is used
  // The provider account the run pays with, as the journal knows it (ledger_account of the
  // API key, computed once): neither a replay nor the element's remembered task crosses
  // accounts.
  const std::string account_;
  GObject *tls_database_;

  // Only the decider touches these.
  PaidTask paid_;
  guint step_ = 1;
  std::string previous_video_id_;
  Plan plan_;
  // This step's row in the journal (with plan_.journal), and the claim to create its task.
  std::shared_ptr<Ledger> ledger_;
  gint64 row_id_ = 0;
  std::string row_task_id_;
  std::shared_ptr<Claim> claim_;
  std::string claimed_external_id_;
  std::string media_name_;    // the file name of its kept copy in cache-dir
  bool waiting_said_ = false; // the bus was told that another run creates this step's task
  guint claim_retry_ms_ = 0;  // the wait before asking the journal again
  gint64 waiting_since_us_ = 0;
  gint64 server_away_since_us_ = 0; // this step waits for a server's journal since then
  bool claim_asked_again_ = false;  // this step's "sending" mark failed once already
  TaskStatus last_status_ = TaskStatus::Unknown;
  double last_progress_ = -1;

  mutable std::mutex lock_; // guards what follows; never held across a post or a call out
  bool stopped_ = false;
  JobHandle job_;
  std::deque<Exposure> exposures_;
  bool child_streaming_ = false;
  bool streaming_final_ = true;
  bool url_refreshed_ = false;
  bool progress_open_ = false;
  // For the canceled text, read by stop() on any thread: the current step's task, and the
  // external ID of a create that may have left.
  std::string current_task_id_, current_external_id_;
  std::atomic<bool> data_flowed_{false};
};

// Hands `work` to the decider with the run, if it still exists by then.
void decide_for(const std::weak_ptr<Run> &weak, std::function<void(Run &)> work);

// " (step 2 of 3)" in a chain, "" otherwise.
std::string step_suffix(guint step, guint steps);

} // namespace kirin
