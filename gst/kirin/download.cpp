// kirinhttpsrc: the result's HTTP download, read on the element's own streaming thread
// (download.h says why).
//
// Threads: start() and stop() (the state change) and fill() (the streaming thread) never
// run at once, and own the session, the message and the body stream. Queries (is_seekable)
// may come from any thread: what the response's headers said is kept under `lock`, and a
// query that comes while the first request waits for its headers waits with it, the way
// souphttpsrc does. unlock() cancels the blocking call from the state change thread.
#include "download.h"

#include "download-options.h"

#include <gst/base/gstbasesrc.h>
#include <libsoup/soup.h>

#include <condition_variable>
#include <mutex>
#include <string>

GST_DEBUG_CATEGORY_STATIC(kirin_http_src_debug);
#define GST_CAT_DEFAULT kirin_http_src_debug

namespace {

constexpr guint kDefaultBlocksize = 64 * 1024; // a read returns what the socket holds

// What the response's headers said about the whole resource.
struct Resource {
  bool known = false;   // a response's headers arrived
  bool waiting = false; // a request waits for its headers
  bool seekable = false;
  bool have_size = false;
  guint64 size = 0;
};

struct Private {
  kirin::module::DownloadOptions options; // object lock
  // Owned by start/stop and the streaming thread (never at once).
  SoupSession *session = nullptr;
  SoupMessage *message = nullptr;
  GInputStream *body = nullptr;
  guint64 position = 0; // offset of the next byte `body` gives
  gint failures = 0;    // attempts in a row that gave no byte
  bool bytes_seen = false;
  // Shared with queries and unlock().
  std::mutex lock;
  std::condition_variable headers_seen;
  Resource resource;
  GCancellable *cancellable = g_cancellable_new();
};

} // namespace

struct KirinHttpSrc {
  GstBaseSrc parent;
  Private *priv;
};

struct KirinHttpSrcClass {
  GstBaseSrcClass parent_class;
};

G_DEFINE_TYPE(KirinHttpSrc, kirin_http_src, GST_TYPE_BASE_SRC)

