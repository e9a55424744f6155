// The journal a fleet shares (journal=postgresql://...): processes with caches of their own
// and one PostgreSQL server, started by the test on loopback in a directory of its own.
// Claimers killed at the moments that matter, the server stopped in the middle of a run or
// never there, and the password, which must never show.
#include "common.h"

#include "debug-capture.h"
#include "emulator-fixture.h"
#include "fleet-run.h"
#include "pg-server.h"
#include "program.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

namespace {

void kill_now(Program &program) {
  g_subprocess_send_signal(program.process, SIGKILL);
  kirin_test_wait_up_to(program, 10);
}

// The newest row of the server's journal: status, task ID and external task ID.
std::vector<std::string> newest_row(PgServer &server) {
  auto rows = server.query("SELECT status, coalesce(task_id, ''), external_task_id FROM "
                           "gst_kirin.tasks ORDER BY id DESC LIMIT 1");
  return rows.empty() ? std::vector<std::string>{"", "", ""} : rows.front();
}

// Waits (bounded) until the newest row has `status`.
bool wait_for_status(PgServer &server, const std::string &status) {
  for (gint64 end = g_get_monotonic_time() + 30 * G_USEC_PER_SEC; g_get_monotonic_time() < end;
       g_usleep(10 * 1000))
    if (newest_row(server)[0] == status)
      return true;
  return false;
}

// The backend holding the claim of the newest row, by docs/journal.md's query of the claims
// in progress ("" when no one holds it).
std::string claimer_backend(PgServer &server) {
  auto rows = server.query(
      "SELECT t.id, t.status, t.external_task_id, t.claimer_host, t.claimer_pid, l.pid AS backend "
      "FROM gst_kirin.tasks t LEFT JOIN pg_locks l ON l.locktype = 'advisory' AND l.granted "
      "AND l.objsubid = 1 AND (l.classid::bigint << 32 | l.objid::bigint) = ('x' || "
      "substr(encode(sha256(convert_to('kirin-take-' || t.request_key || '-' || t.take, "
      "'UTF8')), 'hex'), 1, 16))::bit(64)::bigint WHERE t.status IN ('claimed', 'sending') "
      "ORDER BY t.id DESC");
  return rows.empty() ? "" : rows[0][5];
}

// Waits (bounded) until `count` processes are connected to the server's journal.
bool wait_for_connections(PgServer &server, int count) {
  for (gint64 end = g_get_monotonic_time() + 30 * G_USEC_PER_SEC; g_get_monotonic_time() < end;
       g_usleep(10 * 1000))
    if (server.connections("gst-kirin") >= count)
      return true;
  return false;
}

} // namespace

// Six machines with caches of their own ask for the same extension at once: one pays, the
// five others wait for it and attach, and all six save the same video.
GST_START_TEST(test_six_processes_one_create) {
  auto server = start_server();
  auto emu = kirin_test_start_emulator(kKey);
  WorkDir dir;
  constexpr int kMachines = 6;
  // The create stays unanswered until all six are connected to the journal.
  emu->hold(kirin_emu::Route::Create);
  std::vector<std::unique_ptr<Program>> machines;
  for (int i = 0; i < kMachines; i++)
    machines.push_back(machine(*emu, server->uri(), dir, "machine-" + std::to_string(i)));
  fail_unless_equals_int(emu->wait_held(kirin_emu::Route::Create, 1, 30000), 1);
  fail_unless(wait_for_connections(*server, kMachines), "only %d of %d machines connected",
              server->connections("gst-kirin"), kMachines);
  fail_unless_equals_int(emu->create_count(), 1);
  emu->release(kirin_emu::Route::Create);

  for (auto &m : machines) {
    finish(*m);
    fail_unless(m->exit_status == 0, "exit %d: %s", m->exit_status, m->both().c_str());
    fail_if(contains(m->out(), "in memory"), "a machine left the shared journal: %s",
            m->out().c_str());
  }
  fail_unless_equals_int(emu->create_count(), 1);
  std::string task_id = emu->requests().front().task_id;
  std::string served = result_bytes(*emu, task_id);
  for (int i = 0; i < kMachines; i++) {
    std::string saved = kirin_test_read_file(dir.file("machine-" + std::to_string(i) + ".mp4"));
    fail_unless(!saved.empty() && saved == served, "machine %d saved other bytes", i);
  }
  auto rows = server->query("SELECT status, task_id FROM gst_kirin.tasks");
  fail_unless_equals_int(rows.size(), 1);
  fail_unless_equals_string(rows[0][0].c_str(), "completed");
  fail_unless_equals_string(rows[0][1].c_str(), task_id.c_str());
  // The machines that waited said for whom.
  int waited = 0;
  for (auto &m : machines)
    waited += contains(m->out(), "is creating the task") && contains(m->out(), " on ");
  fail_unless(waited >= 1, "no machine said it waited for another");
}
GST_END_TEST;

