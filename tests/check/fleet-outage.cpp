// A server's journal through an outage, in one long-lived process as a playout daemon runs
// one run after another: the runs go on in memory while the server is away, the journal
// reaches the server again by itself once it returns (or another host of a multi-host URI),
// and what the process paid for meanwhile is written there, as a take of its own when
// another machine paid for the same request meanwhile.
#include "common.h"

#include "emulator-fixture.h"
#include "fleet-run.h"
#include "pg-server.h"

#include <atomic>
#include <thread>

namespace {

double seconds_since(gint64 start_us) {
  return (g_get_monotonic_time() - start_us) / (double)G_USEC_PER_SEC;
}

// The status of the server's row of `task_id` ("" when it has none).
std::string status_of_task(PgServer &server, const std::string &task_id) {
  auto rows =
      server.query("SELECT status FROM gst_kirin.tasks WHERE task_id = $1 LIMIT 1", {task_id});
  return rows.empty() ? "" : rows[0][0];
}

// Waits (bounded by `seconds`) until the server's row of `task_id` is completed; the time it
// took, or -1.
double wait_completed(PgServer &server, const std::string &task_id, double seconds) {
  const gint64 start = g_get_monotonic_time();
  for (gint64 end = start + (gint64)(seconds * G_USEC_PER_SEC); g_get_monotonic_time() < end;
       g_usleep(10 * 1000))
    if (status_of_task(server, task_id) == "completed")
      return seconds_since(start);
  return -1;
}

void restart(PgServer &server) {
  std::string error;
  fail_unless(server.start_again(error), "PostgreSQL did not start again: %s", error.c_str());
}

// Runs of the tests of what is paid during an outage: they create at once.
const OutagePolicy kAtOnce{0, nullptr, nullptr};

void assert_quiet(const InProcessRun &run) {
  fail_unless(run.eos, "the run did not complete: %s", run.bus.c_str());
  fail_unless(run.warnings.empty(), "the run warned: %s", run.bus.c_str());
}

} // namespace

// (a) One process, runs in a loop: the server stops between two runs, a run completes
// meanwhile in memory (and says so), the server returns, and within 2 s it holds that run's
// row without any run asking; the next run writes the server directly.
GST_START_TEST(test_daemon_meets_its_server_again) {
  auto server = start_server();
  auto emu = kirin_test_start_emulator(kKey);
  assert_quiet(run_here(*emu, server->uri(), nullptr, 1, false, "before"));
  server->stop();
  InProcessRun during = run_here(*emu, server->uri(), nullptr, 1, false, "during", kAtOnce);
  fail_unless(during.eos, "%s", during.bus.c_str());
  assert_warned(during, *server);
  restart(*server);
  const double after_s = wait_completed(*server, during.task_id, 2 * kirin_test_slowdown());
  g_print("the outage's row reached the server %.2f s after it started again\n", after_s);
  fail_unless(after_s >= 0, "the server never got task %s's row", during.task_id.c_str());

  InProcessRun next = run_here(*emu, server->uri(), nullptr, 1, false, "after");
  assert_quiet(next);
  assert_same_text(status_of_task(*server, next.task_id), "completed");
  fail_unless_equals_int(emu->create_count(), 3);
  auto rows = server->query("SELECT count(*) FROM gst_kirin.tasks");
  fail_unless_equals_string(rows[0][0].c_str(), "3");
}
GST_END_TEST;

// (b) The server restarts while a run waits for its task: the run completes, and the
// server's row of its task ends completed.
GST_START_TEST(test_server_restarted_while_a_run_waits) {
  auto server = start_server();
  auto emu = kirin_test_start_emulator(kKey);
  InProcessRun run = run_here(*emu, server->uri(), [&] {
    server->stop();
    restart(*server);
  });
  fail_unless(run.eos, "%s", run.bus.c_str());
  fail_if(contains(run.bus, server->password), "the password shows: %s", run.bus.c_str());
  const double after_s = wait_completed(*server, run.task_id, 3 * kirin_test_slowdown());
  g_print("the row was completed on the server %.2f s after the run ended\n", after_s);
  fail_unless(after_s >= 0, "task %s's row is %s on the server", run.task_id.c_str(),
              status_of_task(*server, run.task_id).c_str());
  // Once: the row the run claimed was advanced, not written again as a take of its own.
  auto rows = server->query("SELECT take FROM gst_kirin.tasks");
  fail_unless_equals_int(rows.size(), 1);
}
GST_END_TEST;

