// The provider's API routes: creating a task (with the body's validation) and polling one,
// both behind the API key.
#include "emulator-internal.h"

#include <cmath>

namespace kirin_emu {
namespace {

constexpr const char *kTaskPrefix = "/model/v1/generation/task/";
constexpr double kExtensionSeconds = 5.0;
constexpr double kMaxVideoSeconds = 180.0; // the provider's 3-minute limit
constexpr glong kMaxPromptChars = 2500;

std::string random_id(const char *prefix) {
  char hex[17];
  g_snprintf(hex, sizeof hex, "%08x%08x", g_random_int(), g_random_int());
  return std::string(prefix) + hex;
}

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

// A task `id` as `params` ask for, extending a video of `video_seconds`, with the timing of
// `options` (read with `mutex` held).
Task new_task(const std::string &id, const CreateParams &params, double video_seconds,
              const Options &options) {
  Task task;
  task.id = id;
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
      std::round((video_seconds + kExtensionSeconds) * kFrameRate) / double(kFrameRate);
  task.video_id = random_id("vid-");
  task.job_id = random_id("job-");
  task.video_name = task.video_id + ".mp4";
  task.cover_name = task.id + ".jpg";
  return task;
}

// What a task fault (or a result over the provider's limit) makes of a new task.
void shape_task(Task &task, const std::optional<Fault> &fault) {
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
}

} // namespace

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

  return add_task(msg, params, fault, exchange);
}

// Creates the task a valid request asks for, with the fault given in its header or else the
// next queued task fault, and answers it.
std::string Emulator::Impl::add_task(SoupServerMessage *msg, const CreateParams &params,
                                     std::optional<Fault> fault, Exchange &exchange) {
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
  std::string id;
  do
    id = random_id("task-");
  while (tasks.count(id));
  Task task = new_task(id, params, video->second, options);
  shape_task(task, fault);
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

} // namespace kirin_emu