// The claimer is killed while its create waits for the provider's answer: the task may
// exist, so the machine waiting for it stops with the error naming the external ID, within
// about a second of the death.
GST_START_TEST(test_claimer_killed_while_create_unanswered) {
  auto server = start_server();
  auto emu = kirin_test_start_emulator(kKey);
  WorkDir dir;
  emu->hold(kirin_emu::Route::Create);
  auto claimer = machine(*emu, server->uri(), dir, "claimer");
  fail_unless_equals_int(emu->wait_held(kirin_emu::Route::Create, 1, 30000), 1);
  fail_unless(wait_for_status(*server, "sending"));
  const std::string external_id = newest_row(*server)[2];
  auto waiter = machine(*emu, server->uri(), dir, "waiter");
  fail_unless(wait_for_connections(*server, 2));
  // The waiter asks again every second at most: let it find the claim busy first.
  for (gint64 end = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;
       !contains(waiter->out(), "is creating the task") && g_get_monotonic_time() < end;
       g_usleep(10 * 1000))
    ;
  fail_unless(contains(waiter->out(), "is creating the task"), "%s", waiter->both().c_str());

  fail_if(claimer_backend(*server).empty(), "the claim has no live holder");
  gint64 killed_at = g_get_monotonic_time();
  kill_now(*claimer);
  finish(*waiter);
  fail_unless(claimer_backend(*server).empty(), "the dead claimer's claim is still held");
  double after_s = (g_get_monotonic_time() - killed_at) / (double)G_USEC_PER_SEC;
  g_print("the waiter stopped %.2f s after the claimer's death\n", after_s);
  fail_unless(waiter->exit_status != 0, "the waiter did not fail: %s", waiter->both().c_str());
  fail_unless(contains(waiter->both(), external_id) && contains(waiter->both(), "fresh=true"),
              "the error does not name %s and fresh=true: %s", external_id.c_str(),
              waiter->both().c_str());
  fail_unless(after_s < 2.5 * kirin_test_slowdown(), "the waiter took %.2f s after the death",
              after_s);
  fail_unless_equals_int(emu->create_count(), 1);
  emu->release(kirin_emu::Route::Create);
}
GST_END_TEST;

