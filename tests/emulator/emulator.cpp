// The emulator's server thread, task timeline, renderer and fault injection.
//
// Threads: the server thread owns the GMainContext, the SoupServer, the SoupSession used for
// callbacks and every libsoup object; renders run on a small GThreadPool; the public methods
// run on the caller's thread. All shared state is behind one mutex, never held across I/O
// or rendering.
#include "emulator.h"
#include "streamed-answer.h"

#include <gst/gst.h>
#include <json-glib/json-glib.h>
#include <libsoup/soup.h>

#include <glib/gstdio.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace kirin_emu {
namespace {

constexpr const char *kModel = "kirin_duration_extension";
constexpr const char *kApiPath = "/model/v1/generation";
constexpr const char *kTaskPrefix = "/model/v1/generation/task/";
constexpr const char *kFilesPrefix = "/files/";
constexpr const char *kFilesPath = "/files";
constexpr double kExtensionSeconds = 5.0;
constexpr double kMaxVideoSeconds = 180.0; // the provider's 3-minute limit
constexpr int kFrameRate = 25;
constexpr int kAudioRate = 48000;
constexpr glong kMaxPromptChars = 2500;
// How often status changes are noticed (to start renders and send callbacks). Polls compute
// the status from the clock themselves, so this only delays those side effects.
constexpr guint kTickMs = 50;
constexpr GstClockTime kRenderPollInterval = 100 * GST_MSECOND;
constexpr GstClockTime kRenderTimeout = 10 * 60 * GST_SECOND;
// The `big:<bytes>` body: head, padding, tail.
constexpr char kBigHead[] = "{\"id\":\"task-big\",\"status\":\"pending\",\"pad\":\"";
constexpr char kBigTail[] = "\"}";
constexpr gint64 kBigMin = sizeof kBigHead - 1 + sizeof kBigTail - 1;
constexpr gint64 kBigMax = gint64(1) << 30;

enum class FaultKind {
  Http,
  TooMany,
  Malformed,
  Empty,
  Hang,
  Drop,
  NonJson,
  Json,
  Big,
  Huge,
  Endless,
  Redirect,
  NoRange,
  Fail,
  FailText,
  Stuck,
  Url,
  Progress
};

// How a processing task's progress moves (the `progress:` task fault).
enum class ProgressShape { Linear, Steps, None, Stall, Back };

struct Fault {
  FaultKind kind = FaultKind::Http;
  gint64 number = 0; // HTTP status, Retry-After seconds or byte count
  std::string text;  // task error code (Fail), message, result URL (Url) or body (Json)
  ProgressShape shape =
      ProgressShape::Linear; // Progress; `number` is its length in ms (0: default)
};

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

std::string random_id(const char *prefix) {
  char hex[17];
  g_snprintf(hex, sizeof hex, "%08x%08x", g_random_int(), g_random_int());
  return std::string(prefix) + hex;
}

void set_string(JsonBuilder *builder, const char *name, const std::string &value) {
  json_builder_set_member_name(builder, name);
  json_builder_add_string_value(builder, value.c_str());
}

std::string to_json(JsonBuilder *builder) {
  g_autoptr(JsonNode) root = json_builder_get_root(builder);
  g_autoptr(JsonGenerator) generator = json_generator_new();
  json_generator_set_root(generator, root);
  gsize length = 0;
  g_autofree char *text = json_generator_to_data(generator, &length);
  return std::string(text, length);
}

std::string message_json(const std::string &message) {
  g_autoptr(JsonBuilder) builder = json_builder_new();
  json_builder_begin_object(builder);
  set_string(builder, "message", message);
  json_builder_end_object(builder);
  return to_json(builder);
}

std::string error_json(const char *code, const std::string &message) {
  g_autoptr(JsonBuilder) builder = json_builder_new();
  json_builder_begin_object(builder);
  json_builder_set_member_name(builder, "error");
  json_builder_begin_object(builder);
  set_string(builder, "code", code);
  set_string(builder, "message", message);
  json_builder_end_object(builder);
  json_builder_end_object(builder);
  return to_json(builder);
}

// The provider reports task errors in three shapes; the emulator uses each of them.
struct TaskError {
  enum class Shape { CodeMessage, PlainString, CodeErrorMessage };
  std::string code, message;
  Shape shape = Shape::CodeMessage;
};

TaskError task_error_for(const std::string &code) {
  if (code == "014002095")
    return {code, "Internal generation error", TaskError::Shape::CodeMessage};
  if (code == "014002096")
    return {code, "Result parsing exception", TaskError::Shape::CodeMessage};
  if (code == "014002097")
    return {code, "HTTP error response", TaskError::Shape::CodeErrorMessage};
  if (code == "014002099")
    return {code, "Sync generation exception", TaskError::Shape::CodeMessage};
  return {code, "Generation failed", TaskError::Shape::CodeMessage};
}

enum class Render { NotNeeded, NotStarted, Running, Done, Failed };

struct Task {
  std::string id, external_task_id, callback_url;
  gint64 created_monotonic_us = 0, created_unix = 0;
  guint pending_ms = 0, processing_ms = 0;
  double result_seconds = 0;
  bool stuck = false;
  ProgressShape shape = ProgressShape::Linear;
  bool forced = false;            // complete_now(): the clock no longer matters
  std::optional<TaskError> error; // set once the task is bound to fail
  Render render = Render::NotStarted;
  std::string video_id, job_id, video_name, cover_name, video_path;
  std::string url_override; // the `url:` fault: reported instead of a rendered result
  std::string announced_status = "pending"; // the last status sent to the callback URL
};

struct Phase {
  std::string status;
  double progress = 0; // < 0: not reported
};

// The progress reported at `done` (0..1) of the processing time; < 0: none.
double shaped_progress(ProgressShape shape, double done) {
  switch (shape) {
  case ProgressShape::Linear:
    break;
  case ProgressShape::Steps: // 0, 0.25, 0.5, 0.75
    return std::floor(done * 4) / 4;
  case ProgressShape::None:
    return -1;
  case ProgressShape::Stall: // stays at 0.2 from a fifth of the time on, then completes
    return std::min(done, 0.2);
  case ProgressShape::Back: // 0.1 back during the seventh tenth of the time
    return done >= 0.6 && done < 0.7 ? done - 0.1 : std::min(0.99, done);
  }
  return std::min(0.99, done);
}

bool is_final(const std::string &status) {
  return status == "completed" || status == "failed";
}

Phase timed_phase_of(const Task &task, gint64 now_us) {
  if (task.stuck && !task.forced)
    return {"pending", 0};
  if (!task.forced) {
    const gint64 elapsed_ms = (now_us - task.created_monotonic_us) / 1000;
    if (elapsed_ms < task.pending_ms)
      return {"pending", 0};
    const gint64 processing_ms = elapsed_ms - task.pending_ms;
    if (processing_ms < task.processing_ms)
      return {"processing",
              shaped_progress(task.shape, double(processing_ms) / task.processing_ms)};
  }
  if (task.error)
    return {"failed", 0};
  if (task.render == Render::Done || !task.url_override.empty())
    return {"completed", 1};
  // The time is up but the result is not rendered yet.
  return {"processing", shaped_progress(task.shape, 0.99)};
}

Phase phase_of(const Task &task, gint64 now_us) {
  Phase phase = timed_phase_of(task, now_us);
  if (task.shape == ProgressShape::None)
    phase.progress = -1;
  return phase;
}

std::string task_json(const Task &task, const Phase &phase, const std::string &base_url) {
  g_autoptr(JsonBuilder) b = json_builder_new();
  json_builder_begin_object(b);
  set_string(b, "id", task.id);
  set_string(b, "status", phase.status);
  set_string(b, "model", kModel);
  json_builder_set_member_name(b, "created_at");
  json_builder_add_int_value(b, task.created_unix);
  if (phase.status != "failed" && phase.progress >= 0) {
    json_builder_set_member_name(b, "progress");
    json_builder_add_double_value(b, phase.progress);
  }
  json_builder_set_member_name(b, "metadata");
  json_builder_begin_object(b);
  if (!task.external_task_id.empty())
    set_string(b, "external_task_id", task.external_task_id);
  json_builder_end_object(b);
  if (phase.status == "completed") {
    json_builder_set_member_name(b, "output");
    json_builder_begin_array(b);
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "content");
    json_builder_begin_array(b);
    // The cover comes first, as the provider sends it: clients must look for the video.
    json_builder_begin_object(b);
    set_string(b, "type", "image");
    set_string(b, "url", base_url + kFilesPrefix + task.cover_name);
    json_builder_end_object(b);
    json_builder_begin_object(b);
    set_string(b, "type", "video");
    set_string(b, "url",
               task.url_override.empty() ? base_url + kFilesPrefix + task.video_name
                                         : task.url_override);
    json_builder_set_member_name(b, "duration");
    json_builder_add_double_value(b, task.result_seconds);
    set_string(b, "jobId", task.job_id);
    set_string(b, "id", task.video_id);
    json_builder_end_object(b);
    json_builder_end_array(b);
    json_builder_end_object(b);
    json_builder_end_array(b);
    json_builder_set_member_name(b, "usage");
    json_builder_begin_object(b);
    set_string(b, "cost", "0.28");
    json_builder_set_member_name(b, "discount");
    json_builder_add_int_value(b, 0);
    json_builder_end_object(b);
  }
  if (phase.status == "failed" && task.error) {
    const TaskError &error = *task.error;
    json_builder_set_member_name(b, "error");
    if (error.shape == TaskError::Shape::PlainString) {
      json_builder_add_string_value(b, error.message.c_str());
    } else {
      json_builder_begin_object(b);
      set_string(b, "code", error.code);
      set_string(b, error.shape == TaskError::Shape::CodeErrorMessage ? "error_message" : "message",
                 error.message);
      json_builder_end_object(b);
    }
  }
  json_builder_end_object(b);
  return to_json(b);
}

