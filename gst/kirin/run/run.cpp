#include "run.h"

#include "messages.h"
#include "workers.h"

GST_DEBUG_CATEGORY(kirin_extend_src_debug);
#define GST_CAT_DEFAULT kirin_extend_src_debug

namespace kirin {

void decide_for(const std::weak_ptr<Run> &weak, std::function<void(Run &)> work) {
  decide([weak, work = std::move(work)] {
    if (std::shared_ptr<Run> run = weak.lock())
      work(*run);
  });
}

std::string step_suffix(guint step, guint steps) {
  return steps > 1 ? " (step " + std::to_string(step) + " of " + std::to_string(steps) + ")" : "";
}

Run::Run(GstElement *element, RunHost &host, Settings settings, JobConfig config, PaidTask paid,
         GObject *tls_database, GstElementCallAsyncFunc expose)
    : expose_(expose), host_(host), settings_(std::move(settings)), config_(std::move(config)),
      journal_path_(settings_.task_id.empty() ? journal_path(settings_) : std::string()),
      account_(ledger_account(config_.api_key)),
      tls_database_(tls_database ? G_OBJECT(g_object_ref(tls_database)) : nullptr),
      paid_(std::move(paid)) {
  g_weak_ref_init(&element_, element);
}

Run::~Run() {
  g_weak_ref_clear(&element_);
  if (tls_database_)
    g_object_unref(tls_database_);
  // The snapshot's key and journal (which may hold a password) go with the run (the job's
  // copy of the key goes with the job).
  settings_.forget_secrets();
  std::fill(config_.api_key.begin(), config_.api_key.end(), '\0');
}

ElementRef Run::element() const {
  return ElementRef(static_cast<GstElement *>(g_weak_ref_get(&element_)));
}

void Run::publish(const std::function<void(Published &)> &change) const {
  ElementRef el = element();
  if (!el)
    return;
  host_.publish(*this, change);
}

void Run::tell(GstElement *element, Outbox::Delivery delivery) {
  host_.outbox().deliver(element, std::move(delivery));
}

void Run::after_told(GstElement *element, std::function<void(Run &)> work) {
  tell(element,
       [weak = weak_from_this(), work = std::move(work)](GstElement *) { decide_for(weak, work); });
}

void Run::begin() {
  decide_for(weak_from_this(), [](Run &run) { run.start_step(); });
}

bool Run::stopped() const {
  std::lock_guard<std::mutex> guard(lock_);
  return stopped_;
}

void Run::stop() {
  JobHandle job;
  {
    std::lock_guard<std::mutex> guard(lock_);
    if (stopped_)
      return;
    stopped_ = true;
    job = std::move(job_);
    exposures_.clear();
    child_streaming_ = false;
  }
  job_cancel(job);
  if (ElementRef el = element()) {
    // Before the stop returns, from this thread: the bus is flushed once the pipeline is in
    // NULL. What was decided before goes first; the stop's own message, with the task's ID,
    // never goes through the outbox, where a call-async thread could take it and post it
    // only after the flush.
    host_.outbox().deliver_pending_now(el.element);
    if (progress_due(GST_PROGRESS_TYPE_CANCELED))
      post_progress(el.element, GST_PROGRESS_TYPE_CANCELED, canceled_text(), -1);
  }
}

// A stopped run leaves its task running (and paid for) at the provider: the user needs its
// ID and the way back to it, wherever the stop came from (Ctrl-C, a closed window, an app).
std::string Run::canceled_text() const {
  std::string task_id, external_id;
  {
    std::lock_guard<std::mutex> guard(lock_);
    task_id = current_task_id_;
    external_id = current_external_id_;
  }
  std::string external = external_id.empty() ? "" : " (external-task-id " + external_id + ")";
  if (task_id.empty() && external_id.empty())
    return "Stopped before any task was created";
  if (task_id.empty())
    return "Stopped before the provider named the task" + external +
           ": if it was created, it goes on at the provider, which knows it by that "
           "external-task-id";
  std::string again = uses_journal() ? "run the same pipeline again (the journal attaches to "
                                       "it without paying again), or set task-id=" +
                                           task_id
                                     : "set task-id=" + task_id + " (no new charge)";
  return "Stopped before task " + task_id + external +
         " ended: it goes on at the provider. To get its result, " + again;
}

std::string Run::created_text(const std::string &task_id) const {
  std::string again = uses_journal() ? "running the same pipeline again attaches to it, or "
                                       "set task-id=" +
                                           task_id
                                     : "set task-id=" + task_id;
  return "Task " + task_id + " created (external-task-id " + plan_.external_task_id +
         "). Should this run stop first, it goes on at the provider: " + again + " (no new charge)";
}

bool Run::progress_due(GstProgressType type) {
  std::lock_guard<std::mutex> guard(lock_);
  bool closes = type == GST_PROGRESS_TYPE_COMPLETE || type == GST_PROGRESS_TYPE_ERROR ||
                type == GST_PROGRESS_TYPE_CANCELED;
  if (stopped_ && type != GST_PROGRESS_TYPE_CANCELED)
    return false;
  if (type == GST_PROGRESS_TYPE_START)
    progress_open_ = true;
  else if (!progress_open_)
    return false;
  else if (closes)
    progress_open_ = false;
  return true;
}

void Run::progress(GstElement *element, GstProgressType type, const std::string &text,
                   double fraction) {
  if (!progress_due(type))
    return;
  tell(element, [type, text, fraction](GstElement *e) { post_progress(e, type, text, fraction); });
}

// ---- a step: read the journal, plan, act (decider thread) ----

void Run::act(const JournalEntry *recorded, const std::string &media) {
  ElementRef el = element();
  if (!el || stopped())
    return;
  PlanInput in;
  in.settings = &settings_;
  in.request = config_.create;
  in.step = step_;
  in.previous_video_id = previous_video_id_;
  in.journal_in_use = uses_journal();
  in.journal = recorded;
  in.fresh = settings_.fresh;
  in.remembered = paid_;
  in.account = account_;
  g_autofree char *uuid = g_uuid_string_random();
  in.generated_external_id = std::string("gst-kirin-") + uuid;
  if (claim_) // the ID the journal's claim recorded
    in.generated_external_id = claimed_external_id_;
  plan_ = plan_step(in);
  if (!plan_.costs_money())
    let_claim_go();
  GST_INFO_OBJECT(el.element, "step %u: %s task %s for video '%s' (%s)", step_,
                  action_name(plan_.action), plan_.task_id.c_str(), plan_.request.video_id.c_str(),
                  plan_.why);
  publish([this](Published &p) {
    p.task_id = plan_.task_id;
    p.external_task_id = plan_.external_task_id;
  });
  last_status_ = TaskStatus::Unknown;
  last_progress_ = -1;
  if (plan_.action == Action::Replay) {
    replay(el.element, *recorded, media);
    return;
  }
  std::string what = plan_.costs_money() ? "Extending video " + plan_.request.video_id
                                         : "Waiting for task " + plan_.task_id;
  // Opened before the job exists, so no update of it can come first.
  progress(el.element, GST_PROGRESS_TYPE_START, what + step_suffix(step_, settings_.extensions));
  after_told(el.element, [](Run &run) {
    if (run.stopped())
      return;
    if (run.claim_)
      run.send_create(); // once the journal says the create may leave
    else
      run.start_job(run.plan_, false);
  });
}

void Run::start_job(const Plan &plan, bool refresh) {
  JobConfig config = config_;
  config.create = plan.request;
  config.existing_task_id = plan.task_id;
  std::weak_ptr<Run> weak = weak_from_this();
  // The client thread only hands over: every decision is taken here, on the decider.
  JobCallbacks callbacks;
  std::shared_ptr<Claim> claim = plan.costs_money() ? claim_ : nullptr;
  callbacks.on_task_id = [weak, journal = journal_path_, ledger = ledger_,
                          claim](const std::string &id) {
    // The journal learns a paid task's ID even when the run stopped meanwhile.
    if (claim)
      journal_record_created(journal, ledger, claim, id,
                             [weak, journal](const std::string &warning) {
                               Run::journal_warning(weak, journal, warning);
                             });
    decide_for(weak, [id](Run &run) { run.on_task_id(id); });
  };
  callbacks.on_update = [weak](const Task &task) {
    decide_for(weak, [task](Run &run) { run.on_update(task); });
  };
  callbacks.on_finished = [weak, refresh](const JobOutcome &outcome) {
    decide_for(weak, [outcome, refresh](Run &run) { run.on_finished(outcome, refresh); });
  };
  {
    std::lock_guard<std::mutex> guard(lock_);
    if (!stopped_) {
      current_task_id_ = plan.task_id;
      current_external_id_ = plan.external_task_id;
      job_ = job_start(std::move(config), std::move(callbacks));
      return;
    }
  }
  // Stopped since the plan was made: nothing is sent, and the journal may know it.
  if (claim_ && plan.costs_money()) {
    journal_work(journal_path_,
                 [ledger = ledger_, claim = claim_] { journal_create_refused(*ledger, *claim); });
    let_claim_go();
  }
}

// ---- what the job reports (decider thread) ----

void Run::on_task_id(const std::string &task_id) {
  ElementRef el = element();
  if (!el || stopped())
    return;
  publish([&](Published &p) { p.task_id = task_id; });
  if (step_ == 1 && plan_.costs_money()) {
    // Running again unchanged attaches to this task (plan_step, "remembered").
    paid_ = PaidTask{task_id, plan_.external_task_id, plan_.request, account_};
    host_.remember_paid(*this, paid_);
  }
  {
    std::lock_guard<std::mutex> guard(lock_);
    current_task_id_ = task_id;
  }
  GST_INFO_OBJECT(el.element, "task %s created", task_id.c_str());
  if (plan_.costs_money())
    progress(el.element, GST_PROGRESS_TYPE_CONTINUE, created_text(task_id));
  // Recorded before anything else can go wrong: a run that dies now attaches to it next time.
  record_task_id(task_id);
  tell(el.element, [](GstElement *e) { g_object_notify(G_OBJECT(e), "task-id"); });
}

void Run::on_update(const Task &task) {
  ElementRef el = element();
  if (!el || stopped())
    return;
  // An unknown status is reported as processing: it only matters when it changes.
  bool changed = task.status != last_status_ || task.progress != last_progress_;
  last_status_ = task.status;
  last_progress_ = task.progress;
  if (task.status == TaskStatus::Completed)
    publish([&](Published &p) {
      p.result_url = task.video_url;
      p.result_video_id = task.video_id;
      p.result_duration = task.duration;
    });
  GST_DEBUG_OBJECT(el.element, "task %s: %s (%s), progress %.2f", task.id.c_str(),
                   task_status_name(task.status), task.status_raw.c_str(), task.progress);
  if (!changed)
    return;
  tell(el.element, [task, external = plan_.external_task_id, step = step_](GstElement *e) {
    post_task_message(e, task, external, step);
  });
  progress(el.element,
           task.status == TaskStatus::Completed ? GST_PROGRESS_TYPE_COMPLETE
           : task.status == TaskStatus::Failed  ? GST_PROGRESS_TYPE_ERROR
                                                : GST_PROGRESS_TYPE_CONTINUE,
           task_progress_text(task), task.progress);
}

void Run::on_finished(const JobOutcome &outcome, bool refresh) {
  ElementRef el = element();
  if (!el || stopped())
    return;
  if (outcome.error != JobError::None)
    progress(el.element, GST_PROGRESS_TYPE_ERROR, outcome.message);
  record_outcome(outcome);
  if (outcome.error != JobError::None) {
    post_outcome_error(el.element, outcome);
    return;
  }
  if (result_url_allowed(el.element, outcome.task))
    step_completed(el.element, outcome.task, {}, refresh);
}

// The result URL policy (result_url_problem), for a fresh result and a replayed one alike.
bool Run::result_url_allowed(GstElement *element, const Task &task) {
  std::string problem = result_url_problem(settings_, task.video_url);
  if (problem.empty())
    return true;
  std::string text = "Task " + task.id + " completed, but " + problem +
                     " Resume with task-id=" + task.id + " once that is resolved.";
  tell(element, [text, task_id = task.id](GstElement *e) {
    post_error(e, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_FAILED, text,
               {std::string("error kind: none"), 0, {}, task_id, "result-url"});
  });
  return false;
}

// A create answered 404: api-url is not the create endpoint (the API has no "not found"
// for a create). A setting to fix, not a refusal of the request; nothing was created.
static bool wrong_api_url(const JobOutcome &outcome) {
  return outcome.error == JobError::Rejected && outcome.task_id.empty() &&
         outcome.http_status == 404;
}

void Run::post_outcome_error(GstElement *element, const JobOutcome &outcome) {
  gint code;
  switch (outcome.error) {
  case JobError::Unauthorized:
  case JobError::Forbidden:
    code = GST_RESOURCE_ERROR_NOT_AUTHORIZED;
    break;
  case JobError::NotFound:
    code = GST_RESOURCE_ERROR_NOT_FOUND;
    break;
  case JobError::Network:
    code = GST_RESOURCE_ERROR_OPEN_READ;
    break;
  default:
    code = GST_RESOURCE_ERROR_FAILED;
    break;
  }
  std::string kind = job_error_name(outcome.error);
  if (wrong_api_url(outcome)) {
    code = GST_RESOURCE_ERROR_SETTINGS;
    kind = "settings";
  }
  ErrorInfo info{"error kind: " + kind, outcome.http_status, outcome.error_code, outcome.task_id,
                 kind};
  std::string text = outcome.message + journal_outcome_note(outcome);
  tell(element,
       [code, text, info](GstElement *e) { post_error(e, GST_RESOURCE_ERROR, code, text, info); });
}

// ---- chaining and exposing (decider thread) ----

// With `extensions` > 1, whether a next step may follow the one that made `task`: not when
// that would pass the provider's 3-minute limit (then it stops before paying and says so).
bool Run::chain_continues(GstElement *element, const Task &task) {
  guint steps = settings_.extensions;
  if (step_ >= steps)
    return false;
  std::string why_not;
  if (task.duration > 0 && task.duration + kExtensionSeconds > kMaxVideoSeconds + 0.001)
    why_not = "the video is already " + std::to_string((int)(task.duration + 0.5)) +
              " s, and another extension would pass the provider's 3-minute limit";
  else if (task.video_id.empty())
    why_not = "the provider did not say which video the result is, so it cannot be extended";
  if (why_not.empty())
    return true;
  std::string text = "Stopped after step " + std::to_string(step_) + " of " +
                     std::to_string(steps) + ": " + why_not + ". Streaming the result of task " +
                     task.id + ".";
  tell(element, [text](GstElement *e) {
    GST_ELEMENT_WARNING(e, RESOURCE, SETTINGS, ("%s", text.c_str()), (nullptr));
  });
  return false;
}

// A step's task completed (now, or in an earlier run recorded in the journal). Its result
// is queued for streaming when it is the last one or every step is streamed, and the next
// step, if any, starts at once. `media` is the kept copy of the result, if any.
void Run::step_completed(GstElement *element, const Task &task, const std::string &media,
                         bool refreshed) {
  // A fresh URL for a result that is streaming already: only that result is redone.
  bool last = refreshed || !chain_continues(element, task);
  // The application hears of the result's URL before its download starts: a handler that
  // stops there stops the run before any source exists.
  if (last)
    tell(element, [](GstElement *e) { g_object_notify(G_OBJECT(e), "result-url"); });
  if (last || settings_.stream_intermediate)
    queue_exposure(element, task, media, last, refreshed);
  if (last)
    return;
  GST_INFO_OBJECT(element, "step %u done (video %s); starting step %u", step_,
                  task.video_id.c_str(), step_ + 1);
  step_++;
  claim_asked_again_ = false; // each step may ask the journal again once
  previous_video_id_ = task.video_id;
  after_told(element, [](Run &run) { run.start_step(); });
}

void Run::queue_exposure(GstElement *element, const Task &task, const std::string &media, bool last,
                         bool refreshed) {
  Exposure exposure;
  exposure.task_id = task.id;
  exposure.video_id = task.video_id;
  exposure.duration = task.duration;
  exposure.step = step_;
  exposure.final = last;
  if (!media.empty()) {
    g_autofree char *uri = g_filename_to_uri(media.c_str(), nullptr, nullptr);
    exposure.url = uri ? uri : "";
    exposure.from_cache = true;
  } else {
    exposure.url = task.video_url;
    keep_download(exposure, task);
  }
  {
    std::lock_guard<std::mutex> guard(lock_);
    if (stopped_) // a stopped run's result is never streamed, not even by the next run
      return;
    // A refreshed URL replaces the result whose old URL expired.
    if (refreshed)
      exposures_.clear();
    exposures_.push_back(std::move(exposure));
  }
  // From the outbox's call-async thread, after the messages that came before it.
  tell(element, [expose = expose_](GstElement *e) { expose(e, nullptr); });
}

// ---- the child's side (GStreamer's threads) ----

bool Run::take_exposure(bool replacing, Exposure &exposure) {
  std::lock_guard<std::mutex> guard(lock_);
  if (stopped_ || exposures_.empty() || (child_streaming_ && !replacing))
    return false;
  exposure = std::move(exposures_.front());
  exposures_.pop_front();
  child_streaming_ = true;
  streaming_final_ = exposure.final;
  data_flowed_ = false;
  return true;
}

void Run::intermediate_finished() {
  std::lock_guard<std::mutex> guard(lock_);
  child_streaming_ = false;
}

bool Run::claim_refresh() {
  std::lock_guard<std::mutex> guard(lock_);
  // Only the last result: an intermediate one streams while the next step's job runs.
  if (stopped_ || url_refreshed_ || data_flowed_ || !streaming_final_)
    return false;
  url_refreshed_ = true;
  return true;
}

bool Run::url_refreshed() const {
  std::lock_guard<std::mutex> guard(lock_);
  return url_refreshed_;
}

void Run::refresh(const std::string &task_id) {
  decide_for(weak_from_this(), [task_id](Run &run) {
    if (run.stopped())
      return;
    PlanInput in;
    in.settings = &run.settings_;
    in.request = run.plan_.request;
    in.refresh_task_id = task_id;
    run.start_job(plan_step(in), true);
  });
}

} // namespace kirin