namespace {

KirinHttpSrc *self_of(gpointer object) {
  return reinterpret_cast<KirinHttpSrc *>(object);
}

GCancellable *current_cancellable(Private &p) {
  std::lock_guard<std::mutex> guard(p.lock);
  return G_CANCELLABLE(g_object_ref(p.cancellable));
}

void close_response(Private &p) {
  if (p.body) {
    g_input_stream_close(p.body, nullptr, nullptr);
    g_clear_object(&p.body);
  }
  g_clear_object(&p.message);
}

void publish(Private &p, const Resource &resource) {
  {
    std::lock_guard<std::mutex> guard(p.lock);
    p.resource = resource;
  }
  p.headers_seen.notify_all();
}

void set_waiting(Private &p, bool waiting) {
  {
    std::lock_guard<std::mutex> guard(p.lock);
    p.resource.waiting = waiting;
  }
  if (!waiting)
    p.headers_seen.notify_all();
}

// basesrc asks get_size() only while it knows a size already, and answers duration queries
// from its segment: the size the headers gave goes there, as souphttpsrc does.
void set_duration(KirinHttpSrc *self, guint64 size) {
  GST_OBJECT_LOCK(self);
  GstSegment &segment = GST_BASE_SRC(self)->segment;
  bool changed = segment.duration != size;
  segment.duration = size;
  GST_OBJECT_UNLOCK(self);
  if (changed)
    gst_element_post_message(GST_ELEMENT(self), gst_message_new_duration_changed(GST_OBJECT(self)));
}

// Posts an error for an HTTP answer, with souphttpsrc's codes and detail, so the element
// that owns this source tells an expired URL (403, 404) from other refusals.
void post_status_error(KirinHttpSrc *self, SoupMessage *message, const std::string &location) {
  guint status = soup_message_get_status(message);
  const char *reason = soup_message_get_reason_phrase(message);
  std::string text = "Server answered " + std::to_string(status);
  if (reason && *reason && g_utf8_validate(reason, -1, nullptr))
    text += std::string(" (") + reason + ")";
  GstResourceError code = GST_RESOURCE_ERROR_OPEN_READ;
  if (status == SOUP_STATUS_NOT_FOUND)
    code = GST_RESOURCE_ERROR_NOT_FOUND;
  else if (status == SOUP_STATUS_UNAUTHORIZED || status == SOUP_STATUS_PAYMENT_REQUIRED ||
           status == SOUP_STATUS_FORBIDDEN || status == SOUP_STATUS_PROXY_AUTHENTICATION_REQUIRED)
    code = GST_RESOURCE_ERROR_NOT_AUTHORIZED;
  gst_element_message_full_with_details(
      GST_ELEMENT(self), GST_MESSAGE_ERROR, GST_RESOURCE_ERROR, code, g_strdup(text.c_str()),
      g_strdup_printf("%s, URL: %s", text.c_str(), location.c_str()), __FILE__, GST_FUNCTION,
      __LINE__, gst_structure_new("details", "http-status-code", G_TYPE_UINT, status, nullptr));
}

void post_network_error(KirinHttpSrc *self, const GError *error, const std::string &location,
                        bool reading) {
  GstResourceError code = reading ? GST_RESOURCE_ERROR_READ : GST_RESOURCE_ERROR_OPEN_READ;
  if (error->domain == G_RESOLVER_ERROR)
    code = GST_RESOURCE_ERROR_NOT_FOUND;
  std::string text =
      std::string(reading ? "The download broke off: " : "Could not connect: ") + error->message;
  gst_element_message_full(GST_ELEMENT(self), GST_MESSAGE_ERROR, GST_RESOURCE_ERROR, code,
                           g_strdup(text.c_str()),
                           g_strdup_printf("%s, URL: %s", text.c_str(), location.c_str()), __FILE__,
                           GST_FUNCTION, __LINE__);
}

gboolean add_header(GQuark field, const GValue *value, gpointer data) {
  auto *headers = static_cast<SoupMessageHeaders *>(data);
  g_autofree char *text =
      G_VALUE_HOLDS_STRING(value) ? g_value_dup_string(value) : gst_value_serialize(value);
  if (text)
    soup_message_headers_append(headers, g_quark_to_string(field), text);
  return TRUE;
}

gboolean accept_any_certificate(SoupMessage *, GTlsCertificate *, GTlsCertificateFlags, gpointer) {
  return TRUE;
}

// The request for the bytes from `position` on, as the properties say now.
SoupMessage *build_message(KirinHttpSrc *self, guint64 position, std::string &location) {
  const kirin::module::DownloadOptions &o = self->priv->options;
  GST_OBJECT_LOCK(self);
  location = o.location;
  SoupMessage *message = soup_message_new("GET", o.location.c_str());
  if (message) {
    SoupMessageHeaders *headers = soup_message_get_request_headers(message);
    if (position > 0)
      soup_message_headers_set_range(headers, goffset(position), -1);
    if (o.extra_headers)
      gst_structure_foreach(o.extra_headers, add_header, headers);
    if (!o.automatic_redirect)
      soup_message_add_flags(message, SOUP_MESSAGE_NO_REDIRECT);
    if (!o.ssl_strict)
      g_signal_connect(message, "accept-certificate", G_CALLBACK(accept_any_certificate), nullptr);
  }
  GST_OBJECT_UNLOCK(self);
  return message;
}

// What a successful answer to a request from `position` says of the whole resource.
Resource resource_of(SoupMessage *message, guint64 position) {
  SoupMessageHeaders *headers = soup_message_get_response_headers(message);
  Resource resource;
  resource.known = true;
  goffset start, end, total;
  if (soup_message_get_status(message) == SOUP_STATUS_PARTIAL_CONTENT) {
    if (soup_message_headers_get_content_range(headers, &start, &end, &total) && total >= 0) {
      resource.have_size = true;
      resource.size = guint64(total);
    }
  } else if (soup_message_headers_get_encoding(headers) == SOUP_ENCODING_CONTENT_LENGTH) {
    resource.have_size = true;
    resource.size = position + guint64(soup_message_headers_get_content_length(headers));
  }
  const char *ranges = soup_message_headers_get_one(headers, "Accept-Ranges");
  resource.seekable = resource.have_size && !(ranges && g_ascii_strcasecmp(ranges, "none") == 0);
  return resource;
}

// A request that failed or a download that broke off: CUSTOM_ERROR when it is to be tried
// again from `position` (the server was reached before, and `retries` allows it).
GstFlowReturn after_failure(KirinHttpSrc *self, const GError *error, bool reading) {
  Private &p = *self->priv;
  if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return GST_FLOW_FLUSHING;
  GST_OBJECT_LOCK(self);
  gint retries = p.options.retries;
  std::string location = p.options.location;
  GST_OBJECT_UNLOCK(self);
  if (p.bytes_seen && (retries < 0 || p.failures < retries)) {
    p.failures++;
    GST_WARNING_OBJECT(self, "%s at byte %" G_GUINT64_FORMAT ", resuming (attempt %d)",
                       error->message, p.position, p.failures);
    return GST_FLOW_CUSTOM_ERROR;
  }
  post_network_error(self, error, location, reading);
  return GST_FLOW_ERROR;
}

GstFlowReturn refuse_answer(KirinHttpSrc *self, SoupMessage *message, GInputStream *body,
                            const std::string &location) {
  Private &p = *self->priv;
  guint status = soup_message_get_status(message);
  g_input_stream_close(body, nullptr, nullptr);
  GstFlowReturn ret = GST_FLOW_ERROR;
  std::unique_lock<std::mutex> guard(p.lock);
  bool past_end = p.resource.have_size && p.position >= p.resource.size;
  guard.unlock();
  if (status == SOUP_STATUS_REQUESTED_RANGE_NOT_SATISFIABLE && past_end)
    ret = GST_FLOW_EOS;
  else if (!SOUP_STATUS_IS_SUCCESSFUL(status))
    post_status_error(self, message, location);
  else
    GST_ELEMENT_ERROR_WITH_DETAILS(self, RESOURCE, SEEK, ("Server does not support seeking."),
                                   ("It ignored the Range of a request from byte %" G_GUINT64_FORMAT
                                    ", URL: %s",
                                    p.position, location.c_str()),
                                   ("http-status-code", G_TYPE_UINT, status, nullptr));
  set_waiting(p, false);
  g_object_unref(body);
  g_object_unref(message);
  return ret;
}

// Sends the request for the bytes from `position` on and keeps its body stream open.
GstFlowReturn open_response(KirinHttpSrc *self) {
  Private &p = *self->priv;
  std::string location;
  SoupMessage *message = build_message(self, p.position, location);
  if (!message) {
    GST_ELEMENT_ERROR(self, RESOURCE, OPEN_READ, ("Not an HTTP URL: \"%s\".", location.c_str()),
                      (nullptr));
    return GST_FLOW_ERROR;
  }
  GCancellable *cancellable = current_cancellable(p);
  set_waiting(p, true);
  GError *error = nullptr;
  GInputStream *body = soup_session_send(p.session, message, cancellable, &error);
  g_object_unref(cancellable);
  if (!body) {
    set_waiting(p, false);
    g_object_unref(message);
    GstFlowReturn ret = after_failure(self, error, false);
    g_error_free(error);
    return ret;
  }
  guint status = soup_message_get_status(message);
  bool wanted =
      p.position == 0 ? SOUP_STATUS_IS_SUCCESSFUL(status) : status == SOUP_STATUS_PARTIAL_CONTENT;
  if (!wanted)
    return refuse_answer(self, message, body, location);
  Resource resource = resource_of(message, p.position);
  publish(p, resource);
  if (resource.have_size)
    set_duration(self, resource.size);
  p.message = message;
  p.body = body;
  return GST_FLOW_OK;
}

// One attempt at the next bytes. CUSTOM_ERROR: try again from `position`.
GstFlowReturn read_some(KirinHttpSrc *self, guint8 *data, gsize size, gsize &got) {
  Private &p = *self->priv;
  if (!p.body) {
    GstFlowReturn ret = open_response(self);
    if (ret != GST_FLOW_OK)
      return ret;
  }
  GCancellable *cancellable = current_cancellable(p);
  GError *error = nullptr;
  gssize n = g_input_stream_read(p.body, data, size, cancellable, &error);
  g_object_unref(cancellable);
  if (n > 0) {
    p.position += guint64(n);
    p.failures = 0;
    p.bytes_seen = true;
    got = gsize(n);
    return GST_FLOW_OK;
  }
  close_response(p);
  Resource resource;
  {
    std::lock_guard<std::mutex> guard(p.lock);
    resource = p.resource;
  }
  if (n == 0 && (!resource.have_size || p.position >= resource.size))
    return GST_FLOW_EOS;
  if (!error)
    error = g_error_new(G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED,
                        "the server closed the connection at byte %" G_GUINT64_FORMAT
                        " of %" G_GUINT64_FORMAT,
                        p.position, resource.size);
  GstFlowReturn ret = after_failure(self, error, true);
  g_error_free(error);
  return ret;
}

} // namespace