// (c) This process cannot reach the server (its role may not log in) while another element,
// on the server, pays for the same request: once this process reaches the server again its
// task becomes a take of its own, and a warning names both task IDs and the video.
GST_START_TEST(test_paid_twice_during_the_outage_becomes_two_takes) {
  auto server = start_server();
  auto emu = kirin_test_start_emulator(kKey);
  server->query("CREATE ROLE daemon LOGIN SUPERUSER PASSWORD '" + server->password + "'");
  const std::string daemon = "postgresql://daemon:" + server->password +
                             "@127.0.0.1:" + std::to_string(server->port) + "/kirin";
  assert_quiet(run_here(*emu, daemon, nullptr, 1, false, "warm"));
  server->query("ALTER ROLE daemon NOLOGIN");
  server->query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'daemon'");

  InProcessRun ours = run_here(*emu, daemon, nullptr, 1, false, "same", kAtOnce);
  fail_unless(ours.eos, "%s", ours.bus.c_str());
  fail_unless(contains(ours.bus, "postgresql://daemon@127.0.0.1"), "%s", ours.bus.c_str());
  InProcessRun theirs = run_here(*emu, server->uri(), nullptr, 1, false, "same");
  assert_quiet(theirs);
  fail_if(theirs.task_id == ours.task_id);
  server->query("ALTER ROLE daemon LOGIN");
  // The process reaches the server by itself; the next run then hears what came of it.
  bool back = false;
  for (gint64 end = g_get_monotonic_time() + 5 * G_USEC_PER_SEC;
       !back && g_get_monotonic_time() < end; g_usleep(10 * 1000))
    back = !server->query("SELECT 1 FROM pg_stat_activity WHERE usename = 'daemon'").empty();
  fail_unless(back, "the process never reached the server again");

  InProcessRun again = run_here(*emu, daemon, nullptr, 1, false, "same");
  fail_unless(again.eos, "%s", again.bus.c_str());
  fail_if(contains(again.bus, server->password), "the password shows: %s", again.bus.c_str());
  std::string warned;
  for (const std::string &w : again.warnings)
    if (contains(w, ours.task_id) && contains(w, theirs.task_id) && contains(w, "demo-5s"))
      warned = w;
  fail_if(warned.empty(), "no warning names tasks %s and %s: %s", ours.task_id.c_str(),
          theirs.task_id.c_str(), again.bus.c_str());
  g_print("%s\n", warned.c_str());
  auto rows = server->query("SELECT take, task_id, status FROM gst_kirin.tasks WHERE prompt = "
                            "'same' ORDER BY take");
  fail_unless_equals_int(rows.size(), 2);
  fail_unless(rows[0] == (std::vector<std::string>{"1", theirs.task_id, "completed"}));
  fail_unless(rows[1] == (std::vector<std::string>{"2", ours.task_id, "completed"}));
  // The next run of the process replays its own newest take, unpaid.
  fail_unless_equals_string(again.task_id.c_str(), ours.task_id.c_str());
  fail_unless_equals_int(emu->create_count(), 3);
}
GST_END_TEST;

// (d) A multi-host URI whose first server is down: runs use the second; and when the second
// stops in the middle, the process goes over to the first once it is back.
GST_START_TEST(test_multi_host_failover) {
  auto one = start_server();
  auto two = start_server();
  auto emu = kirin_test_start_emulator(kKey);
  // One password for both, as one role of a replicated pair would have.
  two->query("ALTER ROLE kirin PASSWORD '" + one->password + "'");
  two->password = one->password; // for the test's own queries too
  const std::string uri =
      "postgresql://kirin:" + one->password + "@127.0.0.1:" + std::to_string(one->port) +
      ",127.0.0.1:" + std::to_string(two->port) + "/kirin?target_session_attrs=read-write";
  one->stop();
  InProcessRun run = run_here(*emu, uri, nullptr, 1, false, "one");
  assert_quiet(run);
  assert_same_text(status_of_task(*two, run.task_id), "completed");

  restart(*one);
  two->stop();
  InProcessRun next = run_here(*emu, uri, nullptr, 1, false, "two");
  fail_unless(next.eos, "%s", next.bus.c_str());
  fail_if(contains(next.bus, one->password), "the password shows: %s", next.bus.c_str());
  assert_same_text(status_of_task(*one, next.task_id), "completed");
}
GST_END_TEST;

// (e) How soon after the server's return a new run writes it: under a second.
GST_START_TEST(test_reconnection_time) {
  auto server = start_server();
  auto emu = kirin_test_start_emulator(kKey);
  assert_quiet(run_here(*emu, server->uri(), nullptr, 1, false, "before"));
  server->stop();
  fail_unless(run_here(*emu, server->uri(), nullptr, 1, false, "during", kAtOnce).eos);
  restart(*server);
  const gint64 started = g_get_monotonic_time();
  std::atomic<double> first_row_s{-1};
  std::thread watcher([&] {
    for (gint64 end = started + 10 * G_USEC_PER_SEC; g_get_monotonic_time() < end;
         g_usleep(5 * 1000))
      if (!server->query("SELECT 1 FROM gst_kirin.tasks WHERE prompt = 'after'").empty()) {
        first_row_s = seconds_since(started);
        return;
      }
  });
  InProcessRun next = run_here(*emu, server->uri(), nullptr, 1, false, "after");
  watcher.join();
  assert_quiet(next);
  g_print("a new run wrote the server %.3f s after it started again\n", first_row_s.load());
  fail_unless(first_row_s >= 0, "the new run's row never reached the server");
  fail_unless(first_row_s < 1.0 * kirin_test_slowdown(), "%.3f s", first_row_s.load());
}
GST_END_TEST;

