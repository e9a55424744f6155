#include "client.h"

#include <gst/gst.h>
#include <gmodule.h>
#include <libsoup/soup.h>

#include <atomic>
#include <cmath>
#include <map>
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

GST_DEBUG_CATEGORY_STATIC(kirin_client_debug);
#define GST_CAT_DEFAULT kirin_client_debug

// ---- proxy lookups, once per host ----
//
// libsoup asks the session's GProxyResolver before every new connection, and the system's
// resolvers (glib-networking's GNOME and libproxy modules) answer each lookup on a thread of
// GLib's shared pool. A thousand elements creating their tasks at once open up to
// max-conns-per-host connections together, so the pool grew by ten threads that then idled
// while every element waited (the scale benchmark in tests/bench/). This resolver keeps the
// system resolver's answer per scheme, host and port for as long as an idle connection lives
// (the session's idle-timeout, so a proxy change is seen no later than with pooled
// connections), and lookups of a key that is being looked up wait for that one: one lookup,
// one pooled thread, per API host and minute. Failures are not kept.
#define KIRIN_TYPE_PROXY_CACHE (kirin_proxy_cache_get_type())
G_DECLARE_FINAL_TYPE(KirinProxyCache, kirin_proxy_cache, KIRIN, PROXY_CACHE, GObject)

namespace {

constexpr guint kConnectionIdleSeconds = 60;

struct ProxyCacheState {
  struct Answer {
    std::vector<std::string> proxies;
    gint64 expires_us = 0;
  };
  std::mutex lock;
  std::map<std::string, Answer> answers;
  std::map<std::string, std::vector<GTask *>> waiting; // lookups of a key in flight
};

// What the answer depends on for our requests: they all go to one API host (and its paths).
std::string proxy_cache_key(const char *uri) {
  GUri *parsed = g_uri_parse(uri, G_URI_FLAGS_NONE, nullptr);
  if (!parsed)
    return uri;
  std::string key = std::string(g_uri_get_scheme(parsed)) + "://" +
                    (g_uri_get_host(parsed) ? g_uri_get_host(parsed) : "") + ":" +
                    std::to_string(g_uri_get_port(parsed));
  g_uri_unref(parsed);
  return key;
}

gchar **to_strv(const std::vector<std::string> &items) {
  gchar **out = g_new0(gchar *, items.size() + 1);
  for (size_t i = 0; i < items.size(); i++)
    out[i] = g_strdup(items[i].c_str());
  return out;
}

} // namespace

struct _KirinProxyCache {
  GObject parent;
  ProxyCacheState *state;
};

static void kirin_proxy_cache_iface_init(GProxyResolverInterface *iface);
G_DEFINE_TYPE_WITH_CODE(KirinProxyCache, kirin_proxy_cache, G_TYPE_OBJECT,
                        G_IMPLEMENT_INTERFACE(G_TYPE_PROXY_RESOLVER, kirin_proxy_cache_iface_init))

static void kirin_proxy_cache_init(KirinProxyCache *self) {
  self->state = new ProxyCacheState();
}

static void kirin_proxy_cache_finalize(GObject *object) {
  delete KIRIN_PROXY_CACHE(object)->state;
  G_OBJECT_CLASS(kirin_proxy_cache_parent_class)->finalize(object);
}

static void kirin_proxy_cache_class_init(KirinProxyCacheClass *klass) {
  G_OBJECT_CLASS(klass)->finalize = kirin_proxy_cache_finalize;
}

// The kept answer for `key`, or nullptr.
static gchar **proxy_cache_find(ProxyCacheState *state, const std::string &key) {
  auto found = state->answers.find(key);
  if (found == state->answers.end() || found->second.expires_us <= g_get_monotonic_time())
    return nullptr;
  return to_strv(found->second.proxies);
}

static void proxy_cache_store(ProxyCacheState *state, const std::string &key, gchar **proxies) {
  ProxyCacheState::Answer answer;
  for (gchar **p = proxies; p && *p; p++)
    answer.proxies.push_back(*p);
  answer.expires_us = g_get_monotonic_time() + kConnectionIdleSeconds * G_USEC_PER_SEC;
  state->answers[key] = std::move(answer);
}

