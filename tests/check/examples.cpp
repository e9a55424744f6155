// The example applications (tools/kirin-extend and examples/kirin_extend.py) against the
// emulator, run as a user runs them: their exit status, the file they save and what they
// print. Each test runs once per application. The Python one runs through its own `#!` line,
// so a missing python3-gi fails these tests rather than skipping them.
//
// Usage: test-examples KIRIN_EXTEND KIRIN_EXTEND_PY (meson passes both).
#include "common.h"

#include "emulator-fixture.h"
#include "program.h"

#include <algorithm>
#include <csignal>
#include <memory>

namespace {

constexpr const char *kKey = "examples-test-key";
std::string app_paths[2]; // the C++ application, the Python one

const char *app_name(int app) {
  return app == 0 ? "kirin-extend" : "kirin_extend.py";
}

// Like a user's shell: the key and the service in the environment, the plugin found
// through GST_PLUGIN_PATH. stdout and stderr go to files (not a terminal: line mode).
GSubprocess *launch(int app, const kirin_emu::Emulator &emu, const std::vector<std::string> &args,
                    const WorkDir &dir) {
  g_autoptr(GSubprocessLauncher) launcher = g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_NONE);
  g_subprocess_launcher_setenv(launcher, "VTRIX_API_URL", emu.api_url().c_str(), TRUE);
  g_subprocess_launcher_setenv(launcher, "VTRIX_API_KEY", kKey, TRUE);
  g_subprocess_launcher_setenv(launcher, "GST_PLUGIN_PATH", g_getenv("KIRIN_PLUGIN_DIR"), TRUE);
  // The suite's debug log would mix into what the application prints.
  g_subprocess_launcher_unsetenv(launcher, "GST_DEBUG");
  // Under the sanitizer setup (LD_PRELOAD of the ASan runtime) the Python interpreter and
  // PyGObject report their own allocations left at exit as leaks; memory errors, in our
  // plugin too, still end the run.
  if (const char *asan = g_getenv("ASAN_OPTIONS"); asan && app == 1)
    g_subprocess_launcher_setenv(launcher, "ASAN_OPTIONS",
                                 (std::string(asan) + ":detect_leaks=0").c_str(), TRUE);
  g_subprocess_launcher_set_cwd(launcher, dir.path.c_str());
  g_subprocess_launcher_set_stdout_file_path(launcher, dir.file("stdout.txt").c_str());
  g_subprocess_launcher_set_stderr_file_path(launcher, dir.file("stderr.txt").c_str());
  std::vector<const char *> argv{app_paths[app].c_str()};
  for (const std::string &arg : args)
    argv.push_back(arg.c_str());
  argv.push_back(nullptr);
  GError *error = nullptr;
  GSubprocess *process = g_subprocess_launcher_spawnv(launcher, argv.data(), &error);
  fail_unless(process != nullptr, "cannot run %s: %s", app_paths[app].c_str(),
              error ? error->message : "");
  return process;
}

struct Finished {
  int exit_status = -1;
  std::string out, err;
  // For failure messages, which gst-check limits in length: the end, where errors are.
  std::string both() const {
    std::string text = out + err;
    return text.size() > 3000 ? "..." + text.substr(text.size() - 3000) : text;
  }
};

Finished wait_for(GSubprocess *process, const WorkDir &dir) {
  Finished finished;
  GError *error = nullptr;
  fail_unless(g_subprocess_wait(process, nullptr, &error), "%s", error ? error->message : "");
  fail_unless(g_subprocess_get_if_exited(process), "the application was killed by signal %d",
              g_subprocess_get_if_signaled(process) ? g_subprocess_get_term_sig(process) : 0);
  finished.exit_status = g_subprocess_get_exit_status(process);
  finished.out = kirin_test_read_file(dir.file("stdout.txt"));
  finished.err = kirin_test_read_file(dir.file("stderr.txt"));
  g_object_unref(process);
  return finished;
}

Finished run(int app, const kirin_emu::Emulator &emu, const std::vector<std::string> &args,
             const WorkDir &dir) {
  return wait_for(launch(app, emu, args, dir), dir);
}