struct CreateParams {
  std::string video_id, callback_url, external_task_id;
};

bool is_value_of_type(JsonNode *node, GType type) {
  return node && JSON_NODE_HOLDS_VALUE(node) && json_node_get_value_type(node) == type;
}

// Reads an optional string member into `out`; false when present but not a string.
bool optional_string(JsonObject *object, const char *name, std::string &out) {
  JsonNode *node = json_object_get_member(object, name);
  if (!node || JSON_NODE_HOLDS_NULL(node))
    return true;
  if (!is_value_of_type(node, G_TYPE_STRING))
    return false;
  out = json_node_get_string(node);
  return true;
}

// Validates a create body in either shape (`input[0].params` or flat beside `model`).
// Returns the body of a 400 answer, or "" when the request is acceptable.
std::string parse_create_body(const std::string &raw, CreateParams &params) {
  g_autoptr(JsonParser) parser = json_parser_new();
  if (raw.empty() || !json_parser_load_from_data(parser, raw.data(), raw.size(), nullptr))
    return error_json("invalid_request", "the request body is not valid JSON");
  JsonNode *root = json_parser_get_root(parser);
  if (!root || !JSON_NODE_HOLDS_OBJECT(root))
    return error_json("invalid_request", "the request body must be a JSON object");
  JsonObject *request = json_node_get_object(root);
  JsonNode *model = json_object_get_member(request, "model");
  if (!is_value_of_type(model, G_TYPE_STRING) || g_strcmp0(json_node_get_string(model), kModel))
    return error_json("invalid_model", std::string("model must be ") + kModel);

  JsonObject *fields = request;
  if (JsonNode *input = json_object_get_member(request, "input")) {
    JsonArray *items = JSON_NODE_HOLDS_ARRAY(input) ? json_node_get_array(input) : nullptr;
    JsonNode *first =
        items && json_array_get_length(items) ? json_array_get_element(items, 0) : nullptr;
    JsonNode *inner = first && JSON_NODE_HOLDS_OBJECT(first)
                          ? json_object_get_member(json_node_get_object(first), "params")
                          : nullptr;
    if (!inner || !JSON_NODE_HOLDS_OBJECT(inner))
      return error_json("invalid_request", "input must be [{\"params\": {...}}]");
    fields = json_node_get_object(inner);
  }

  if (!optional_string(fields, "video_id", params.video_id) || params.video_id.empty())
    return message_json("video_id is required");
  for (const char *name : {"prompt", "negative_prompt"}) {
    std::string text;
    if (!optional_string(fields, name, text))
      return error_json("invalid_parameter", std::string(name) + " must be a string");
    if (g_utf8_strlen(text.c_str(), -1) > kMaxPromptChars)
      return error_json("invalid_parameter", std::string(name) + " exceeds 2500 characters");
  }
  if (JsonNode *cfg = json_object_get_member(fields, "cfg_scale")) {
    const bool number = is_value_of_type(cfg, G_TYPE_DOUBLE) || is_value_of_type(cfg, G_TYPE_INT64);
    const double value = number ? json_node_get_double(cfg) : -1;
    if (!number || value < 0 || value > 1)
      return error_json("invalid_parameter", "cfg_scale must be a number between 0 and 1");
  }
  if (!optional_string(fields, "callback_url", params.callback_url) ||
      !optional_string(fields, "external_task_id", params.external_task_id))
    return error_json("invalid_parameter", "callback_url and external_task_id must be strings");
  return "";
}

// The IDs a create body names, read leniently (for the request log): the body need not be
// valid, and what is missing or not a string stays "".
void read_create_ids(const std::string &raw, std::string &video_id, std::string &external_task_id) {
  g_autoptr(JsonParser) parser = json_parser_new();
  if (raw.empty() || !json_parser_load_from_data(parser, raw.data(), raw.size(), nullptr))
    return;
  JsonNode *root = json_parser_get_root(parser);
  if (!root || !JSON_NODE_HOLDS_OBJECT(root))
    return;
  JsonObject *fields = json_node_get_object(root);
  JsonNode *input = json_object_get_member(fields, "input");
  JsonArray *items = input && JSON_NODE_HOLDS_ARRAY(input) ? json_node_get_array(input) : nullptr;
  JsonNode *first =
      items && json_array_get_length(items) ? json_array_get_element(items, 0) : nullptr;
  JsonNode *inner = first && JSON_NODE_HOLDS_OBJECT(first)
                        ? json_object_get_member(json_node_get_object(first), "params")
                        : nullptr;
  if (inner && JSON_NODE_HOLDS_OBJECT(inner))
    fields = json_node_get_object(inner);
  optional_string(fields, "video_id", video_id);
  optional_string(fields, "external_task_id", external_task_id);
}

// The `status` member of a JSON object ("" when there is none), for bodies set by faults.
std::string status_member(const std::string &json) {
  g_autoptr(JsonParser) parser = json_parser_new();
  if (!json_parser_load_from_data(parser, json.data(), json.size(), nullptr))
    return "";
  JsonNode *root = json_parser_get_root(parser);
  std::string status;
  if (root && JSON_NODE_HOLDS_OBJECT(root))
    optional_string(json_node_get_object(root), "status", status);
  return status;
}

void respond(SoupServerMessage *msg, guint status, const char *content_type,
             const std::string &body) {
  soup_server_message_set_status(msg, status, nullptr);
  soup_server_message_set_response(msg, content_type, SOUP_MEMORY_COPY, body.data(), body.size());
}

void respond_json(SoupServerMessage *msg, guint status, const std::string &body) {
  respond(msg, status, "application/json", body);
}

const char *request_header(SoupServerMessage *msg, const char *name) {
  return soup_message_headers_get_one(soup_server_message_get_request_headers(msg), name);
}