static gchar **kirin_proxy_cache_lookup(GProxyResolver *resolver, const gchar *uri,
                                        GCancellable *cancellable, GError **error) {
  ProxyCacheState *state = KIRIN_PROXY_CACHE(resolver)->state;
  const std::string key = proxy_cache_key(uri);
  {
    std::lock_guard<std::mutex> guard(state->lock);
    if (gchar **kept = proxy_cache_find(state, key))
      return kept;
  }
  gchar **proxies =
      g_proxy_resolver_lookup(g_proxy_resolver_get_default(), uri, cancellable, error);
  if (proxies) {
    std::lock_guard<std::mutex> guard(state->lock);
    proxy_cache_store(state, key, proxies);
  }
  return proxies;
}

struct ProxyLookup {
  KirinProxyCache *self; // a reference
  std::string key;
};

static void proxy_cache_looked_up(GObject *source, GAsyncResult *result, gpointer data) {
  auto *lookup = static_cast<ProxyLookup *>(data);
  ProxyCacheState *state = lookup->self->state;
  GError *error = nullptr;
  gchar **proxies = g_proxy_resolver_lookup_finish(G_PROXY_RESOLVER(source), result, &error);
  std::vector<GTask *> tasks;
  {
    std::lock_guard<std::mutex> guard(state->lock);
    tasks.swap(state->waiting[lookup->key]);
    state->waiting.erase(lookup->key);
    if (proxies)
      proxy_cache_store(state, lookup->key, proxies);
  }
  // A waiter whose own cancellable fired gets G_IO_ERROR_CANCELLED from GTask; the shared
  // lookup itself is never cancelled by one of them.
  for (GTask *task : tasks) {
    if (proxies)
      g_task_return_pointer(task, g_strdupv(proxies), (GDestroyNotify)g_strfreev);
    else
      g_task_return_error(task, g_error_copy(error));
    g_object_unref(task);
  }
  g_strfreev(proxies);
  g_clear_error(&error);
  g_object_unref(lookup->self);
  delete lookup;
}

static void kirin_proxy_cache_lookup_async(GProxyResolver *resolver, const gchar *uri,
                                           GCancellable *cancellable, GAsyncReadyCallback callback,
                                           gpointer user_data) {
  KirinProxyCache *self = KIRIN_PROXY_CACHE(resolver);
  GTask *task = g_task_new(resolver, cancellable, callback, user_data);
  g_task_set_source_tag(task, (gpointer)kirin_proxy_cache_lookup_async);
  const std::string key = proxy_cache_key(uri);
  {
    std::lock_guard<std::mutex> guard(self->state->lock);
    if (gchar **kept = proxy_cache_find(self->state, key)) {
      g_task_return_pointer(task, kept, (GDestroyNotify)g_strfreev);
      g_object_unref(task);
      return;
    }
    std::vector<GTask *> &waiting = self->state->waiting[key];
    waiting.push_back(task);
    if (waiting.size() > 1)
      return; // answered with the lookup already in flight
  }
  g_proxy_resolver_lookup_async(g_proxy_resolver_get_default(), uri, nullptr, proxy_cache_looked_up,
                                new ProxyLookup{KIRIN_PROXY_CACHE(g_object_ref(self)), key});
}

static gchar **kirin_proxy_cache_lookup_finish(GProxyResolver *, GAsyncResult *result,
                                               GError **error) {
  return static_cast<gchar **>(g_task_propagate_pointer(G_TASK(result), error));
}

static void kirin_proxy_cache_iface_init(GProxyResolverInterface *iface) {
  iface->lookup = kirin_proxy_cache_lookup;
  iface->lookup_async = kirin_proxy_cache_lookup_async;
  iface->lookup_finish = kirin_proxy_cache_lookup_finish;
}

