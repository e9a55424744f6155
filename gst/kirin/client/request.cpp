#include "request.h"

#include "client-thread.h"
#include "task.h"

#include <algorithm>
#include <deque>
#include <map>

#define GST_CAT_DEFAULT kirin_client_debug

namespace kirin {
namespace module {
namespace {

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

// The requests to one origin: how many the session has, and those waiting for their turn,
// oldest first. Client thread only.
struct Origin {
  guint handed_over = 0;
  std::deque<Request *> waiting;
};

std::map<std::string, Origin> &origins() {
  static auto *by_origin = new std::map<std::string, Origin>();
  return *by_origin;
}

std::string origin_of(SoupMessage *msg) {
  GUri *uri = soup_message_get_uri(msg);
  const char *host = g_uri_get_host(uri);
  return std::string(g_uri_get_scheme(uri)) + "://" + (host ? host : "") + ":" +
         std::to_string(g_uri_get_port(uri));
}

} // namespace

Request::Request(SoupMessage *msg, std::shared_ptr<SendGate> gate, guint timeout_s, Done done)
    : msg_(msg), gate_(std::move(gate)), timeout_s_(timeout_s), done_(std::move(done)) {}

Request::~Request() {
  if (timeout_) {
    g_source_destroy(timeout_);
    g_source_unref(timeout_);
  }
  g_signal_handler_disconnect(msg_, wrote_headers_handler_);
  g_clear_object(&sink_);
  g_object_unref(cancellable_);
  g_object_unref(msg_);
}

Request *Request::send(SoupMessage *msg, std::shared_ptr<SendGate> gate, guint timeout_s,
                       GTlsDatabase *extra_cas, Done done) {
  auto *request = new Request(msg, std::move(gate), timeout_s, std::move(done));
  request->timeout_ = g_timeout_source_new_seconds(MAX(timeout_s, 1u));
  g_source_set_callback(
      request->timeout_,
      [](gpointer data) -> gboolean {
        auto *timed_out = static_cast<Request *>(data);
        if (timed_out->stage_ != Stage::Ending) {
          timed_out->timed_out_ = true;
          timed_out->cancel();
        }
        return G_SOURCE_REMOVE;
      },
      request, nullptr);
  g_source_attach(request->timeout_, ClientThread::get().context());
  // Tells a request that never left (safe to retry a create) from one that may have been
  // delivered (not safe: it could charge twice). Also right for reused connections.
  request->wrote_headers_handler_ =
      g_signal_connect(msg, "wrote-headers", G_CALLBACK(+[](SoupMessage *, gpointer data) {
                         static_cast<Request *>(data)->response_.sent = true;
                       }),
                       request);
  if (extra_cas)
    g_signal_connect(msg, "accept-certificate", G_CALLBACK(&Request::accept_certificate),
                     extra_cas);
  request->origin_ = origin_of(msg);
  Origin &origin = origins()[request->origin_];
  if (origin.handed_over >= kMaxConnsPerHost)
    origin.waiting.push_back(request);
  else if (!request->hand_over() && origin.handed_over == 0 && origin.waiting.empty())
    origins().erase(request->origin_);
  return request;
}

bool Request::hand_over() {
  bool passed = gate_->pass([this] {
    stage_ = Stage::HandedOver;
    origins()[origin_].handed_over++;
    soup_session_send_async(ClientThread::get().session(), msg_, G_PRIORITY_DEFAULT, cancellable_,
                            &Request::on_sent, this);
  });
  if (!passed) {
    GST_DEBUG("request to %s not handed over: its job was cancelled", origin_.c_str());
    end_cancelled_later();
  }
  return passed;
}

void Request::cancel() {
  g_cancellable_cancel(cancellable_);
  if (stage_ == Stage::Waiting)
    end_unsent();
}

// Out of the queue at once, so it never takes a turn; its `done` runs from the client
// thread's loop, as it would after a cancelled exchange.
void Request::end_unsent() {
  auto found = origins().find(origin_);
  auto &waiting = found->second.waiting;
  waiting.erase(std::find(waiting.begin(), waiting.end(), this));
  if (waiting.empty() && found->second.handed_over == 0)
    origins().erase(found);
  end_cancelled_later();
}

void Request::end_cancelled_later() {
  stage_ = Stage::Ending;
  GSource *idle = g_idle_source_new();
  g_source_set_callback(
      idle,
      [](gpointer data) -> gboolean {
        GError *cancelled = g_error_new_literal(G_IO_ERROR, G_IO_ERROR_CANCELLED, "Cancelled");
        static_cast<Request *>(data)->complete(cancelled);
        g_error_free(cancelled);
        return G_SOURCE_REMOVE;
      },
      this, nullptr);
  g_source_attach(idle, ClientThread::get().context());
  g_source_unref(idle);
}

// One of the origin's requests left the session: the oldest waiting one takes its turn.
void Request::end_turn(const std::string &origin) {
  auto found = origins().find(origin);
  Origin &turns = found->second;
  turns.handed_over--;
  // The oldest waiting request whose gate is open takes the turn; the others end unsent.
  bool handed = false;
  while (!handed && !turns.waiting.empty()) {
    Request *next = turns.waiting.front();
    turns.waiting.pop_front();
    handed = next->hand_over();
  }
  if (turns.handed_over == 0 && turns.waiting.empty())
    origins().erase(found);
}

void Request::complete(GError *error) {
  if (error) {
    response_.cancelled = !timed_out_ && g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
    response_.too_large = g_error_matches(error, G_IO_ERROR, G_IO_ERROR_NO_SPACE);
    response_.failed = !response_.too_large;
    response_.retryable_unsent = !response_.sent && (timed_out_ || is_connect_phase_error(error));
    response_.error_text = timed_out_
                               ? "no complete answer within " + std::to_string(timeout_s_) + " s"
                               : error->message;
  }
  // Before `done`, which may send again: the requests already waiting go first.
  if (stage_ == Stage::HandedOver)
    end_turn(origin_);
  done_(*this, response_);
  delete this;
}

// Called only when the system's CAs rejected the server: verify the chain against the
// user's CA file instead, for the host we meant to reach. Verification is never skipped.
gboolean Request::accept_certificate(SoupMessage *msg, GTlsCertificate *certificate,
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

void Request::on_sent(GObject *source, GAsyncResult *result, gpointer data) {
  auto *request = static_cast<Request *>(data);
  GError *error = nullptr;
  GInputStream *stream = soup_session_send_finish(SOUP_SESSION(source), result, &error);
  if (!stream) {
    request->complete(error);
    g_error_free(error);
    return;
  }
  Response &response = request->response_;
  response.sent = true;
  response.status = soup_message_get_status(request->msg_);
  const char *reason = soup_message_get_reason_phrase(request->msg_);
  response.reason = reason ? reason : "";
  response.retry_after_ms = parse_retry_after_ms(request->msg_);
  goffset length =
      soup_message_headers_get_content_length(soup_message_get_response_headers(request->msg_));
  if (length > (goffset)kMaxBodyBytes) {
    g_object_unref(stream);
    GError *too_large = g_error_new(G_IO_ERROR, G_IO_ERROR_NO_SPACE, "response too large");
    request->complete(too_large);
    g_error_free(too_large);
    return;
  }
  request->sink_ = g_memory_output_stream_new(nullptr, 0, bounded_realloc, g_free);
  g_output_stream_splice_async(request->sink_, stream,
                               (GOutputStreamSpliceFlags)(G_OUTPUT_STREAM_SPLICE_CLOSE_SOURCE |
                                                          G_OUTPUT_STREAM_SPLICE_CLOSE_TARGET),
                               G_PRIORITY_DEFAULT, request->cancellable_, &Request::on_body,
                               request);
  g_object_unref(stream);
}

void Request::on_body(GObject *source, GAsyncResult *result, gpointer data) {
  auto *request = static_cast<Request *>(data);
  GError *error = nullptr;
  g_output_stream_splice_finish(G_OUTPUT_STREAM(source), result, &error);
  auto *memory = G_MEMORY_OUTPUT_STREAM(request->sink_);
  request->response_.body.assign(static_cast<const char *>(g_memory_output_stream_get_data(memory)),
                                 g_memory_output_stream_get_data_size(memory));
  request->complete(error);
  g_clear_error(&error);
}

std::string http_error_text(const Response &response, std::string *code) {
  std::string text = parse_error_body(response.body.data(), response.body.size(), code);
  // The server's own reason phrase: libsoup 3.2 has none for some codes, such as 429.
  std::string status =
      "HTTP " + std::to_string(response.status) + " " +
      (response.reason.empty() ? soup_status_get_phrase(response.status) : response.reason);
  return text.empty() ? status : status + ": " + text;
}

void Reachability::note(const Response &response) {
  if (response.status != 0 || !response.failed) {
    since_us_ = 0;
    return;
  }
  if (!since_us_)
    since_us_ = g_get_monotonic_time();
  why_ = response.error_text;
}

std::string Reachability::text() const {
  if (!since_us_)
    return {};
  const gint64 seconds = (g_get_monotonic_time() - since_us_ + G_USEC_PER_SEC / 2) / G_USEC_PER_SEC;
  return " The provider could not be reached for the last " +
         std::to_string(MAX(seconds, (gint64)1)) + " s" + (why_.empty() ? "" : " (" + why_ + ")") +
         ".";
}

std::string shown_url(const std::string &url) {
  GUri *uri = g_uri_parse(url.c_str(), G_URI_FLAGS_NONE, nullptr);
  if (!uri)
    return url;
  g_autofree char *text = g_uri_to_string_partial(
      uri, (GUriHideFlags)(G_URI_HIDE_USERINFO | G_URI_HIDE_QUERY | G_URI_HIDE_FRAGMENT));
  g_uri_unref(uri);
  return text;
}

} // namespace module
} // namespace kirin