// The claimer is killed while it waits for its task: the task was recorded, so the next
// machine attaches to it, pays nothing, and saves its result.
GST_START_TEST(test_claimer_killed_while_waiting_for_task) {
  auto server = start_server();
  auto emu = kirin_test_start_emulator(kKey);
  WorkDir dir;
  // The task's final poll is held: the claimer is waiting for it when it dies.
  kirin_emu::HoldFilter final_only;
  final_only.only_final = true;
  emu->hold(kirin_emu::Route::Poll, final_only);
  auto claimer = machine(*emu, server->uri(), dir, "claimer");
  fail_unless(emu->wait_held(kirin_emu::Route::Poll, 1, 30000) >= 1);
  fail_unless(wait_for_status(*server, "created"));
  const std::string task_id = newest_row(*server)[1];
  gint64 killed_at = g_get_monotonic_time();
  kill_now(*claimer);
  emu->release(kirin_emu::Route::Poll);

  auto next = machine(*emu, server->uri(), dir, "next");
  finish(*next);
  double after_s = (g_get_monotonic_time() - killed_at) / (double)G_USEC_PER_SEC;
  g_print("the next machine saved the result %.2f s after the claimer's death\n", after_s);
  fail_unless(next->exit_status == 0, "%s", next->both().c_str());
  fail_unless_equals_int(emu->create_count(), 1);
  fail_unless(kirin_test_read_file(dir.file("next.mp4")) == result_bytes(*emu, task_id));
  fail_unless(contains(next->out(), task_id));
  const std::string status = newest_row(*server)[0];
  fail_unless_equals_string(status.c_str(), "completed");
}
GST_END_TEST;

// ---- the server gone, silent, and the password ----

// A run without its server: it completes, the process says so naming the server without the
// password, and goes on with its journal in memory: the same request again replays the task,
// unpaid. The warning is the run's when the journal failed while it ran; when the write that
// failed was its last (the record of its completion, made as its download starts), the run
// may have ended first, and the process says it on the next run's bus.
void assert_completed_then_paid_once(kirin_emu::Emulator &emu, const PgServer &server,
                                     const InProcessRun &run) {
  fail_unless(run.eos, "the run did not complete: %s", run.bus.c_str());
  InProcessRun again = run_here(emu, server.uri());
  InProcessRun both = run;
  both.warnings.insert(both.warnings.end(), again.warnings.begin(), again.warnings.end());
  both.bus += again.bus;
  assert_warned(both, server);
  fail_unless(again.eos, "%s", again.bus.c_str());
  fail_unless_equals_string(again.task_id.c_str(), run.task_id.c_str());
  fail_unless_equals_int(emu.create_count(), 1);
}

GST_START_TEST(test_server_stopped_in_the_middle_of_a_run) {
  auto server = start_server();
  auto emu = kirin_test_start_emulator(kKey);
  InProcessRun run = run_here(*emu, server->uri(), [&] { server->stop(); });
  assert_completed_then_paid_once(*emu, *server, run);
}
GST_END_TEST;

GST_START_TEST(test_server_unreachable_from_the_start) {
  auto server = start_server();
  server->stop();
  auto emu = kirin_test_start_emulator(kKey);
  InProcessRun run = run_here(*emu, server->uri());
  assert_completed_then_paid_once(*emu, *server, run);
}
GST_END_TEST;

// ---- the password at GST_DEBUG=*:9 ----

GST_START_TEST(test_password_never_shows_at_debug_9) {
  auto server = start_server();
  auto emu = kirin_test_start_emulator(kKey);
  kirin_test_capture_debug_start();
  // A whole run on the server, then the server stopped in the middle of one, then absent.
  InProcessRun paid = run_here(*emu, server->uri());
  fail_unless(paid.eos, "%s", paid.bus.c_str());
  InProcessRun fresh_run =
      run_here(*emu, server->uri() + "?application_name=gst-kirin", [&] { server->stop(); });
  InProcessRun absent = run_here(*emu, server->uri());
  const std::string captured = kirin_test_capture_debug_stop();
  g_print("scanned %zu bytes of debug output\n", captured.size());
  fail_unless(captured.size() > 100000, "only %zu bytes of debug output", captured.size());
  fail_unless(contains(captured, server->uri_without_password()),
              "the debug log never names the server");
  for (const std::string &text : {captured, paid.bus, fresh_run.bus, absent.bus})
    fail_if(
        contains(text, server->password), "the password shows: ...%s",
        text.substr(text.find(server->password) > 200 ? text.find(server->password) - 200 : 0, 400)
            .c_str());
}
GST_END_TEST;

