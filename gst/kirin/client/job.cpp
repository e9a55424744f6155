#include "job.h"

#include "client-thread.h"
#include "poll-schedule.h"
#include "request.h"

#include <algorithm>
#include <atomic>
#include <map>

#define GST_CAT_DEFAULT kirin_client_debug

namespace kirin {

using module::ClientThread;
using module::http_error_text;
using module::poll_delay_ms;
using module::poll_schedule_add;
using module::poll_schedule_delay;
using module::Request;
using module::Response;
using module::SendGate;
using module::shown_url;

namespace {

// Attempts at a create request whose connection could not be established.
constexpr guint kCreateConnectAttempts = 4;
// libsoup 3.2 has no name for it.
constexpr guint kStatusTooManyRequests = 429;
// How much slower polls run when callbacks announce changes.
constexpr guint kCallbackPollSlowdown = 4;

// How a running task is polled. Predict is the element's; the other two exist so that the
// benchmark (tests/bench) can measure them beside it in one run, chosen by the environment
// variable KIRIN_BENCH_POLL_POLICY ("backoff" or "fixed"). Whenever that variable is set
// ("predict" too), the n-th job of a process draws the same jitter in every process, so that
// the policies compare on equal draws.
enum class PollPolicy {
  Predict, // the growing schedule, or just after the completion that progress predicts
  Backoff, // the growing schedule alone
  Fixed    // every poll-interval, as the provider's command-line client
};

PollPolicy poll_policy() {
  static const PollPolicy policy = [] {
    const char *name = g_getenv("KIRIN_BENCH_POLL_POLICY");
    return !g_strcmp0(name, "backoff") ? PollPolicy::Backoff
           : !g_strcmp0(name, "fixed") ? PollPolicy::Fixed
                                       : PollPolicy::Predict;
  }();
  return policy;
}

// The seed of a job's jitter: random, or the job's number in the benchmark (see above).
guint32 jitter_seed() {
  static std::atomic<guint32> jobs{0};
  return g_getenv("KIRIN_BENCH_POLL_POLICY") ? jobs++ : g_random_int();
}

// Jobs waiting for their task, by task ID, for callbacks to wake. Client thread only.
std::map<std::string, std::weak_ptr<Job>> &jobs_by_task() {
  static auto *jobs = new std::map<std::string, std::weak_ptr<Job>>();
  return *jobs;
}

// What a refusal of the API means: the key (401), the account (403), else `otherwise`.
JobError refusal(guint status, JobError otherwise) {
  return status == SOUP_STATUS_UNAUTHORIZED ? JobError::Unauthorized
         : status == SOUP_STATUS_FORBIDDEN  ? JobError::Forbidden
                                            : otherwise;
}

void clear_source(GSource **source) {
  if (*source) {
    g_source_destroy(*source);
    g_source_unref(*source);
    *source = nullptr;
  }
}

} // namespace

class Job : public std::enable_shared_from_this<Job> {
public:
  Job(JobConfig config, JobCallbacks callbacks);
  ~Job();

  // From any thread.
  void start();
  void cancel();
  // A callback said the task changed: poll now instead of at the next timer.
  void poll_now();

private:
  using Step = void (*)(Job &);

  void invoke(Step step);
  // Runs `step` after `delay_ms` on the client thread, unless the job ends first.
  void schedule(guint delay_ms, Step step) {
    clear_source(&timer_);
    timer_ = add_timer(delay_ms, step);
  }
  GSource *add_timer(guint delay_ms, Step step);
  void stop_io();
  void forget_task();
  template <typename Callback, typename Argument>
  void notify(std::shared_ptr<const JobCallbacks> callbacks, Callback JobCallbacks::*callback,
              const Argument &argument);

  void send(SoupMessage *msg, void (Job::*handler)(Response &));
  SoupMessage *new_api_message(const char *method, const std::string &url);
  void begin();
  void send_create();
  void on_create_response(Response &response);
  void on_create_refused(Response &response);
  void send_poll();
  void on_poll_response(Response &response);
  void handle_task(Task task);
  guint next_poll_delay(const Task &task);
  double take_jitter();
  double peek_jitter();
  void retry_poll(guint retry_after_ms, const std::string &why);
  void give_up_waiting();
  void finish(JobError error, std::string message, guint http_status = 0,
              std::string error_code = {});
  std::string resume_hint() const;