bool contains(const std::string &text, const std::string &part) {
  return text.find(part) != std::string::npos;
}

// The emulator's IDs with this prefix ("task-", "vid-") in what an application printed, in
// order of first appearance: the prefix and 16 hex digits.
std::vector<std::string> ids_in(const std::string &text, const std::string &prefix) {
  std::vector<std::string> ids;
  for (size_t at = text.find(prefix); at != std::string::npos; at = text.find(prefix, at + 1)) {
    std::string id = text.substr(at, prefix.size() + 16);
    bool hex = id.size() == prefix.size() + 16 &&
               std::all_of(id.begin() + prefix.size(), id.end(),
                           [](char c) { return g_ascii_isxdigit(c) != 0; });
    if (hex && std::find(ids.begin(), ids.end(), id) == ids.end())
      ids.push_back(id);
  }
  return ids;
}

std::vector<std::string> task_ids_in(const std::string &text) {
  return ids_in(text, "task-");
}

// The saved file is byte for byte what the emulator rendered for the task.
void assert_saved_result(const kirin_emu::Emulator &emu, const std::string &task_id,
                         const std::string &output) {
  std::string rendered = emu.task_result_path(task_id);
  fail_unless(!rendered.empty(), "the emulator rendered nothing for %s", task_id.c_str());
  std::string expected = kirin_test_read_file(rendered), saved = kirin_test_read_file(output);
  fail_unless(expected.size() > 100000, "rendered result is only %zu bytes", expected.size());
  fail_unless(saved == expected, "%s has %zu bytes, not the %zu rendered for task %s",
              output.c_str(), saved.size(), expected.size(), task_id.c_str());
  fail_if(g_file_test((output + ".part").c_str(), G_FILE_TEST_EXISTS), "%s.part is left over",
          output.c_str());
}

} // namespace

GST_START_TEST(test_extends_and_saves) {
  const int app = __i__;
  auto emu = kirin_test_start_emulator(kKey, 100, 600);
  WorkDir dir;
  const std::string output = dir.file("extended.mp4");
  Finished done = run(app, *emu,
                      {"--poll-interval", "100", "--timeout", "60", "--prompt",
                       "the camera keeps panning left", "demo-5s", output},
                      dir);
  fail_unless(done.exit_status == 0, "%s exited with %d:\n%s", app_name(app), done.exit_status,
              done.both().c_str());

  std::vector<std::string> ids = task_ids_in(done.out);
  fail_unless(ids.size() == 1, "%s named %zu tasks:\n%s", app_name(app), ids.size(),
              done.both().c_str());
  fail_unless_equals_int(emu->create_count(), 1);
  assert_same_text(emu->task_status(ids[0]), "completed");
  fail_unless(contains(emu->last_create_body(), "the camera keeps panning left"));
  assert_saved_result(*emu, ids[0], output);

  // The summary: the task, the new video, its cost and where it went.
  fail_unless(contains(done.out, "Task:   " + ids[0]), "%s", done.both().c_str());
  fail_unless(contains(done.out, "Cost:   $0.28"), "%s", done.both().c_str());
  fail_unless(contains(done.out, "10.0 s"), "%s", done.both().c_str());
  fail_unless(contains(done.out, "Saved:  " + output), "%s", done.both().c_str());
  std::vector<std::string> videos = ids_in(done.out, "Video:  vid-");
  fail_unless(videos.size() == 1, "no result video ID in:\n%s", done.both().c_str());
  // Not a terminal: one line per change, never redrawn, and the task's progress shows.
  fail_if(contains(done.out, "\r"), "redrawn although stdout is a file:\n%s", done.both().c_str());
  fail_unless(contains(done.out, "] processing "), "%s", done.both().c_str());
  fail_unless(contains(done.out, "] downloading"), "%s", done.both().c_str());
  fail_unless(done.err.empty(), "%s printed errors:\n%s", app_name(app), done.both().c_str());
}
GST_END_TEST;

