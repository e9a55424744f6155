#include "messages.h"

namespace kirin {

void register_tags() {
  gst_tag_register(KIRIN_TAG_TASK_ID, GST_TAG_FLAG_META, G_TYPE_STRING, "kirin task ID",
                   "The provider's ID of the extension task", gst_tag_merge_use_first);
  gst_tag_register(KIRIN_TAG_VIDEO_ID, GST_TAG_FLAG_META, G_TYPE_STRING, "kirin video ID",
                   "The provider's ID of this video (can be extended again)",
                   gst_tag_merge_use_first);
  gst_tag_register(KIRIN_TAG_MODEL, GST_TAG_FLAG_META, G_TYPE_STRING, "kirin model",
                   "The model that made this video", gst_tag_merge_use_first);
}

void post_error(GstElement *element, GQuark domain, gint code, const std::string &text,
                const ErrorInfo &info, const char *file, const char *function, int line) {
  GstStructure *details = gst_structure_new(
      "details", "kirin-error-code", G_TYPE_STRING, info.error_code.c_str(), "http-status",
      G_TYPE_UINT, info.http_status, "task-id", G_TYPE_STRING, info.task_id.c_str(), "error-kind",
      G_TYPE_STRING, info.kind.c_str(), nullptr);
  gst_element_message_full_with_details(element, GST_MESSAGE_ERROR, domain, code,
                                        g_strdup(text.c_str()), g_strdup(info.debug.c_str()), file,
                                        function, line, details);
}

void post_settings_error(GstElement *element, const std::string &text, const char *file,
                         const char *function, int line) {
  ErrorInfo info;
  info.kind = "settings";
  post_error(element, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS, text, info, file, function,
             line);
}

void post_progress(GstElement *element, GstProgressType type, const std::string &text,
                   double fraction) {
  GstMessage *message =
      gst_message_new_progress(GST_OBJECT(element), type, "kirin-task", text.c_str());
  if (fraction >= 0)
    gst_structure_set(gst_message_writable_structure(message), "percent", G_TYPE_INT,
                      (int)(fraction * 100 + 0.5), nullptr);
  gst_element_post_message(element, message);
}

void post_task_message(GstElement *element, const Task &task, const std::string &external_task_id,
                       guint step, bool replayed) {
  GstStructure *s =
      gst_structure_new("kirin-task", "task-id", G_TYPE_STRING, task.id.c_str(), "external-task-id",
                        G_TYPE_STRING, external_task_id.c_str(), "status", G_TYPE_STRING,
                        task_status_name(task.status), "step", G_TYPE_UINT, step, nullptr);
  if (task.progress >= 0)
    gst_structure_set(s, "progress", G_TYPE_DOUBLE, task.progress, nullptr);
  if (task.status == TaskStatus::Completed) {
    gst_structure_set(s, "url", G_TYPE_STRING, task.video_url.c_str(), "video-id", G_TYPE_STRING,
                      task.video_id.c_str(), "duration", G_TYPE_DOUBLE, task.duration, nullptr);
    // A replay costs nothing: its cost was reported when the task was paid for.
    if (!replayed)
      gst_structure_set(s, "cost", G_TYPE_STRING, task.cost.c_str(), nullptr);
  }
  if (replayed)
    gst_structure_set(s, "replayed", G_TYPE_BOOLEAN, TRUE, nullptr);
  gst_element_post_message(element, gst_message_new_element(GST_OBJECT(element), s));
}

std::string task_progress_text(const Task &task) {
  std::string text = "Task " + task.id + ": " + task_status_name(task.status);
  if (task.progress >= 0)
    text += " " + std::to_string((int)(task.progress * 100 + 0.5)) + "%";
  return text;
}

GstTagList *result_tags(double duration, const std::string &task_id, const std::string &video_id,
                        const std::string &prompt, const std::string &model) {
  GstTagList *tags = gst_tag_list_new_empty();
  if (duration > 0)
    gst_tag_list_add(tags, GST_TAG_MERGE_REPLACE, GST_TAG_DURATION,
                     (guint64)(duration * GST_SECOND), nullptr);
  const std::pair<const char *, const std::string &> texts[] = {
      {KIRIN_TAG_TASK_ID, task_id}, {KIRIN_TAG_VIDEO_ID, video_id}, {GST_TAG_COMMENT, prompt}};
  for (const auto &[tag, text] : texts)
    if (!text.empty())
      gst_tag_list_add(tags, GST_TAG_MERGE_REPLACE, tag, text.c_str(), nullptr);
  gst_tag_list_add(tags, GST_TAG_MERGE_REPLACE, KIRIN_TAG_MODEL, model.c_str(), nullptr);
  return tags;
}

} // namespace kirin