// ---- GstBaseSrc ----

static gboolean kirin_http_src_start(GstBaseSrc *base) {
  auto *self = self_of(base);
  Private &p = *self->priv;
  GST_OBJECT_LOCK(self);
  const kirin::module::DownloadOptions &o = p.options;
  bool http = g_str_has_prefix(o.location.c_str(), "http://") ||
              g_str_has_prefix(o.location.c_str(), "https://");
  std::string location = o.location;
  // Configured here, before any request: libsoup wants a session set up on the thread
  // that made it; requests may then come from any thread (the streaming thread's).
  p.session = soup_session_new_with_options("user-agent", o.user_agent.c_str(), "timeout",
                                            o.timeout, "tls-database", o.tls_database, nullptr);
  if (!o.proxy.empty()) {
    GProxyResolver *resolver = g_simple_proxy_resolver_new(o.proxy.c_str(), nullptr);
    soup_session_set_proxy_resolver(p.session, resolver);
    g_object_unref(resolver);
  }
  GST_OBJECT_UNLOCK(self);
  // A video is read byte for byte: no compressed transfer to undo, sizes stay the file's.
  soup_session_remove_feature_by_type(p.session, SOUP_TYPE_CONTENT_DECODER);
  if (!http) {
    GST_ELEMENT_ERROR(self, RESOURCE, OPEN_READ, ("No http:// or https:// URL set."),
                      ("location: \"%s\"", location.c_str()));
    g_clear_object(&p.session);
    return FALSE;
  }
  p.position = 0;
  p.failures = 0;
  p.bytes_seen = false;
  publish(p, Resource());
  {
    // An unlock() of the last run that no unlock_stop() followed must not cancel this one.
    std::lock_guard<std::mutex> guard(p.lock);
    g_object_unref(p.cancellable);
    p.cancellable = g_cancellable_new();
  }
  return TRUE;
}

