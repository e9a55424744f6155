// The plugin and its client module must be of one build: a plugin beside a module of
// another version (or one that is not a client module at all) refuses it with an error
// that says so, and does not crash. Each case copies the plugin and a module into a
// directory of their own and runs the pipeline in a child process (this program again),
// since a process loads the module once.
#include "common.h"

#include "client.h"

#include <string>

namespace {

constexpr const char *kChildFlag = "--child";
constexpr const char *kPipeline =
    "kirinextendsrc video-id=x api-key=k api-url=http://127.0.0.1:1/ ! fakesink";

// ---- the child: one pipeline, the first error it posts, printed ----

// argv: --child DIR CORE_PLUGIN PIPELINE. Prints the error's domain, code and message, one
// a line; exits 0 when there was one.
int run_child(const char *dir, const char *core_plugin, const char *description) {
  gst_init(nullptr, nullptr);
  GError *error = nullptr;
  GstPlugin *core = gst_plugin_load_file(core_plugin, &error);
  if (!core) {
    g_printerr("cannot load %s: %s\n", core_plugin, error->message);
    return 3;
  }
  gst_object_unref(core);
  GstPlugin *kirin = gst_registry_find_plugin(gst_registry_get(), "kirin");
  if (!kirin || !g_str_has_prefix(gst_plugin_get_filename(kirin), dir)) {
    g_printerr("the kirin plugin was not loaded from %s: found %s\n", dir,
               kirin ? gst_plugin_get_filename(kirin) : "nothing");
    return 3;
  }
  gst_object_unref(kirin);
  GstElement *pipeline = gst_parse_launch(description, &error);
  if (!pipeline) {
    g_printerr("%s: %s\n", description, error->message);
    return 3;
  }
  gst_element_set_state(pipeline, GST_STATE_PAUSED);
  GstBus *bus = gst_element_get_bus(pipeline);
  GstMessage *msg = gst_bus_timed_pop_filtered(bus, 20 * GST_SECOND, GST_MESSAGE_ERROR);
  int status = 2;
  if (msg) {
    gst_message_parse_error(msg, &error, nullptr);
    g_print("%s\n%d\n%s\n", g_quark_to_string(error->domain), error->code, error->message);
    g_error_free(error);
    gst_message_unref(msg);
    status = 0;
  }
  gst_element_set_state(pipeline, GST_STATE_NULL);
  gst_object_unref(bus);
  gst_object_unref(pipeline);
  return status;
}

// ---- the test: a directory with the plugin and a module, and the child's error ----

struct ChildError {
  std::string dir; // where the plugin and the module were (removed since)
  std::string domain, code, message;
};

void copy_file(const std::string &from, const std::string &to) {
  g_autoptr(GFile) source = g_file_new_for_path(from.c_str());
  g_autoptr(GFile) target = g_file_new_for_path(to.c_str());
  GError *error = nullptr;
  fail_unless(g_file_copy(source, target, G_FILE_COPY_NONE, nullptr, nullptr, nullptr, &error),
              "copying %s: %s", from.c_str(), error ? error->message : "");
}

std::string core_plugin_path() {
  GstPlugin *core = gst_registry_find_plugin(gst_registry_get(), "coreelements");
  fail_unless(core != nullptr, "no coreelements plugin");
  std::string path = gst_plugin_get_filename(core);
  gst_object_unref(core);
  return path;
}

// Runs `description` in a child that finds only the plugin, copied beside `module`, and
// returns the error it posted. `table` is the stale module's KIRIN_STALE_TABLE.
ChildError run_beside(const std::string &module, const char *table,
                      const char *description = kPipeline) {
  g_autofree char *dir = g_dir_make_tmp("kirin-module-XXXXXX", nullptr);
  fail_unless(dir != nullptr);
  const std::string plugin = std::string(dir) + "/libgstkirin.so";
  const std::string module_copy = std::string(dir) + "/libgstkirin-client.module";
  const std::string registry = std::string(dir) + "/registry.bin";
  copy_file(std::string(g_getenv("KIRIN_PLUGIN_DIR")) + "/libgstkirin.so", plugin);
  copy_file(module, module_copy);

  g_autoptr(GSubprocessLauncher) launcher = g_subprocess_launcher_new(
      (GSubprocessFlags)(G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_PIPE));
  g_subprocess_launcher_setenv(launcher, "GST_REGISTRY_1_0", registry.c_str(), TRUE);
  g_subprocess_launcher_setenv(launcher, "GST_REGISTRY_FORK", "no", TRUE);
  g_subprocess_launcher_setenv(launcher, "GST_PLUGIN_SYSTEM_PATH_1_0", dir, TRUE);
  g_subprocess_launcher_unsetenv(launcher, "GST_PLUGIN_PATH_1_0");
  g_subprocess_launcher_unsetenv(launcher, "GST_PLUGIN_PATH");
  g_subprocess_launcher_unsetenv(launcher, "GST_DEBUG");
  if (table)
    g_subprocess_launcher_setenv(launcher, "KIRIN_STALE_TABLE", table, TRUE);
  g_autofree char *self = g_file_read_link("/proc/self/exe", nullptr);
  fail_unless(self != nullptr);
  const std::string core = core_plugin_path();
  const char *argv[] = {self, kChildFlag, dir, core.c_str(), description, nullptr};
  GError *error = nullptr;
  g_autoptr(GSubprocess) child = g_subprocess_launcher_spawnv(launcher, argv, &error);
  fail_unless(child != nullptr, "cannot run %s: %s", self, error ? error->message : "");
  g_autofree char *out = nullptr;
  g_autofree char *err = nullptr;
  fail_unless(g_subprocess_communicate_utf8(child, nullptr, nullptr, &out, &err, &error), "%s",
              error ? error->message : "");
  for (const std::string &file : {plugin, module_copy, registry})
    g_unlink(file.c_str());
  g_rmdir(dir);

  fail_unless(g_subprocess_get_if_exited(child), "the child was killed by signal %d: %s",
              g_subprocess_get_if_signaled(child) ? g_subprocess_get_term_sig(child) : 0,
              err ? err : "");
  fail_unless(g_subprocess_get_exit_status(child) == 0, "the child exited with %d: %s%s",
              g_subprocess_get_exit_status(child), out ? out : "", err ? err : "");
  g_auto(GStrv) lines = g_strsplit(out ? out : "", "\n", 4);
  fail_unless(g_strv_length(lines) >= 3, "the child printed '%s'", out ? out : "");
  return ChildError{dir, lines[0], lines[1], lines[2]};
}

// The element's error for a plugin whose module cannot be used: a missing plugin, naming
// the module's directory and each of `words`.
void assert_refused(const ChildError &error, std::initializer_list<std::string> words) {
  assert_same_text(error.domain, g_quark_to_string(GST_CORE_ERROR));
  assert_same_text(error.code, std::to_string(GST_CORE_ERROR_MISSING_PLUGIN));
  const std::string &text = error.message;
  fail_unless(text.find("The kirin plugin is incomplete: ") == 0, "'%s'", text.c_str());
  fail_unless(text.find(error.dir) != std::string::npos, "'%s' does not name %s", text.c_str(),
              error.dir.c_str());
  fail_unless(text.find("install matching files") != std::string::npos, "'%s'", text.c_str());
  for (const std::string &word : words)
    fail_unless(text.find(word) != std::string::npos, "'%s' does not say '%s'", text.c_str(),
                word.c_str());
}

const char *stale_module() {
  return g_getenv("KIRIN_STALE_MODULE");
}

const std::string needed = "the plugin needs version " + std::to_string(kirin::kClientAbiVersion);

} // namespace