namespace kirin {
namespace {

// A task object is a few hundred bytes; anything past this is not one, and is refused
// rather than buffered.
constexpr gsize kMaxBodyBytes = 1024 * 1024;
// Attempts at a create request whose connection could not be established.
constexpr guint kCreateConnectAttempts = 4;
// libsoup 3.2 has no name for it.
constexpr guint kStatusTooManyRequests = 429;

// The one thread that owns the SoupSession and runs every job's I/O. It lives for the
// rest of the process once started, like GStreamer's own task pools.
class ClientThread {
public:
  static ClientThread &get() {
    static ClientThread *instance = new ClientThread();
    return *instance;
  }

  GMainContext *context() const { return context_; }
  SoupSession *session() const { return session_; } // client thread only

private:
  ClientThread() {
    GST_DEBUG_CATEGORY_INIT(kirin_client_debug, "kirinclient", 0, "Kirin API client");
    context_ = g_main_context_new();
    g_thread_unref(g_thread_new("kirin-client", &ClientThread::run, this));
    std::unique_lock<std::mutex> lock(mutex_);
    ready_cond_.wait(lock, [this] { return session_ != nullptr; });
  }

  static gpointer run(gpointer data) {
    auto *self = static_cast<ClientThread *>(data);
    g_main_context_push_thread_default(self->context_);
    // Polls are short and many elements may wait at once: allow more parallel connections
    // than libsoup's default of two per host, so one hung request cannot starve the rest.
    // Proxy lookups go through KirinProxyCache (above), so a burst of new connections costs
    // one system lookup, not one pooled thread each.
    GProxyResolver *proxies = G_PROXY_RESOLVER(g_object_new(KIRIN_TYPE_PROXY_CACHE, nullptr));
    SoupSession *session =
        soup_session_new_with_options("idle-timeout", kConnectionIdleSeconds, "max-conns", 128,
                                      "max-conns-per-host", 64, "proxy-resolver", proxies, nullptr);
    g_object_unref(proxies);
    GMainLoop *loop = g_main_loop_new(self->context_, FALSE);
    {
      std::lock_guard<std::mutex> lock(self->mutex_);
      self->session_ = session;
    }
    self->ready_cond_.notify_all();
    g_main_loop_run(loop);
    return nullptr;
  }