// Renders a gst-launch description whose last element is a filesink named "sink" into
// `path`, waiting on the bus in bounded steps so that `stop` can interrupt it.
bool render_file(const std::string &description, const std::string &path,
                 const std::atomic<bool> &stop, std::string &error) {
  GError *parse_error = nullptr;
  GstElement *parsed = gst_parse_launch(description.c_str(), &parse_error);
  g_autoptr(GError) owned_error = parse_error;
  if (!parsed) {
    error = owned_error->message;
    return false;
  }
  g_autoptr(GstElement) pipeline = GST_ELEMENT(gst_object_ref_sink(parsed));
  if (owned_error) {
    error = owned_error->message;
    return false;
  }
  g_autoptr(GstElement) sink = gst_bin_get_by_name(GST_BIN(pipeline), "sink");
  g_object_set(sink, "location", path.c_str(), nullptr);
  bool ok = false;
  if (gst_element_set_state(pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
    error = "the pipeline did not start";
  } else {
    g_autoptr(GstBus) bus = gst_element_get_bus(pipeline);
    for (GstClockTime waited = 0; !stop && waited < kRenderTimeout; waited += kRenderPollInterval) {
      g_autoptr(GstMessage) message = gst_bus_timed_pop_filtered(
          bus, kRenderPollInterval, GstMessageType(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
      if (!message)
        continue;
      if (GST_MESSAGE_TYPE(message) == GST_MESSAGE_EOS) {
        ok = true;
      } else {
        g_autoptr(GError) bus_error = nullptr;
        gst_message_parse_error(message, &bus_error, nullptr);
        error = bus_error->message;
      }
      break;
    }
    if (!ok && error.empty())
      error = stop ? "stopped" : "timed out";
  }
  gst_element_set_state(pipeline, GST_STATE_NULL);
  return ok;
}

void remove_dir(const std::string &path) {
  if (GDir *dir = g_dir_open(path.c_str(), 0, nullptr)) {
    while (const char *name = g_dir_read_name(dir)) {
      g_autofree char *file = g_build_filename(path.c_str(), name, nullptr);
      g_remove(file);
    }
    g_dir_close(dir);
  }
  g_rmdir(path.c_str());
}

} // namespace

struct Emulator::Impl {
  explicit Impl(Options opts) : options(std::move(opts)) {
    context = g_main_context_new();
    loop = g_main_loop_new(context, FALSE);
    cancellable = g_cancellable_new();
    drop_cancellable = g_cancellable_new();
    // Two renders at a time: enough for tests, and the CI machines have two cores.
    render_pool = g_thread_pool_new(on_render_job, this, 2, FALSE, nullptr);
    videos["demo-5s"] = 5.0;
  }
  ~Impl();

  bool start(GError **error);
  void run_thread();
  bool open_server(GError **error);
  bool listen(GError **error);
  void close_server();
  void run_on_thread(std::function<void()> work); // from any thread; returns once it ran

  // A request on a provider route while its handler runs (server thread).
  struct Exchange {
    Route route = Route::Create;
    gint64 arrival_us = 0;
    std::string task_id, external_task_id, video_id;
    std::string task_status; // of the task object answered, "" when there is none
  };
  // An answer kept back by hold(). The entry lives in `held` until released or shut down.
  struct Held {
    Impl *impl = nullptr;
    Route route = Route::Create;
    size_t record = 0;                // its entry in `records`
    SoupServerMessage *msg = nullptr; // a reference; used on the server thread only
    gulong disconnected_id = 0;       // server thread
    bool gone = false;                // its connection closed while held (guarded by `mutex`)
    // The client closed its connection while held: it gave up on the answer (guarded by
    // `mutex`). Seen by `watch`, a source on the connection's socket (server thread).
    bool abandoned = false;
    GSource *watch = nullptr;
    void stop_watching() {
      if (watch) {
        g_source_destroy(watch);
        g_source_unref(watch);
        watch = nullptr;
      }
    }
  };

  // Server thread.
  void handle_api(SoupServerMessage *msg, const char *path);
  void handle_files(SoupServerMessage *msg, const char *path);
  std::string serve_file(SoupServerMessage *msg, const char *path);
  std::string handle_create(SoupServerMessage *msg, Exchange &exchange);
  std::string handle_poll(SoupServerMessage *msg, Exchange &exchange);
  bool record_and_hold(SoupServerMessage *msg, const char *path, Exchange &exchange);
  size_t release_held(Route route, bool only_one);
  void drop_held();
  static void on_held_disconnected(SoupServerMessage *msg, gpointer data);
  static gboolean on_held_socket(GSocket *socket, GIOCondition, gpointer data);
  bool take_fault(SoupServerMessage *msg, Route route, std::optional<Fault> &fault);
  std::string apply_fault(SoupServerMessage *msg, const Fault &fault);
  bool authorize(SoupServerMessage *msg);
  void start_drop(SoupServerMessage *msg, std::string head, GBytes *body);
  void start_stream(SoupServerMessage *msg, gint64 body_bytes);
  void stream_progress(size_t record, guint64 bytes, bool over);
  void set_online(bool online);
  void post_callback(const std::string &url, const std::string &body);
  void tick();
  void log_request(SoupServerMessage *msg, const char *path, const std::string &note);
  // Any thread.
  void render(const std::string &task_id);
  void log(const char *format, ...) G_GNUC_PRINTF(2, 3);

  static void on_api(SoupServer *, SoupServerMessage *msg, const char *path, GHashTable *,
                     gpointer self) {
    static_cast<Impl *>(self)->handle_api(msg, path);
  }
  static void on_files(SoupServer *, SoupServerMessage *msg, const char *path, GHashTable *,
                       gpointer self) {
    static_cast<Impl *>(self)->handle_files(msg, path);
  }
  // Not the provider's: lets scripts and people see a video's length (GET /videos/<id>).
  static void on_videos(SoupServer *, SoupServerMessage *msg, const char *path, GHashTable *,
                        gpointer data) {
    auto *self = static_cast<Impl *>(data);
    const std::string id = g_str_has_prefix(path, "/videos/") ? path + strlen("/videos/") : "";
    double seconds = -1;
    {
      std::lock_guard<std::mutex> lock(self->mutex);
      auto video = self->videos.find(id);
      if (video != self->videos.end())
        seconds = video->second;
    }
    if (seconds < 0) {
      respond_json(msg, SOUP_STATUS_NOT_FOUND, message_json("unknown video"));
    } else {
      g_autoptr(JsonBuilder) b = json_builder_new();
      json_builder_begin_object(b);
      set_string(b, "id", id);
      json_builder_set_member_name(b, "duration");
      json_builder_add_double_value(b, seconds);
      json_builder_end_object(b);
      respond_json(msg, SOUP_STATUS_OK, to_json(b));
    }
    self->log_request(msg, path, "");
  }
  // Not the provider's: a callback receiver, so callback_url can point at the emulator.
  static void on_callbacks(SoupServer *, SoupServerMessage *msg, const char *path, GHashTable *,
                           gpointer data) {
    auto *self = static_cast<Impl *>(data);
    SoupMessageBody *body = soup_server_message_get_request_body(msg);
    g_autoptr(GBytes) bytes = soup_message_body_flatten(body);
    gsize size = 0;
    const char *text = static_cast<const char *>(g_bytes_get_data(bytes, &size));
    {
      std::lock_guard<std::mutex> lock(self->mutex);
      self->received_callbacks.emplace_back(text ? text : "", size);
    }
    self->state_changed.notify_all();
    soup_server_message_set_status(msg, SOUP_STATUS_NO_CONTENT, nullptr);
    self->log_request(msg, path, "");
  }
  static void on_unknown(SoupServer *, SoupServerMessage *msg, const char *path, GHashTable *,
                         gpointer self) {
    respond_json(msg, SOUP_STATUS_NOT_FOUND, message_json("not found"));
    static_cast<Impl *>(self)->log_request(msg, path, "");
  }
  template <typename Read> auto locked(Read read) const {
    std::lock_guard<std::mutex> lock(mutex);
    return read();
  }
  static void on_render_job(gpointer item, gpointer self) {
    std::unique_ptr<std::string> task_id(static_cast<std::string *>(item));
    static_cast<Impl *>(self)->render(*task_id);
  }

  Options options; // pending_ms/processing_ms are guarded by `mutex`, the rest is constant
  std::string media_dir;
  bool media_dir_is_temporary = false;
  GMainContext *context = nullptr;
  GMainLoop *loop = nullptr;
  GCancellable *cancellable = nullptr; // cancels callbacks on shutdown
  // Cancels drops in flight on shutdown and on going offline (then replaced).
  GCancellable *drop_cancellable = nullptr;
  GThreadPool *render_pool = nullptr;
  std::thread thread;
  std::atomic<bool> stopping{false};
  guint bound_port = 0;
  std::string base_url;

  // Owned by the server thread.
  SoupServer *server = nullptr;
  GTlsCertificate *certificate = nullptr; // with TLS
  bool online = true;
  SoupSession *session = nullptr;
  GSource *tick_source = nullptr;
  guint outstanding_io = 0; // callbacks and drops still in flight
  bool shutting_down = false;
  bool taken_over = false; // the current handler paused its answer itself (hang, drop)
  bool streamed = false;   // ... to write it by hand (huge, endless)

  mutable std::mutex mutex;
  std::condition_variable state_changed; // start-up, render completions, shutdown
  bool thread_ready = false;
  bool serving = false; // the server thread takes work (run_on_thread)
  GError *start_error = nullptr;
  std::map<std::string, double> videos; // video ID -> seconds
  std::map<std::string, Task> tasks;
  std::map<std::string, std::string> files; // name under /files/ -> local path
  std::map<Route, std::deque<Fault>> faults;
  guint creates = 0, polls = 0, downloads = 0, download_auths = 0;
  std::string last_create_body;
  std::vector<std::string> received_callbacks; // bodies POSTed to /callbacks
  std::map<Route, HoldFilter> holds;           // the routes held, with their filters
  std::deque<std::unique_ptr<Held>> held;      // in arrival order
  std::vector<RequestRecord> records;

  size_t held_count(Route route) const { // with `mutex` held
    return size_t(std::count_if(held.begin(), held.end(), [route](const auto &entry) {
      return entry->route == route && !entry->gone;
    }));
  }
};

Emulator::Impl::~Impl() {
  {
    std::lock_guard<std::mutex> lock(mutex);
    stopping = true;
  }
  state_changed.notify_all();
  if (thread.joinable()) {
    g_main_loop_quit(loop);
    thread.join();
  }
  // After the server thread: it is the one that queues renders. Waits for running renders,
  // which notice `stopping` within one bus poll.
  g_thread_pool_free(render_pool, FALSE, TRUE);
  if (media_dir_is_temporary)
    remove_dir(media_dir);
  g_clear_error(&start_error);
  g_object_unref(cancellable);
  g_object_unref(drop_cancellable);
  g_main_loop_unref(loop);
  g_main_context_unref(context);
}

void Emulator::Impl::log(const char *format, ...) {
  if (options.quiet)
    return;
  va_list args;
  va_start(args, format);
  g_autofree char *line = g_strdup_vprintf(format, args);
  va_end(args);
  g_printerr("kirin-emulator: %s\n", line);
}

bool Emulator::Impl::start(GError **error) {
  if (thread.joinable() || stopping) {
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "the emulator was already started");
    return false;
  }
  if (!gst_is_initialized())
    gst_init(nullptr, nullptr);
  if (options.media_dir.empty()) {
    char *dir = g_dir_make_tmp("kirin-emulator-XXXXXX", error);
    if (!dir)
      return false;
    media_dir = dir;
    g_free(dir);
    media_dir_is_temporary = true;
  } else {
    media_dir = options.media_dir;
    if (g_mkdir_with_parents(media_dir.c_str(), 0755) != 0) {
      g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno), "cannot create %s: %s",
                  media_dir.c_str(), g_strerror(errno));
      return false;
    }
  }
  thread = std::thread([this] { run_thread(); });
  std::unique_lock<std::mutex> lock(mutex);
  state_changed.wait(lock, [this] { return thread_ready; });
  if (!start_error)
    return true;
  g_propagate_error(error, start_error);
  start_error = nullptr;
  lock.unlock();
  thread.join();
  return false;
}