GST_START_TEST(test_newer_module_refused) {
  const std::string newer = std::to_string(kirin::kClientAbiVersion + 1);
  ChildError error = run_beside(stale_module(), (newer + ":64").c_str());
  assert_refused(error, {"libgstkirin-client.module at ", " is version " + newer + ", ", needed});
}
GST_END_TEST;

// A module of the unversioned kind, the first field half a function pointer.
GST_START_TEST(test_unversioned_module_refused) {
  ChildError error = run_beside(stale_module(), "unversioned");
  assert_refused(error, {" is version 1 ", needed});
}
GST_END_TEST;

GST_START_TEST(test_too_small_table_refused) {
  const std::string version = std::to_string(kirin::kClientAbiVersion);
  ChildError error = run_beside(stale_module(), (version + ":8").c_str());
  assert_refused(error, {" is version " + version + " with a table of 8 bytes, ",
                         "the plugin needs " + std::to_string(sizeof(kirin::ClientApi))});
}
GST_END_TEST;

GST_START_TEST(test_no_table_refused) {
  ChildError error = run_beside(stale_module(), "none");
  assert_refused(error, {"returned no table from kirin_client_api"});
}
GST_END_TEST;

GST_START_TEST(test_module_without_symbol_refused) {
  ChildError error = run_beside(g_getenv("KIRIN_NO_API_MODULE"), nullptr);
  assert_refused(error, {"has no kirin_client_api"});
}
GST_END_TEST;

// The rig itself: with the module of its own build, the copied plugin gets as far as the
// network (nothing listens on port 1) and gives up at its one-second deadline.
GST_START_TEST(test_matching_module_loads) {
  ChildError error = run_beside(
      std::string(g_getenv("KIRIN_PLUGIN_DIR")) + "/libgstkirin-client.module", nullptr,
      "kirinextendsrc video-id=x api-key=k api-url=http://127.0.0.1:1/ timeout=1 ! fakesink");
  fail_if(error.message.find("incomplete") != std::string::npos, "'%s'", error.message.c_str());
  fail_if(error.domain == g_quark_to_string(GST_CORE_ERROR) &&
              error.code == std::to_string(GST_CORE_ERROR_MISSING_PLUGIN),
          "'%s'", error.message.c_str());
}
GST_END_TEST;

static Suite *module_suite() {
  Suite *s = suite_create("module");
  TCase *tc = tcase_create("module");
  tcase_set_timeout(tc, 60);
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_newer_module_refused);
  tcase_add_test(tc, test_unversioned_module_refused);
  tcase_add_test(tc, test_too_small_table_refused);
  tcase_add_test(tc, test_no_table_refused);
  tcase_add_test(tc, test_module_without_symbol_refused);
  tcase_add_test(tc, test_matching_module_loads);
  return s;
}

int main(int argc, char **argv) {
  if (argc == 5 && g_str_equal(argv[1], kChildFlag))
    return run_child(argv[2], argv[3], argv[4]);
  kirin_test_init(&argc, &argv, "module");
  return gst_check_run_suite(module_suite(), "module", __FILE__);
}