GST_START_TEST(test_failed_task_names_it) {
  const int app = __i__;
  auto emu = kirin_test_start_emulator(kKey, 100, 600);
  fail_unless(emu->push_fault(kirin_emu::Route::Task, "fail:014002095"));
  WorkDir dir;
  const std::string output = dir.file("extended.mp4");
  Finished done =
      run(app, *emu, {"--poll-interval", "100", "--timeout", "60", "demo-5s", output}, dir);
  fail_unless(done.exit_status == 4, "%s exited with %d:\n%s", app_name(app), done.exit_status,
              done.both().c_str());
  std::vector<std::string> ids = task_ids_in(done.out);
  fail_unless(ids.size() == 1, "%s", done.both().c_str());
  assert_same_text(emu->task_status(ids[0]), "failed");
  fail_unless(contains(done.err, "Task ID: " + ids[0]), "%s", done.both().c_str());
  // The code once: the message names it ("failed (error 014002095: ...)").
  const size_t code_at = done.err.find("014002095");
  fail_unless(code_at != std::string::npos, "%s", done.both().c_str());
  fail_unless(done.err.find("014002095", code_at + 1) == std::string::npos, "%s",
              done.both().c_str());
  // A failed task cannot be resumed: the application must not suggest it.
  fail_unless(contains(done.err, "failed at the provider"), "%s", done.both().c_str());
  fail_if(contains(done.err, "--task-id"), "%s", done.both().c_str());
  fail_if(g_file_test(output.c_str(), G_FILE_TEST_EXISTS), "a failed run left %s", output.c_str());
  fail_if(g_file_test((output + ".part").c_str(), G_FILE_TEST_EXISTS));
}
GST_END_TEST;

// Ctrl-C while the task runs: a clean stop that names the task, then --task-id fetches the
// result of that same task without creating (paying for) another.
GST_START_TEST(test_interrupt_then_resume) {
  const int app = __i__;
  auto emu = kirin_test_start_emulator(kKey, 100, 600);
  fail_unless(emu->push_fault(kirin_emu::Route::Task, "stuck"));
  WorkDir dir;
  const std::string output = dir.file("extended.mp4");
  GSubprocess *process =
      launch(app, *emu, {"--poll-interval", "100", "--timeout", "60", "demo-5s", output}, dir);

  std::vector<std::string> ids;
  // Until the task is named, or the application ended early (its identifier is dropped then).
  for (int i = 0; i < 300 && ids.empty() && g_subprocess_get_identifier(process); i++) {
    g_usleep(100 * 1000);
    ids = task_ids_in(kirin_test_read_file(dir.file("stdout.txt")));
  }
  fail_unless(ids.size() == 1, "%s named no task:\n%s%s", app_name(app),
              kirin_test_read_file(dir.file("stdout.txt")).c_str(),
              kirin_test_read_file(dir.file("stderr.txt")).c_str());
  g_subprocess_send_signal(process, SIGINT);
  Finished stopped = wait_for(process, dir);
  fail_unless(stopped.exit_status == 130, "%s exited with %d after SIGINT:\n%s", app_name(app),
              stopped.exit_status, stopped.both().c_str());
  fail_unless(contains(stopped.err, "--task-id " + ids[0]), "%s", stopped.both().c_str());
  fail_if(g_file_test(output.c_str(), G_FILE_TEST_EXISTS));
  fail_if(g_file_test((output + ".part").c_str(), G_FILE_TEST_EXISTS));

  emu->complete_now(ids[0]);
  Finished resumed = run(
      app, *emu, {"--poll-interval", "100", "--timeout", "60", "--task-id", ids[0], output}, dir);
  fail_unless(resumed.exit_status == 0, "%s --task-id exited with %d:\n%s", app_name(app),
              resumed.exit_status, resumed.both().c_str());
  fail_unless_equals_int(emu->create_count(), 1);
  assert_saved_result(*emu, ids[0], output);
  fail_unless(contains(resumed.out, "Task:   " + ids[0]), "%s", resumed.both().c_str());
}
GST_END_TEST;