void Emulator::Impl::run_thread() {
  g_main_context_push_thread_default(context);
  GError *error = nullptr;
  if (open_server(&error)) {
    session = soup_session_new_with_options("timeout", 10, "user-agent", "kirin-emulator", nullptr);
    tick_source = g_timeout_source_new(kTickMs);
    g_source_set_callback(
        tick_source,
        [](gpointer self) -> gboolean {
          static_cast<Impl *>(self)->tick();
          return G_SOURCE_CONTINUE;
        },
        this, nullptr);
    g_source_attach(tick_source, context);
    // Reported from inside the running loop, so that a g_main_loop_quit() from the
    // destructor can never come before g_main_loop_run() and be lost.
    GSource *ready = g_idle_source_new();
    g_source_set_callback(
        ready,
        [](gpointer self) -> gboolean {
          auto *impl = static_cast<Impl *>(self);
          {
            std::lock_guard<std::mutex> lock(impl->mutex);
            impl->thread_ready = impl->serving = true;
          }
          impl->state_changed.notify_all();
          return G_SOURCE_REMOVE;
        },
        this, nullptr);
    g_source_attach(ready, context);
    g_source_unref(ready);
    g_main_loop_run(loop);
  } else {
    {
      std::lock_guard<std::mutex> lock(mutex);
      start_error = error;
      thread_ready = true;
    }
    state_changed.notify_all();
  }
  close_server();
  g_main_context_pop_thread_default(context);
}

bool Emulator::Impl::open_server(GError **error) {
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                "TLS needs both a certificate and a key file");
    return false;
  }
  if (!options.tls_cert_file.empty()) {
    certificate = g_tls_certificate_new_from_files(options.tls_cert_file.c_str(),
                                                   options.tls_key_file.c_str(), error);
    if (!certificate)
      return false;
  }
  server =
      soup_server_new("server-header", "kirin-emulator ", "tls-certificate", certificate, nullptr);
  soup_server_add_handler(server, kApiPath, on_api, this, nullptr);
  soup_server_add_handler(server, kFilesPath, on_files, this, nullptr);
  soup_server_add_handler(server, "/videos", on_videos, this, nullptr);
  soup_server_add_handler(server, "/callbacks", on_callbacks, this, nullptr);
  soup_server_add_handler(server, nullptr, on_unknown, this, nullptr);
  return listen(error);
}

// On start, and again on the same port when going back online.
bool Emulator::Impl::listen(GError **error) {
  g_autoptr(GInetAddress) address = g_inet_address_new_from_string(options.host.c_str());
  if (!address) {
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "not an IP address: %s",
                options.host.c_str());
    return false;
  }
  g_autoptr(GSocketAddress) socket_address =
      g_inet_socket_address_new(address, bound_port ? bound_port : options.port);
  // Our own socket for a long accept queue: GLib's default backlog of 10 resets
  // connections when hundreds of clients arrive at once.
  g_autoptr(GSocket) socket = g_socket_new(g_inet_address_get_family(address), G_SOCKET_TYPE_STREAM,
                                           G_SOCKET_PROTOCOL_TCP, error);
  if (!socket)
    return false;
  g_socket_set_listen_backlog(socket, 1024);
  if (!g_socket_bind(socket, socket_address, TRUE, error) || !g_socket_listen(socket, error) ||
      !soup_server_listen_socket(
          server, socket, certificate ? SOUP_SERVER_LISTEN_HTTPS : SoupServerListenOptions(0),
          error))
    return false;
  if (bound_port)
    return true;
  // From the listening socket: soup_server_get_uris() leaks an address in libsoup 3.2.
  GSList *listeners = soup_server_get_listeners(server);
  g_autoptr(GSocketAddress) local =
      listeners ? g_socket_get_local_address(G_SOCKET(listeners->data), nullptr) : nullptr;
  g_slist_free(listeners);
  bound_port = G_IS_INET_SOCKET_ADDRESS(local)
                   ? g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(local))
                   : options.port;
  const bool ipv6 = options.host.find(':') != std::string::npos;
  base_url = (certificate ? "https://" : "http://") +
             (ipv6 ? "[" + options.host + "]" : options.host) + ":" + std::to_string(bound_port);
  return true;
}

void Emulator::Impl::close_server() {
  {
    std::lock_guard<std::mutex> lock(mutex);
    serving = false;
  }
  shutting_down = true;
  g_cancellable_cancel(cancellable);
  g_cancellable_cancel(drop_cancellable);
  if (tick_source) {
    g_source_destroy(tick_source);
    g_clear_pointer(&tick_source, g_source_unref);
  }
  // Closes every client connection too, including those held by the `hang` fault.
  if (server)
    soup_server_disconnect(server);
  drop_held(); // their connections are closed now
  if (session)
    soup_session_abort(session);
  while (outstanding_io > 0)
    g_main_context_iteration(context, TRUE);
  g_clear_object(&session);
  g_clear_object(&server);
  g_clear_object(&certificate);
  while (g_main_context_iteration(context, FALSE)) {
  }
}