// The password in PGPASSFILE rather than the URI, as the user guide advises for gst-launch.
GST_START_TEST(test_password_from_pgpassfile) {
  auto server = start_server();
  auto emu = kirin_test_start_emulator(kKey);
  WorkDir dir;
  std::string passfile = dir.file("pgpass");
  std::string line =
      "127.0.0.1:" + std::to_string(server->port) + ":kirin:kirin:" + server->password + "\n";
  fail_unless(g_file_set_contents(passfile.c_str(), line.c_str(), -1, nullptr));
  g_chmod(passfile.c_str(), 0600);
  auto m = machine(*emu, server->uri_without_password(), dir, "passfile", {},
                   {{"PGPASSFILE", passfile}});
  finish(*m);
  fail_unless(m->exit_status == 0, "%s", m->both().c_str());
  fail_if(contains(m->both(), "in memory"), "the journal was not used: %s", m->both().c_str());
  const std::string status = newest_row(*server)[0];
  fail_unless_equals_string(status.c_str(), "completed");
  g_unlink(passfile.c_str());
}
GST_END_TEST;

// A chain on the server: a row per step; the same chain again replays both steps, and
// `fresh` pays for a new take of each.
GST_START_TEST(test_chain_replay_and_fresh_on_the_server) {
  auto server = start_server();
  auto emu = kirin_test_start_emulator(kKey);
  InProcessRun paid = run_here(*emu, server->uri(), nullptr, 2);
  fail_unless(paid.eos && paid.warnings.empty(), "%s", paid.bus.c_str());
  fail_unless_equals_int(emu->create_count(), 2);
  auto rows = server->query("SELECT step, take, status FROM gst_kirin.tasks ORDER BY id");
  fail_unless_equals_int(rows.size(), 2);
  fail_unless(rows[0] == (std::vector<std::string>{"1", "1", "completed"}));
  fail_unless(rows[1] == (std::vector<std::string>{"2", "1", "completed"}));
  InProcessRun replayed = run_here(*emu, server->uri(), nullptr, 2);
  fail_unless(replayed.eos, "%s", replayed.bus.c_str());
  fail_unless_equals_int(emu->create_count(), 2);
  fail_unless_equals_string(replayed.task_id.c_str(), paid.task_id.c_str());
  fail_unless(contains(replayed.bus, "replayed"), "%s", replayed.bus.c_str());

  InProcessRun fresh = run_here(*emu, server->uri(), nullptr, 2, true);
  fail_unless(fresh.eos, "%s", fresh.bus.c_str());
  fail_unless_equals_int(emu->create_count(), 4);
  fail_if(fresh.task_id == paid.task_id);
  // Step 1 again, as take 2; step 2 extends the new step 1's video: a request of its own.
  rows = server->query("SELECT step, take FROM gst_kirin.tasks WHERE status = 'completed' "
                       "ORDER BY id");
  fail_unless_equals_int(rows.size(), 4);
  fail_unless(rows[2] == (std::vector<std::string>{"1", "2"}));
  fail_unless(rows[3] == (std::vector<std::string>{"2", "1"}));
}
GST_END_TEST;