// A run that paid nothing says so: the same line again replays the journal's task, and
// --task-id attaches to it; neither reports the task's cost as spent, nor an empty external ID.
GST_START_TEST(test_replay_and_resume_pay_nothing) {
  const int app = __i__;
  auto emu = kirin_test_start_emulator(kKey, 100, 300);
  WorkDir dir;
  const std::vector<std::string> args = {"--poll-interval", "100", "--timeout", "60", "demo-5s"};
  auto with_output = [&](std::vector<std::string> words, const char *name) {
    words.push_back(dir.file(name));
    return words;
  };
  Finished paid = run(app, *emu, with_output(args, "first.mp4"), dir);
  fail_unless(paid.exit_status == 0, "%s", paid.both().c_str());
  std::vector<std::string> ids = task_ids_in(paid.out);
  fail_unless(ids.size() == 1, "%s", paid.both().c_str());
  fail_unless(contains(paid.out, "Cost:   $0.28 (USD)\n"), "%s", paid.both().c_str());

  Finished replayed = run(app, *emu, with_output(args, "replayed.mp4"), dir);
  fail_unless(replayed.exit_status == 0, "%s", replayed.both().c_str());
  fail_unless_equals_int(emu->create_count(), 1);
  fail_unless(contains(replayed.out, "Cost:   nothing now: paid for when it was created, not by "
                                     "this run (" +
                                         ids[0] + ")"),
              "%s", replayed.both().c_str());
  fail_if(contains(replayed.out, "$0.28"), "%s", replayed.both().c_str());

  Finished resumed = run(
      app, *emu,
      {"--poll-interval", "100", "--timeout", "60", "--task-id", ids[0], dir.file("resumed.mp4")},
      dir);
  fail_unless(resumed.exit_status == 0, "%s", resumed.both().c_str());
  fail_unless_equals_int(emu->create_count(), 1);
  fail_unless(contains(resumed.out, "Task " + ids[0] + "\n"), "%s", resumed.both().c_str());
  fail_if(contains(resumed.out, "(external ID )"), "%s", resumed.both().c_str());
  fail_unless(contains(resumed.out, "Cost:   nothing now"), "%s", resumed.both().c_str());
  fail_if(contains(resumed.out, "$0.28"), "%s", resumed.both().c_str());
}
GST_END_TEST;

// A script tells the failures apart by the exit status (tools/kirin-extend.1): a setting
// the element refused, a wait that ended first (its task ID printed, to resume), a create
// whose answer was lost.
GST_START_TEST(test_exit_status_says_why) {
  const int app = __i__;
  auto emu = kirin_test_start_emulator(kKey, 100, 60000);
  WorkDir dir;
  const std::string output = dir.file("extended.mp4");
  Finished settings = run(app, *emu, {"--api-url", "ftp://127.0.0.1/", "demo-5s", output}, dir);
  fail_unless(settings.exit_status == 3, "%s: a refused setting exited with %d:\n%s", app_name(app),
              settings.exit_status, settings.both().c_str());
  fail_unless(contains(settings.err, "api-url"), "%s", settings.both().c_str());

  Finished timeout =
      run(app, *emu, {"--poll-interval", "100", "--timeout", "1", "demo-5s", output}, dir);
  fail_unless(timeout.exit_status == 5, "%s: a timeout exited with %d:\n%s", app_name(app),
              timeout.exit_status, timeout.both().c_str());
  fail_if(contains(timeout.err, "could not be reached"), "%s", timeout.both().c_str());
  std::vector<std::string> ids = task_ids_in(timeout.out + timeout.err);
  fail_unless(ids.size() == 1 && contains(timeout.err, "--task-id " + ids[0]), "%s",
              timeout.both().c_str());

  // A 502 after the create left: the task may exist, and is not asked for again.
  fail_unless(emu->push_fault(kirin_emu::Route::Create, "http:502"));
  // (Another prompt: the journal would attach to the task the timeout left.)
  Finished lost =
      run(app, *emu, {"--poll-interval", "100", "--prompt", "lost", "demo-5s", output}, dir);
  fail_unless(lost.exit_status == 6, "%s: a lost create answer exited with %d:\n%s", app_name(app),
              lost.exit_status, lost.both().c_str());
  fail_unless(contains(lost.err, "gst-kirin-"), "the external task ID is not named: %s",
              lost.both().c_str());
}
GST_END_TEST;