void Emulator::Impl::log_request(SoupServerMessage *msg, const char *path,
                                 const std::string &note) {
  const guint status = soup_server_message_get_status(msg);
  // Whether a key was sent matters to the tests; the key itself never appears in logs.
  log("%s %s -> %s%s%s%s", soup_server_message_get_method(msg), path,
      status ? std::to_string(status).c_str() : "(no answer yet)",
      request_header(msg, "Authorization") ? " [with Authorization]" : "", note.empty() ? "" : " ",
      note.c_str());
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

bool Emulator::Impl::authorize(SoupServerMessage *msg) {
  const char *value = request_header(msg, "Authorization");
  std::string key;
  if (value && g_ascii_strncasecmp(value, "Bearer ", 7) == 0) {
    g_autofree char *trimmed = g_strstrip(g_strdup(value + 7));
    key = trimmed;
  }
  if (!key.empty() && (key == options.api_key ||
                       std::find(options.other_api_keys.begin(), options.other_api_keys.end(),
                                 key) != options.other_api_keys.end()))
    return true;
  if (!key.empty() && key == options.no_balance_key) {
    respond_json(msg, SOUP_STATUS_FORBIDDEN, message_json("Insufficient balance"));
    return false;
  }
  respond_json(msg, SOUP_STATUS_UNAUTHORIZED, message_json("Invalid API key"));
  return false;
}

void Emulator::Impl::handle_api(SoupServerMessage *msg, const char *path) {
  Exchange exchange;
  exchange.arrival_us = g_get_monotonic_time();
  taken_over = false;
  streamed = false;
  std::string note;
  if (g_str_equal(path, kApiPath)) {
    note = handle_create(msg, exchange);
  } else if (g_str_has_prefix(path, kTaskPrefix) && path[strlen(kTaskPrefix)] != '\0') {
    exchange.route = Route::Poll;
    exchange.task_id = path + strlen(kTaskPrefix);
    note = handle_poll(msg, exchange);
  } else {
    respond_json(msg, SOUP_STATUS_NOT_FOUND, message_json("not found"));
    log_request(msg, path, note);
    return;
  }
  if (record_and_hold(msg, path, exchange))
    note += note.empty() ? "(held)" : " (held)";
  log_request(msg, path, note);
}

bool Emulator::Impl::record_and_hold(SoupServerMessage *msg, const char *path, Exchange &exchange) {
  RequestRecord record;
  record.route = exchange.route;
  record.method = soup_server_message_get_method(msg);
  record.path = path;
  record.task_id = exchange.task_id;
  record.external_task_id = exchange.external_task_id;
  record.video_id = exchange.video_id;
  const char *agent =
      soup_message_headers_get_one(soup_server_message_get_request_headers(msg), "User-Agent");
  record.user_agent = agent ? agent : "";
  SoupMessageHeadersIter iter;
  soup_message_headers_iter_init(&iter, soup_server_message_get_request_headers(msg));
  const char *name, *value;
  while (soup_message_headers_iter_next(&iter, &name, &value))
    record.headers.emplace_back(name, value);
  record.arrival_us = exchange.arrival_us;
  record.streaming = streamed;
  bool hold = false;
  if (!taken_over) {
    std::lock_guard<std::mutex> lock(mutex);
    const auto rule = holds.find(exchange.route);
    if (rule != holds.end()) {
      const HoldFilter &filter = rule->second;
      hold = (filter.task_id.empty() || exchange.route == Route::Create ||
              filter.task_id == exchange.task_id) &&
             (!filter.only_final || exchange.route == Route::Download ||
              is_final(exchange.task_status));
    }
  }
  record.status = hold ? 0 : soup_server_message_get_status(msg);
  std::unique_lock<std::mutex> lock(mutex);
  records.push_back(std::move(record));
  if (!hold)
    return false;
  // The answer stays as computed; only its sending waits.
  auto entry = std::make_unique<Held>();
  entry->impl = this;
  entry->route = exchange.route;
  entry->record = records.size() - 1;
  entry->msg = SOUP_SERVER_MESSAGE(g_object_ref(msg));
  Held *raw = entry.get();
  held.push_back(std::move(entry));
  lock.unlock();
  soup_server_message_pause(msg);
  // Emitted when the server closes the connection (set_offline, shutdown): libsoup then
  // forgets the message, and unpausing it would be an error.
  raw->disconnected_id =
      g_signal_connect(msg, "disconnected", G_CALLBACK(on_held_disconnected), raw);
  // libsoup does not read a paused connection, so a client that gives up would go unseen.
  if (GSocket *socket = soup_server_message_get_socket(msg)) {
    raw->watch =
        g_socket_create_source(socket, GIOCondition(G_IO_IN | G_IO_HUP | G_IO_ERR), nullptr);
    g_source_set_callback(raw->watch, G_SOURCE_FUNC(on_held_socket), raw, nullptr);
    g_source_attach(raw->watch, context);
  }
  state_changed.notify_all();
  return true;
}

// A held connection became readable: at its end (the client closed it), the answer was
// abandoned. Bytes before the end (not expected: a client sends nothing while it waits)
// are left to libsoup, and the watch ends either way.
gboolean Emulator::Impl::on_held_socket(GSocket *socket, GIOCondition, gpointer data) {
  auto *entry = static_cast<Held *>(data);
  char byte;
  ssize_t n = recv(g_socket_get_fd(socket), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return G_SOURCE_CONTINUE;
  if (n <= 0) {
    std::lock_guard<std::mutex> lock(entry->impl->mutex);
    entry->abandoned = true;
  }
  entry->impl->state_changed.notify_all();
  return G_SOURCE_REMOVE;
}

void Emulator::Impl::on_held_disconnected(SoupServerMessage *msg, gpointer data) {
  auto *entry = static_cast<Held *>(data);
  Impl *impl = entry->impl;
  // The reference on `msg` is dropped later, outside libsoup's emission.
  g_signal_handler_disconnect(msg, entry->disconnected_id);
  entry->disconnected_id = 0;
  entry->stop_watching();
  std::string path;
  {
    std::lock_guard<std::mutex> lock(impl->mutex);
    entry->gone = true;
    path = impl->records[entry->record].path;
  }
  impl->log("held answer to %s not sent: the connection closed", path.c_str());
  impl->state_changed.notify_all();
}

size_t Emulator::Impl::release_held(Route route, bool only_one) {
  std::vector<std::unique_ptr<Held>> taken;
  std::vector<std::string> paths;
  {
    std::lock_guard<std::mutex> lock(mutex);
    for (auto it = held.begin(); it != held.end();) {
      if ((*it)->route != route) {
        ++it;
        continue;
      }
      const bool live = !(*it)->gone;
      if (live) {
        RequestRecord &record = records[(*it)->record];
        record.status = soup_server_message_get_status((*it)->msg);
        paths.push_back(record.path);
      }
      taken.push_back(std::move(*it));
      it = held.erase(it);
      if (live && only_one)
        break;
    }
  }
  size_t released = 0;
  for (auto &entry : taken) {
    entry->stop_watching();
    if (entry->disconnected_id)
      g_signal_handler_disconnect(entry->msg, entry->disconnected_id);
    if (!entry->gone) {
      soup_server_message_unpause(entry->msg); // libsoup keeps its own reference
      ++released;
    }
    g_object_unref(entry->msg);
  }
  for (const auto &path : paths)
    log("released the held answer to %s", path.c_str());
  state_changed.notify_all();
  return released;
}

// On shutdown, after soup_server_disconnect(): every held connection is closed.
void Emulator::Impl::drop_held() {
  std::deque<std::unique_ptr<Held>> dropped;
  {
    std::lock_guard<std::mutex> lock(mutex);
    dropped.swap(held);
  }
  for (auto &entry : dropped) {
    entry->stop_watching();
    if (entry->disconnected_id)
      g_signal_handler_disconnect(entry->msg, entry->disconnected_id);
    g_object_unref(entry->msg);
  }
  state_changed.notify_all();
}

std::string Emulator::Impl::handle_create(SoupServerMessage *msg, Exchange &exchange) {
  SoupMessageBody *body = soup_server_message_get_request_body(msg);
  const std::string raw = body->data ? std::string(body->data, body->length) : std::string();
  read_create_ids(raw, exchange.video_id, exchange.external_task_id);
  {
    std::lock_guard<std::mutex> lock(mutex);
    ++creates;
    last_create_body = raw;
  }
  if (soup_server_message_get_method(msg) != SOUP_METHOD_POST) {
    respond_json(msg, SOUP_STATUS_METHOD_NOT_ALLOWED, message_json("use POST"));
    return "";
  }
  std::optional<Fault> fault;
  if (!take_fault(msg, Route::Create, fault))
    return "";
  if (fault && !is_task_fault(*fault)) {
    if (fault->kind == FaultKind::Json)
      exchange.task_status = status_member(fault->text);
    return apply_fault(msg, *fault);
  }
  if (!authorize(msg))
    return "";
  CreateParams params;
  const std::string invalid = parse_create_body(raw, params);
  if (!invalid.empty()) {
    respond_json(msg, SOUP_STATUS_BAD_REQUEST, invalid);
    return "";
  }

  std::unique_lock<std::mutex> lock(mutex);
  const auto video = videos.find(params.video_id);
  if (video == videos.end()) {
    lock.unlock();
    respond_json(msg, SOUP_STATUS_BAD_REQUEST,
                 error_json("video_not_found", "unknown video_id: " + params.video_id));
    return "";
  }
  if (!fault) {
    auto &queue = faults[Route::Task];
    if (!queue.empty()) {
      fault = queue.front();
      queue.pop_front();
    }
  }
  Task task;
  do
    task.id = random_id("task-");
  while (tasks.count(task.id));
  task.external_task_id = params.external_task_id;
  task.callback_url = params.callback_url;
  task.created_monotonic_us = g_get_monotonic_time();
  task.created_unix = g_get_real_time() / G_USEC_PER_SEC;
  task.pending_ms = options.pending_ms;
  task.processing_ms = options.processing_max_ms > options.processing_ms
                           ? guint(g_random_int_range(gint32(options.processing_ms),
                                                      gint32(options.processing_max_ms) + 1))
                           : options.processing_ms;
  // Whole frames, so the reported duration is the rendered one.
  task.result_seconds =
      std::round((video->second + kExtensionSeconds) * kFrameRate) / double(kFrameRate);
  task.video_id = random_id("vid-");
  task.job_id = random_id("job-");
  task.video_name = task.video_id + ".mp4";
  task.cover_name = task.id + ".jpg";
  if (fault && fault->kind == FaultKind::Fail)
    task.error = task_error_for(fault->text);
  else if (fault && fault->kind == FaultKind::FailText)
    task.error = TaskError{"", fault->text, TaskError::Shape::PlainString};
  else if (task.result_seconds > kMaxVideoSeconds)
    task.error = TaskError{"014002099", "the extended video would exceed the 3-minute limit",
                           TaskError::Shape::CodeMessage};
  task.stuck = fault && fault->kind == FaultKind::Stuck;
  if (fault && fault->kind == FaultKind::Url)
    task.url_override = fault->text;
  if (fault && fault->kind == FaultKind::Progress) {
    task.shape = fault->shape;
    if (fault->number > 0)
      task.processing_ms = guint(fault->number);
  }
  if (task.error || !task.url_override.empty())
    task.render = Render::NotNeeded;
  const Phase phase = phase_of(task, task.created_monotonic_us);
  const std::string reply = task_json(task, phase, base_url);
  const std::string note = "created " + task.id + (fault ? " (with a task fault)" : "");
  exchange.task_id = task.id;
  exchange.task_status = phase.status;
  tasks.emplace(task.id, std::move(task));
  lock.unlock();
  respond_json(msg, SOUP_STATUS_OK, reply);
  return note;
}

std::string Emulator::Impl::handle_poll(SoupServerMessage *msg, Exchange &exchange) {
  const std::string &task_id = exchange.task_id;
  {
    std::lock_guard<std::mutex> lock(mutex);
    ++polls;
  }
  if (soup_server_message_get_method(msg) != SOUP_METHOD_GET) {
    respond_json(msg, SOUP_STATUS_METHOD_NOT_ALLOWED, message_json("use GET"));
    return "";
  }
  std::optional<Fault> fault;
  if (!take_fault(msg, Route::Poll, fault))
    return "";
  if (fault) {
    if (fault->kind == FaultKind::Json)
      exchange.task_status = status_member(fault->text);
    return apply_fault(msg, *fault);
  }
  if (!authorize(msg))
    return "";
  std::unique_lock<std::mutex> lock(mutex);
  const auto found = tasks.find(task_id);
  if (found == tasks.end()) {
    lock.unlock();
    respond_json(msg, SOUP_STATUS_NOT_FOUND, message_json("task not found"));
    return "";
  }
  const Phase phase = phase_of(found->second, g_get_monotonic_time());
  const std::string reply = task_json(found->second, phase, base_url);
  lock.unlock();
  respond_json(msg, SOUP_STATUS_OK, reply);
  exchange.task_status = phase.status;
  return phase.status;
}

void Emulator::Impl::handle_files(SoupServerMessage *msg, const char *path) {
  Exchange exchange;
  exchange.route = Route::Download;
  exchange.arrival_us = g_get_monotonic_time();
  taken_over = false;
  streamed = false;
  const bool with_auth = request_header(msg, "Authorization") != nullptr;
  const std::string name = path + strlen(kFilesPath) + (path[strlen(kFilesPath)] == '/');
  {
    std::lock_guard<std::mutex> lock(mutex);
    ++downloads;
    if (with_auth)
      ++download_auths;
    for (const auto &[id, task] : tasks) {
      if (task.video_name == name || task.cover_name == name) {
        exchange.task_id = id;
        break;
      }
    }
  }
  std::string note = serve_file(msg, path);
  if (record_and_hold(msg, path, exchange))
    note += note.empty() ? "(held)" : " (held)";
  log_request(msg, path, note);
}

std::string Emulator::Impl::serve_file(SoupServerMessage *msg, const char *path) {
  const char *method = soup_server_message_get_method(msg);
  if (method != SOUP_METHOD_GET && method != SOUP_METHOD_HEAD) {
    respond_json(msg, SOUP_STATUS_METHOD_NOT_ALLOWED, message_json("use GET"));
    return "";
  }
  std::optional<Fault> fault;
  if (!take_fault(msg, Route::Download, fault))
    return "";
  const bool drop = fault && fault->kind == FaultKind::Drop;
  const bool no_range = fault && fault->kind == FaultKind::NoRange;
  if (fault && !drop && !no_range)
    return apply_fault(msg, *fault);
  std::string local_path;
  {
    std::lock_guard<std::mutex> lock(mutex);
    const auto found = files.find(path + strlen(kFilesPath) + (path[strlen(kFilesPath)] == '/'));
    if (found != files.end())
      local_path = found->second;
  }
  if (local_path.empty()) {
    respond_json(msg, SOUP_STATUS_NOT_FOUND, message_json("file not found"));
    return "";
  }
  // Mapped, not read: the body and any range of it are views of the same mapping.
  g_autoptr(GError) error = nullptr;
  GMappedFile *mapped = g_mapped_file_new(local_path.c_str(), FALSE, &error);
  if (!mapped) {
    respond_json(msg, SOUP_STATUS_INTERNAL_SERVER_ERROR, message_json(error->message));
    return "";
  }
  g_autoptr(GBytes) file_bytes = g_mapped_file_get_bytes(mapped);
  g_mapped_file_unref(mapped);
  const goffset total = goffset(g_bytes_get_size(file_bytes));
  SoupMessageHeaders *request_headers = soup_server_message_get_request_headers(msg);
  SoupMessageHeaders *headers = soup_server_message_get_response_headers(msg);
  // `no-range`: as a server without range support. Removed, not just skipped, since
  // SoupServer would otherwise answer the range of a 200 itself.
  if (no_range)
    soup_message_headers_remove(request_headers, "Range");

  // A single range is answered here, without copying: SoupServer's own Range support
  // flattens (copies) the body and does not clamp an end beyond the file.
  guint status = SOUP_STATUS_OK;
  goffset start = 0, end = total - 1;
  SoupRange *ranges = nullptr;
  int range_count = 0;
  if (total > 0 && soup_message_headers_get_ranges(request_headers, total, &ranges, &range_count)) {
    const goffset first_start = ranges[0].start, first_end = ranges[0].end;
    soup_message_headers_free_ranges(request_headers, ranges);
    if (range_count > 1) {
      // Several ranges: the whole file instead (RFC 9110 allows ignoring Range).
      soup_message_headers_remove(request_headers, "Range");
    } else if (first_start >= total) {
      soup_message_headers_replace(headers, "Content-Range",
                                   ("bytes */" + std::to_string(total)).c_str());
      respond_json(msg, SOUP_STATUS_REQUESTED_RANGE_NOT_SATISFIABLE,
                   message_json("range not satisfiable"));
      return "";
    } else {
      status = SOUP_STATUS_PARTIAL_CONTENT;
      start = std::max<goffset>(0, first_start);
      end = std::min(first_end, total - 1);
    }
  }
  const char *content_type = g_str_has_suffix(path, ".mp4") ? "video/mp4" : "image/jpeg";
  g_autoptr(GBytes) slice = g_bytes_new_from_bytes(file_bytes, start, gsize(end - start + 1));
  const std::string content_range =
      "bytes " + std::to_string(start) + "-" + std::to_string(end) + "/" + std::to_string(total);

  if (drop) {
    std::string head = "HTTP/1.1 " + std::to_string(status) + " " + soup_status_get_phrase(status) +
                       "\r\nContent-Type: " + content_type +
                       "\r\nContent-Length: " + std::to_string(g_bytes_get_size(slice)) +
                       "\r\nAccept-Ranges: bytes\r\n";
    if (status == SOUP_STATUS_PARTIAL_CONTENT)
      head += "Content-Range: " + content_range + "\r\n";
    head += "Connection: close\r\n\r\n";
    soup_server_message_set_status(msg, status, nullptr); // for the log; written by hand
    const gsize sent = std::min<gsize>(gsize(fault->number), g_bytes_get_size(slice));
    start_drop(msg, std::move(head), g_bytes_new_from_bytes(slice, 0, sent));
    return "(injected drop after " + std::to_string(sent) + " bytes)";
  }
  if (!no_range)
    soup_message_headers_replace(headers, "Accept-Ranges", "bytes");
  if (status == SOUP_STATUS_PARTIAL_CONTENT)
    soup_message_headers_replace(headers, "Content-Range", content_range.c_str());
  soup_message_headers_set_content_type(headers, content_type, nullptr);
  soup_message_headers_set_content_length(headers, goffset(g_bytes_get_size(slice)));
  soup_message_body_append_bytes(soup_server_message_get_response_body(msg), slice);
  soup_server_message_set_status(msg, status, nullptr);
  return no_range ? "(injected no-range)" : "";
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

void Emulator::Impl::post_callback(const std::string &url, const std::string &body) {
  g_autoptr(SoupMessage) message = soup_message_new(SOUP_METHOD_POST, url.c_str());
  if (!message) {
    log("callback: not a usable URL: %s", url.c_str());
    return;
  }
  g_autoptr(GBytes) bytes = g_bytes_new(body.data(), body.size());
  soup_message_set_request_body_from_bytes(message, "application/json", bytes);
  if (certificate) // so that callback_url may be the emulator's own /callbacks over HTTPS
    g_signal_connect(message, "accept-certificate",
                     G_CALLBACK(+[](SoupMessage *, GTlsCertificate *peer, GTlsCertificateFlags,
                                    gpointer self) -> gboolean {
                       return g_tls_certificate_is_same(peer,
                                                        static_cast<Impl *>(self)->certificate);
                     }),
                     this);
  ++outstanding_io;
  soup_session_send_and_read_async(
      session, message, G_PRIORITY_DEFAULT, cancellable,
      [](GObject *source, GAsyncResult *result, gpointer self) {
        auto *impl = static_cast<Impl *>(self);
        g_autoptr(GError) error = nullptr;
        g_autoptr(GBytes) reply =
            soup_session_send_and_read_finish(SOUP_SESSION(source), result, &error);
        SoupMessage *sent = soup_session_get_async_result_message(SOUP_SESSION(source), result);
        g_autofree char *uri = g_uri_to_string(soup_message_get_uri(sent));
        if (error)
          impl->log("callback to %s failed: %s", uri, error->message);
        else
          impl->log("callback to %s -> %u", uri, soup_message_get_status(sent));
        --impl->outstanding_io;
      },
      this);
}

void Emulator::Impl::tick() {
  struct Callback {
    std::string url, body;
  };
  std::vector<Callback> callbacks;
  std::vector<std::string> renders;
  {
    std::lock_guard<std::mutex> lock(mutex);
    const gint64 now = g_get_monotonic_time();
    for (auto &[id, task] : tasks) {
      if (is_final(task.announced_status))
        continue;
      const Phase phase = phase_of(task, now);
      // Rendering happens while the task is processing, as the real service generates.
      if (task.render == Render::NotStarted && phase.status != "pending") {
        task.render = Render::Running;
        renders.push_back(id);
      }
      if (phase.status != task.announced_status) {
        task.announced_status = phase.status;
        if (!task.callback_url.empty())
          callbacks.push_back({task.callback_url, task_json(task, phase, base_url)});
      }
    }
  }
  for (const auto &id : renders)
    g_thread_pool_push(render_pool, new std::string(id), nullptr);
  for (const auto &callback : callbacks)
    post_callback(callback.url, callback.body);
}

void Emulator::Impl::render(const std::string &task_id) {
  double seconds = 0;
  std::string video_path, cover_path;
  {
    std::lock_guard<std::mutex> lock(mutex);
    const auto found = tasks.find(task_id);
    if (found == tasks.end())
      return;
    seconds = found->second.result_seconds;
    g_autofree char *video =
        g_build_filename(media_dir.c_str(), found->second.video_name.c_str(), nullptr);
    g_autofree char *cover =
        g_build_filename(media_dir.c_str(), found->second.cover_name.c_str(), nullptr);
    video_path = video;
    cover_path = cover;
  }
  // qtmux, not mp4mux: GStreamer 1.22's mp4mux does not take JPEG. Both write the same box
  // layout (ftyp, mdat, then moov at the end), which is what the client has to cope with.
  // The sound, when asked for, is a buffer of 48 kHz samples per video frame: both tracks
  // last exactly `seconds`.
  const long frames = std::lround(seconds * kFrameRate);
  g_autofree char *audio_branch =
      options.audio ? g_strdup_printf(" audiotestsrc num-buffers=%ld samplesperbuffer=%d"
                                      " ! audio/x-raw,format=S16LE,rate=%d,channels=2 ! mux.",
                                      frames, kAudioRate / kFrameRate, kAudioRate)
                    : g_strdup("");
  g_autofree char *video_pipeline = g_strdup_printf(
      "videotestsrc num-buffers=%ld pattern=smpte ! video/x-raw,width=%u,height=%u,framerate=%d/1"
      " ! jpegenc quality=%u ! qtmux name=mux ! filesink name=sink%s",
      frames, options.width, options.height, kFrameRate, options.jpeg_quality, audio_branch);
  const char *cover_pipeline = "videotestsrc num-buffers=1 pattern=smpte ! "
                               "video/x-raw,width=160,height=120 ! jpegenc ! filesink name=sink";
  std::string error;
  const bool rendered = render_file(video_pipeline, video_path, stopping, error) &&
                        render_file(cover_pipeline, cover_path, stopping, error);
  if (!rendered)
    log("render of %s failed: %s", task_id.c_str(), error.c_str());
  {
    std::lock_guard<std::mutex> lock(mutex);
    Task &task = tasks.at(task_id);
    if (rendered) {
      task.render = Render::Done;
      task.video_path = video_path;
      files[task.video_name] = video_path;
      files[task.cover_name] = cover_path;
      videos[task.video_id] = task.result_seconds; // can be extended again
    } else {
      task.render = Render::Failed;
      task.error = task_error_for("014002095");
    }
  }
  state_changed.notify_all();
}

void Emulator::Impl::set_online(bool want_online) {
  if (!server || shutting_down || want_online == online)
    return;
  if (!want_online) {
    // Listeners and client connections alike, hung ones included; drops are cut short.
    soup_server_disconnect(server);
    g_cancellable_cancel(drop_cancellable);
    g_object_unref(drop_cancellable);
    drop_cancellable = g_cancellable_new();
    online = false;
    log("offline");
    return;
  }
  g_autoptr(GError) error = nullptr;
  online = listen(&error);
  if (online)
    log("online again");
  else // not quiet: the test will see refused connections and wonder why
    g_printerr("kirin-emulator: cannot listen again on port %u: %s\n", bound_port, error->message);
}

void Emulator::Impl::run_on_thread(std::function<void()> work) {
  struct Call {
    Impl *impl;
    std::function<void()> work;
    bool done = false;
  } call{this, std::move(work)};
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (!serving)
      return;
  }
  g_main_context_invoke(
      context,
      [](gpointer data) -> gboolean {
        auto *call = static_cast<Call *>(data);
        Impl *impl = call->impl; // `call` may be gone once `done` is set
        call->work();
        {
          std::lock_guard<std::mutex> lock(impl->mutex);
          call->done = true;
        }
        impl->state_changed.notify_all();
        return G_SOURCE_REMOVE;
      },
      &call);
  std::unique_lock<std::mutex> lock(mutex);
  state_changed.wait(lock, [&] { return call.done; });
}

// Public interface.

Emulator::Emulator(Options options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Emulator::~Emulator() = default;

bool Emulator::start(GError **error) {
  return impl_->start(error);
}
guint Emulator::port() const {
  return impl_->bound_port;
}
std::string Emulator::base_url() const {
  return impl_->base_url;
}
std::string Emulator::api_url() const {
  return impl_->base_url + kApiPath;
}
std::string Emulator::api_key() const {
  return impl_->options.api_key;
}

void Emulator::add_video(const std::string &id, double seconds) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->videos[id] = seconds;
}

bool Emulator::push_fault(Route route, const std::string &spec) {
  const auto fault = parse_fault(spec);
  if (!fault || !fault_fits_route(*fault, route))
    return false;
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->faults[route].push_back(*fault);
  return true;
}

guint Emulator::create_count() const {
  return impl_->locked([&] { return impl_->creates; });
}
guint Emulator::poll_count() const {
  return impl_->locked([&] { return impl_->polls; });
}
guint Emulator::download_count() const {
  return impl_->locked([&] { return impl_->downloads; });
}

guint Emulator::download_auth_count() const {
  return impl_->locked([&] { return impl_->download_auths; });
}

std::vector<std::string> Emulator::received_callbacks(size_t at_least, guint wait_ms) const {
  std::unique_lock<std::mutex> lock(impl_->mutex);
  impl_->state_changed.wait_for(lock, std::chrono::milliseconds(wait_ms),
                                [&] { return impl_->received_callbacks.size() >= at_least; });
  return impl_->received_callbacks;
}

std::string Emulator::last_create_body() const {
  return impl_->locked([&] { return impl_->last_create_body; });
}

std::string Emulator::task_result_path(const std::string &task_id) const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  const auto found = impl_->tasks.find(task_id);
  return found == impl_->tasks.end() ? std::string() : found->second.video_path;
}

std::string Emulator::task_status(const std::string &task_id) const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  const auto found = impl_->tasks.find(task_id);
  return found == impl_->tasks.end() ? std::string()
                                     : phase_of(found->second, g_get_monotonic_time()).status;
}

