// Programs a test runs as a user runs them (gst-launch-1.0, gst-discoverer-1.0, Python),
// with their stdout and stderr in files of a directory of the test's own.
#pragma once

#include "common.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

// A directory for outputs and the programs' stdout/stderr, removed with what is in it.
struct WorkDir {
  std::string path;
  WorkDir() {
    g_autofree char *dir = g_dir_make_tmp("kirin-work-XXXXXX", nullptr);
    fail_unless(dir != nullptr);
    path = dir;
  }
  ~WorkDir() { kirin_test_remove_tree(path); }
  WorkDir(const WorkDir &) = delete;
  WorkDir &operator=(const WorkDir &) = delete;
  std::string file(const std::string &name) const { return path + "/" + name; }
};

struct Program {
  GSubprocess *process = nullptr;
  std::string out_path, err_path;
  int exit_status = -1; // once waited for; -1 when it ended by a signal
  std::string out() const { return kirin_test_read_file(out_path); }
  std::string err() const { return kirin_test_read_file(err_path); }
  // The end of both, for a failure message.
  std::string both() const {
    std::string text = out() + err();
    return text.size() > 3000 ? "..." + text.substr(text.size() - 3000) : text;
  }
  ~Program() { g_clear_object(&process); }
};

// Runs `args` with `env` added to the test's environment (which holds its journal), stdout
// and stderr to `name`.stdout and `name`.stderr in `dir`. The suite's debug log is left
// out, so stderr holds what the program itself says.
inline std::unique_ptr<Program>
kirin_test_spawn(const std::vector<std::string> &args, const WorkDir &dir, const std::string &name,
                 const std::vector<std::pair<std::string, std::string>> &env) {
  g_autoptr(GSubprocessLauncher) launcher = g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_NONE);
  g_subprocess_launcher_unsetenv(launcher, "GST_DEBUG");
  for (const auto &[variable, value] : env)
    g_subprocess_launcher_setenv(launcher, variable.c_str(), value.c_str(), TRUE);
  auto program = std::make_unique<Program>();
  program->out_path = dir.file(name + ".stdout");
  program->err_path = dir.file(name + ".stderr");
  g_subprocess_launcher_set_stdout_file_path(launcher, program->out_path.c_str());
  g_subprocess_launcher_set_stderr_file_path(launcher, program->err_path.c_str());
  std::vector<const char *> argv;
  for (const std::string &arg : args)
    argv.push_back(arg.c_str());
  argv.push_back(nullptr);
  GError *error = nullptr;
  program->process = g_subprocess_launcher_spawnv(launcher, argv.data(), &error);
  fail_unless(program->process != nullptr, "cannot run %s: %s", argv[0],
              error ? error->message : "");
  return program;
}

// Waits up to `seconds` for the program to end on its own; true when it did (its exit
// status is then recorded), false when it had to be killed. The wait runs the default main
// context, where GSubprocess reports the exit.
inline bool kirin_test_wait_up_to(Program &program, double seconds) {
  bool exited = false, expired = false;
  g_subprocess_wait_async(
      program.process, nullptr,
      [](GObject *, GAsyncResult *, gpointer data) { *static_cast<bool *>(data) = true; }, &exited);
  guint timer = g_timeout_add((guint)(seconds * 1000),
                              [](gpointer data) {
                                *static_cast<bool *>(data) = true;
                                return G_SOURCE_REMOVE;
                              },
                              &expired);
  while (!exited && !expired)
    g_main_context_iteration(nullptr, TRUE);
  if (!expired)
    g_source_remove(timer);
  bool by_itself = exited;
  if (!exited) {
    // The wait's callback still points at `exited`: let it run before this frame ends.
    g_subprocess_force_exit(program.process);
    while (!exited)
      g_main_context_iteration(nullptr, TRUE);
  }
  if (g_subprocess_get_if_exited(program.process))
    program.exit_status = g_subprocess_get_exit_status(program.process);
  return by_itself;
}
