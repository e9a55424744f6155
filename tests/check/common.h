// Shared by the element tests: a private registry, the plugin from the build tree only,
// and a bounded pipeline runner that records what a user sees on the bus.
#pragma once

#include <gst/check/gstcheck.h>

#include <gio/gio.h>
#include <glib/gstdio.h>

#include <string>
#include <sys/stat.h>
#include <utility>
#include <vector>

// Every test binary gets its own registry, and must find our plugin in the build tree:
// an installed copy of an older version must not silently stand in for it. The registry is
// hermetic: besides ours it holds only the installed plugins the tests use (KIRIN_TEST_PLUGINS,
// linked into the directory that GST_PLUGIN_SYSTEM_PATH_1_0 names; tests/check/meson.build),
// never what else the machine has installed.
inline void kirin_test_init(int *argc, char ***argv, const char *name) {
  g_autofree char *registry =
      g_strdup_printf("%s/kirin-test-%s-%d.registry", g_get_tmp_dir(), name, (int)getpid());
  g_setenv("GST_REGISTRY_1_0", registry, TRUE);
  g_setenv("GST_REGISTRY_FORK", "no", TRUE);
  gst_check_init(argc, argv);
  g_unlink(registry);

  const char *build_dir = g_getenv("KIRIN_PLUGIN_DIR");
  GstPlugin *plugin = gst_registry_find_plugin(gst_registry_get(), "kirin");
  if (!plugin || !build_dir || !g_str_has_prefix(gst_plugin_get_filename(plugin), build_dir)) {
    g_printerr("the kirin plugin was not loaded from the build tree (%s): found %s\n",
               build_dir ? build_dir : "KIRIN_PLUGIN_DIR unset",
               plugin ? gst_plugin_get_filename(plugin) : "nothing");
    exit(1);
  }
  gst_object_unref(plugin);

  const char *wanted = g_getenv("KIRIN_TEST_PLUGINS");
  if (!wanted) {
    g_printerr("KIRIN_TEST_PLUGINS is unset: run the tests with meson test\n");
    exit(1);
  }
  g_auto(GStrv) names = g_strsplit(wanted, ",", -1);
  GList *plugins = gst_registry_get_plugin_list(gst_registry_get());
  for (GList *l = plugins; l; l = l->next) {
    GstPlugin *found = GST_PLUGIN(l->data);
    // Plugins built into GStreamer itself have no file.
    const char *file = gst_plugin_get_filename(found);
    const char *found_name = gst_plugin_get_name(found);
    if (file && g_strcmp0(found_name, "kirin") != 0 &&
        !g_strv_contains((const char *const *)names, found_name)) {
      g_printerr("the registry is not hermetic: it holds %s (%s), which is none of the plugins "
                 "the tests use (%s)\n",
                 found_name, file, wanted);
      exit(1);
    }
  }
  gst_plugin_list_free(plugins);
}

// Compares texts held in std::string temporaries (which the check macros would outlive).
#define assert_same_text(actual, expected)                                                         \
  do {                                                                                             \
    std::string actual_ = (actual), expected_ = (expected);                                        \
    fail_unless(actual_ == expected_, "'%s' is '%s', expected '%s'", #actual, actual_.c_str(),     \
                expected_.c_str());                                                                \
  } while (0)

// What a pipeline run showed on the bus.
struct RunResult {
  bool eos = false;
  bool timed_out = false;
  GError *error = nullptr;
  std::string error_debug;
  GstStructure *error_details = nullptr;
  std::vector<GstStructure *> task_messages; // the kirin-task element messages, in order
  std::vector<std::pair<GstProgressType, std::string>> progress; // GST_MESSAGE_PROGRESS
  std::vector<std::string> warnings;
  double seconds = 0;

  RunResult() = default;
  RunResult(const RunResult &) = delete;
  RunResult &operator=(const RunResult &) = delete;
  ~RunResult() {
    g_clear_error(&error);
    if (error_details)
      gst_structure_free(error_details);
    for (GstStructure *s : task_messages)
      gst_structure_free(s);
  }

  // The detail field of the error as text ("" when absent).
  std::string detail(const char *field) const {
    if (!error_details || !gst_structure_has_field(error_details, field))
      return {};
    const GValue *value = gst_structure_get_value(error_details, field);
    if (G_VALUE_HOLDS_STRING(value))
      return g_value_get_string(value) ? g_value_get_string(value) : "";
    g_autofree char *text = gst_value_serialize(value);
    return text ? text : "";
  }

  const GstStructure *last_task_message() const {
    return task_messages.empty() ? nullptr : task_messages.back();
  }
};