void Emulator::set_timing(guint pending_ms, guint processing_ms) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->options.pending_ms = pending_ms;
  impl_->options.processing_ms = processing_ms;
  impl_->options.processing_max_ms = 0;
}

void Emulator::complete_now(const std::string &task_id) {
  std::unique_lock<std::mutex> lock(impl_->mutex);
  const auto found = impl_->tasks.find(task_id);
  if (found == impl_->tasks.end())
    return;
  Task &task = found->second;
  task.forced = true;
  if (task.render == Render::NotStarted) {
    task.render = Render::Running;
    g_thread_pool_push(impl_->render_pool, new std::string(task_id), nullptr);
  }
  impl_->state_changed.wait(lock,
                            [&] { return impl_->stopping || task.render != Render::Running; });
}

void Emulator::hold(Route route, HoldFilter filter) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->holds[route] = std::move(filter);
}

size_t Emulator::wait_abandoned(Route route, size_t at_least, guint timeout_ms) const {
  std::unique_lock<std::mutex> lock(impl_->mutex);
  auto abandoned = [&] {
    return size_t(std::count_if(impl_->held.begin(), impl_->held.end(), [route](const auto &e) {
      return e->route == route && e->abandoned;
    }));
  };
  impl_->state_changed.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                                [&] { return abandoned() >= at_least; });
  return abandoned();
}

