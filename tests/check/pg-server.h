// A real PostgreSQL server of a test's own: a fresh cluster in a temporary directory, on a
// free loopback port, with superuser and database `kirin` and a random password. The server
// programs come from KIRIN_PG_BINDIR (tests/check/meson.build).
#pragma once

#include "common.h"

#include <glib-unix.h>
#include <libpq-fe.h>

#include <algorithm>
#include <cstdio>
#include <grp.h>
#include <pwd.h>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace kirin_pg {

// Who the server programs run as, set in the child between fork and exec.
struct Identity {
  bool switch_user = false;
  uid_t uid = 0;
  gid_t gid = 0;
  bool detach = false; // a session of its own, out of reach of the test's process group
};

inline void become(gpointer data) {
  const Identity *identity = static_cast<const Identity *>(data);
  if (identity->detach)
    setsid();
  if (identity->switch_user && (setgroups(1, &identity->gid) != 0 || setgid(identity->gid) != 0 ||
                                setuid(identity->uid) != 0))
    _exit(127);
}

inline GSubprocessLauncher *launcher(const Identity &identity, const std::string &cwd) {
  GSubprocessLauncher *launcher = g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_NONE);
  // The sanitizer runtime and its options (meson test --setup asan) are for our code: in
  // initdb or postgres, LeakSanitizer would turn their exits into failures.
  for (const char *variable : {"LD_PRELOAD", "ASAN_OPTIONS", "LSAN_OPTIONS", "UBSAN_OPTIONS",
                               "PGDATA", "PGPORT", "PGHOST", "PGUSER", "PGPASSWORD"})
    g_subprocess_launcher_unsetenv(launcher, variable);
  // Messages in English whatever the machine's locale, and a directory the server's user
  // may enter.
  g_subprocess_launcher_setenv(launcher, "LC_ALL", "C", TRUE);
  g_subprocess_launcher_set_cwd(launcher, cwd.c_str());
  // The identity outlives the launcher: it is a member of the PgServer that spawns.
  g_subprocess_launcher_set_child_setup(launcher, become, const_cast<Identity *>(&identity),
                                        nullptr);
  return launcher;
}

// Waits up to `seconds` for the process to end, on a main context of its own so that no
// source of the test runs meanwhile; kills it when the time is up. True when it ended by
// itself.
inline bool wait_up_to(GSubprocess *process, int seconds) {
  GMainContext *context = g_main_context_new();
  g_main_context_push_thread_default(context);
  bool exited = false, expired = false;
  g_subprocess_wait_async(
      process, nullptr,
      [](GObject *, GAsyncResult *, gpointer data) { *static_cast<bool *>(data) = true; }, &exited);
  GSource *timer = g_timeout_source_new_seconds(seconds);
  g_source_set_callback(
      timer,
      [](gpointer data) {
        *static_cast<bool *>(data) = true;
        return G_SOURCE_REMOVE;
      },
      &expired, nullptr);
  g_source_attach(timer, context);
  while (!exited && !expired)
    g_main_context_iteration(context, TRUE);
  bool by_itself = exited;
  if (!exited) {
    g_subprocess_force_exit(process);
    while (!exited)
      g_main_context_iteration(context, TRUE);
  }
  g_source_destroy(timer);
  g_source_unref(timer);
  g_main_context_pop_thread_default(context);
  g_main_context_unref(context);
  return by_itself;
}

inline std::string tail(const std::string &path) {
  std::string text = kirin_test_read_file(path);
  return text.size() > 2000 ? "..." + text.substr(text.size() - 2000) : text;
}

} // namespace kirin_pg

struct PgServer {
  int port = 0;
  std::string password;
  std::string dir; // the temporary directory: data/, server.log, the programs' output

  PgServer() = default;
  PgServer(const PgServer &) = delete;
  PgServer &operator=(const PgServer &) = delete;

  ~PgServer() {
    if (running)
      stop();
    if (!dir.empty())
      kirin_test_remove_tree(dir);
    // The guard finds nothing left to do, and ends.
    if (guard_fd >= 0)
      close(guard_fd);
    if (guard) {
      kirin_pg::wait_up_to(guard, 60);
      g_object_unref(guard);
    }
  }

  std::string uri() const {
    return "postgresql://kirin:" + password + "@127.0.0.1:" + std::to_string(port) + "/kirin";
  }
  std::string uri_without_password() const {
    return "postgresql://kirin@127.0.0.1:" + std::to_string(port) + "/kirin";
  }