// (f) The policy, by default: a run that must pay while the server is away waits for it
// (and says so); the server returns meanwhile, and the run creates on the server itself.
GST_START_TEST(test_a_create_waits_for_the_server) {
  auto server = start_server();
  auto emu = kirin_test_start_emulator(kKey);
  server->stop();
  std::atomic<int> creates_before_return{-1};
  OutagePolicy policy{kOutageDefault,
                      [&] {
                        creates_before_return = emu->create_count();
                        restart(*server);
                      },
                      nullptr};
  InProcessRun run = run_here(*emu, server->uri(), nullptr, 1, false, "waits", policy);
  fail_unless(run.eos, "%s", run.bus.c_str());
  fail_unless(contains(run.bus, "Waiting for the journal's server " +
                                    server->uri_without_password() + ", which does not answer"),
              "%s", run.bus.c_str());
  fail_if(contains(run.bus, server->password), "the password shows: %s", run.bus.c_str());
  fail_unless_equals_int(creates_before_return.load(), 0);
  fail_unless_equals_int(emu->create_count(), 1);
  // Claimed on the server: no row waited to be written back.
  assert_same_text(status_of_task(*server, run.task_id), "completed");
}
GST_END_TEST;

// (g) journal-outage-wait=-1: never created without the server; the error says so.
GST_START_TEST(test_never_without_the_server) {
  auto server = start_server();
  auto emu = kirin_test_start_emulator(kKey);
  server->stop();
  InProcessRun run =
      run_here(*emu, server->uri(), nullptr, 1, false, "never", {-1, nullptr, nullptr});
  fail_if(run.eos, "%s", run.bus.c_str());
  fail_unless(contains(run.bus, "journal-outage-wait=-1 says to create no task without it"), "%s",
              run.bus.c_str());
  fail_unless(contains(run.bus, "nothing was paid"), "%s", run.bus.c_str());
  fail_unless(contains(run.bus, server->uri_without_password()), "%s", run.bus.c_str());
  fail_if(contains(run.bus, server->password), "the password shows: %s", run.bus.c_str());
  fail_unless_equals_int(emu->create_count(), 0);
}
GST_END_TEST;

// (h) journal-outage-wait=1: after a second without the server the run creates on this
// process's journal alone, which the server gets once it returns.
GST_START_TEST(test_creates_alone_after_the_wait) {
  auto server = start_server();
  auto emu = kirin_test_start_emulator(kKey);
  assert_quiet(run_here(*emu, server->uri(), nullptr, 1, false, "before"));
  server->stop();
  const gint64 start = g_get_monotonic_time();
  InProcessRun run =
      run_here(*emu, server->uri(), nullptr, 1, false, "alone", {1, nullptr, nullptr});
  fail_unless(run.eos, "%s", run.bus.c_str());
  fail_unless(seconds_since(start) >= 1.0, "created before the wait was over");
  fail_unless(contains(run.bus, "up to 1 s before paying"), "%s", run.bus.c_str());
  assert_warned(run, *server);
  fail_unless_equals_int(emu->create_count(), 2);
  restart(*server);
  fail_unless(wait_completed(*server, run.task_id, 2 * kirin_test_slowdown()) >= 0,
              "the server never got task %s's row", run.task_id.c_str());
}
GST_END_TEST;

// (i) A request this process knows (paid before the outage) replays during it without any
// wait, also with journal-outage-wait=-1.
GST_START_TEST(test_a_replay_needs_no_server) {
  auto server = start_server();
  auto emu = kirin_test_start_emulator(kKey);
  InProcessRun paid = run_here(*emu, server->uri(), nullptr, 1, false, "known");
  assert_quiet(paid);
  server->stop();
  InProcessRun again =
      run_here(*emu, server->uri(), nullptr, 1, false, "known", {-1, nullptr, nullptr});
  fail_unless(again.eos, "%s", again.bus.c_str());
  fail_unless_equals_string(again.task_id.c_str(), paid.task_id.c_str());
  fail_if(contains(again.bus, "Waiting for the journal's server"), "%s", again.bus.c_str());
  fail_unless_equals_int(emu->create_count(), 1);
}
GST_END_TEST;

