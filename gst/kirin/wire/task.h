// The provider's wire format: the create request body and the task object.
// Pure functions over bytes and plain structs: no HTTP, no GStreamer, so they can be
// tested and fuzzed on their own.
#pragma once

#include <optional>
#include <string>

namespace kirin {

enum class TaskStatus { Pending, Processing, Completed, Failed, Unknown };

// The normalised name used in bus messages: "pending", "processing", "completed",
// "failed". An unknown status counts as still running and is reported as "processing".
// Inline, so the plugin names statuses without the client module that parses them.
inline const char *task_status_name(TaskStatus status) {
  switch (status) {
  case TaskStatus::Pending:
    return "pending";
  case TaskStatus::Completed:
    return "completed";
  case TaskStatus::Failed:
    return "failed";
  case TaskStatus::Processing:
  case TaskStatus::Unknown:
    break;
  }
  return "processing";
}

inline bool task_status_is_final(TaskStatus status) {
  return status == TaskStatus::Completed || status == TaskStatus::Failed;
}

// A task object as the server sent it, reduced to what the element needs.
struct Task {
  std::string id; // "id", else "task_id"
  TaskStatus status = TaskStatus::Unknown;
  std::string status_raw; // the status string as received (for logs)
  double progress = -1;   // 0..1 (clamped); -1 when absent or not a number

  // The first content item, across all outputs, whose type is "video" and that has a URL
  // (only when completed).
  bool has_video = false;
  std::string video_url;
  std::string video_id; // content "id", else "jobId"
  double duration = -1; // seconds; number or numeric string; -1 when unknown
  std::string cost;     // usage.cost as text ("" when absent)

  // Usually only when failed: error as {code, message}, {code, error_message}, a string,
  // or a top-level "error_message".
  std::string error_code;
  std::string error_message;
};

// Parses a task object (the create response or a poll response), also when wrapped as
// {"data": {…}}. `task` is reset first. Members of an unexpected type are ignored. Returns
// false with a short reason in `error` when the body is not a strict-JSON object, is larger
// than 1 MiB, nests deeper than 64 levels, or has neither an id nor a status.
bool parse_task(const char *data, size_t length, Task &task, std::string &error);

// A readable message from an HTTP error body: {"message": …}, {"error": "…"},
// {"error": {"code", "message"}}, or the body itself when it is not JSON (trimmed,
// non-printable bytes replaced, cut to 200 characters). `code` receives an error code when
// the body carries one, and is cleared otherwise. An empty body gives "".
std::string parse_error_body(const char *data, size_t length, std::string *code = nullptr);

struct CreateRequest {
  std::string model = "kirin_duration_extension";
  std::string video_id;
  std::string prompt;
  std::string negative_prompt;
  std::optional<double> cfg_scale;
  std::string callback_url;
  std::string external_task_id;
};

// The create body in the provider's client's shape:
// {"model": …, "input": [{"params": {"video_id": …, …}}]}, with only the set fields (empty
// strings and a non-finite cfg_scale are left out). Always strict JSON (RFC 8259) when the
// strings are UTF-8.
std::string build_create_body(const CreateRequest &request);

// A finite double as a JSON number: the shortest text that reads back as the same double,
// with ".0" after a whole number ("0.7", "4e-35", "5e-324", "1.0").
std::string json_number(double value);

} // namespace kirin