  // A fresh cluster, started, with database kirin; false with the reason in `error`.
  bool start(std::string &error) {
    const char *bin = g_getenv("KIRIN_PG_BINDIR");
    if (!bin) {
      error = "KIRIN_PG_BINDIR is unset: run the tests with meson test";
      return false;
    }
    bindir = bin;
    if (!g_file_test((bindir + "/initdb").c_str(), G_FILE_TEST_IS_EXECUTABLE)) {
      error = "no initdb in KIRIN_PG_BINDIR (" + bindir + ")";
      return false;
    }
    // PostgreSQL refuses to run as root: as root (CI), the server is Debian's user postgres.
    if (geteuid() == 0) {
      const struct passwd *user = getpwnam("postgres");
      if (!user) {
        error = "running as root, and there is no user postgres to run the server as";
        return false;
      }
      identity.switch_user = true;
      identity.uid = user->pw_uid;
      identity.gid = user->pw_gid;
    }
    g_autofree char *made = g_dir_make_tmp("kirin-pg-XXXXXX", nullptr);
    if (!made) {
      error = "cannot make a temporary directory";
      return false;
    }
    dir = made;
    if (identity.switch_user && chown(dir.c_str(), identity.uid, identity.gid) != 0) {
      error = "cannot give " + dir + " to the user postgres";
      return false;
    }
    g_chmod(dir.c_str(), 0700);
    if (!start_guard(error))
      return false;

    g_autofree char *random = g_uuid_string_random();
    password = random;
    password.erase(std::remove(password.begin(), password.end(), '-'), password.end());
    port = (int)kirin_test_free_port();

    std::string pwfile = dir + "/pwfile";
    if (!g_file_set_contents(pwfile.c_str(), (password + "\n").c_str(), -1, nullptr) ||
        (identity.switch_user && chown(pwfile.c_str(), identity.uid, identity.gid) != 0)) {
      error = "cannot write " + pwfile;
      return false;
    }
    bool made_cluster = run({bindir + "/initdb", "-D", data(), "-U", "kirin", "--pwfile=" + pwfile,
                             "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8",
                             "--locale=C", "--no-sync", "--no-instructions"},
                            "initdb", 120, error);
    g_unlink(pwfile.c_str());
    if (!made_cluster)
      return false;

    // Appended, so the file keeps its owner. fsync and friends off: a test's data need not
    // survive a crash of the machine.
    g_autofree char *settings = g_strdup_printf("\nlisten_addresses = '127.0.0.1'\n"
                                                "port = %d\n"
                                                "unix_socket_directories = '%s'\n"
                                                "fsync = off\n"
                                                "synchronous_commit = off\n"
                                                "full_page_writes = off\n"
                                                "max_connections = 60\n"
                                                "shared_buffers = 16MB\n",
                                                port, dir.c_str());
    FILE *conf = fopen((data() + "/postgresql.conf").c_str(), "a");
    bool written = conf && fputs(settings, conf) >= 0;
    if (conf)
      written = fclose(conf) == 0 && written;
    if (!written) {
      error = "cannot write " + data() + "/postgresql.conf";
      return false;
    }

    if (!start_again(error))
      return false;
    std::string message;
    if (!execute("postgres", "CREATE DATABASE kirin OWNER kirin", message)) {
      error = "cannot create database kirin: " + message;
      return false;
    }
    return true;
  }

  // The same cluster, port and password again, after stop() or stop_immediately().
  bool start_again(std::string &error) {
    if (!run({bindir + "/pg_ctl", "-w", "-t", "60", "-D", data(), "-l", dir + "/server.log",
              "start"},
             "pg_ctl-start", 90, error)) {
      error += "\nserver.log: " + kirin_pg::tail(dir + "/server.log");
      return false;
    }
    running = true;
    return true;
  }

  // Ends the sessions and shuts down cleanly.
  void stop() { stop_with("fast"); }
  // Ends the server at once, as a crash would: the next start recovers.
  void stop_immediately() { stop_with("immediate"); }

  // The rows of `sql` (with $1... bound to `params`) as text, NULL as "", on a connection of
  // its own; fails the test with the server's message on an error.
  std::vector<std::vector<std::string>> query(const std::string &sql,
                                              const std::vector<std::string> &params = {}) {
    std::vector<std::vector<std::string>> rows;
    std::string message;
    bool done = execute("kirin", sql, message, params, &rows);
    fail_unless(done, "%s: %s", sql.c_str(), message.c_str());
    return rows;
  }

  // The same in another database of the server.
  std::vector<std::vector<std::string>> query_in(const std::string &database,
                                                 const std::string &sql) {
    std::vector<std::vector<std::string>> rows;
    std::string message;
    bool done = execute(database, sql, message, {}, &rows);
    fail_unless(done, "%s: %s", sql.c_str(), message.c_str());
    return rows;
  }

  // The client sessions open now with this application_name (the plugin's is gst-kirin).
  int connections(const std::string &application_name) {
    auto rows = query("SELECT count(*) FROM pg_stat_activity "
                      "WHERE backend_type = 'client backend' AND application_name = $1",
                      {application_name});
    return std::stoi(rows.at(0).at(0));
  }

private:
  std::string bindir;
  kirin_pg::Identity identity;
  bool running = false;
  // A process of its own session that stops the server and removes the directory once this
  // process is gone, whatever ended it: a failed check ends a forked test with _exit, and
  // a test over its time is killed with its whole process group, so no destructor runs then.
  GSubprocess *guard = nullptr;
  int guard_fd = -1; // the write end of the guard's stdin, closed only when this process ends
  kirin_pg::Identity guard_identity;