  GMainContext *context_ = nullptr;
  SoupSession *session_ = nullptr;
  std::mutex mutex_;
  std::condition_variable ready_cond_;
};

// What one HTTP exchange produced, whatever happened.
struct Response {
  guint status = 0;    // HTTP status, 0 when no response arrived
  std::string reason;  // the reason phrase the server sent
  std::string body;    // at most kMaxBodyBytes
  bool failed = false; // transport failure (no response, or body cut off)
  bool sent = false;   // the request's headers were written: it may have been delivered
  bool too_large = false;
  bool cancelled = false;
  bool retryable_unsent = false; // failed before sending, in a way worth another try
  guint retry_after_ms = 0;
  std::string error_text;
};

gpointer bounded_realloc(gpointer data, gsize size) {
  // Refusing to grow makes GMemoryOutputStream fail the splice with G_IO_ERROR_NO_SPACE.
  return size > kMaxBodyBytes ? nullptr : g_realloc(data, size);
}

guint parse_retry_after_ms(SoupMessage *msg) {
  const char *value =
      soup_message_headers_get_one(soup_message_get_response_headers(msg), "Retry-After");
  if (!value)
    return 0;
  char *end = nullptr;
  guint64 seconds = g_ascii_strtoull(value, &end, 10);
  if (end != value && *end == '\0')
    return (guint)MIN(seconds, 3600) * 1000;
  GDateTime *date = soup_date_time_new_from_http_string(value);
  if (!date)
    return 0;
  GDateTime *now = g_date_time_new_now_utc();
  GTimeSpan span = g_date_time_difference(date, now);
  g_date_time_unref(now);
  g_date_time_unref(date);
  return span > 0 ? (guint)MIN(span / 1000, 3600 * 1000) : 0;
}

bool is_connect_phase_error(const GError *error) {
  if (error->domain == G_RESOLVER_ERROR)
    return true;
  if (error->domain != G_IO_ERROR)
    return false;
  switch (error->code) {
  case G_IO_ERROR_CONNECTION_REFUSED:
  case G_IO_ERROR_HOST_NOT_FOUND:
  case G_IO_ERROR_HOST_UNREACHABLE:
  case G_IO_ERROR_NETWORK_UNREACHABLE:
  case G_IO_ERROR_TIMED_OUT:
    return true;
  default:
    return false;
  }
}

std::string http_error_text(const Response &response, std::string *code) {
  std::string text = parse_error_body(response.body.data(), response.body.size(), code);
  // The server's own reason phrase: libsoup 3.2 has none for some codes, such as 429.
  std::string status =
      "HTTP " + std::to_string(response.status) + " " +
      (response.reason.empty() ? soup_status_get_phrase(response.status) : response.reason);
  return text.empty() ? status : status + ": " + text;
}

// How much slower polls run when callbacks announce changes.
constexpr guint kCallbackPollSlowdown = 4;

} // namespace

// Jobs waiting for their task, by task ID, for callbacks to wake. Client thread only.
std::map<std::string, std::weak_ptr<Job>> &jobs_by_task() {
  static auto *jobs = new std::map<std::string, std::weak_ptr<Job>>();
  return *jobs;
}

const char *job_error_name(JobError error) {
  switch (error) {
  case JobError::None:
    return "none";
  case JobError::Unauthorized:
    return "unauthorized";
  case JobError::Forbidden:
    return "forbidden";
  case JobError::Rejected:
    return "rejected";
  case JobError::NotFound:
    return "not-found";
  case JobError::Network:
    return "network";
  case JobError::Ambiguous:
    return "ambiguous";
  case JobError::BadResponse:
    return "bad-response";
  case JobError::TaskFailed:
    return "task-failed";
  case JobError::Timeout:
    return "timeout";
  }
  return "unknown";
}

guint poll_delay_ms(guint poll_interval_ms, guint attempt, guint retry_after_ms) {
  double base = poll_interval_ms * std::pow(1.5, MIN(attempt, 8u));
  base = MIN(base, 4.0 * poll_interval_ms);
  double jittered = base * g_random_double_range(0.9, 1.1);
  return MAX((guint)jittered, retry_after_ms);
}

class Job : public std::enable_shared_from_this<Job> {
public:
  Job(JobConfig config, JobCallbacks callbacks)
      : config_(std::move(config)), callbacks_(std::move(callbacks)) {
    if (!config_.ca_file.empty()) {
      GError *error = nullptr;
      ca_database_ = g_tls_file_database_new(config_.ca_file.c_str(), &error);
      if (!ca_database_) {
        GST_WARNING("cannot use CA file %s: %s", config_.ca_file.c_str(), error->message);
        g_error_free(error);
      }
    }
  }

  ~Job() {
    g_clear_object(&ca_database_);
    // The key is a secret: do not leave it in freed memory.
    std::fill(config_.api_key.begin(), config_.api_key.end(), '\0');
  }

  void begin();
  // A callback said the task changed: poll now instead of at the next timer.
  void poll_now() {
    if (finished_ || in_flight_ || task_id_.empty())
      return;
    GST_DEBUG("callback for task %s: polling now", task_id_.c_str());
    send_poll();
  }

  void cancel() {
    if (cancelled_.exchange(true))
      return;
    // libsoup is not thread-safe: abort the I/O on the thread that owns it.
    invoke([](Job &job) {
      GST_DEBUG("cancelling job for task %s", job.task_id_.c_str());
      job.finished_ = true;
      job.stop_io();
      job.forget_task();
      job.callbacks_ = {};
    });
  }

private:
  using Step = void (*)(Job &);

  void invoke(Step step) {
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
        new Call{shared_from_this(), step},
        [](gpointer data) { delete static_cast<Call *>(data); });
  }

  // Runs `step` after `delay_ms` on the client thread, unless the job ends first.
  void schedule(guint delay_ms, Step step) {
    clear_source(&timer_);
    timer_ = add_timer(delay_ms, step);
  }

