// Fault injection: the fault specs, taking the next fault of a route, and the answers a
// fault makes instead of the route's own (drops and streamed bodies write by hand).
#include "emulator-internal.h"
#include "streamed-answer.h"

#include <string>

namespace kirin_emu {
namespace {

// The `big:<bytes>` body: head, padding, tail.
constexpr char kBigHead[] = "{\"id\":\"task-big\",\"status\":\"pending\",\"pad\":\"";
constexpr char kBigTail[] = "\"}";
constexpr gint64 kBigMin = sizeof kBigHead - 1 + sizeof kBigTail - 1;
constexpr gint64 kBigMax = gint64(1) << 30;

std::optional<ProgressShape> progress_shape(const std::string &name) {
  static const std::pair<const char *, ProgressShape> shapes[] = {{"linear", ProgressShape::Linear},
                                                                  {"steps", ProgressShape::Steps},
                                                                  {"none", ProgressShape::None},
                                                                  {"stall", ProgressShape::Stall},
                                                                  {"back", ProgressShape::Back}};
  for (const auto &[shape_name, shape] : shapes)
    if (name == shape_name)
      return shape;
  return std::nullopt;
}

// `progress:<shape>` or `progress:<shape>:<ms>`.
std::optional<Fault> parse_progress_fault(const std::string &arg) {
  const auto colon = arg.find(':');
  const auto shape = progress_shape(arg.substr(0, colon));
  Fault fault;
  fault.kind = FaultKind::Progress;
  if (!shape ||
      (colon != std::string::npos && !g_ascii_string_to_signed(arg.c_str() + colon + 1, 10, 1,
                                                               G_MAXUINT, &fault.number, nullptr)))
    return std::nullopt;
  fault.shape = *shape;
  return fault;
}

} // namespace

std::optional<Fault> parse_fault(const std::string &spec) {
  struct Syntax {
    const char *name;
    FaultKind kind;
    bool numeric;
    gint64 min, max;
  };
  static const Syntax syntaxes[] = {
      {"http", FaultKind::Http, true, 100, 599},
      {"non-json", FaultKind::NonJson, true, 100, 599},
      {"http429", FaultKind::TooMany, true, -1000000, 1000000}, // negative: no Retry-After
      {"drop", FaultKind::Drop, true, 0, G_MAXINT64},
      {"big", FaultKind::Big, true, kBigMin, kBigMax},
      {"huge", FaultKind::Huge, true, kBigMin, G_MAXINT64},
      {"endless", FaultKind::Endless, false, 0, 0},
      {"malformed", FaultKind::Malformed, false, 0, 0},
      {"empty", FaultKind::Empty, false, 0, 0},
      {"hang", FaultKind::Hang, false, 0, 0},
      {"stuck", FaultKind::Stuck, false, 0, 0},
      {"redirect", FaultKind::Redirect, false, 0, 0},
      {"no-range", FaultKind::NoRange, false, 0, 0},
  };
  const auto colon = spec.find(':');
  const bool has_arg = colon != std::string::npos;
  const std::string kind = spec.substr(0, colon), arg = has_arg ? spec.substr(colon + 1) : "";
  Fault fault;
  if (kind == "url" || kind == "fail-text" || kind == "json") {
    fault.kind = kind == "url"    ? FaultKind::Url
                 : kind == "json" ? FaultKind::Json
                                  : FaultKind::FailText;
    fault.text = arg;
    return arg.empty() ? std::nullopt : std::optional<Fault>(fault);
  }
  if (kind == "progress")
    return parse_progress_fault(arg);
  if (kind == "fail") {
    fault.kind = FaultKind::Fail;
    fault.text = arg;
    const bool digits = !arg.empty() && std::all_of(arg.begin(), arg.end(),
                                                    [](char c) { return g_ascii_isdigit(c); });
    return digits ? std::optional<Fault>(fault) : std::nullopt;
  }
  for (const Syntax &syntax : syntaxes) {
    if (kind != syntax.name)
      continue;
    fault.kind = syntax.kind;
    const bool valid = syntax.numeric
                           ? has_arg && g_ascii_string_to_signed(arg.c_str(), 10, syntax.min,
                                                                 syntax.max, &fault.number, nullptr)
                           : !has_arg;
    return valid ? std::optional<Fault>(fault) : std::nullopt;
  }
  return std::nullopt;
}

bool is_task_fault(const Fault &fault) {
  return fault.kind == FaultKind::Fail || fault.kind == FaultKind::FailText ||
         fault.kind == FaultKind::Stuck || fault.kind == FaultKind::Url ||
         fault.kind == FaultKind::Progress;
}

bool fault_fits_route(const Fault &fault, Route route) {
  if (route == Route::Task || is_task_fault(fault))
    return route == Route::Task && is_task_fault(fault);
  switch (fault.kind) {
  case FaultKind::Drop:
  case FaultKind::Redirect:
  case FaultKind::NoRange:
    return route == Route::Download;
  case FaultKind::Json:
  case FaultKind::Big:
  case FaultKind::Huge:
  case FaultKind::Endless:
    return route != Route::Download;
  default:
    return true;
  }
}

bool Emulator::Impl::take_fault(SoupServerMessage *msg, Route route, std::optional<Fault> &fault) {
  if (const char *header = request_header(msg, "X-Emulator-Fault")) {
    fault = parse_fault(header);
    const bool usable = fault && (fault_fits_route(*fault, route) ||
                                  (route == Route::Create && is_task_fault(*fault)));
    if (!usable) {
      respond_json(msg, SOUP_STATUS_BAD_REQUEST,
                   message_json(std::string("unusable X-Emulator-Fault here: ") + header));
      return false;
    }
    return true;
  }
  std::lock_guard<std::mutex> lock(mutex);
  auto &queue = faults[route];
  if (!queue.empty()) {
    fault = queue.front();
    queue.pop_front();
  }
  return true;
}

std::string Emulator::Impl::apply_fault(SoupServerMessage *msg, const Fault &fault) {
  switch (fault.kind) {
  case FaultKind::Http:
    respond_json(msg, guint(fault.number), message_json("injected"));
    return "(injected http)";
  case FaultKind::TooMany:
    respond_json(msg, 429, message_json("injected"));
    soup_server_message_set_status(msg, 429, "Too Many Requests"); // libsoup has no phrase
    if (fault.number >= 0)
      soup_message_headers_replace(soup_server_message_get_response_headers(msg), "Retry-After",
                                   std::to_string(fault.number).c_str());
    return "(injected 429)";
  case FaultKind::Malformed:
    respond_json(msg, SOUP_STATUS_OK, "{\"id\": \"tas");
    return "(injected malformed body)";
  case FaultKind::Empty:
    respond_json(msg, SOUP_STATUS_OK, "");
    return "(injected empty body)";
  case FaultKind::NonJson:
    respond(msg, guint(fault.number), "text/html",
            "<html><body><h1>" + std::to_string(fault.number) +
                "</h1>upstream trouble</body></html>");
    return "(injected non-JSON)";
  case FaultKind::Json:
    respond_json(msg, SOUP_STATUS_OK, fault.text);
    return "(injected JSON body)";
  case FaultKind::Big: {
    // Built in place and handed over as it is: the only copy of a body that may be huge.
    const gsize size = gsize(fault.number), pad = size - kBigMin;
    char *data = static_cast<char *>(g_malloc(size));
    memcpy(data, kBigHead, sizeof kBigHead - 1);
    memset(data + sizeof kBigHead - 1, 'x', pad);
    memcpy(data + sizeof kBigHead - 1 + pad, kBigTail, sizeof kBigTail - 1);
    g_autoptr(GBytes) body = g_bytes_new_take(data, size);
    soup_server_message_set_status(msg, SOUP_STATUS_OK, nullptr);
    soup_message_headers_set_content_type(soup_server_message_get_response_headers(msg),
                                          "application/json", nullptr);
    soup_message_body_append_bytes(soup_server_message_get_response_body(msg), body);
    return "(injected " + std::to_string(size) + "-byte body)";
  }
  case FaultKind::Redirect: {
    // To the very URL requested, so that N of these make N hops before the file.
    g_autofree char *url = g_uri_to_string(soup_server_message_get_uri(msg));
    soup_server_message_set_redirect(msg, SOUP_STATUS_FOUND, url);
    return "(injected redirect)";
  }
  case FaultKind::Huge:
  case FaultKind::Endless:
    start_stream(msg, fault.kind == FaultKind::Huge ? fault.number : -1);
    return fault.kind == FaultKind::Huge
               ? "(injected streamed " + std::to_string(fault.number) + "-byte body)"
               : "(injected endless body)";
  case FaultKind::Hang:
    // Never unpaused: soup_server_disconnect() closes the connection on shutdown.
    soup_server_message_pause(msg);
    taken_over = true;
    return "(injected hang)";
  case FaultKind::Drop:
  case FaultKind::NoRange:
  case FaultKind::Fail:
  case FaultKind::FailText:
  case FaultKind::Stuck:
  case FaultKind::Url:
  case FaultKind::Progress:
    break;
  }
  respond_json(msg, SOUP_STATUS_INTERNAL_SERVER_ERROR, message_json("fault not applicable"));
  return "";
}

// The `drop` fault: a response that promises the whole body, then closes the connection
// after part of it. SoupServer always completes a body it was given, so the connection is
// stolen (from an idle callback, outside libsoup's own frames) and written by hand.
struct DropJob {
  Emulator::Impl *impl;
  SoupServerMessage *msg; // a reference
  std::string head;
  GBytes *body;              // owned
  GCancellable *cancellable; // a reference
  GIOStream *stream = nullptr;
  GOutputVector vectors[2] = {};