// Handles one bus message; true when the run is over.
inline bool kirin_test_take_message(GstMessage *msg, RunResult &result) {
  switch (GST_MESSAGE_TYPE(msg)) {
  case GST_MESSAGE_EOS:
    result.eos = true;
    return true;
  case GST_MESSAGE_ERROR: {
    char *debug = nullptr;
    gst_message_parse_error(msg, &result.error, &debug);
    result.error_debug = debug ? debug : "";
    g_free(debug);
    const GstStructure *details = nullptr;
    gst_message_parse_error_details(msg, &details);
    if (details)
      result.error_details = gst_structure_copy(details);
    return true;
  }
  case GST_MESSAGE_WARNING: {
    GError *warning = nullptr;
    gst_message_parse_warning(msg, &warning, nullptr);
    result.warnings.emplace_back(warning->message);
    g_error_free(warning);
    return false;
  }
  case GST_MESSAGE_PROGRESS: {
    GstProgressType type;
    char *text = nullptr;
    gst_message_parse_progress(msg, &type, nullptr, &text);
    result.progress.emplace_back(type, text ? text : "");
    g_free(text);
    return false;
  }
  case GST_MESSAGE_ELEMENT: {
    const GstStructure *s = gst_message_get_structure(msg);
    if (s && gst_structure_has_name(s, "kirin-task"))
      result.task_messages.push_back(gst_structure_copy(s));
    return false;
  }
  default:
    return false;
  }
}

// Plays the pipeline until EOS, an error or `max_seconds`, then, `linger_us` later (so that
// what the element might still do after its end would reach the emulator), sets it to NULL.
inline void kirin_test_run(GstElement *pipeline, double max_seconds, RunResult &result,
                           gint64 linger_us = 0) {
  GstBus *bus = gst_element_get_bus(pipeline);
  gint64 start = g_get_monotonic_time();
  gint64 deadline = start + (gint64)(max_seconds * G_USEC_PER_SEC);
  if (gst_element_set_state(pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
    // The error that explains the failure is on the bus already.
    deadline = g_get_monotonic_time() + G_USEC_PER_SEC;
  }
  bool done = false;
  while (!done) {
    gint64 left = deadline - g_get_monotonic_time();
    if (left <= 0) {
      result.timed_out = true;
      break;
    }
    GstMessage *msg = gst_bus_timed_pop(bus, left * GST_USECOND);
    if (!msg)
      continue;
    done = kirin_test_take_message(msg, result);
    gst_message_unref(msg);
  }
  result.seconds = (g_get_monotonic_time() - start) / (double)G_USEC_PER_SEC;
  for (gint64 end = g_get_monotonic_time() + linger_us; g_get_monotonic_time() < end;)
    g_usleep(G_USEC_PER_SEC / 20);
  gst_element_set_state(pipeline, GST_STATE_NULL);
  gst_object_unref(bus);
}

// A loopback port that nothing listens on right now (bound, read, closed).
inline guint kirin_test_free_port() {
  GSocket *socket =
      g_socket_new(G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, nullptr);
  GInetAddress *loopback = g_inet_address_new_loopback(G_SOCKET_FAMILY_IPV4);
  GSocketAddress *address = g_inet_socket_address_new(loopback, 0);
  g_socket_bind(socket, address, TRUE, nullptr);
  GSocketAddress *bound = g_socket_get_local_address(socket, nullptr);
  guint port = g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(bound));
  g_object_unref(bound);
  g_object_unref(address);
  g_object_unref(loopback);
  g_object_unref(socket);
  return port;
}

// How much slower the sanitizers make every instruction (their test setup says: meson.build,
// KIRIN_TEST_SLOWDOWN); 1 otherwise. Time bounds asserted by tests are multiplied by it.
inline double kirin_test_slowdown() {
  const char *factor = g_getenv("KIRIN_TEST_SLOWDOWN");
  return factor ? MAX(g_ascii_strtod(factor, nullptr), 1.0) : 1.0;
}

// Removes `path` and, when it is a directory, all it holds.
inline void kirin_test_remove_tree(const std::string &path) {
  GStatBuf st;
  if (g_lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    if (GDir *dir = g_dir_open(path.c_str(), 0, nullptr)) {
      while (const char *name = g_dir_read_name(dir))
        kirin_test_remove_tree(path + "/" + name);
      g_dir_close(dir);
    }
    g_rmdir(path.c_str());
  } else {
    g_unlink(path.c_str());
  }
}

inline std::string kirin_test_read_file(const std::string &path) {
  g_autofree char *data = nullptr;
  gsize length = 0;
  if (!g_file_get_contents(path.c_str(), &data, &length, nullptr))
    return {};
  return std::string(data, length);
}
