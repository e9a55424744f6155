// Everything the process says in its debug log (every category, every level) and through
// GLib's log, kept as text: for tests of what must never show (the API key, a password).
#pragma once

#include <gst/gst.h>

#include <mutex>
#include <string>

namespace kirin_capture {

inline std::recursive_mutex &lock() {
  static std::recursive_mutex mutex;
  return mutex;
}

inline std::string &text() {
  static std::string captured;
  return captured;
}

inline void on_debug(GstDebugCategory *category, GstDebugLevel level, const gchar *file,
                     const gchar *function, gint line, GObject *object, GstDebugMessage *message,
                     gpointer) {
  const char *said = gst_debug_message_get(message);
  std::lock_guard<std::recursive_mutex> guard(lock());
  std::string &out = text();
  out += gst_debug_category_get_name(category);
  out += ' ';
  out += gst_debug_level_get_name(level);
  out += ' ';
  out += file;
  out += function;
  out += std::to_string(line);
  // The object's name without taking a reference: a ref would log, and recurse here.
  if (object && GST_IS_OBJECT(object) && GST_OBJECT_NAME(object))
    out += GST_OBJECT_NAME(object);
  out += said ? said : "";
  out += '\n';
}

inline GLogWriterOutput on_glib(GLogLevelFlags, const GLogField *fields, gsize n_fields, gpointer) {
  std::lock_guard<std::recursive_mutex> guard(lock());
  for (gsize i = 0; i < n_fields; i++) {
    if (fields[i].length < 0)
      text() += static_cast<const char *>(fields[i].value);
    text() += ' ';
  }
  text() += '\n';
  return G_LOG_WRITER_HANDLED;
}

} // namespace kirin_capture

// From now on, the whole debug log at level 9 and GLib's log go to the capture only.
inline void kirin_test_capture_debug_start() {
  gst_debug_remove_log_function(gst_debug_log_default);
  gst_debug_add_log_function(kirin_capture::on_debug, nullptr, nullptr);
  gst_debug_set_active(TRUE);
  gst_debug_set_threshold_from_string("*:9", TRUE);
  g_log_set_writer_func(kirin_capture::on_glib, nullptr, nullptr);
  g_setenv("G_MESSAGES_DEBUG", "all", TRUE);
}

// Stops the debug log and returns what was captured.
inline std::string kirin_test_capture_debug_stop() {
  gst_debug_set_threshold_from_string("*:0", TRUE);
  std::lock_guard<std::recursive_mutex> guard(kirin_capture::lock());
  return kirin_capture::text();
}