  ~DropJob() {
    g_object_unref(msg);
    g_bytes_unref(body);
    g_object_unref(cancellable);
    if (stream)
      g_object_unref(stream);
  }
  void finish() {
    --impl->outstanding_io;
    delete this;
  }
  static gboolean steal_and_write(gpointer data);
  static void written(GObject *source, GAsyncResult *result, gpointer data);
};

gboolean DropJob::steal_and_write(gpointer data) {
  auto *job = static_cast<DropJob *>(data);
  if (!g_cancellable_is_cancelled(job->cancellable))
    job->stream = soup_server_message_steal_connection(job->msg);
  if (!job->stream) {
    job->finish();
    return G_SOURCE_REMOVE;
  }
  job->vectors[0] = {job->head.data(), job->head.size()};
  job->vectors[1] = {g_bytes_get_data(job->body, nullptr), g_bytes_get_size(job->body)};
  g_output_stream_writev_all_async(g_io_stream_get_output_stream(job->stream), job->vectors, 2,
                                   G_PRIORITY_DEFAULT, job->cancellable, written, job);
  return G_SOURCE_REMOVE;
}

void DropJob::written(GObject *source, GAsyncResult *result, gpointer data) {
  auto *job = static_cast<DropJob *>(data);
  g_autoptr(GError) error = nullptr;
  if (!g_output_stream_writev_all_finish(G_OUTPUT_STREAM(source), result, nullptr, &error))
    job->impl->log("drop: %s", error->message);
  g_io_stream_close(job->stream, nullptr, nullptr);
  job->finish();
}

void Emulator::Impl::start_drop(SoupServerMessage *msg, std::string head, GBytes *body) {
  soup_server_message_pause(msg);
  taken_over = true;
  auto *job = new DropJob{this, SOUP_SERVER_MESSAGE(g_object_ref(msg)), std::move(head), body,
                          G_CANCELLABLE(g_object_ref(drop_cancellable))};
  ++outstanding_io;
  GSource *idle = g_idle_source_new();
  g_source_set_callback(idle, DropJob::steal_and_write, job, nullptr);
  g_source_attach(idle, context);
  g_source_unref(idle);
}

// The `huge` and `endless` faults: the connection is stolen, as for `drop`, and the body
// written by hand as the client takes it, counted in the request's record.
void Emulator::Impl::start_stream(SoupServerMessage *msg, gint64 body_bytes) {
  soup_server_message_pause(msg);
  soup_server_message_set_status(msg, SOUP_STATUS_OK, nullptr); // for the log; written by hand
  taken_over = true;
  streamed = true;
  struct Start {
    Impl *impl;
    SoupServerMessage *msg; // a reference
    gint64 body_bytes;
    size_t record;
  };
  // This handler records the request right after it returns, as the next entry.
  auto *start = new Start{this, SOUP_SERVER_MESSAGE(g_object_ref(msg)), body_bytes,
                          locked([&] { return records.size(); })};
  ++outstanding_io;
  GSource *idle = g_idle_source_new();
  g_source_set_callback(
      idle,
      [](gpointer data) -> gboolean {
        auto *start = static_cast<Start *>(data);
        Impl *impl = start->impl;
        const size_t record = start->record;
        GIOStream *stream = g_cancellable_is_cancelled(impl->drop_cancellable)
                                ? nullptr
                                : soup_server_message_steal_connection(start->msg);
        g_object_unref(start->msg);
        const gint64 body_bytes = start->body_bytes;
        delete start;
        if (!stream) {
          impl->stream_progress(record, 0, true);
          return G_SOURCE_REMOVE;
        }
        stream_answer(stream, body_bytes, impl->drop_cancellable,
                      [impl, record](guint64 bytes, bool over) {
                        impl->stream_progress(record, bytes, over);
                      });
        return G_SOURCE_REMOVE;
      },
      start, nullptr);
  g_source_attach(idle, context);
  g_source_unref(idle);
}

void Emulator::Impl::stream_progress(size_t record, guint64 bytes, bool over) {
  {
    std::lock_guard<std::mutex> lock(mutex);
    RequestRecord &entry = records[record];
    entry.streamed_bytes = bytes;
    if (over) {
      entry.streaming = false;
      entry.stream_end_us = g_get_monotonic_time();
    }
  }
  if (over) {
    --outstanding_io;
    log("streamed answer over after %" G_GUINT64_FORMAT " body bytes", bytes);
    state_changed.notify_all();
  }
}

} // namespace kirin_emu