  GSource *add_timer(guint delay_ms, Step step) {
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

  static void clear_source(GSource **source) {
    if (*source) {
      g_source_destroy(*source);
      g_source_unref(*source);
      *source = nullptr;
    }
  }

  void stop_io();
  void forget_task() {
    auto found = jobs_by_task().find(task_id_);
    if (found != jobs_by_task().end() && found->second.lock().get() == this)
      jobs_by_task().erase(found);
  }

  void send(SoupMessage *msg, void (Job::*handler)(Response &));
  static gboolean accept_certificate(SoupMessage *msg, GTlsCertificate *certificate,
                                     GTlsCertificateFlags errors, gpointer data);
  static void on_sent(GObject *source, GAsyncResult *result, gpointer data);
  static void on_body(GObject *source, GAsyncResult *result, gpointer data);

  SoupMessage *new_api_message(const char *method, const std::string &url);
  void send_create();
  void on_create_response(Response &response);
  void send_poll();
  void on_poll_response(Response &response);
  void handle_task(Task task);
  void retry_poll(guint retry_after_ms, const std::string &why);
  void finish(JobError error, std::string message, guint http_status = 0,
              std::string error_code = {});
  std::string resume_hint() const;

  JobConfig config_;
  JobCallbacks callbacks_; // cleared on cancel, so late events reach no one
  std::atomic<bool> cancelled_{false};
  GTlsDatabase *ca_database_ = nullptr; // the extra CAs of config_.ca_file

  // Client thread only.
  struct Request *in_flight_ = nullptr; // at most one request at a time
  GSource *timer_ = nullptr;
  GSource *deadline_ = nullptr;
  bool finished_ = false;
  std::string task_id_;
  Task last_task_;
  guint poll_attempt_ = 0;
  guint create_attempt_ = 0;

  friend JobHandle job_start(JobConfig, JobCallbacks);
  friend struct Request;
};

// Per-request state on the heap, owned by the async chain: a late callback after cancel
// still finds it alive, and it keeps the job alive until the request is over.
struct Request {
  std::shared_ptr<Job> job;
  void (Job::*handler)(Response &);
  SoupMessage *msg;
  GCancellable *cancellable = g_cancellable_new();
  GSource *timeout = nullptr; // cancels a request that gets no complete answer in time
  bool timed_out = false;
  GOutputStream *sink = nullptr;
  gulong network_handler = 0;
  Response response;

  Request(std::shared_ptr<Job> owner, void (Job::*on_response)(Response &), SoupMessage *message)
      : job(std::move(owner)), handler(on_response), msg(message) {}

  ~Request() {
    if (timeout) {
      g_source_destroy(timeout);
      g_source_unref(timeout);
    }
    g_signal_handler_disconnect(msg, network_handler);
    g_clear_object(&sink);
    g_object_unref(cancellable);
    g_object_unref(msg);
  }