// (j) The server is stopped between a run's claim and its "sending" mark (placed: the
// element is held at the message it posts in between). The create is not sent on that
// claim; the run waits for the server as the policy says, the server returns, and the run
// takes its claim over there and pays once.
GST_START_TEST(test_server_stopped_between_claim_and_mark) {
  auto server = start_server();
  auto emu = kirin_test_start_emulator(kKey);
  std::atomic<int> creates_while_away{-1};
  OutagePolicy policy;
  policy.before_sending = [&] { server->stop_immediately(); };
  policy.on_waiting = [&] {
    creates_while_away = emu->create_count();
    restart(*server);
  };
  InProcessRun run = run_here(*emu, server->uri(), nullptr, 1, false, "window", policy);
  fail_unless(run.eos, "%s", run.bus.c_str());
  fail_if(contains(run.bus, server->password), "the password shows: %s", run.bus.c_str());
  fail_unless_equals_int(creates_while_away.load(), 0);
  fail_unless_equals_int(emu->create_count(), 1);
  auto rows = server->query("SELECT take, status, task_id FROM gst_kirin.tasks");
  fail_unless_equals_int(rows.size(), 1);
  fail_unless(rows[0] == (std::vector<std::string>{"1", "completed", run.task_id}), "%s %s",
              rows[0][1].c_str(), rows[0][2].c_str());
}
GST_END_TEST;

// (k) Eight gst-launch-1.0 processes ask for the same extension while the server is down:
// each waits for it (placed: the server starts again once all eight said so), and once it
// answers they pay once between them and save the same result.
GST_START_TEST(test_eight_processes_across_an_outage) {
  auto server = start_server();
  auto emu = kirin_test_start_emulator(kKey);
  WorkDir dir;
  assert_quiet(run_here(*emu, server->uri(), nullptr, 1, false, "schema"));
  server->stop();
  constexpr int kMachines = 8;
  std::vector<std::unique_ptr<Program>> machines;
  for (int i = 0; i < kMachines; i++)
    machines.push_back(machine(*emu, server->uri(), dir, "machine-" + std::to_string(i),
                               {"journal-outage-wait=120"}));
  int waiting = 0;
  for (gint64 end = g_get_monotonic_time() + 60 * G_USEC_PER_SEC;
       waiting < kMachines && g_get_monotonic_time() < end; g_usleep(20 * 1000)) {
    waiting = 0;
    for (auto &m : machines)
      waiting += contains(m->out(), "Waiting for the journal's server");
  }
  fail_unless_equals_int(waiting, kMachines);
  fail_unless_equals_int(emu->create_count(), 1); // the run that made the schema
  restart(*server);

  for (auto &m : machines) {
    finish(*m);
    fail_unless(m->exit_status == 0, "exit %d: %s", m->exit_status, m->both().c_str());
    fail_if(contains(m->both(), server->password), "the password shows: %s", m->both().c_str());
  }
  fail_unless_equals_int(emu->create_count(), 2);
  auto rows = server->query("SELECT status, task_id FROM gst_kirin.tasks WHERE prompt = ''");
  fail_unless_equals_int(rows.size(), 1);
  fail_unless_equals_string(rows[0][0].c_str(), "completed");
  const std::string served = result_bytes(*emu, rows[0][1]);
  for (int i = 0; i < kMachines; i++) {
    std::string saved = kirin_test_read_file(dir.file("machine-" + std::to_string(i) + ".mp4"));
    fail_unless(!saved.empty() && saved == served, "machine %d saved other bytes", i);
  }
}
GST_END_TEST;

static Suite *fleet_outage_suite() {
  Suite *s = suite_create("fleet-outage");
  TCase *tc = tcase_create("outage");
  tcase_set_timeout(tc, 120);
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_daemon_meets_its_server_again);
  tcase_add_test(tc, test_server_restarted_while_a_run_waits);
  tcase_add_test(tc, test_paid_twice_during_the_outage_becomes_two_takes);
  tcase_add_test(tc, test_multi_host_failover);
  tcase_add_test(tc, test_reconnection_time);
  tcase_add_test(tc, test_a_create_waits_for_the_server);
  tcase_add_test(tc, test_never_without_the_server);
  tcase_add_test(tc, test_creates_alone_after_the_wait);
  tcase_add_test(tc, test_a_replay_needs_no_server);
  tcase_add_test(tc, test_server_stopped_between_claim_and_mark);
  tcase_add_test(tc, test_eight_processes_across_an_outage);
  return s;
}

int main(int argc, char **argv) {
  kirin_test_init(&argc, &argv, "fleet-outage");
  return gst_check_run_suite(fleet_outage_suite(), "fleet-outage", __FILE__);
}
