// The provider's wire format. Every accessor checks the node type before reading: the
// json-glib getters log criticals on a type mismatch, and a server that sends a number
// where a string was documented must not abort the process.
#include "task.h"

#include <charconv>
#include <cmath>
#include <cstring>
#include <memory>
#include <json-glib/json-glib.h>

namespace kirin {

namespace {

constexpr size_t kMaxBodyBytes = 1024 * 1024;
constexpr int kMaxDepth = 64;
constexpr long kMaxErrorChars = 200;

struct ObjectUnref {
  void operator()(gpointer object) const { g_object_unref(object); }
};
using ParserPtr = std::unique_ptr<JsonParser, ObjectUnref>;

// Reads the four hex digits of a \u escape that start at data[at].
bool read_hex4(const char *data, size_t length, size_t at, unsigned &unit) {
  if (length < 4 || at > length - 4)
    return false;
  unit = 0;
  for (size_t i = at; i < at + 4; i++) {
    const int digit = g_ascii_xdigit_value(data[i]);
    if (digit < 0)
      return false;
    unit = unit * 16 + (unsigned)digit;
  }
  return true;
}

bool is_high_surrogate(unsigned unit) {
  return unit >= 0xD800 && unit <= 0xDBFF;
}
bool is_low_surrogate(unsigned unit) {
  return unit >= 0xDC00 && unit <= 0xDFFF;
}

// Checks the escape whose letter is data[i] (the byte after a backslash) and moves `i` to
// its last byte. Only strict JSON's escapes pass, and a UTF-16 surrogate only as a whole
// pair: json-glib turns a lone low surrogate into invalid UTF-8, and leaks memory when a
// high surrogate is not followed by a low one.
bool check_escape(const char *data, size_t length, size_t &i) {
  if (i >= length)
    return false;
  if (data[i] != '\0' && strchr("\"\\/bfnrt", data[i]))
    return true;
  unsigned unit = 0;
  if (data[i] != 'u' || !read_hex4(data, length, i + 1, unit) || is_low_surrogate(unit))
    return false;
  i += 4;
  if (!is_high_surrogate(unit))
    return true;
  if (i + 2 >= length || data[i + 1] != '\\' || data[i + 2] != 'u' ||
      !read_hex4(data, length, i + 3, unit) || !is_low_surrogate(unit))
    return false;
  i += 6;
  return true;
}

// json-glib's parser recurses once per nesting level and accepts more than JSON (comments,
// single-quoted strings) that could hide brackets from a simple scan. So before parsing,
// walk the bytes once: outside strings allow only what strict JSON may contain there, and
// count the nesting depth. json-glib also reads several values in a row ("{…} {…}",
// "\"x\" {…}"), keeps the first as the root and leaks the others, so allow one top-level
// value only.
bool check_structure(const char *data, size_t length, std::string &error) {
  int depth = 0;
  bool in_string = false;
  bool value_closed = false; // a top-level object or array has ended
  bool scalar_seen = false;  // a top-level number, string or literal has begun
  for (size_t i = 0; i < length; i++) {
    const char c = data[i];
    if (in_string) {
      if (c == '\\' && !check_escape(data, length, ++i)) {
        error = "not valid JSON: bad escape in a string";
        return false;
      }
      if (c == '"')
        in_string = false;
      continue;
    }
    if (depth == 0 && !g_ascii_isspace(c)) {
      const bool opens = c == '[' || c == '{';
      if (value_closed || (scalar_seen && opens)) {
        error = "not valid JSON: more than one value";
        return false;
      }
      scalar_seen = scalar_seen || !opens;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxDepth) {
        error = "JSON nests too deeply";
        return false;
      }
    } else if (c == ']' || c == '}') {
      // Closing more than was opened would let later brackets start below zero.
      if (--depth < 0) {
        error = "not valid JSON";
        return false;
      }
      value_closed = depth == 0;
    } else if (c == '\0' || (!g_ascii_isalnum(c) && !strchr(" \t\r\n:,.+-", c))) {
      error = "not valid JSON";
      return false;
    }
  }
  return true;
}

// Parses `data` into a parser whose root is an object, or returns nullptr with a reason.
ParserPtr load_object(const char *data, size_t length, std::string &error) {
  if (data == nullptr || length == 0) {
    error = "empty body";
    return nullptr;
  }
  if (length > kMaxBodyBytes) {
    error = "body larger than 1 MiB";
    return nullptr;
  }
  if (!check_structure(data, length, error))
    return nullptr;
  ParserPtr parser(json_parser_new());
  g_autoptr(GError) parse_error = nullptr;
  if (!json_parser_load_from_data(parser.get(), data, (gssize)length, &parse_error)) {
    error = std::string("not valid JSON: ") + parse_error->message;
    return nullptr;
  }
  JsonNode *root = json_parser_get_root(parser.get());
  if (root == nullptr || !JSON_NODE_HOLDS_OBJECT(root)) {
    error = "not a JSON object";
    return nullptr;
  }
  return parser;
}

// A member of `object` when it holds an object/array, else nullptr.
JsonObject *object_member(JsonObject *object, const char *name) {
  JsonNode *node = object ? json_object_get_member(object, name) : nullptr;
  return node && JSON_NODE_HOLDS_OBJECT(node) ? json_node_get_object(node) : nullptr;
}

JsonArray *array_member(JsonObject *object, const char *name) {
  JsonNode *node = object ? json_object_get_member(object, name) : nullptr;
  return node && JSON_NODE_HOLDS_ARRAY(node) ? json_node_get_array(node) : nullptr;
}

// The value of a member when it is a JSON number.
std::optional<double> number_member(JsonObject *object, const char *name) {
  JsonNode *node = json_object_get_member(object, name);
  if (node == nullptr || !JSON_NODE_HOLDS_VALUE(node))
    return std::nullopt;
  const GType type = json_node_get_value_type(node);
  if (type == G_TYPE_INT64)
    return (double)json_node_get_int(node);
  if (type == G_TYPE_DOUBLE)
    return json_node_get_double(node);
  return std::nullopt;
}

std::string format_number(double value) {
  char buffer[G_ASCII_DTOSTR_BUF_SIZE];
  // %.15g keeps what a person wrote ("0.28", not "0.28000000000000003"), locale-free.
  return g_ascii_formatd(buffer, sizeof buffer, "%.15g", value);
}

// A member as text: a string as-is, a number formatted; "" for anything else.
std::string text_member(JsonObject *object, const char *name) {
  JsonNode *node = object ? json_object_get_member(object, name) : nullptr;
  if (node == nullptr || !JSON_NODE_HOLDS_VALUE(node))
    return "";
  const GType type = json_node_get_value_type(node);
  if (type == G_TYPE_STRING)
    return json_node_get_string(node);
  if (type == G_TYPE_INT64)
    return std::to_string(json_node_get_int(node));
  if (type == G_TYPE_DOUBLE)
    return format_number(json_node_get_double(node));
  return "";
}

// A member only when it is a string (a number is not a message or a URL).
std::string string_member(JsonObject *object, const char *name) {
  JsonNode *node = object ? json_object_get_member(object, name) : nullptr;
  if (node && JSON_NODE_HOLDS_VALUE(node) && json_node_get_value_type(node) == G_TYPE_STRING)
    return json_node_get_string(node);
  return "";
}

TaskStatus status_from_text(const std::string &text) {
  struct Spelling {
    const char *name;
    TaskStatus status;
  };
  static const Spelling spellings[] = {
      {"pending", TaskStatus::Pending},        {"queued", TaskStatus::Pending},
      {"submitted", TaskStatus::Pending},      {"processing", TaskStatus::Processing},
      {"in_progress", TaskStatus::Processing}, {"running", TaskStatus::Processing},
      {"completed", TaskStatus::Completed},    {"succeeded", TaskStatus::Completed},
      {"success", TaskStatus::Completed},      {"failed", TaskStatus::Failed},
      {"cancelled", TaskStatus::Failed},       {"canceled", TaskStatus::Failed},
      {"error", TaskStatus::Failed},
  };
  for (const Spelling &spelling : spellings)
    if (g_ascii_strcasecmp(text.c_str(), spelling.name) == 0)
      return spelling.status;
  return TaskStatus::Unknown;
}

// Seconds from a number or a string that is a whole, finite number; -1 otherwise.
double duration_member(JsonObject *item) {
  double seconds = -1;
  if (auto number = number_member(item, "duration")) {
    seconds = *number;
  } else {
    const std::string text = string_member(item, "duration");
    const char *start = text.c_str();
    while (g_ascii_isspace(*start))
      start++;
    char *end = nullptr;
    const double parsed = g_ascii_strtod(start, &end);
    if (end != start) {
      while (g_ascii_isspace(*end))
        end++;
      if (*end == '\0')
        seconds = parsed;
    }
  }
  return std::isfinite(seconds) && seconds >= 0 ? seconds : -1;
}

// The first content item, across all outputs, that is a video with a URL.
void read_video(JsonObject *object, Task &task) {
  JsonArray *outputs = array_member(object, "output");
  const guint output_count = outputs ? json_array_get_length(outputs) : 0;
  for (guint i = 0; i < output_count; i++) {
    JsonNode *output = json_array_get_element(outputs, i);
    if (!JSON_NODE_HOLDS_OBJECT(output))
      continue;
    JsonArray *content = array_member(json_node_get_object(output), "content");
    const guint item_count = content ? json_array_get_length(content) : 0;
    for (guint j = 0; j < item_count; j++) {
      JsonNode *node = json_array_get_element(content, j);
      if (!JSON_NODE_HOLDS_OBJECT(node))
        continue;
      JsonObject *item = json_node_get_object(node);
      const std::string url = string_member(item, "url");
      if (g_ascii_strcasecmp(string_member(item, "type").c_str(), "video") != 0 || url.empty())
        continue;
      task.has_video = true;
      task.video_url = url;
      task.video_id = text_member(item, "id");
      if (task.video_id.empty())
        task.video_id = text_member(item, "jobId");
      task.duration = duration_member(item);
      return;
    }
  }
}

// Fills code and message from an "error" member that is an object or a string.
void read_error(JsonObject *object, std::string &code, std::string &message) {
  if (JsonObject *error = object_member(object, "error")) {
    code = text_member(error, "code");
    message = string_member(error, "message");
    if (message.empty())
      message = string_member(error, "error_message");
  } else {
    message = string_member(object, "error");
  }
  if (message.empty())
    message = string_member(object, "error_message");
}

// Makes arbitrary bytes safe for one log line: whitespace runs become one space, control
// bytes become '?', invalid UTF-8 is replaced, and the result is cut to 200 characters.
std::string clean_text(const char *data, size_t length) {
  // Stop once there are more than 200 characters even if all took 4 bytes: the rest would
  // be cut anyway, and a huge body is not copied.
  const size_t max_bytes = (kMaxErrorChars + 1) * 4;
  std::string bytes;
  for (size_t i = 0; i < length && bytes.size() < max_bytes; i++) {
    const unsigned char c = data[i];
    if (g_ascii_isspace(c)) {
      if (!bytes.empty() && bytes.back() != ' ')
        bytes += ' ';
    } else {
      bytes += (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
  }
  while (!bytes.empty() && bytes.back() == ' ')
    bytes.pop_back();
  g_autofree gchar *valid = g_utf8_make_valid(bytes.data(), (gssize)bytes.size());
  std::string text = valid;
  if (g_utf8_strlen(text.c_str(), -1) > kMaxErrorChars) {
    text.resize(g_utf8_offset_to_pointer(text.c_str(), kMaxErrorChars) - text.c_str());
    text += "…";
  }
  return text;
}

} // namespace

bool parse_task(const char *data, size_t length, Task &task, std::string &error) {
  task = Task{};
  ParserPtr parser = load_object(data, length, error);
  if (!parser)
    return false;
  JsonObject *object = json_node_get_object(json_parser_get_root(parser.get()));
  // Some gateways wrap the task as {"data": {…}}; unwrap only when nothing task-like is
  // at the top, so a task that merely has a "data" member is left alone.
  JsonObject *wrapped = object_member(object, "data");
  if (wrapped && !json_object_has_member(object, "id") &&
      !json_object_has_member(object, "task_id") && !json_object_has_member(object, "status"))
    object = wrapped;

  task.id = text_member(object, "id");
  if (task.id.empty())
    task.id = text_member(object, "task_id");
  task.status_raw = text_member(object, "status");
  task.status = status_from_text(task.status_raw);
  if (auto progress = number_member(object, "progress"))
    task.progress = CLAMP(*progress, 0.0, 1.0);
  read_video(object, task);
  task.cost = text_member(object_member(object, "usage"), "cost");
  read_error(object, task.error_code, task.error_message);
  // The server's words end up in error messages and logs: one short, printable line each.
  task.error_code = clean_text(task.error_code.data(), task.error_code.size());
  task.error_message = clean_text(task.error_message.data(), task.error_message.size());

  if (task.id.empty() && task.status_raw.empty()) {
    error = "neither a task id nor a status";
    return false;
  }
  return true;
}

std::string parse_error_body(const char *data, size_t length, std::string *code) {
  if (code)
    code->clear();
  if (data == nullptr || length == 0)
    return "";
  std::string not_json;
  if (ParserPtr parser = load_object(data, length, not_json)) {
    JsonObject *object = json_node_get_object(json_parser_get_root(parser.get()));
    std::string error_code, message;
    read_error(object, error_code, message);
    if (!string_member(object, "message").empty())
      message = string_member(object, "message");
    if (error_code.empty())
      error_code = text_member(object, "code");
    if (code)
      *code = error_code;
    if (!message.empty())
      return clean_text(message.data(), message.size());
  }
  // Not JSON, or JSON without a message: the body itself is the best there is.
  return clean_text(data, length);
}

// The create body is written here rather than with json-glib's JsonGenerator, which in
// json-glib 1.6 writes invalid JSON in two cases: a double whose "%.17g" form has an
// exponent but no '.' gets ".0" appended ("4e-35.0", "1e-300.0"), and the control character
// U+001F in a string is copied raw instead of escaped.
namespace {

void append_json_string(std::string &out, const std::string &value) {
  static const char hex[] = "0123456789abcdef";
  out += '"';
  for (const char c : value) {
    const auto byte = (unsigned char)c;
    switch (byte) {
    case '"':
      out += "\\\"";
      break;
    case '\\':
      out += "\\\\";
      break;
    case '\b':
      out += "\\b";
      break;
    case '\f':
      out += "\\f";
      break;
    case '\n':
      out += "\\n";
      break;
    case '\r':
      out += "\\r";
      break;
    case '\t':
      out += "\\t";
      break;
    default:
      // Every other control character, and DEL, as \u00XX; other bytes (UTF-8) unchanged.
      if (byte < 0x20 || byte == 0x7f) {
        out += "\\u00";
        out += hex[byte >> 4];
        out += hex[byte & 0xf];
      } else {
        out += c;
      }
    }
  }
  out += '"';
}

} // namespace

std::string json_number(double value) {
  // The shortest text that reads back as the same double, in plain or exponent form,
  // whichever is shorter: 0.7 is "0.7" (not 0.69999999999999996), 4e-35 is "4e-35", the
  // smallest subnormal "5e-324". Locale-independent.
  char text[64];
  const std::to_chars_result written = std::to_chars(text, text + sizeof text, value);
  std::string number(text, written.ptr);
  // A whole number stays a double for readers that tell integers apart (json-glib does).
  if (number.find_first_of(".e") == std::string::npos)
    number += ".0";
  return number;
}

std::string build_create_body(const CreateRequest &request) {
  std::string body = "{\"model\":";
  append_json_string(body, request.model);
  body += ",\"input\":[{\"params\":{";
  bool first = true;
  auto add_member = [&body, &first](const char *name) {
    if (!first)
      body += ',';
    first = false;
    append_json_string(body, name);
    body += ':';
  };
  auto add_string = [&](const char *name, const std::string &value) {
    if (value.empty())
      return;
    add_member(name);
    append_json_string(body, value);
  };
  add_string("video_id", request.video_id);
  add_string("prompt", request.prompt);
  add_string("negative_prompt", request.negative_prompt);
  // JSON has no NaN or infinity: a non-finite scale is left out rather than sent broken.
  if (request.cfg_scale && std::isfinite(*request.cfg_scale)) {
    add_member("cfg_scale");
    body += json_number(*request.cfg_scale);
  }
  add_string("callback_url", request.callback_url);
  add_string("external_task_id", request.external_task_id);
  body += "}}]}";
  return body;
}

} // namespace kirin
