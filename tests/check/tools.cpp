// The element under the programs people run it with, as separate processes against the
// emulator: a PyGObject application with a source-setup handler, gst-launch-1.0 stopped
// with Ctrl-C (SIGINT), and gst-discoverer-1.0 giving up. Each must end cleanly and tell the
// user which task was paid for.
#include "common.h"

#include "emulator-fixture.h"
#include "program.h"

#include <glib/gstdio.h>

#include <csignal>
#include <memory>
#include <string>
#include <vector>

namespace {

constexpr const char *kKey = "tools-test-key";
constexpr const char *kAgent = "kirin-python-test/1";

bool contains(const std::string &text, const std::string &part) {
  return text.find(part) != std::string::npos;
}

// A program run as a user runs it: the service and key in the environment.
std::unique_ptr<Program> spawn(const kirin_emu::Emulator &emu, const std::vector<std::string> &args,
                               const WorkDir &dir,
                               std::vector<std::pair<std::string, std::string>> env = {}) {
  env.insert(env.end(), {{"VTRIX_API_URL", emu.api_url()}, {"VTRIX_API_KEY", kKey}});
  // Under the sanitizers, the Python interpreter's own allocations left at exit are not ours.
  if (const char *asan = g_getenv("ASAN_OPTIONS"))
    env.emplace_back("ASAN_OPTIONS", std::string(asan) + ":detect_leaks=0");
  return kirin_test_spawn(args, dir, "program", env);
}

// Waits (at most 90 s) for the program to exit by itself, and records its status.
void finish(Program &program) {
  if (!kirin_test_wait_up_to(program, 90))
    fail("the program did not end within 90 s:\n%s", program.both().c_str());
  fail_unless(g_subprocess_get_if_exited(program.process), "killed by signal %d:\n%s",
              g_subprocess_get_term_sig(program.process), program.both().c_str());
}

// Until the program's stdout holds `text` (at most 30 s, or until it exits).
bool wait_for_output(Program &program, const std::string &text) {
  for (int i = 0; i < 300 && g_subprocess_get_identifier(program.process); i++) {
    if (contains(program.out(), text))
      return true;
    g_usleep(100 * 1000);
  }
  return contains(program.out(), text);
}

// The task the emulator created (the test's only one).
std::string created_task(const kirin_emu::Emulator &emu) {
  for (const kirin_emu::RequestRecord &r : emu.requests())
    if (r.route == kirin_emu::Route::Create && !r.task_id.empty())
      return r.task_id;
  return {};
}

// A PyGObject application: a source-setup handler that sets the download's User-Agent, on
// kirinextendsrc itself ("plain") or reached through playbin's own source-setup ("playbin").
// It prints how often the handler ran and how the run ended.
const char *const kPythonApp = R"PY(
import sys
import gi
gi.require_version('Gst', '1.0')
from gi.repository import Gst
Gst.init(None)
mode, agent = sys.argv[1], sys.argv[2]
ran = []

def on_source_setup(kirin, source):
    source.set_property('user-agent', agent)
    ran.append(source.get_name())

if mode == 'plain':
    pipeline = Gst.parse_launch(
        'kirinextendsrc name=kirin video-id=demo-5s poll-interval=100 ! fakesink')
    pipeline.get_by_name('kirin').connect('source-setup', on_source_setup)
else:
    pipeline = Gst.ElementFactory.make('playbin')
    pipeline.set_property('uri', 'kirin://demo-5s?poll-interval=100')
    for prop in ('video-sink', 'audio-sink'):
        sink = Gst.ElementFactory.make('fakesink')
        sink.set_property('sync', False)
        pipeline.set_property(prop, sink)
    pipeline.connect('source-setup',
                     lambda playbin, kirin: kirin.connect('source-setup', on_source_setup))

pipeline.set_state(Gst.State.PLAYING)
msg = pipeline.get_bus().timed_pop_filtered(
    60 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
if msg is None:
    print('TIMEOUT')
elif msg.type == Gst.MessageType.ERROR:
    print('ERROR: %s' % msg.parse_error()[0].message)
else:
    print('EOS')
print('source-setup ran %d times' % len(ran))
pipeline.set_state(Gst.State.NULL)
sys.exit(0 if msg is not None and msg.type == Gst.MessageType.EOS and ran else 1)
)PY";

} // namespace