// A server that takes connections and never answers: the run that uses it waits, every
// other run of the process goes on, and stopping the waiting one takes a moment, not the
// connection's timeout.
GST_START_TEST(test_silent_server_delays_only_its_own_run) {
  auto emu = kirin_test_start_emulator(kKey);
  // It listens on loopback and never accepts: the kernel completes the connection, and
  // libpq waits for an answer that never comes.
  g_autoptr(GSocketListener) silent = g_socket_listener_new();
  g_autoptr(GInetAddress) loopback = g_inet_address_new_loopback(G_SOCKET_FAMILY_IPV4);
  g_autoptr(GSocketAddress) any_port = g_inet_socket_address_new(loopback, 0);
  g_autoptr(GSocketAddress) bound = nullptr;
  fail_unless(g_socket_listener_add_address(silent, any_port, G_SOCKET_TYPE_STREAM,
                                            G_SOCKET_PROTOCOL_TCP, nullptr, &bound, nullptr));
  guint16 port = g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(bound));
  std::string journal =
      "postgresql://kirin:never-shown@127.0.0.1:" + std::to_string(port) + "/kirin";

  GstElement *waiting = gst_pipeline_new(nullptr);
  GstElement *src = kirin_test_make_src(*emu);
  g_object_set(src, "video-id", "demo-5s", "journal", journal.c_str(), "external-task-id", "silent",
               nullptr);
  GstElement *sink = gst_element_factory_make("fakesink", nullptr);
  gst_bin_add_many(GST_BIN(waiting), src, sink, nullptr);
  fail_unless(gst_element_link(src, sink));
  fail_if(gst_element_set_state(waiting, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE);

  // Meanwhile a run on a file journal, in the same process, is not held up.
  InProcessRun other = run_here(*emu, std::string(g_getenv("XDG_CACHE_HOME")) + "/other.db");
  fail_unless(other.eos, "%s", other.bus.c_str());
  fail_unless_equals_int(emu->create_count(), 1);

  gint64 before = g_get_monotonic_time();
  gst_element_set_state(waiting, GST_STATE_NULL);
  double stop_s = (g_get_monotonic_time() - before) / (double)G_USEC_PER_SEC;
  g_print("stopping the run whose server is silent took %.2f s\n", stop_s);
  fail_unless(stop_s < 5 * kirin_test_slowdown(), "stopping took %.2f s", stop_s);
  fail_unless_equals_int(emu->create_count(), 1);
  gst_object_unref(waiting);
}
GST_END_TEST;

// The connection to the server is lost after the claim, before the create is marked as
// sending (at the "Extending video" progress, which the element posts in between): the lock
// that kept the claim went with it, so the create is not sent on that claim. The run asks
// the journal again, takes its own claim over on the server, and pays once.
GST_START_TEST(test_connection_lost_before_sending_claims_again) {
  auto server = start_server();
  auto emu = kirin_test_start_emulator(kKey);
  std::atomic<int> creates_at_loss{-1};
  OutagePolicy policy;
  policy.before_sending = [&] {
    server->query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                  "WHERE application_name = 'gst-kirin'");
    creates_at_loss = emu->create_count();
  };
  InProcessRun run = run_here(*emu, server->uri(), nullptr, 1, false, "", policy);
  fail_unless(run.eos, "%s", run.bus.c_str());
  fail_if(contains(run.bus, server->password), "the password shows: %s", run.bus.c_str());
  fail_unless_equals_int(creates_at_loss.load(), 0);
  fail_unless_equals_int(emu->create_count(), 1);
  auto rows = server->query("SELECT take, status, task_id FROM gst_kirin.tasks");
  fail_unless_equals_int(rows.size(), 1);
  fail_unless(rows[0] == (std::vector<std::string>{"1", "completed", run.task_id}), "%s %s",
              rows[0][1].c_str(), rows[0][2].c_str());
}
GST_END_TEST;

static Suite *fleet_suite() {
  Suite *s = suite_create("fleet");
  TCase *tc = tcase_create("server");
  tcase_set_timeout(tc, 240);
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_six_processes_one_create);
  tcase_add_test(tc, test_claimer_killed_while_create_unanswered);
  tcase_add_test(tc, test_claimer_killed_while_waiting_for_task);
  tcase_add_test(tc, test_server_stopped_in_the_middle_of_a_run);
  tcase_add_test(tc, test_server_unreachable_from_the_start);
  tcase_add_test(tc, test_password_never_shows_at_debug_9);
  tcase_add_test(tc, test_password_from_pgpassfile);
  tcase_add_test(tc, test_chain_replay_and_fresh_on_the_server);
  tcase_add_test(tc, test_silent_server_delays_only_its_own_run);
  tcase_add_test(tc, test_connection_lost_before_sending_claims_again);
  return s;
}

int main(int argc, char **argv) {
  kirin_test_init(&argc, &argv, "fleet");
  return gst_check_run_suite(fleet_suite(), "fleet", __FILE__);
}
