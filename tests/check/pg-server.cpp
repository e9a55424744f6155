// The journal on a PostgreSQL server. For now, the server fixture itself (pg-server.h): that
// it starts, checks passwords, keeps its data over a restart, goes quiet when stopped and
// leaves nothing behind. Each test starts a server of its own.
#include "common.h"

#include "pg-server.h"

#include <csignal>
#include <string>

namespace {

void start(PgServer &server) {
  std::string error;
  fail_unless(server.start(error), "the server did not start: %s", error.c_str());
}

// A libpq connection of the test's own; the caller PQfinishes it.
PGconn *connect_to(const std::string &uri) {
  std::string conninfo =
      uri + (uri.find('?') == std::string::npos ? "?" : "&") + "connect_timeout=10";
  return PQconnectdb(conninfo.c_str());
}

bool contains(const std::string &text, const std::string &part) {
  return text.find(part) != std::string::npos;
}

} // namespace

GST_START_TEST(test_server_answers) {
  PgServer server;
  start(server);
  auto rows = server.query("SELECT 1");
  fail_unless(rows.size() == 1 && rows[0].size() == 1, "SELECT 1 gave %d rows", (int)rows.size());
  assert_same_text(rows[0][0], "1");
  assert_same_text(server.query("SELECT current_database(), current_user")[0][0], "kirin");
  assert_same_text(server.query("SELECT current_database(), current_user")[0][1], "kirin");
}
GST_END_TEST;

GST_START_TEST(test_password_is_checked) {
  PgServer server;
  start(server);
  PGconn *good = connect_to(server.uri() + "?application_name=kirin-fixture-test");
  std::string message = PQerrorMessage(good);
  fail_unless(PQstatus(good) == CONNECTION_OK, "the password was refused: %s", message.c_str());
  fail_unless_equals_int(server.connections("kirin-fixture-test"), 1);
  PQfinish(good);

  std::string wrong = "postgresql://kirin:not-" + server.password +
                      "@127.0.0.1:" + std::to_string(server.port) + "/kirin";
  PGconn *refused = connect_to(wrong);
  message = PQerrorMessage(refused);
  fail_unless(PQstatus(refused) == CONNECTION_BAD, "a wrong password was let in");
  fail_unless(contains(message, "password authentication failed"), "refused with: %s",
              message.c_str());
  PQfinish(refused);
}
GST_END_TEST;

GST_START_TEST(test_restart_keeps_the_data) {
  PgServer server;
  start(server);
  server.query("CREATE TABLE kept (id integer, name text)");
  server.query("INSERT INTO kept VALUES (1, 'one'), (2, 'two')");
  int port = server.port;
  server.stop();
  std::string error;
  fail_unless(server.start_again(error), "the server did not start again: %s", error.c_str());
  fail_unless_equals_int(server.port, port);
  auto rows = server.query("SELECT id, name FROM kept ORDER BY id");
  fail_unless_equals_int((int)rows.size(), 2);
  assert_same_text(rows[1][1], "two");

  // Nor does a crash after a checkpoint (synchronous_commit is off: without one, the last
  // commits may still be in the server's memory when it dies).
  server.query("INSERT INTO kept VALUES (3, 'three')");
  server.query("CHECKPOINT");
  server.stop_immediately();
  fail_unless(server.start_again(error), "the server did not recover: %s", error.c_str());
  assert_same_text(server.query("SELECT count(*) FROM kept")[0][0], "3");
}
GST_END_TEST;

GST_START_TEST(test_stopped_server_answers_nothing) {
  PgServer server;
  start(server);
  server.stop();
  PGconn *connection = connect_to(server.uri());
  std::string message = PQerrorMessage(connection);
  fail_unless(PQstatus(connection) == CONNECTION_BAD, "a stopped server let a connection in");
  fail_unless(contains(message, "refused"), "failed with: %s", message.c_str());
  PQfinish(connection);
}
GST_END_TEST;

// The destructor stops the server and removes its directory.
GST_START_TEST(test_nothing_left_behind) {
  std::string dir;
  long postmaster = 0;
  {
    PgServer server;
    start(server);
    dir = server.dir;
    // The first line of postmaster.pid is the server's process id.
    postmaster = atol(kirin_test_read_file(dir + "/data/postmaster.pid").c_str());
    fail_unless(postmaster > 0);
    fail_unless(kill((pid_t)postmaster, 0) == 0);
  }
  fail_if(g_file_test(dir.c_str(), G_FILE_TEST_EXISTS), "%s is still there", dir.c_str());
  // Ended: gone, or a zombie that init has yet to reap (pg_ctl left it to init).
  std::string stat = kirin_test_read_file("/proc/" + std::to_string(postmaster) + "/stat");
  size_t name_end = stat.rfind(')');
  fail_unless(stat.empty() ||
                  (name_end != std::string::npos && stat.compare(name_end, 4, ") Z ") == 0),
              "the server %ld still runs: %s", postmaster, stat.c_str());
}
GST_END_TEST;

static Suite *pg_server_suite() {
  Suite *s = suite_create("pg-server");
  TCase *tc = tcase_create("fixture");
  tcase_set_timeout(tc, 120);
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_server_answers);
  tcase_add_test(tc, test_password_is_checked);
  tcase_add_test(tc, test_restart_keeps_the_data);
  tcase_add_test(tc, test_stopped_server_answers_nothing);
  tcase_add_test(tc, test_nothing_left_behind);
  return s;
}

int main(int argc, char **argv) {
  kirin_test_init(&argc, &argv, "pg-server");
  return gst_check_run_suite(pg_server_suite(), "pg-server", __FILE__);
}