size_t Emulator::wait_held(Route route, size_t at_least, guint timeout_ms) const {
  std::unique_lock<std::mutex> lock(impl_->mutex);
  impl_->state_changed.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                                [&] { return impl_->held_count(route) >= at_least; });
  return impl_->held_count(route);
}

void Emulator::release(Route route) {
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->holds.erase(route);
  }
  impl_->run_on_thread([this, route] { impl_->release_held(route, false); });
}

bool Emulator::release_one(Route route) {
  size_t released = 0;
  impl_->run_on_thread([&] { released = impl_->release_held(route, true); });
  return released > 0;
}

std::string RequestRecord::header(const std::string &name) const {
  std::string values;
  for (const auto &[found, value] : headers)
    if (g_ascii_strcasecmp(found.c_str(), name.c_str()) == 0)
      values += (values.empty() ? "" : ", ") + value;
  return values;
}

std::vector<RequestRecord> Emulator::requests() const {
  return impl_->locked([&] { return impl_->records; });
}

bool Emulator::wait_streams_over(guint timeout_ms) const {
  std::unique_lock<std::mutex> lock(impl_->mutex);
  return impl_->state_changed.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] {
    return std::none_of(impl_->records.begin(), impl_->records.end(),
                        [](const RequestRecord &record) { return record.streaming; });
  });
}