  JobConfig config_;
  // Cleared on cancel, so late events reach no one; the callback running, if any, holds
  // its own reference (see notify()).
  std::shared_ptr<const JobCallbacks> callbacks_;
  std::atomic<bool> cancelled_{false};
  // Closed by cancel() on its caller's thread: no request of the job is handed to libsoup
  // after that (request.h), whatever the client thread is dispatching at that moment.
  const std::shared_ptr<SendGate> gate_ = std::make_shared<SendGate>();
  GTlsDatabase *ca_database_ = nullptr;                 // the extra CAs of config_.ca_file
  GRand *jitter_ = g_rand_new_with_seed(jitter_seed()); // the poll schedule's jitter
  double peeked_jitter_ = 0; // the next slot's, drawn ahead by peek_jitter (0: none yet)

  // Client thread only.
  Request *in_flight_ = nullptr; // at most one request at a time
  GSource *timer_ = nullptr;
  GSource *deadline_ = nullptr;
  bool finished_ = false;
  std::string task_id_;
  Task last_task_;
  guint poll_attempt_ = 0;
  guint create_attempt_ = 0;
  module::PollSchedule schedule_;     // the progress answers report, for predicted polls
  gint64 poll_sent_ms_ = 0;           // when the last poll was sent (monotonic)
  module::Reachability reachability_; // whether the provider answered lately
};

Job::Job(JobConfig config, JobCallbacks callbacks)
    : config_(std::move(config)),
      callbacks_(std::make_shared<const JobCallbacks>(std::move(callbacks))) {
  if (!config_.ca_file.empty()) {
    GError *error = nullptr;
    ca_database_ = g_tls_file_database_new(config_.ca_file.c_str(), &error);
    if (!ca_database_) {
      GST_WARNING("cannot use CA file %s: %s", config_.ca_file.c_str(), error->message);
      g_error_free(error);
    }
  }
}

Job::~Job() {
  g_clear_object(&ca_database_);
  g_rand_free(jitter_);
  // The key is a secret: do not leave it in freed memory.
  std::fill(config_.api_key.begin(), config_.api_key.end(), '\0');
}

void Job::start() {
  invoke([](Job &job) {
    if (!job.cancelled_.load())
      job.begin();
  });
}

void Job::cancel() {
  gate_->close();
  if (cancelled_.exchange(true))
    return;
  // libsoup is not thread-safe: abort the I/O on the thread that owns it. On the client
  // thread itself, as from one of the job's callbacks, this runs at once: notify() keeps
  // the job and the running callback alive through it.
  invoke([](Job &job) {
    GST_DEBUG("cancelling job for task %s", job.task_id_.c_str());
    job.finished_ = true;
    job.stop_io();
    job.forget_task();
    job.callbacks_.reset();
  });
}

void Job::poll_now() {
  if (finished_ || in_flight_ || task_id_.empty())
    return;
  GST_DEBUG("callback for task %s: polling now", task_id_.c_str());
  send_poll();
}

void Job::invoke(Step step) {
  struct Call {
    std::shared_ptr<Job> job;
    Step step;
  };
  g_main_context_invoke_full(
      ClientThread::get().context(), G_PRIORITY_HIGH,
      [](gpointer data) -> gboolean {
        auto *call = static_cast<Call *>(data);
        call->step(*call->job);
        return G_SOURCE_REMOVE;
      },
      new Call{shared_from_this(), step}, [](gpointer data) { delete static_cast<Call *>(data); });
}

GSource *Job::add_timer(guint delay_ms, Step step) {
  struct Call {
    std::weak_ptr<Job> job;
    Step step;
  };
  GSource *source = g_timeout_source_new(delay_ms);
  g_source_set_callback(
      source,
      [](gpointer data) -> gboolean {
        auto *call = static_cast<Call *>(data);
        if (auto job = call->job.lock())
          call->step(*job);
        return G_SOURCE_REMOVE;
      },
      new Call{weak_from_this(), step}, [](gpointer data) { delete static_cast<Call *>(data); });
  g_source_attach(source, ClientThread::get().context());
  return source;
}

void Job::stop_io() {
  clear_source(&timer_);
  clear_source(&deadline_);
  if (in_flight_)
    in_flight_->cancel();
}

void Job::forget_task() {
  auto found = jobs_by_task().find(task_id_);
  if (found != jobs_by_task().end() && found->second.lock().get() == this)
    jobs_by_task().erase(found);
}

// The application may stop the pipeline from inside a callback, which cancels this job on
// this thread and at once: that drops callbacks_ (which would destroy the closure that is
// running) and perhaps the last reference to the job held elsewhere. So the job and the
// callbacks (`callbacks` is a copy of the pointer) are held here until the callback returned.
template <typename Callback, typename Argument>
void Job::notify(std::shared_ptr<const JobCallbacks> callbacks, Callback JobCallbacks::*callback,
                 const Argument &argument) {
  std::shared_ptr<Job> self = shared_from_this();
  if (callbacks && (*callbacks).*callback)
    ((*callbacks).*callback)(argument);
}

void Job::send(SoupMessage *msg, void (Job::*handler)(Response &)) {
  // The request holds the job until it is over.
  in_flight_ =
      Request::send(msg, gate_, config_.request_timeout_s, ca_database_,
                    [job = shared_from_this(), handler](Request &request, Response &response) {
                      if (job->in_flight_ == &request)
                        job->in_flight_ = nullptr;
                      if (!response.cancelled && !job->cancelled_.load()) {
                        job->reachability_.note(response);
                        ((*job).*handler)(response);
                      }
                    });
}

SoupMessage *Job::new_api_message(const char *method, const std::string &url) {
  SoupMessage *msg = soup_message_new(method, url.c_str());
  if (!msg)
    return nullptr;
  SoupMessageHeaders *headers = soup_message_get_request_headers(msg);
  std::string auth = "Bearer " + config_.api_key;
  soup_message_headers_replace(headers, "Authorization", auth.c_str());
  std::fill(auth.begin(), auth.end(), '\0');
  soup_message_headers_replace(headers, "Accept", "application/json");
  soup_message_headers_replace(headers, "User-Agent", config_.user_agent.c_str());
  return msg;
}

void Job::begin() {
  if (config_.timeout_s > 0) {
    deadline_ = add_timer(config_.timeout_s * 1000, [](Job &job) { job.give_up_waiting(); });
  }
  if (!config_.existing_task_id.empty()) {
    task_id_ = config_.existing_task_id;
    if (config_.use_callbacks)
      jobs_by_task()[task_id_] = weak_from_this();
    send_poll();
  } else {
    send_create();
  }
}

void Job::give_up_waiting() {
  g_clear_pointer(&deadline_, g_source_unref);
  std::string status = task_id_.empty()
                           ? "not created yet"
                           : std::string("last status: ") + task_status_name(last_task_.status);
  finish(JobError::Timeout, "Gave up waiting for the task after " +
                                std::to_string(config_.timeout_s) + " s (" + status + ")." +
                                reachability_.text() + resume_hint());
}

std::string Job::resume_hint() const {
  if (!task_id_.empty())
    return " The task may still complete: resume it with task-id=" + task_id_ + ".";
  if (!config_.create.external_task_id.empty())
    return " If the task was created, the provider knows it by external-task-id=" +
           config_.create.external_task_id + ".";
  return {};
}

void Job::send_create() {
  SoupMessage *msg = new_api_message("POST", config_.api_url);
  if (!msg) {
    finish(JobError::Rejected, "api-url '" + config_.api_url + "' is not a valid URL.");
    return;
  }
  std::string body = build_create_body(config_.create);
  GBytes *bytes = g_bytes_new(body.data(), body.size());
  soup_message_set_request_body_from_bytes(msg, "application/json", bytes);
  g_bytes_unref(bytes);
  create_attempt_++;
  GST_DEBUG("creating a task at %s (attempt %u)", shown_url(config_.api_url).c_str(),
            create_attempt_);
  send(msg, &Job::on_create_response);
}

void Job::on_create_response(Response &response) {
  if (response.failed || response.too_large) {
    if (response.retryable_unsent && create_attempt_ < kCreateConnectAttempts) {
      guint delay = 1000u << (create_attempt_ - 1);
      GST_WARNING("could not connect to %s (%s); retrying in %u ms",
                  shown_url(config_.api_url).c_str(), response.error_text.c_str(), delay);
      schedule(delay, [](Job &job) { job.send_create(); });
      return;
    }
    if (!response.sent) {
      finish(JobError::Network, "Could not reach " + shown_url(config_.api_url) + ": " +
                                    response.error_text + ". No task was created.");
      return;
    }
    std::string what = response.too_large ? "an oversized response" : response.error_text;
    finish(JobError::Ambiguous,
           "The create request failed after it was sent (" + what +
               "), so the task may exist and be charged. Do not resubmit blindly." + resume_hint());
    return;
  }
  if (response.status == kStatusTooManyRequests && create_attempt_ < 8) {
    // A 429 says the request was refused, so trying again cannot charge twice.
    guint delay = MAX(response.retry_after_ms, 1000u << MIN(create_attempt_ - 1, 5u));
    GST_WARNING("create rate-limited; retrying in %u ms", delay);
    schedule(delay, [](Job &job) { job.send_create(); });
    return;
  }
  if (!SOUP_STATUS_IS_SUCCESSFUL(response.status)) {
    on_create_refused(response);
    return;
  }
  Task task;
  std::string parse_error;
  if (!parse_task(response.body.data(), response.body.size(), task, parse_error) ||
      task.id.empty()) {
    finish(JobError::Ambiguous,
           "The create response could not be read (" +
               (parse_error.empty() ? std::string("no task id") : parse_error) +
               "), so the task may exist and be charged." + resume_hint(),
           response.status);
    return;
  }
  task_id_ = task.id;
  if (config_.use_callbacks)
    jobs_by_task()[task_id_] = weak_from_this();
  GST_INFO("created task %s", task_id_.c_str());
  notify(callbacks_, &JobCallbacks::on_task_id, task_id_);
  handle_task(std::move(task));
}

// A create answered with an error status: a wrong URL (404), a server error after which the
// task may exist (5xx), or a refusal.
void Job::on_create_refused(Response &response) {
  if (response.status == SOUP_STATUS_NOT_FOUND) {
    // The API knows no "not found" for a create: the URL is not its create endpoint.
    finish(JobError::Rejected,
           "No create endpoint at api-url " + shown_url(config_.api_url) + ": it answered " +
               http_error_text(response, nullptr) +
               ". Check the 'api-url' property (or VTRIX_API_URL): the provider's ends in "
               "/model/v1/generation. No task was created.",
           response.status);
    return;
  }
  std::string code;
  std::string text = http_error_text(response, &code);
  JobError error =
      refusal(response.status, response.status >= 500 ? JobError::Ambiguous : JobError::Rejected);
  // A server error is no refusal: the provider may have made (and charged) the task before
  // failing, so the message must not say both "refused" and "may exist".
  if (error == JobError::Ambiguous)
    finish(error,
           "The provider answered the create request with a server error (" + text +
               "), so the task may exist and be charged. Do not resubmit blindly." + resume_hint(),
           response.status, code);
  else
    finish(error, "The provider refused to create the task: " + text + ".", response.status, code);
}

void Job::send_poll() {
  g_autofree char *escaped = g_uri_escape_string(task_id_.c_str(), nullptr, FALSE);
  SoupMessage *msg = new_api_message("GET", config_.api_url + "/task/" + escaped);
  if (!msg) {
    finish(JobError::Rejected, "api-url '" + config_.api_url + "' is not a valid URL.");
    return;
  }
  GST_LOG("polling task %s", task_id_.c_str());
  poll_sent_ms_ = g_get_monotonic_time() / 1000;
  send(msg, &Job::on_poll_response);
}

void Job::retry_poll(guint retry_after_ms, const std::string &why) {
  guint delay =
      poll_delay_ms(config_.poll_interval_ms, poll_attempt_++, retry_after_ms, take_jitter());
  GST_WARNING("poll of task %s failed (%s); retrying in %u ms", task_id_.c_str(), why.c_str(),
              delay);
  schedule(delay, [](Job &job) { job.send_poll(); });
}

void Job::on_poll_response(Response &response) {
  if (response.failed || response.too_large) {
    retry_poll(0, response.too_large ? "oversized response" : response.error_text);
    return;
  }
  // Polls are free: whatever is transient is retried within the overall deadline.
  if (response.status == kStatusTooManyRequests || response.status >= 500) {
    retry_poll(response.retry_after_ms, http_error_text(response, nullptr));
    return;
  }
  if (!SOUP_STATUS_IS_SUCCESSFUL(response.status)) {
    std::string code;
    std::string text = http_error_text(response, &code);
    JobError error =
        refusal(response.status,
                response.status == SOUP_STATUS_NOT_FOUND ? JobError::NotFound : JobError::Rejected);
    finish(error, "Polling task " + task_id_ + " failed: " + text + ".", response.status, code);
    return;
  }
  Task task;
  std::string parse_error;
  if (!parse_task(response.body.data(), response.body.size(), task, parse_error)) {
    retry_poll(0, "unreadable task object: " + parse_error);
    return;
  }
  handle_task(std::move(task));
}

void Job::handle_task(Task task) {
  // The task we asked about is the one reported, whatever ID the body claims.
  task.id = task_id_;
  if (task.status == TaskStatus::Unknown && !task.status_raw.empty())
    GST_WARNING("task %s has an unknown status '%s'; still waiting", task_id_.c_str(),
                task.status_raw.c_str());
  last_task_ = task;
  notify(callbacks_, &JobCallbacks::on_update, last_task_);
  if (finished_ || cancelled_.load())
    return;
  switch (task.status) {
  case TaskStatus::Completed:
    if (!task.has_video || task.video_url.empty())
      finish(JobError::BadResponse,
             "Task " + task_id_ + " completed, but its output holds no video URL.");
    else
      finish(JobError::None, {});
    return;
  case TaskStatus::Failed: {
    std::string text = task.error_message.empty() ? "no reason given" : task.error_message;
    if (!task.error_code.empty())
      text = "error " + task.error_code + ": " + text;
    finish(JobError::TaskFailed,
           "The provider reports that task " + task_id_ + " failed (" + text + ").", 0,
           task.error_code);
    return;
  }
  default:
    schedule(next_poll_delay(task), [](Job &job) { job.send_poll(); });
  }
}

// Each slot of the growing schedule draws its jitter once and in order, whether it is taken
// now or looked at ahead (a predicted poll may skip a slot: next_poll_delay).
double Job::take_jitter() {
  const double jitter = peeked_jitter_ ? peeked_jitter_ : g_rand_double_range(jitter_, 0.9, 1.1);
  peeked_jitter_ = 0;
  return jitter;
}

double Job::peek_jitter() {
  if (!peeked_jitter_)
    peeked_jitter_ = g_rand_double_range(jitter_, 0.9, 1.1);
  return peeked_jitter_;
}

// The growing schedule, slowed down when callbacks announce changes; without callbacks, the
// poll comes just after the completion that the task's progress predicts, when that is
// before the schedule's poll after next.
guint Job::next_poll_delay(const Task &task) {
  const guint interval = config_.poll_interval_ms;
  const guint fallback = poll_delay_ms(interval, poll_attempt_++, 0, take_jitter());
  if (config_.use_callbacks)
    return fallback * kCallbackPollSlowdown;
  switch (poll_policy()) {
  case PollPolicy::Fixed:
    return interval;
  case PollPolicy::Backoff:
    return fallback;
  case PollPolicy::Predict:
    break;
  }
  // The provider measured the progress between the poll's sending and its answer: the
  // middle is closer than either end when answers are slow.
  const gint64 now_ms = g_get_monotonic_time() / 1000;
  const gint64 measured_ms = poll_sent_ms_ ? (poll_sent_ms_ + now_ms) / 2 : now_ms;
  poll_schedule_add(schedule_, measured_ms, task.progress, task.status == TaskStatus::Processing);
  const guint then = poll_delay_ms(interval, poll_attempt_, 0, peek_jitter());
  const double margin = g_random_double_range(module::kPollMarginMin, module::kPollMarginMax);
  const guint delay = poll_schedule_delay(schedule_, now_ms, interval, fallback, then, margin);
  if (delay > fallback) {
    // The schedule's next poll is skipped: the one after this comes from the slot after it.
    poll_attempt_++;
    take_jitter();
  }
  if (delay != fallback)
    GST_LOG("task %s: completion expected in %u ms, polling then", task_id_.c_str(), delay);
  return delay;
}

void Job::finish(JobError error, std::string message, guint http_status, std::string error_code) {
  if (finished_)
    return;
  finished_ = true;
  stop_io();
  forget_task();
  JobOutcome outcome;
  outcome.error = error;
  outcome.task = last_task_;
  outcome.task_id = task_id_;
  outcome.http_status = http_status;
  outcome.error_code = std::move(error_code);
  outcome.message = std::move(message);
  if (error != JobError::None)
    GST_WARNING("task %s: %s", task_id_.c_str(), outcome.message.c_str());
  // Later events reach no one.
  std::shared_ptr<const JobCallbacks> callbacks = std::move(callbacks_);
  if (!cancelled_.load())
    notify(std::move(callbacks), &JobCallbacks::on_finished, outcome);
}

namespace module {

const char *job_error_name(JobError error) {
  // In the order of JobError.
  static const char *const names[] = {"none",        "unauthorized", "forbidden", "rejected",
                                      "not-found",   "network",      "ambiguous", "bad-response",
                                      "task-failed", "timeout"};
  const auto index = (size_t)error;
  return index < G_N_ELEMENTS(names) ? names[index] : "unknown";
}

JobHandle job_start(JobConfig config, JobCallbacks callbacks) {
  ClientThread::get(); // starts the thread on first use
  auto job = std::make_shared<Job>(std::move(config), std::move(callbacks));
  job->start();
  return job;
}

void job_cancel(const JobHandle &job) {
  if (job)
    job->cancel();
}

void poll_task_now(const std::string &task_id) {
  auto found = jobs_by_task().find(task_id);
  if (found != jobs_by_task().end()) {
    if (auto job = found->second.lock())
      job->poll_now();
  }
}

} // namespace module
} // namespace kirin