  std::string data() const { return dir + "/data"; }

  bool start_guard(std::string &error) {
    int fds[2];
    if (!g_unix_open_pipe(fds, FD_CLOEXEC, nullptr)) {
      error = "cannot make a pipe for the guard";
      return false;
    }
    guard_fd = fds[1];
    guard_identity = identity;
    guard_identity.detach = true;
    g_autoptr(GSubprocessLauncher) launcher = kirin_pg::launcher(guard_identity, dir);
    g_subprocess_launcher_take_stdin_fd(launcher, fds[0]);
    std::string pg_ctl = bindir + "/pg_ctl";
    const char *argv[] = {"sh",
                          "-c",
                          "cat >/dev/null; \"$0\" -D \"$1\" -m immediate -w -t 30 stop "
                          ">/dev/null 2>&1; rm -rf \"$2\"",
                          pg_ctl.c_str(),
                          nullptr,
                          nullptr,
                          nullptr};
    std::string data_dir = data();
    argv[4] = data_dir.c_str();
    argv[5] = dir.c_str();
    GError *spawn_error = nullptr;
    guard = g_subprocess_launcher_spawnv(launcher, argv, &spawn_error);
    if (!guard) {
      error = std::string("cannot start the guard: ") + spawn_error->message;
      g_error_free(spawn_error);
      return false;
    }
    return true;
  }

  // Runs a server program as the server's user, its output in a file of the directory,
  // bounded by `seconds`; false with that output in `error` when it failed.
  bool run(const std::vector<std::string> &args, const std::string &name, int seconds,
           std::string &error) {
    std::string output = dir + "/" + name + ".out";
    g_autoptr(GSubprocessLauncher) launcher = kirin_pg::launcher(identity, dir);
    g_subprocess_launcher_set_flags(launcher, G_SUBPROCESS_FLAGS_STDERR_MERGE);
    g_subprocess_launcher_set_stdout_file_path(launcher, output.c_str());
    std::vector<const char *> argv;
    for (const std::string &arg : args)
      argv.push_back(arg.c_str());
    argv.push_back(nullptr);
    GError *spawn_error = nullptr;
    g_autoptr(GSubprocess) process =
        g_subprocess_launcher_spawnv(launcher, argv.data(), &spawn_error);
    if (!process) {
      error = "cannot run " + args[0] + ": " + spawn_error->message;
      g_error_free(spawn_error);
      return false;
    }
    if (!kirin_pg::wait_up_to(process, seconds)) {
      error =
          name + " did not end within " + std::to_string(seconds) + " s: " + kirin_pg::tail(output);
      return false;
    }
    if (!g_subprocess_get_successful(process)) {
      error = name + " failed: " + kirin_pg::tail(output);
      return false;
    }
    return true;
  }

  void stop_with(const char *mode) {
    if (!running)
      return;
    std::string error;
    if (!run({bindir + "/pg_ctl", "-D", data(), "-m", mode, "-w", "-t", "60", "stop"},
             "pg_ctl-stop", 90, error))
      run({bindir + "/pg_ctl", "-D", data(), "-m", "immediate", "-w", "-t", "30", "stop"},
          "pg_ctl-stop", 60, error);
    running = false;
  }

  // Runs `sql` as kirin in `database` on a blocking connection of its own; false with the
  // message in `message` on an error. Connecting and each statement are bounded.
  bool execute(const std::string &database, const std::string &sql, std::string &message,
               const std::vector<std::string> &params = {},
               std::vector<std::vector<std::string>> *rows = nullptr) {
    std::string conninfo = "postgresql://kirin:" + password + "@127.0.0.1:" + std::to_string(port) +
                           "/" + database +
                           "?connect_timeout=10&options=-c%20statement_timeout%3D60000";
    PGconn *connection = PQconnectdb(conninfo.c_str());
    if (PQstatus(connection) != CONNECTION_OK) {
      message = PQerrorMessage(connection);
      PQfinish(connection);
      return false;
    }
    std::vector<const char *> values;
    for (const std::string &param : params)
      values.push_back(param.c_str());
    PGresult *result = PQexecParams(connection, sql.c_str(), (int)values.size(), nullptr,
                                    values.data(), nullptr, nullptr, 0);
    ExecStatusType status = PQresultStatus(result);
    bool done = status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK;
    if (!done)
      message = PQresultErrorMessage(result);
    else if (rows)
      for (int row = 0; row < PQntuples(result); row++) {
        rows->emplace_back();
        for (int column = 0; column < PQnfields(result); column++)
          rows->back().push_back(PQgetvalue(result, row, column));
      }
    PQclear(result);
    PQfinish(connection);
    return done;
  }
};