// A Python handler of source-setup receives a source the element holds a reference to, so
// PyGObject's sinking and dropping of it when the handler returns harms nothing; the
// handler's setting reaches the download.
GST_START_TEST(test_python_source_setup) {
  const char *mode = __i__ == 0 ? "plain" : "playbin";
  auto emu = kirin_test_start_emulator(kKey, 100, 300);
  WorkDir dir;
  auto app = spawn(*emu, {"/usr/bin/python3", "-c", kPythonApp, mode, kAgent}, dir);
  finish(*app);
  fail_unless(app->exit_status == 0, "%s: exit status %d:\n%s", mode, app->exit_status,
              app->both().c_str());
  fail_unless(contains(app->out(), "EOS\nsource-setup ran 1 times"), "%s:\n%s", mode,
              app->both().c_str());
  int downloads = 0;
  for (const kirin_emu::RequestRecord &r : emu->requests())
    if (r.route == kirin_emu::Route::Download) {
      downloads++;
      assert_same_text(r.user_agent, kAgent);
    }
  fail_unless(downloads > 0, "%s: nothing was downloaded", mode);
}
GST_END_TEST;

// Ctrl-C in gst-launch-1.0 while the task is pending names the task and the way back to it.
// gst-launch-1.0 stops reading the bus at the interrupt, so without -e what the user has is
// the line printed when the task was created; with -e the element gets an EOS, posts the
// canceled line while gst-launch still reads the bus, and the pipeline ends at once.
GST_START_TEST(test_gst_launch_interrupt_names_task) {
  const bool eos_on_shutdown = __i__ == 1;
  auto emu = kirin_test_start_emulator(kKey, 100, 300);
  fail_unless(emu->push_fault(kirin_emu::Route::Task, "stuck"));
  WorkDir dir;
  std::vector<std::string> args{"gst-launch-1.0"};
  if (eos_on_shutdown)
    args.push_back("-e");
  args.insert(args.end(), {"kirinextendsrc", "video-id=demo-5s", "poll-interval=50",
                           "external-task-id=launch-ctrl-c", "!", "filesink",
                           "location=" + dir.file("out.mp4")});
  auto launch = spawn(*emu, args, dir);
  fail_unless(wait_for_output(*launch, ": pending"), "no pending task:\n%s",
              launch->both().c_str());
  const std::string task_id = created_task(*emu);
  fail_if(task_id.empty());
  g_subprocess_send_signal(launch->process, SIGINT);
  finish(*launch);
  fail_unless(launch->exit_status == 0, "exit status %d:\n%s", launch->exit_status,
              launch->both().c_str());
  // What README.md warns scripts of: status 0, and filesink's file left behind, empty.
  GStatBuf left;
  fail_unless(g_stat(dir.file("out.mp4").c_str(), &left) == 0, "no out.mp4 left");
  fail_unless_equals_int(left.st_size, 0);
  const std::string out = launch->out();
  fail_unless(contains(out, "Task " + task_id + " created (external-task-id launch-ctrl-c)"), "%s",
              out.c_str());
  fail_unless(contains(out, "task-id=" + task_id), "%s", out.c_str());
  if (eos_on_shutdown) {
    size_t interrupt = out.find("handling interrupt.");
    fail_unless(interrupt != std::string::npos, "%s", out.c_str());
    const std::string after = out.substr(interrupt);
    fail_unless(contains(after, "Progress: (kirin-task) Stopped before task " + task_id +
                                    " (external-task-id launch-ctrl-c) ended"),
                "%s", out.c_str());
    fail_unless(contains(after, "task-id=" + task_id), "%s", out.c_str());
    fail_unless(contains(after, "EOS received"), "%s", out.c_str());
  }
  fail_unless_equals_int(emu->create_count(), 1);
  assert_same_text(emu->task_status(task_id), "pending");
}
GST_END_TEST;

