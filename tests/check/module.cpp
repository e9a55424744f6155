// The plugin and its client module must be of one build: a plugin beside a module of
// another version (or one that is not a client module at all) refuses it with an error
// that says so, and does not crash. Each case copies the plugin and a module into a
// directory of their own and runs the pipeline in a child process (this program again),
// since a process loads the module once. The ledger module, which alone links libpq, is
// loaded by a server journal only, and its absence makes such a journal one in memory with
// a warning that says why. (This program links no libpq: whether it is mapped in the child
// tells whether the plugin loaded it.)
#include "common.h"

#include "client.h"

#include <cstring>
#include <string>
#include <vector>

namespace {

constexpr const char *kChildFlag = "--child";
constexpr const char *kPipeline =
    "kirinextendsrc video-id=x api-key=k api-url=http://127.0.0.1:1/ ! fakesink";

// ---- the child: pipelines, what each posted, and whether libpq was loaded after it ----

// libpq is mapped into this process. The child links none of it: only a module can.
bool libpq_mapped() {
  g_autofree char *maps = nullptr;
  if (!g_file_get_contents("/proc/self/maps", &maps, nullptr, nullptr))
    return true; // said so, a test that needs it absent fails
  return strstr(maps, "/libpq.so") != nullptr;
}

// Runs `description` until its first error. Prints each warning before it ("warning\t<text>"),
// the error ("error\t<domain>\t<code>\t<text>") and whether libpq is loaded now ("libpq\t0|1").
// False when there was no error.
bool run_pipeline(const char *description) {
  GError *error = nullptr;
  GstElement *pipeline = gst_parse_launch(description, &error);
  if (!pipeline) {
    g_printerr("%s: %s\n", description, error->message);
    exit(3);
  }
  gst_element_set_state(pipeline, GST_STATE_PAUSED);
  GstBus *bus = gst_element_get_bus(pipeline);
  bool failed = false;
  while (GstMessage *msg = gst_bus_timed_pop_filtered(
             bus, 20 * GST_SECOND, (GstMessageType)(GST_MESSAGE_ERROR | GST_MESSAGE_WARNING))) {
    failed = GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR;
    if (failed) {
      gst_message_parse_error(msg, &error, nullptr);
      g_print("error\t%s\t%d\t%s\n", g_quark_to_string(error->domain), error->code, error->message);
    } else {
      gst_message_parse_warning(msg, &error, nullptr);
      g_print("warning\t%s\n", error->message);
    }
    g_error_free(error);
    gst_message_unref(msg);
    if (failed)
      break;
  }
  gst_element_set_state(pipeline, GST_STATE_NULL);
  gst_object_unref(bus);
  gst_object_unref(pipeline);
  g_print("libpq\t%d\n", libpq_mapped() ? 1 : 0);
  return failed;
}

// argv: --child DIR CORE_PLUGIN PIPELINE... Runs the pipelines one after the other (see
// run_pipeline); exits 0 when each posted an error.
int run_child(const char *dir, const char *core_plugin, char **descriptions) {
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
  int status = 0;
  for (char **description = descriptions; *description; description++)
    if (!run_pipeline(*description))
      status = 2;
  return status;
}

// ---- the test: a directory with the plugin and modules, and what the child posted ----

struct ChildError {
  std::string dir;                   // where the plugin and the modules were (removed since)
  std::string domain, code, message; // the first pipeline's error
  std::vector<std::string> warnings; // every pipeline's, in order
  std::vector<bool> libpq;           // loaded after each pipeline
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

std::string built(const char *file) {
  return std::string(g_getenv("KIRIN_PLUGIN_DIR")) + "/" + file;
}

// The child's lines, as run_pipeline printed them.
ChildError parse_child(const std::string &dir, const char *out) {
  ChildError result{dir, "", "", "", {}, {}};
  bool first_error = true;
  g_auto(GStrv) lines = g_strsplit(out, "\n", -1);
  for (char **line = lines; *line; line++) {
    g_auto(GStrv) fields = g_strsplit(*line, "\t", 4);
    const guint count = g_strv_length(fields);
    if (count == 4 && g_str_equal(fields[0], "error") && first_error) {
      result.domain = fields[1];
      result.code = fields[2];
      result.message = fields[3];
      first_error = false;
    } else if (count == 2 && g_str_equal(fields[0], "warning")) {
      result.warnings.push_back(fields[1]);
    } else if (count == 2 && g_str_equal(fields[0], "libpq")) {
      result.libpq.push_back(g_str_equal(fields[1], "1"));
    }
  }
  fail_if(first_error, "the child printed no error: '%s'", out);
  return result;
}

// Runs `descriptions` in a child that finds only the plugin, copied beside `module` (as the
// client module) and `others` (by their own names), and returns what it posted. `table` is
// the stale module's KIRIN_STALE_TABLE.
ChildError run_beside(const std::string &module, const char *table,
                      std::vector<std::string> descriptions = {kPipeline},
                      const std::vector<std::string> &others = {}) {
  g_autofree char *dir = g_dir_make_tmp("kirin-module-XXXXXX", nullptr);
  fail_unless(dir != nullptr);
  std::vector<std::string> files = {std::string(dir) + "/libgstkirin.so",
                                    std::string(dir) + "/libgstkirin-client.module"};
  copy_file(built("libgstkirin.so"), files[0]);
  copy_file(module, files[1]);
  for (const std::string &other : others) {
    g_autofree char *name = g_path_get_basename(other.c_str());
    files.push_back(std::string(dir) + "/" + name);
    copy_file(other, files.back());
  }
  const std::string registry = std::string(dir) + "/registry.bin";
  files.push_back(registry);

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
  std::vector<const char *> argv = {self, kChildFlag, dir, core.c_str()};
  for (const std::string &description : descriptions)
    argv.push_back(description.c_str());
  argv.push_back(nullptr);
  GError *error = nullptr;
  g_autoptr(GSubprocess) child = g_subprocess_launcher_spawnv(launcher, argv.data(), &error);
  fail_unless(child != nullptr, "cannot run %s: %s", self, error ? error->message : "");
  g_autofree char *out = nullptr;
  g_autofree char *err = nullptr;
  fail_unless(g_subprocess_communicate_utf8(child, nullptr, nullptr, &out, &err, &error), "%s",
              error ? error->message : "");
  for (const std::string &file : files)
    g_unlink(file.c_str());
  g_rmdir(dir);

  fail_unless(g_subprocess_get_if_exited(child), "the child was killed by signal %d: %s",
              g_subprocess_get_if_signaled(child) ? g_subprocess_get_term_sig(child) : 0,
              err ? err : "");
  fail_unless(g_subprocess_get_exit_status(child) == 0, "the child exited with %d: %s%s",
              g_subprocess_get_exit_status(child), out ? out : "", err ? err : "");
  return parse_child(dir, out ? out : "");
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

namespace {

// A run that gets as far as the network (nothing listens on port 1) and gives up at its
// one-second deadline, with `journal` ("": the default, a file) when given.
std::string network_run(const std::string &journal = "") {
  return std::string("kirinextendsrc video-id=x api-key=k api-url=http://127.0.0.1:1/ "
                     "timeout=1 ") +
         (journal.empty() ? "" : "journal=" + journal + " ") + "! fakesink";
}

// A server journal where nothing listens: the element falls back to memory and runs on.
constexpr const char *kServerJournal = "postgresql://kirin:secret@127.0.0.1:1/kirin";
constexpr const char *kServerJournalShown = "postgresql://kirin@127.0.0.1:1/kirin";

// The run got past the modules (it failed at the network).
void assert_ran(const ChildError &error) {
  fail_if(error.message.find("incomplete") != std::string::npos, "'%s'", error.message.c_str());
  fail_if(error.domain == g_quark_to_string(GST_CORE_ERROR) &&
              error.code == std::to_string(GST_CORE_ERROR_MISSING_PLUGIN),
          "'%s'", error.message.c_str());
}

// The one warning that names the server journal (and never its password).
std::string server_journal_warning(const ChildError &error) {
  std::string found;
  for (const std::string &warning : error.warnings) {
    fail_if(warning.find("secret") != std::string::npos, "'%s' shows the password",
            warning.c_str());
    if (warning.find(kServerJournalShown) != std::string::npos)
      found = warning;
  }
  fail_if(found.empty(), "no warning names %s", kServerJournalShown);
  fail_unless(found.find("in memory") != std::string::npos, "'%s'", found.c_str());
  return found;
}

} // namespace

// The rig itself: with the module of its own build, the copied plugin gets as far as the
// network.
GST_START_TEST(test_matching_module_loads) {
  assert_ran(run_beside(built("libgstkirin-client.module"), nullptr, {network_run()}));
}
GST_END_TEST;

// Loading the plugin and running with a file's journal leaves libpq out of the process; a
// postgresql:// journal loads it, through the ledger module.
GST_START_TEST(test_libpq_loaded_for_server_journal_only) {
  ChildError error = run_beside(built("libgstkirin-client.module"), nullptr,
                                {network_run(), network_run(kServerJournal)},
                                {built("libgstkirin-ledger-pg.module")});
  assert_ran(error);
  fail_unless_equals_int(error.libpq.size(), 2);
  fail_if(error.libpq[0], "libpq was loaded by a run with a file's journal");
  fail_unless(error.libpq[1], "a run with a server's journal did not load libpq");
  // Nothing listens there: a server that cannot be reached, not a missing module.
  std::string warning = server_journal_warning(error);
  fail_if(warning.find("ledger-pg.module") != std::string::npos, "'%s'", warning.c_str());
}
GST_END_TEST;

// Without the ledger module beside the plugin, a server's journal is one that cannot be
// used: the run goes on with the in-memory journal, and the warning says which file is
// missing.
GST_START_TEST(test_missing_ledger_module_falls_back) {
  ChildError error =
      run_beside(built("libgstkirin-client.module"), nullptr, {network_run(kServerJournal)});
  assert_ran(error);
  std::string warning = server_journal_warning(error);
  const size_t named = warning.find("libgstkirin-ledger-pg.module");
  fail_unless(named != std::string::npos, "'%s'", warning.c_str());
  fail_unless(warning.find("libgstkirin-ledger-pg.module", named + 1) == std::string::npos,
              "'%s' names the file twice", warning.c_str());
  fail_unless(warning.find(error.dir) != std::string::npos, "'%s' does not name %s",
              warning.c_str(), error.dir.c_str());
  fail_unless(error.libpq.size() == 1 && !error.libpq[0], "libpq was loaded");
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
  tcase_add_test(tc, test_libpq_loaded_for_server_journal_only);
  tcase_add_test(tc, test_missing_ledger_module_falls_back);
  return s;
}

int main(int argc, char **argv) {
  if (argc >= 5 && g_str_equal(argv[1], kChildFlag))
    return run_child(argv[2], argv[3], argv + 4);
  kirin_test_init(&argc, &argv, "module");
  return gst_check_run_suite(module_suite(), "module", __FILE__);
}