static gboolean kirin_http_src_stop(GstBaseSrc *base) {
  Private &p = *self_of(base)->priv;
  close_response(p);
  g_clear_object(&p.session);
  publish(p, Resource());
  return TRUE;
}

static GstFlowReturn kirin_http_src_fill(GstBaseSrc *base, guint64 offset, guint length,
                                         GstBuffer *buffer) {
  auto *self = self_of(base);
  Private &p = *self->priv;
  if (p.body && offset != p.position) // a seek
    close_response(p);
  if (!p.body)
    p.position = offset;
  GstMapInfo map;
  if (!gst_buffer_map(buffer, &map, GST_MAP_WRITE)) {
    GST_ELEMENT_ERROR(self, RESOURCE, FAILED, ("Could not map a buffer."), (nullptr));
    return GST_FLOW_ERROR;
  }
  gsize got = 0;
  GstFlowReturn ret;
  do
    ret = read_some(self, map.data, MIN(gsize(length), map.size), got);
  while (ret == GST_FLOW_CUSTOM_ERROR);
  gst_buffer_unmap(buffer, &map);
  if (ret == GST_FLOW_OK) {
    gst_buffer_set_size(buffer, gssize(got));
    GST_BUFFER_OFFSET(buffer) = offset;
    GST_BUFFER_OFFSET_END(buffer) = offset + got;
  }
  return ret;
}

static gboolean kirin_http_src_get_size(GstBaseSrc *base, guint64 *size) {
  Private &p = *self_of(base)->priv;
  std::lock_guard<std::mutex> guard(p.lock);
  *size = p.resource.size;
  return p.resource.have_size;
}

// Known once the first answer's headers came. Asked in PAUSED or later while the first
// request waits for them, the answer waits too (unlock() or the session's timeout ends it).
static gboolean kirin_http_src_is_seekable(GstBaseSrc *base) {
  Private &p = *self_of(base)->priv;
  bool started = GST_STATE(base) >= GST_STATE_PAUSED;
  std::unique_lock<std::mutex> guard(p.lock);
  if (started)
    p.headers_seen.wait(guard, [&p] { return p.resource.known || !p.resource.waiting; });
  return p.resource.seekable;
}

static gboolean kirin_http_src_do_seek(GstBaseSrc *base, GstSegment *segment) {
  Private &p = *self_of(base)->priv;
  if (segment->format != GST_FORMAT_BYTES || segment->rate < 0.0)
    return FALSE;
  std::lock_guard<std::mutex> guard(p.lock);
  // Before the first answer nothing is known: a server that ignores Range is an error then.
  return segment->start == p.position || !p.resource.known || p.resource.seekable;
}