// A provider that cannot be reached is "not now", as a wait that ended first: exit status 5
// (tools/kirin-extend.1), and no task to resume.
GST_START_TEST(test_unreachable_provider_exits_5) {
  const int app = __i__;
  auto emu = kirin_test_start_emulator(kKey, 100, 300);
  // Connections to its port are refused from now on.
  emu->set_offline(true);
  WorkDir dir;
  const std::string output = dir.file("extended.mp4");
  Finished done = run(app, *emu, {"--timeout", "30", "demo-5s", output}, dir);
  fail_unless(done.exit_status == 5, "%s: an unreachable provider exited with %d:\n%s",
              app_name(app), done.exit_status, done.both().c_str());
  fail_unless(contains(done.err, "Could not reach"), "%s", done.both().c_str());
  fail_unless(contains(done.err, "No task was created"), "%s", done.both().c_str());
  fail_if(contains(done.err, "--task-id"), "%s", done.both().c_str());
  fail_if(g_file_test(output.c_str(), G_FILE_TEST_EXISTS));
  fail_if(g_file_test((output + ".part").c_str(), G_FILE_TEST_EXISTS));
}
GST_END_TEST;

// An api-url without the create endpoint's path answers 404: a setting to fix, not a refusal
// of the request. The error names api-url (never its user info or query), says that no task
// was created, and the exit status is the one of a wrong setting.
GST_START_TEST(test_wrong_api_url_is_a_setting) {
  const int app = __i__;
  auto emu = kirin_test_start_emulator(kKey, 100, 300);
  const std::string base = emu->base_url(), host = base.substr(strlen("http://"));
  WorkDir dir;
  const std::string output = dir.file("extended.mp4");
  for (const std::string &url :
       {base, base + "/", base + "/model/v1", emu->api_url() + "/",
        "http://someone:secret-pw@" + host + "/model/v1?token=secret-token"}) {
    Finished done = run(app, *emu, {"--api-url", url, "demo-5s", output}, dir);
    fail_unless(done.exit_status == 3, "%s --api-url %s exited with %d:\n%s", app_name(app),
                url.c_str(), done.exit_status, done.both().c_str());
    fail_unless(contains(done.err, "No create endpoint at api-url http://" + host), "%s",
                done.both().c_str());
    fail_unless(contains(done.err, "Check the 'api-url' property"), "%s", done.both().c_str());
    fail_unless(contains(done.err, "No task was created"), "%s", done.both().c_str());
    fail_if(contains(done.err, "refused"), "%s", done.both().c_str());
    fail_if(contains(done.err, "secret"), "%s", done.both().c_str());
    fail_if(contains(done.err, "--task-id"), "%s", done.both().c_str());
  }
  fail_unless_equals_int(emu->create_count(), 0);
}
GST_END_TEST;

// The provider goes away while the task runs: the timeout says that the polls of the last
// seconds could not reach it, rather than only the status the last answer gave.
GST_START_TEST(test_timeout_says_provider_unreachable) {
  const int app = __i__;
  auto emu = kirin_test_start_emulator(kKey, 100, 60000);
  WorkDir dir;
  const std::string output = dir.file("extended.mp4");
  GSubprocess *process =
      launch(app, *emu, {"--poll-interval", "100", "--timeout", "5", "demo-5s", output}, dir);
  // Until a poll found the task processing, or the application ended early.
  for (int i = 0; i < 300 && g_subprocess_get_identifier(process); i++) {
    if (contains(kirin_test_read_file(dir.file("stdout.txt")), "] processing"))
      break;
    g_usleep(50 * 1000);
  }
  emu->set_offline(true);
  Finished done = wait_for(process, dir);
  fail_unless(done.exit_status == 5, "%s exited with %d:\n%s", app_name(app), done.exit_status,
              done.both().c_str());
  const std::string said = "(last status: processing). The provider could not be reached for the "
                           "last ";
  const size_t at = done.err.find(said);
  fail_unless(at != std::string::npos, "%s", done.both().c_str());
  const int seconds = atoi(done.err.c_str() + at + said.size());
  fail_unless(seconds >= 1 && seconds <= 5, "%d s:\n%s", seconds, done.both().c_str());
  std::vector<std::string> ids = task_ids_in(done.out);
  fail_unless(ids.size() == 1 && contains(done.err, "--task-id " + ids[0]), "%s",
              done.both().c_str());
}
GST_END_TEST;

