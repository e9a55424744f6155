// What the kirinextendsrc suites share: the suites' API key, src ! filesink runs and what
// they assert of them, and waiting for a kirin-task message.
#pragma once

#include "common.h"

#include "emulator-fixture.h"

#include <cstring>
#include <string>

constexpr const char *kKey = "test-key-5ecret-do-not-print";

// kirinextendsrc ! filesink, with the source's properties set by the caller.
GstElement *make_file_pipeline(GstElement *src, const std::string &path) {
  GstElement *pipeline = gst_pipeline_new(nullptr);
  GstElement *sink = gst_element_factory_make("filesink", nullptr);
  g_object_set(sink, "location", path.c_str(), nullptr);
  gst_bin_add_many(GST_BIN(pipeline), src, sink, nullptr);
  fail_unless(gst_element_link(src, sink));
  return pipeline;
}

inline std::string temp_path(const char *name) {
  g_autofree char *path =
      g_strdup_printf("%s/kirin-test-%d-%s", g_get_tmp_dir(), (int)getpid(), name);
  return path;
}

inline std::string string_field(const GstStructure *s, const char *field) {
  const char *value = s ? gst_structure_get_string(s, field) : nullptr;
  return value ? value : "";
}

inline std::string get_string_property(GstElement *element, const char *name) {
  g_autofree char *value = nullptr;
  g_object_get(element, name, &value, nullptr);
  return value ? value : "";
}

// Runs src ! filesink and returns the written bytes.
inline std::string run_to_file(GstElement *src, RunResult &result, double max_seconds = 60) {
  std::string path = temp_path("out.mp4");
  GstElement *pipeline = make_file_pipeline(src, path);
  kirin_test_run(pipeline, max_seconds, result);
  gst_object_unref(pipeline);
  std::string bytes = kirin_test_read_file(path);
  g_unlink(path.c_str());
  return bytes;
}

inline void assert_error_free_eos(const RunResult &result) {
  fail_if(result.error, "unexpected error: %s (%s)", result.error ? result.error->message : "",
          result.error_debug.c_str());
  fail_unless(result.eos, "no EOS within the bound");
}

// Asserts a run that should not pay for a task ended with a settings error naming
// `property`, before any request reached the provider.
inline void assert_settings_error(GstElement *src, const kirin_emu::Emulator &emu,
                                  const char *property) {
  RunResult result;
  run_to_file(src, result, 10);
  fail_unless(result.error != nullptr, "no error for a bad '%s'", property);
  fail_unless(g_error_matches(result.error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS));
  fail_unless(strstr(result.error->message, property) != nullptr, "'%s' not named in: %s", property,
              result.error->message);
  fail_unless_equals_int(emu.create_count(), 0);
  // The debug text says where the element found the problem, not where errors are posted.
  fail_unless(result.error_debug.find("gstkirinextendsrc.cpp") != std::string::npos &&
                  result.error_debug.find("messages.cpp") == std::string::npos,
              "the error's origin: %s", result.error_debug.c_str());
}

inline bool wait_for_message(GstBus *bus, const char *status, double max_seconds) {
  gint64 deadline = g_get_monotonic_time() + (gint64)(max_seconds * G_USEC_PER_SEC);
  while (g_get_monotonic_time() < deadline) {
    GstMessage *msg = gst_bus_timed_pop_filtered(
        bus, 100 * GST_MSECOND, (GstMessageType)(GST_MESSAGE_ELEMENT | GST_MESSAGE_ERROR));
    if (!msg)
      continue;
    const GstStructure *s = gst_message_get_structure(msg);
    bool found = GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ELEMENT && s &&
                 gst_structure_has_name(s, "kirin-task") && string_field(s, "status") == status;
    gst_message_unref(msg);
    if (found)
      return true;
  }
  return false;
}

// Adds a suite's one case, "general": its tests each run against an emulator of their own.
inline TCase *add_general_case(Suite *s) {
  TCase *tc = tcase_create("general");
  tcase_set_timeout(tc, 180);
  suite_add_tcase(s, tc);
  return tc;
}