static gboolean kirin_http_src_unlock(GstBaseSrc *base) {
  Private &p = *self_of(base)->priv;
  std::lock_guard<std::mutex> guard(p.lock);
  g_cancellable_cancel(p.cancellable);
  return TRUE;
}

static gboolean kirin_http_src_unlock_stop(GstBaseSrc *base) {
  Private &p = *self_of(base)->priv;
  std::lock_guard<std::mutex> guard(p.lock);
  g_object_unref(p.cancellable);
  p.cancellable = g_cancellable_new();
  return TRUE;
}

static gboolean kirin_http_src_query(GstBaseSrc *base, GstQuery *query) {
  gboolean handled = GST_BASE_SRC_CLASS(kirin_http_src_parent_class)->query(base, query);
  if (handled && GST_QUERY_TYPE(query) == GST_QUERY_SCHEDULING) {
    GstSchedulingFlags flags;
    gint minsize, maxsize, align;
    gst_query_parse_scheduling(query, &flags, &minsize, &maxsize, &align);
    gst_query_set_scheduling(query,
                             GstSchedulingFlags(flags | GST_SCHEDULING_FLAG_BANDWIDTH_LIMITED),
                             minsize, maxsize, align);
  }
  return handled;
}

// ---- GObject ----

static void kirin_http_src_set_property(GObject *object, guint id, const GValue *value,
                                        GParamSpec *pspec) {
  GST_OBJECT_LOCK(object);
  bool known = kirin::module::set_download_property(self_of(object)->priv->options, id, value);
  GST_OBJECT_UNLOCK(object);
  if (!known)
    G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec);
}

static void kirin_http_src_get_property(GObject *object, guint id, GValue *value,
                                        GParamSpec *pspec) {
  GST_OBJECT_LOCK(object);
  bool known = kirin::module::get_download_property(self_of(object)->priv->options, id, value);
  GST_OBJECT_UNLOCK(object);
  if (!known)
    G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec);
}

static void kirin_http_src_finalize(GObject *object) {
  Private *p = self_of(object)->priv;
  close_response(*p);
  g_clear_object(&p->session);
  g_object_unref(p->cancellable);
  delete p;
  G_OBJECT_CLASS(kirin_http_src_parent_class)->finalize(object);
}

static GstStaticPadTemplate src_template =
    GST_STATIC_PAD_TEMPLATE("src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS_ANY);

static void kirin_http_src_class_init(KirinHttpSrcClass *klass) {
  auto *object_class = G_OBJECT_CLASS(klass);
  auto *element_class = GST_ELEMENT_CLASS(klass);
  auto *base_class = GST_BASE_SRC_CLASS(klass);
  object_class->set_property = kirin_http_src_set_property;
  object_class->get_property = kirin_http_src_get_property;
  object_class->finalize = kirin_http_src_finalize;
  kirin::module::install_download_properties(object_class);
  gst_element_class_add_static_pad_template(element_class, &src_template);
  gst_element_class_set_static_metadata(
      element_class, "Kirin result download", "Source/Network",
      "Reads an extended video's result over HTTP on its own streaming thread",
      "gst-kirin developers");
  base_class->start = kirin_http_src_start;
  base_class->stop = kirin_http_src_stop;
  base_class->fill = kirin_http_src_fill;
  base_class->get_size = kirin_http_src_get_size;
  base_class->is_seekable = kirin_http_src_is_seekable;
  base_class->do_seek = kirin_http_src_do_seek;
  base_class->unlock = kirin_http_src_unlock;
  base_class->unlock_stop = kirin_http_src_unlock_stop;
  base_class->query = kirin_http_src_query;
}

static void kirin_http_src_init(KirinHttpSrc *self) {
  self->priv = new Private();
  gst_base_src_set_blocksize(GST_BASE_SRC(self), kDefaultBlocksize);
  gst_base_src_set_format(GST_BASE_SRC(self), GST_FORMAT_BYTES);
}

namespace kirin {
namespace module {

GstElement *download_source_new(const char *url) {
  static gsize registered = 0;
  if (g_once_init_enter(&registered)) {
    GST_DEBUG_CATEGORY_INIT(kirin_http_src_debug, "kirinhttpsrc", 0,
                            "Kirin result download over HTTP");
    gst_element_register(nullptr, "kirinhttpsrc", GST_RANK_NONE, kirin_http_src_get_type());
    g_once_init_leave(&registered, 1);
  }
  GstElement *source = gst_element_factory_make("kirinhttpsrc", "source");
  g_object_set(source, "location", url, nullptr);
  return source;
}

} // namespace module
} // namespace kirin