// gst-discoverer-1.0 prints nothing of a source that timed out: with the element's own
// `timeout` in the URI, shorter than -t, the element's error (naming the task) is what it
// prints.
GST_START_TEST(test_discoverer_names_task) {
  auto emu = kirin_test_start_emulator(kKey, 100, 300);
  fail_unless(emu->push_fault(kirin_emu::Route::Task, "stuck"));
  WorkDir dir;
  auto discoverer = spawn(
      *emu, {"gst-discoverer-1.0", "-t", "6", "kirin://demo-5s?poll-interval=100&timeout=2"}, dir);
  finish(*discoverer);
  const std::string task_id = created_task(*emu);
  fail_if(task_id.empty(), "no task was created:\n%s", discoverer->both().c_str());
  const std::string out = discoverer->out();
  fail_unless(contains(out, "An error was encountered while discovering the file"), "%s",
              out.c_str());
  fail_unless(contains(out, "Gave up waiting for the task after 2 s"), "%s", out.c_str());
  fail_unless(contains(out, "task-id=" + task_id), "%s", out.c_str());
}
GST_END_TEST;

// The names in `dir` that start with `prefix`.
std::vector<std::string> entries_named(const std::string &dir, const char *prefix) {
  std::vector<std::string> found;
  if (GDir *d = g_dir_open(dir.c_str(), 0, nullptr)) {
    while (const char *name = g_dir_read_name(d))
      if (g_str_has_prefix(name, prefix))
        found.push_back(name);
    g_dir_close(d);
  }
  return found;
}

// A journal that cannot be opened: the process keeps its tasks in memory, with its claims'
// lock files in a directory of its own under TMPDIR. That directory is there while the task
// is being created, and gone once gst-launch-1.0 has ended.
GST_START_TEST(test_memory_journal_leaves_nothing_behind) {
  auto emu = kirin_test_start_emulator(kKey);
  WorkDir dir;
  g_autofree char *tmp = g_dir_make_tmp("kirin-tmpdir-XXXXXX", nullptr);
  fail_unless(tmp != nullptr);
  const std::string blocker = dir.file("not-a-dir");
  fail_unless(g_file_set_contents(blocker.c_str(), "", 0, nullptr));
  emu->hold(kirin_emu::Route::Create);
  auto launch = spawn(*emu,
                      {"gst-launch-1.0", "kirinextendsrc", "video-id=demo-5s", "poll-interval=50",
                       "journal=" + blocker + "/journal.db", "!", "filesink",
                       "location=" + dir.file("out.mp4")},
                      dir, {{"TMPDIR", tmp}});
  fail_unless_equals_int(emu->wait_held(kirin_emu::Route::Create, 1, 30000), 1);
  const auto during = entries_named(tmp, "kirin-ledger-");
  emu->release(kirin_emu::Route::Create);
  finish(*launch);
  const auto after = entries_named(tmp, "kirin-ledger-");
  for (const std::string &name : after)
    g_rmdir((std::string(tmp) + "/" + name).c_str());
  g_rmdir(tmp);
  fail_unless(launch->exit_status == 0, "exit status %d:\n%s", launch->exit_status,
              launch->both().c_str());
  fail_unless(contains(launch->out(), "keeps its tasks in memory only"), "%s",
              launch->both().c_str());
  fail_unless_equals_int(during.size(), 1);
  fail_unless(after.empty(), "%s was left in TMPDIR", after.empty() ? "" : after[0].c_str());
  fail_unless_equals_int(emu->create_count(), 1);
}
GST_END_TEST;

static Suite *tools_suite() {
  Suite *s = suite_create("tools");
  TCase *tc = tcase_create("general");
  tcase_set_timeout(tc, 150);
  // 0: a plain pipeline, 1: playbin with a kirin:// URI.
  tcase_add_loop_test(tc, test_python_source_setup, 0, 2);
  // 0: gst-launch-1.0, 1: gst-launch-1.0 -e.
  tcase_add_loop_test(tc, test_gst_launch_interrupt_names_task, 0, 2);
  tcase_add_test(tc, test_discoverer_names_task);
  tcase_add_test(tc, test_memory_journal_leaves_nothing_behind);
  suite_add_tcase(s, tc);
  return s;
}

int main(int argc, char **argv) {
  kirin_test_init(&argc, &argv, "tools");
  int status = gst_check_run_suite(tools_suite(), "tools", __FILE__);
  // The programs share this process's registry file, and write it again.
  g_unlink(g_getenv("GST_REGISTRY_1_0"));
  return status;
}
