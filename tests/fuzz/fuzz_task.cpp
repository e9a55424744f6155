// Arbitrary bytes as a task object, the body of a create or poll response. Besides not
// crashing, leaking or tripping a sanitizer, an accepted task must keep what task.h
// promises: the client acts on these fields without checking them again.
#include "fuzz_common.h"
#include "task.h"

#include <cmath>
#include <cstdint>

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
  fuzz_make_glib_warnings_fatal();
  return 0;
}

// Invalid UTF-8, so no parse can produce it: the fuzzer can spell out any valid text.
const std::string kLeftOver = "\xffleft over from an earlier parse";

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  kirin::Task task;
  task.id = kLeftOver;
  std::string error;
  if (!kirin::parse_task(reinterpret_cast<const char *>(data), size, task, error)) {
    fuzz_require(!error.empty(), "a rejected body comes with a reason");
    return 0;
  }
  fuzz_require(!task.id.empty() || !task.status_raw.empty(), "a task has an id or a status");
  fuzz_require(task.id != kLeftOver, "the task is reset first");
  fuzz_require(task.progress == -1 || (task.progress >= 0 && task.progress <= 1),
               "progress is -1 or within 0..1");
  fuzz_require(task.duration == -1 || (std::isfinite(task.duration) && task.duration >= 0),
               "duration is -1 or a finite, non-negative number of seconds");
  fuzz_require(!task.has_video || !task.video_url.empty(), "a video has a URL");
  fuzz_require(task.has_video ||
                   (task.video_url.empty() && task.video_id.empty() && task.duration == -1),
               "no video fields without a video");
  fuzz_require(task.status == kirin::TaskStatus::Unknown || !task.status_raw.empty(),
               "a known status was read from a status string");
  fuzz_require(kirin::task_status_name(task.status) != nullptr, "every status has a name");
  // These end up in GError messages, bus message fields and URLs, which must be UTF-8.
  for (const std::string *text : {&task.id, &task.status_raw, &task.video_url, &task.video_id,
                                  &task.cost, &task.error_code, &task.error_message})
    fuzz_require(fuzz_is_utf8(*text), "every text field is valid UTF-8");
  return 0;
}
