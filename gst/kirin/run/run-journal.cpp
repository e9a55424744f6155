// A run and the journal (journal.h): before each step the journal says whether this run
// creates the step's task, attaches to it, replays it or waits for another run that is
// creating it; afterwards it learns the task ID, the outcome and the kept copy. The
// journal's calls run on its worker (journal_work); what they answer is decided here, on
// the decider.
#include "messages.h"
#include "run.h"
#include "workers.h"

#define GST_CAT_DEFAULT kirin_extend_src_debug

namespace kirin {

namespace {

// How often a run asks again while another run (or process) creates the task it wants:
// soon at first (a create is answered in well under a second), then less often, so that
// many waiters cost the journal little.
constexpr guint kClaimRetryFirstMs = 150;
constexpr guint kClaimRetryMaxMs = 1000;

JournalEntry entry_of(const LedgerRow &row) {
  JournalEntry entry;
  entry.task_id = row.task_id;
  entry.external_task_id = row.external_task_id;
  entry.completed = row.status == "completed";
  entry.result_url = row.result_url;
  entry.result_video_id = row.result_video_id;
  entry.duration = row.duration;
  entry.cost = row.cost;
  return entry;
}

// What came back for a create that got no task ID, as the journal keeps it for a later run
// that finds the row (abandoned()).
std::string create_answer_text(const JobOutcome &outcome) {
  const std::string status = std::to_string(outcome.http_status);
  if (outcome.http_status >= 500)
    return "a server error (HTTP " + status + ")";
  if (outcome.http_status)
    return "an answer without a task ID it could read (HTTP " + status + ")";
  return "no answer (the connection failed or timed out after the request was sent)";
}

// "process 123", and on a server's journal "process 123 on host-a".
std::string claimer_of(const LedgerRow &row) {
  std::string text = "process " + std::to_string(row.claimer_pid);
  return row.claimer_host.empty() ? text : text + " on " + row.claimer_host;
}

} // namespace

void Run::journal_warning(const std::weak_ptr<Run> &weak, const std::string &journal,
                          const std::string &warning) {
  if (warning.empty())
    return;
  decide([weak, journal, warning] {
    std::shared_ptr<Run> run = weak.lock();
    if (run && !run->stopped())
      if (ElementRef el = run->element()) {
        run->tell(el.element, [warning](GstElement *e) {
          GST_ELEMENT_WARNING(e, RESOURCE, WRITE, ("%s", warning.c_str()), (nullptr));
        });
        return;
      }
    journal_tell_next_run(journal, warning);
  });
}

// ---- before a step (decider thread; the journal on its worker) ----

void Run::start_step() {
  if (stopped())
    return;
  ledger_.reset();
  row_id_ = 0;
  row_task_id_.clear();
  if (!uses_journal()) {
    act(nullptr, {});
    return;
  }
  JournalQuestion question;
  question.journal = journal_path_;
  question.request = journal_request(settings_, step_, previous_video_id_);
  question.request.account = account_;
  question.fresh = settings_.fresh;
  question.create_alone = may_create_alone();
  g_autofree char *uuid = g_uuid_string_random();
  question.external_task_id = std::string("gst-kirin-") + uuid;
  journal_claim_soon(question, [weak = weak_from_this()](const JournalAnswer &claimed) {
    auto answer = std::make_shared<JournalAnswer>(claimed);
    decide_for(weak, [answer](Run &run) { run.on_claim(*answer); });
  });
}

void Run::on_claim(const JournalAnswer &answer) {
  ElementRef el = element();
  if (!el || stopped())
    return;
  if (!answer.warning.empty())
    tell(el.element, [warning = answer.warning](GstElement *e) {
      GST_ELEMENT_WARNING(e, RESOURCE, WRITE, ("%s", warning.c_str()), (nullptr));
    });
  if (!answer.ledger) {
    act(nullptr, {});
    return;
  }
  ledger_ = answer.ledger;
  if (answer.result != ClaimResult::Busy) {
    claim_retry_ms_ = 0;
    waiting_said_ = false;
  }
  if (answer.server_away) {
    wait_for_server(el.element);
    return;
  }
  server_away_since_us_ = 0;
  row_id_ = answer.row.id;
  row_task_id_ = answer.row.task_id;
  media_name_ = media_file_name(answer.row);
  switch (answer.result) {
  case ClaimResult::Claimed: {
    claim_ = answer.claim;
    claimed_external_id_ = answer.row.external_task_id;
    act(nullptr, {});
    return;
  }
  case ClaimResult::Recorded: {
    JournalEntry recorded = entry_of(answer.row);
    act(&recorded, answer.media);
    return;
  }
  case ClaimResult::Busy:
    wait_for_claimer(el.element, answer.row);
    return;
  case ClaimResult::Abandoned:
    abandoned(el.element, answer.row);
    return;
  }
}

// Another run, of this process or another, claimed the same request and is creating its
// task: this one asks again shortly, and attaches once the task ID is recorded.
void Run::wait_for_claimer(GstElement *element, const LedgerRow &row) {
  gint64 now = g_get_monotonic_time();
  if (!waiting_said_) {
    waiting_said_ = true;
    waiting_since_us_ = now;
    std::string text = "Another run (" + claimer_of(row) + ") is creating the task for video " +
                       row.request.request.video_id + " (external-task-id " + row.external_task_id +
                       "): waiting for it instead of paying twice";
    // The text twice: gst-launch-1.0 prints an info message's debug string only.
    tell(element, [text](GstElement *e) {
      GST_ELEMENT_INFO(e, RESOURCE, BUSY, ("%s", text.c_str()), ("%s", text.c_str()));
    });
  }
  // `timeout` bounds this wait as it bounds the wait for a task.
  if (settings_.timeout_s && now - waiting_since_us_ > settings_.timeout_s * G_USEC_PER_SEC) {
    std::string text = "Waited " + std::to_string(settings_.timeout_s) +
                       " s (property 'timeout') for another run (" + claimer_of(row) +
                       ") to create the task for video " + row.request.request.video_id +
                       " (external-task-id " + row.external_task_id +
                       "), and it has not. Run again to wait more, or set fresh=true to pay for "
                       "a new task.";
    tell(element, [text](GstElement *e) {
      post_error(e, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_BUSY, text, {"", 0, {}, {}, "timeout"});
    });
    return;
  }
  claim_retry_ms_ =
      claim_retry_ms_ ? MIN(claim_retry_ms_ * 2, kClaimRetryMaxMs) : kClaimRetryFirstMs;
  decide_later(claim_retry_ms_, [weak = weak_from_this()] {
    if (std::shared_ptr<Run> run = weak.lock())
      run->start_step();
  });
}

// A server's journal that does not answer, and this step must be paid for: created on this
// process's journal alone, it could be paid for again by another machine that asks the
// server once it is back. So the run waits for the server first, `journal-outage-wait`
// seconds at most (about a restart's length), asking again as it would another claimer.
bool Run::may_create_alone() const {
  const gint wait_s = settings_.journal_outage_wait_s;
  if (wait_s == 0)
    return true;
  return wait_s > 0 && server_away_since_us_ &&
         g_get_monotonic_time() - server_away_since_us_ >= wait_s * G_USEC_PER_SEC;
}

void Run::wait_for_server(GstElement *element) {
  const std::string server = journal_display_name(journal_path_);
  const std::string video = journal_request(settings_, step_, previous_video_id_).request.video_id;
  if (settings_.journal_outage_wait_s == kJournalNeverAlone) {
    std::string text = "The journal's server " + server +
                       " does not answer, and journal-outage-wait=-1 says to create no task "
                       "without it: the task for video " +
                       video +
                       " was not created and nothing was paid. Run again once the server "
                       "answers, or set journal-outage-wait to 0 or more to create without it.";
    tell(element, [text](GstElement *e) {
      post_error(e, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_OPEN_READ_WRITE, text,
                 {"journal: server away", 0, {}, {}, "journal"});
    });
    return;
  }
  if (!server_away_since_us_) {
    server_away_since_us_ = g_get_monotonic_time();
    std::string text =
        "Waiting for the journal's server " + server + ", which does not answer, up to " +
        std::to_string(settings_.journal_outage_wait_s) + " s before paying for video " + video +
        " on this process's journal alone (journal-outage-wait)";
    // As wait_for_claimer says its wait: the text twice, for gst-launch-1.0.
    tell(element, [text](GstElement *e) {
      GST_ELEMENT_INFO(e, RESOURCE, BUSY, ("%s", text.c_str()), ("%s", text.c_str()));
    });
  }
  claim_retry_ms_ =
      claim_retry_ms_ ? MIN(claim_retry_ms_ * 2, kClaimRetryMaxMs) : kClaimRetryFirstMs;
  decide_later(claim_retry_ms_, [weak = weak_from_this()] {
    if (std::shared_ptr<Run> run = weak.lock())
      run->start_step();
  });
}

// A run sent the create for this request and recorded no task ID: it ended before the
// answer, lost it, or the provider answered with a server error or something unreadable.
// The journal does not say which; in each case the task may exist and be charged, so
// nothing is sent again without the user saying so.
void Run::abandoned(GstElement *element, const LedgerRow &row) {
  const std::string what =
      row.create_answer.empty()
          ? "got no task ID back: the run that sent it ended (or its process died) before the "
            "answer came, or could not record it"
          : "got " + row.create_answer + " instead of a task ID";
  std::string text =
      "An earlier run sent the create request for video " + row.request.request.video_id +
      " (external-task-id " + row.external_task_id + ") and " + what +
      ". The request may have arrived, so the task may exist and be charged. Look it up with "
      "the provider by that external-task-id and resume with task-id, or set fresh=true to pay "
      "for a new task.";
  std::string debug =
      "journal: create sent, no task ID recorded (" + journal_display_name(journal_path_) + ")";
  tell(element, [text, debug](GstElement *e) {
    post_error(e, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_FAILED, text,
               {debug, 0, {}, {}, "abandoned"});
  });
}

// The create may leave once the journal says so: from then on, should this process die,
// others see the create as possibly made rather than free to send again.
void Run::send_create() {
  journal_mark_sending(journal_path_, ledger_, claim_,
                       [weak = weak_from_this()](const std::string &failure) {
                         decide_for(weak, [failure](Run &run) {
                           if (failure.empty()) {
                             run.claim_asked_again_ = false;
                             run.start_job(run.plan_, false);
                           } else {
                             run.sending_not_recorded(failure);
                           }
                         });
                       });
}

// The journal could not record that the create is leaving. Sent anyway, it could be paid
// twice: a server's journal lost this claim with the connection, so another machine may
// take the row (still "claimed") and create too, and with any journal a death before the
// task ID is recorded leaves the row free to be created again. So it is not sent. On a
// server's journal the step asks the journal again, once: the server (reached again) or,
// during an outage, the process's journal decides anew (see wait_for_server), and the
// create leaves only once its mark is recorded there.
void Run::sending_not_recorded(const std::string &failure) {
  ElementRef el = element();
  if (!el || stopped())
    return;
  let_claim_go();
  if (journal_on_server(journal_path_) && !claim_asked_again_) {
    claim_asked_again_ = true;
    GST_INFO_OBJECT(el.element, "the create was not sent (%s): asking the journal again",
                    failure.c_str());
    start_step();
    return;
  }
  std::string text = "The create request for video " + plan_.request.video_id +
                     " was not sent, so no task was created and nothing was paid: the journal "
                     "could not record that it was leaving (" +
                     failure + "). Run again.";
  progress(el.element, GST_PROGRESS_TYPE_ERROR, text);
  tell(el.element, [text](GstElement *e) {
    post_error(e, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_WRITE, text,
               {"journal: create not marked as sending", 0, {}, {}, "journal"});
  });
}

// ---- after (decider thread; the journal on its worker) ----

// The task ID itself was recorded by the job's callback (start_job).
void Run::record_task_id(const std::string &task_id) {
  if (!plan_.journal || !ledger_ || !row_task_id_.empty())
    return;
  row_task_id_ = task_id;
  let_claim_go();
}

void Run::record_outcome(const JobOutcome &outcome) {
  if (!plan_.journal || !ledger_)
    return;
  if (outcome.task_id.empty()) {
    // The create failed. Refused outright, it made no task: the next run may create. An
    // answer that was lost leaves the row "sending" (see abandoned()).
    bool may_exist = outcome.error == JobError::Ambiguous || outcome.error == JobError::BadResponse;
    if (claim_ && !may_exist)
      journal_work(journal_path_,
                   [ledger = ledger_, claim = claim_] { journal_create_refused(*ledger, *claim); });
    if (claim_ && may_exist)
      journal_work(journal_path_,
                   [weak = weak_from_this(), journal = journal_path_, ledger = ledger_,
                    id = row_id_, answer = create_answer_text(outcome)] {
                     journal_warning(weak, journal, journal_create_answer(*ledger, id, answer));
                   });
    let_claim_go();
    return;
  }
  if (outcome.task_id != row_task_id_)
    return;
  std::weak_ptr<Run> weak = weak_from_this();
  if (outcome.error == JobError::None)
    journal_work(journal_path_, [weak, journal = journal_path_, ledger = ledger_, id = row_id_,
                                 task = outcome.task] {
      journal_warning(weak, journal, journal_completed(*ledger, id, task));
    });
  else if (outcome.error == JobError::TaskFailed || outcome.error == JobError::NotFound)
    // Nothing left to attach to: the next run makes a new take.
    journal_work(journal_path_, [weak, journal = journal_path_, ledger = ledger_, id = row_id_] {
      journal_warning(weak, journal, journal_failed(*ledger, id));
    });
}

// The provider no longer knows a task the journal recorded (a 404 on attach): record_outcome
// dropped the record, so the user must learn that running again is no longer free.
std::string Run::journal_outcome_note(const JobOutcome &outcome) const {
  if (!plan_.journal || !ledger_ || outcome.error != JobError::NotFound ||
      outcome.task_id.empty() || outcome.task_id != row_task_id_)
    return {};
  return " The journal (" + journal_display_name(journal_path_) + ") recorded task " +
         outcome.task_id +
         " from an earlier run, but the provider no longer knows it: that record was dropped, "
         "so running the same request again creates a new task and pays for it.";
}

void Run::let_claim_go() {
  claim_.reset();
}

// With cache-dir, the download of this step's recorded task is kept as it streams.
void Run::keep_download(Exposure &exposure, const Task &task) {
  if (settings_.cache_dir.empty() || !plan_.journal || !ledger_ || row_task_id_ != task.id)
    return;
  exposure.cache_dir = settings_.cache_dir;
  exposure.media_name = media_name_;
  exposure.cache_max_size = settings_.cache_max_size;
  exposure.journal = journal_path_;
  exposure.ledger = ledger_;
  exposure.row_id = row_id_;
}

// A step whose task completed in an earlier run: its messages come from the journal, and
// its result from the kept copy (or the recorded URL, refreshed by a poll if it expired).
// Nothing is paid, and no cost is reported again.
void Run::replay(GstElement *element, const JournalEntry &entry, const std::string &media) {
  Task task;
  task.id = entry.task_id;
  task.status = TaskStatus::Completed;
  task.progress = 1;
  task.has_video = true;
  task.video_url = entry.result_url;
  task.video_id = entry.result_video_id;
  task.duration = entry.duration;
  publish([&](Published &p) {
    p.result_url = entry.result_url;
    p.result_video_id = entry.result_video_id;
    p.result_duration = entry.duration;
  });
  GST_INFO_OBJECT(element, "task %s completed in an earlier run (%s)", entry.task_id.c_str(),
                  journal_display_name(journal_path_).c_str());
  progress(element, GST_PROGRESS_TYPE_START,
           "Task " + entry.task_id + " completed in an earlier run: replaying its result" +
               (media.empty() ? "" : " from " + media) +
               " at no charge (fresh=true pays for a new task)" +
               step_suffix(step_, settings_.extensions));
  tell(element, [task, external = entry.external_task_id, step = step_](GstElement *e) {
    post_task_message(e, task, external, step, true);
  });
  progress(element, GST_PROGRESS_TYPE_COMPLETE, "Task " + entry.task_id + ": completed 100%", 1);
  tell(element, [](GstElement *e) { g_object_notify(G_OBJECT(e), "task-id"); });
  if (media.empty() && !result_url_allowed(element, task))
    return;
  step_completed(element, task, media, false);
}

} // namespace kirin
