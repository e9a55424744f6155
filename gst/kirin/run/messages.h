// What the element tells the application: errors that carry the task ID, GST_MESSAGE_PROGRESS
// (which gst-launch prints), the `kirin-task` element messages and the stream's tags.
// Posting only: no state, no locks.
#pragma once

#include "task.h"

#include <gst/gst.h>

#include <string>

// Tags for what identifies a result at the provider, beside the standard ones.
#define KIRIN_TAG_TASK_ID "kirin-task-id"
#define KIRIN_TAG_VIDEO_ID "kirin-video-id"
#define KIRIN_TAG_MODEL "kirin-model"

namespace kirin {

void register_tags();

// What an error says beyond its domain, code and text: the details structure carries the
// HTTP status, the provider's error code and the task ID, so a paid task is never lost.
struct ErrorInfo {
  std::string debug;
  guint http_status = 0;
  std::string error_code;
  std::string task_id;
  // The details' `error-kind`: job_error_name()'s words ("timeout", "rejected", ...),
  // "settings", "abandoned", "journal" or "result-url"; "" when none applies.
  std::string kind;
};

// Posts an error with the caller's file, function and line, like GST_ELEMENT_ERROR.
void post_error(GstElement *element, GQuark domain, gint code, const std::string &text,
                const ErrorInfo &info = {}, const char *file = __builtin_FILE(),
                const char *function = __builtin_FUNCTION(), int line = __builtin_LINE());

void post_settings_error(GstElement *element, const std::string &text,
                         const char *file = __builtin_FILE(),
                         const char *function = __builtin_FUNCTION(), int line = __builtin_LINE());

// GST_MESSAGE_PROGRESS with code "kirin-task"; `fraction` (0..1) becomes its "percent".
void post_progress(GstElement *element, GstProgressType type, const std::string &text,
                   double fraction = -1);

// Every status change of the task, as a `kirin-task` element message. `replayed`: the task
// completed in an earlier run and is replayed from the journal (no cost field: nothing was
// paid now).
void post_task_message(GstElement *element, const Task &task, const std::string &external_task_id,
                       guint step, bool replayed = false);

// "Task T: processing 40%", the text of a progress message for a task update.
std::string task_progress_text(const Task &task);

// Duration, prompt, task and video IDs and the model, for the stream's tags.
GstTagList *result_tags(double duration, const std::string &task_id, const std::string &video_id,
                        const std::string &prompt, const std::string &model);

} // namespace kirin