// A 500 to the create: the task may exist. The same command again stops too, saying what
// the create got back (the journal recorded it: a server error, HTTP 500), not only that a
// run ended first; --fresh then pays for a new task.
GST_START_TEST(test_server_error_then_fresh) {
  const int app = __i__;
  auto emu = kirin_test_start_emulator(kKey, 100, 300);
  fail_unless(emu->push_fault(kirin_emu::Route::Create, "http:500"));
  WorkDir dir;
  const std::string output = dir.file("extended.mp4");
  const std::vector<std::string> args{"--poll-interval", "100", "demo-5s", output};
  Finished first = run(app, *emu, args, dir);
  fail_unless(first.exit_status == 6, "%s exited with %d:\n%s", app_name(app), first.exit_status,
              first.both().c_str());
  fail_unless(contains(first.err, "server error (HTTP 500"), "%s", first.both().c_str());

  Finished again = run(app, *emu, args, dir);
  fail_unless(again.exit_status == 6, "%s again exited with %d:\n%s", app_name(app),
              again.exit_status, again.both().c_str());
  fail_unless(contains(again.err, "and got a server error (HTTP 500) instead of a task ID"), "%s",
              again.both().c_str());
  fail_unless(contains(again.err, "fresh=true"), "%s", again.both().c_str());
  fail_unless(contains(again.err, "run again with --fresh"), "%s", again.both().c_str());
  fail_if(contains(again.err, "ended before the provider answered"), "%s", again.both().c_str());
  fail_unless_equals_int(emu->create_count(), 1);

  std::vector<std::string> fresh_args{"--fresh"};
  fresh_args.insert(fresh_args.end(), args.begin(), args.end());
  Finished fresh = run(app, *emu, fresh_args, dir);
  fail_unless(fresh.exit_status == 0, "%s --fresh exited with %d:\n%s", app_name(app),
              fresh.exit_status, fresh.both().c_str());
  fail_unless_equals_int(emu->create_count(), 2);
  std::vector<std::string> ids = task_ids_in(fresh.out);
  fail_unless(ids.size() == 1, "%s", fresh.both().c_str());
  assert_saved_result(*emu, ids[0], output);
}
GST_END_TEST;

static Suite *examples_suite() {
  Suite *s = suite_create("examples");
  TCase *tc = tcase_create("general");
  tcase_set_timeout(tc, 120);
  // Index 0 runs the C++ application, 1 the Python one.
  tcase_add_loop_test(tc, test_extends_and_saves, 0, 2);
  tcase_add_loop_test(tc, test_failed_task_names_it, 0, 2);
  tcase_add_loop_test(tc, test_interrupt_then_resume, 0, 2);
  tcase_add_loop_test(tc, test_replay_and_resume_pay_nothing, 0, 2);
  tcase_add_loop_test(tc, test_exit_status_says_why, 0, 2);
  tcase_add_loop_test(tc, test_unreachable_provider_exits_5, 0, 2);
  tcase_add_loop_test(tc, test_wrong_api_url_is_a_setting, 0, 2);
  tcase_add_loop_test(tc, test_timeout_says_provider_unreachable, 0, 2);
  tcase_add_loop_test(tc, test_server_error_then_fresh, 0, 2);
  suite_add_tcase(s, tc);
  return s;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    g_printerr("usage: %s KIRIN_EXTEND KIRIN_EXTEND_PY\n", argv[0]);
    return 1;
  }
  app_paths[0] = argv[1];
  app_paths[1] = argv[2];
  argc = 1;
  kirin_test_init(&argc, &argv, "examples");
  int status = gst_check_run_suite(examples_suite(), "examples", __FILE__);
  // The applications share this process's registry file, and write it again.
  g_unlink(g_getenv("GST_REGISTRY_1_0"));
  return status;
}