  void complete(GError *error) {
    if (job->in_flight_ == this)
      job->in_flight_ = nullptr;
    if (error) {
      response.cancelled = !timed_out && g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
      response.too_large = g_error_matches(error, G_IO_ERROR, G_IO_ERROR_NO_SPACE);
      response.failed = !response.too_large;
      response.retryable_unsent = !response.sent && (timed_out || is_connect_phase_error(error));
      response.error_text = timed_out ? "no complete answer within " +
                                            std::to_string(job->config_.request_timeout_s) + " s"
                                      : error->message;
    }
    if (!response.cancelled && !job->cancelled_.load())
      ((*job).*handler)(response);
    delete this;
  }
};

void Job::stop_io() {
  clear_source(&timer_);
  clear_source(&deadline_);
  if (in_flight_)
    g_cancellable_cancel(in_flight_->cancellable);
}

void Job::send(SoupMessage *msg, void (Job::*handler)(Response &)) {
  auto *request = new Request(shared_from_this(), handler, msg);
  in_flight_ = request;
  request->timeout = g_timeout_source_new_seconds(MAX(config_.request_timeout_s, 1u));
  g_source_set_callback(
      request->timeout,
      [](gpointer data) -> gboolean {
        auto *timed_out = static_cast<Request *>(data);
        timed_out->timed_out = true;
        g_cancellable_cancel(timed_out->cancellable);
        return G_SOURCE_REMOVE;
      },
      request, nullptr);
  g_source_attach(request->timeout, ClientThread::get().context());
  // Tells a request that never left (safe to retry a create) from one that may have been
  // delivered (not safe: it could charge twice). Also right for reused connections.
  request->network_handler =
      g_signal_connect(msg, "wrote-headers", G_CALLBACK(+[](SoupMessage *, gpointer data) {
                         static_cast<Request *>(data)->response.sent = true;
                       }),
                       request);
  if (ca_database_)
    g_signal_connect(msg, "accept-certificate", G_CALLBACK(&Job::accept_certificate), ca_database_);
  soup_session_send_async(ClientThread::get().session(), msg, G_PRIORITY_DEFAULT,
                          request->cancellable, &Job::on_sent, request);
}

// Called only when the system's CAs rejected the server: verify the chain against the
// user's CA file instead, for the host we meant to reach. Verification is never skipped.
gboolean Job::accept_certificate(SoupMessage *msg, GTlsCertificate *certificate,
                                 GTlsCertificateFlags errors, gpointer data) {
  GUri *uri = soup_message_get_uri(msg);
  GSocketConnectable *identity =
      g_network_address_new(g_uri_get_host(uri), (guint16)g_uri_get_port(uri));
  GTlsCertificateFlags flags = g_tls_database_verify_chain(
      G_TLS_DATABASE(data), certificate, G_TLS_DATABASE_PURPOSE_AUTHENTICATE_SERVER, identity,
      nullptr, G_TLS_DATABASE_VERIFY_NONE, nullptr, nullptr);
  g_object_unref(identity);
  GST_DEBUG("server certificate: system errors 0x%x, against ca-file 0x%x", errors, flags);
  return flags == 0;
}

void Job::on_sent(GObject *source, GAsyncResult *result, gpointer data) {
  auto *request = static_cast<Request *>(data);
  GError *error = nullptr;
  GInputStream *stream = soup_session_send_finish(SOUP_SESSION(source), result, &error);
  if (!stream) {
    request->complete(error);
    g_error_free(error);
    return;
  }
  request->response.sent = true;
  request->response.status = soup_message_get_status(request->msg);
  const char *reason = soup_message_get_reason_phrase(request->msg);
  request->response.reason = reason ? reason : "";
  request->response.retry_after_ms = parse_retry_after_ms(request->msg);
  goffset length =
      soup_message_headers_get_content_length(soup_message_get_response_headers(request->msg));
  if (length > (goffset)kMaxBodyBytes) {
    g_object_unref(stream);
    GError *too_large = g_error_new(G_IO_ERROR, G_IO_ERROR_NO_SPACE, "response too large");
    request->complete(too_large);
    g_error_free(too_large);
    return;
  }
  request->sink = g_memory_output_stream_new(nullptr, 0, bounded_realloc, g_free);
  g_output_stream_splice_async(request->sink, stream,
                               (GOutputStreamSpliceFlags)(G_OUTPUT_STREAM_SPLICE_CLOSE_SOURCE |
                                                          G_OUTPUT_STREAM_SPLICE_CLOSE_TARGET),
                               G_PRIORITY_DEFAULT, request->cancellable, &Job::on_body, request);
  g_object_unref(stream);
}

void Job::on_body(GObject *source, GAsyncResult *result, gpointer data) {
  auto *request = static_cast<Request *>(data);
  GError *error = nullptr;
  g_output_stream_splice_finish(G_OUTPUT_STREAM(source), result, &error);
  auto *memory = G_MEMORY_OUTPUT_STREAM(request->sink);
  request->response.body.assign(static_cast<const char *>(g_memory_output_stream_get_data(memory)),
                                g_memory_output_stream_get_data_size(memory));
  request->complete(error);
  g_clear_error(&error);
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
    deadline_ = add_timer(config_.timeout_s * 1000, [](Job &job) {
      g_clear_pointer(&job.deadline_, g_source_unref);
      std::string status = job.task_id_.empty() ? "not created yet"
                                                : std::string("last status: ") +
                                                      task_status_name(job.last_task_.status);
      job.finish(JobError::Timeout, "Gave up waiting for the task after " +
                                        std::to_string(job.config_.timeout_s) + " s (" + status +
                                        ")." + job.resume_hint());
    });
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
  GST_DEBUG("creating a task at %s (attempt %u)", config_.api_url.c_str(), create_attempt_);
  send(msg, &Job::on_create_response);
}

void Job::on_create_response(Response &response) {
  if (response.failed || response.too_large) {
    if (response.retryable_unsent && create_attempt_ < kCreateConnectAttempts) {
      guint delay = 1000u << (create_attempt_ - 1);
      GST_WARNING("could not connect to %s (%s); retrying in %u ms", config_.api_url.c_str(),
                  response.error_text.c_str(), delay);
      schedule(delay, [](Job &job) { job.send_create(); });
      return;
    }
    if (!response.sent) {
      finish(JobError::Network, "Could not reach " + config_.api_url + ": " + response.error_text +
                                    ". No task was created.");
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
    std::string code;
    std::string text = http_error_text(response, &code);
    JobError error = response.status == SOUP_STATUS_UNAUTHORIZED ? JobError::Unauthorized
                     : response.status == SOUP_STATUS_FORBIDDEN  ? JobError::Forbidden
                     : response.status >= 500                    ? JobError::Ambiguous
                                                                 : JobError::Rejected;
    std::string hint = error == JobError::Ambiguous ? " The task may exist." + resume_hint() : "";
    finish(error, "The provider refused to create the task: " + text + "." + hint, response.status,
           code);
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
  if (callbacks_.on_task_id)
    callbacks_.on_task_id(task_id_);
  handle_task(std::move(task));
}

void Job::send_poll() {
  g_autofree char *escaped = g_uri_escape_string(task_id_.c_str(), nullptr, FALSE);
  SoupMessage *msg = new_api_message("GET", config_.api_url + "/task/" + escaped);
  if (!msg) {
    finish(JobError::Rejected, "api-url '" + config_.api_url + "' is not a valid URL.");
    return;
  }
  GST_LOG("polling task %s", task_id_.c_str());
  send(msg, &Job::on_poll_response);
}

void Job::retry_poll(guint retry_after_ms, const std::string &why) {
  guint delay = poll_delay_ms(config_.poll_interval_ms, poll_attempt_++, retry_after_ms);
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
    JobError error = response.status == SOUP_STATUS_UNAUTHORIZED ? JobError::Unauthorized
                     : response.status == SOUP_STATUS_FORBIDDEN  ? JobError::Forbidden
                     : response.status == SOUP_STATUS_NOT_FOUND  ? JobError::NotFound
                                                                 : JobError::Rejected;
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
  if (callbacks_.on_update)
    callbacks_.on_update(last_task_);
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
  default: {
    guint delay = poll_delay_ms(config_.poll_interval_ms, poll_attempt_++, 0) *
                  (config_.use_callbacks ? kCallbackPollSlowdown : 1);
    schedule(delay, [](Job &job) { job.send_poll(); });
  }
  }
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
  auto on_finished = std::move(callbacks_.on_finished);
  callbacks_ = {};
  if (on_finished && !cancelled_.load())
    on_finished(outcome);
}

JobHandle job_start(JobConfig config, JobCallbacks callbacks) {
  ClientThread::get(); // starts the thread on first use
  auto job = std::make_shared<Job>(std::move(config), std::move(callbacks));
  job->invoke([](Job &job) {
    if (!job.cancelled_.load())
      job.begin();
  });
  return job;
}

namespace {

// A notification names its task; the body is parsed only for that ID. Whatever else it
// says (status, URL) is ignored: the poll it triggers asks the provider itself.
void on_callback(SoupServer *, SoupServerMessage *msg, const char *, GHashTable *, gpointer) {
  if (g_strcmp0(soup_server_message_get_method(msg), "POST") != 0) {
    soup_server_message_set_status(msg, SOUP_STATUS_METHOD_NOT_ALLOWED, nullptr);
    return;
  }
  SoupMessageBody *body = soup_server_message_get_request_body(msg);
  Task task;
  std::string error;
  if ((gsize)body->length > kMaxBodyBytes || !parse_task(body->data, body->length, task, error) ||
      task.id.empty()) {
    soup_server_message_set_status(msg, SOUP_STATUS_BAD_REQUEST, nullptr);
    return;
  }
  auto found = jobs_by_task().find(task.id);
  if (found != jobs_by_task().end()) {
    if (auto job = found->second.lock())
      job->poll_now();
  }
  soup_server_message_set_status(msg, SOUP_STATUS_NO_CONTENT, nullptr);
}

} // namespace

guint callback_listener_start(const std::string &listen, std::string &error) {
  struct Attempt {
    std::string listen;
    guint port = 0;
    std::string error;
    bool done = false;
    std::mutex lock;
    std::condition_variable cond;
  } attempt;
  attempt.listen = listen;
  ClientThread::get();
  g_main_context_invoke(
      ClientThread::get().context(),
      [](gpointer data) -> gboolean {
        auto *attempt = static_cast<Attempt *>(data);
        static auto *listeners = new std::map<std::string, guint>(); // address -> port
        guint port = 0;
        std::string error;
        auto known = listeners->find(attempt->listen);
        if (known != listeners->end()) {
          port = known->second;
        } else {
          size_t colon = attempt->listen.rfind(':');
          std::string host = colon == std::string::npos ? "" : attempt->listen.substr(0, colon);
          guint64 wanted = 0;
          GInetAddress *address = g_inet_address_new_from_string(host.c_str());
          if (!address || colon == std::string::npos ||
              !g_ascii_string_to_unsigned(attempt->listen.c_str() + colon + 1, 10, 0, 65535,
                                          &wanted, nullptr)) {
            error = "'" + attempt->listen + "' is not an IP address and port (e.g. 0.0.0.0:8099)";
          } else {
            SoupServer *server = soup_server_new(nullptr, nullptr);
            soup_server_add_handler(server, nullptr, on_callback, nullptr, nullptr);
            GSocketAddress *socket_address = g_inet_socket_address_new(address, (guint16)wanted);
            GError *listen_error = nullptr;
            if (soup_server_listen(server, socket_address, SoupServerListenOptions(0),
                                   &listen_error)) {
              GSList *sockets = soup_server_get_listeners(server);
              GSocketAddress *local = g_socket_get_local_address(G_SOCKET(sockets->data), nullptr);
              port = g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(local));
              g_object_unref(local);
              g_slist_free(sockets);
              (*listeners)[attempt->listen] = port; // the server lives as long as the process
              GST_INFO("listening for callbacks on %s (port %u)", attempt->listen.c_str(), port);
            } else {
              error = listen_error->message;
              g_error_free(listen_error);
              g_object_unref(server);
            }
            g_object_unref(socket_address);
          }
          g_clear_object(&address);
        }
        std::lock_guard<std::mutex> guard(attempt->lock);
        attempt->port = port;
        attempt->error = error;
        attempt->done = true;
        attempt->cond.notify_all();
        return G_SOURCE_REMOVE;
      },
      &attempt);
  std::unique_lock<std::mutex> guard(attempt.lock);
  attempt.cond.wait(guard, [&] { return attempt.done; });
  error = attempt.error;
  return attempt.port;
}

void job_cancel(const JobHandle &job) {
  if (job)
    job->cancel();
}

} // namespace kirin

// The module's one exported symbol: the table the plugin's loader calls through.
extern "C" G_MODULE_EXPORT const kirin::ClientApi *kirin_client_api() {
  static const kirin::ClientApi api = {
      kirin::job_start,
      kirin::job_cancel,
      kirin::callback_listener_start,
      kirin::job_error_name,
      kirin::task_status_name,
      [](const std::string &path, std::string &error) -> GObject * {
        GError *gerror = nullptr;
        GTlsDatabase *database = g_tls_file_database_new(path.c_str(), &gerror);
        if (!database) {
          error = gerror->message;
          g_error_free(gerror);
        }
        return G_OBJECT(database);
      },
  };
  return &api;
}