void Emulator::set_offline(bool offline) {
  impl_->run_on_thread([this, offline] { impl_->set_online(!offline); });
}

bool Emulator::make_self_signed(const std::string &dir, std::string &cert_path,
                                std::string &key_path, GError **error) {
  if (g_mkdir_with_parents(dir.c_str(), 0700) != 0) {
    g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno), "cannot create %s: %s",
                dir.c_str(), g_strerror(errno));
    return false;
  }
  g_autofree char *cert = g_build_filename(dir.c_str(), "cert.pem", nullptr);
  g_autofree char *key = g_build_filename(dir.c_str(), "key.pem", nullptr);
  // CA:TRUE lets clients take the certificate itself as their CA file.
  const char *argv[] = {"openssl",  "req",
                        "-x509",    "-newkey",
                        "rsa:2048", "-nodes",
                        "-days",    "2",
                        "-subj",    "/CN=127.0.0.1",
                        "-addext",  "subjectAltName=IP:127.0.0.1,DNS:localhost",
                        "-addext",  "basicConstraints=critical,CA:TRUE",
                        "-keyout",  key,
                        "-out",     cert,
                        nullptr};
  g_autofree char *errors = nullptr;
  gint status = 0;
  if (!g_spawn_sync(nullptr, const_cast<char **>(argv), nullptr,
                    GSpawnFlags(G_SPAWN_SEARCH_PATH | G_SPAWN_STDOUT_TO_DEV_NULL), nullptr, nullptr,
                    nullptr, &errors, &status, error))
    return false;
  if (!g_spawn_check_wait_status(status, error)) {
    g_prefix_error(error, "openssl req: %s: ", errors ? g_strstrip(errors) : "");
    return false;
  }
  cert_path = cert;
  key_path = key;
  return true;
}

} // namespace kirin_emu
