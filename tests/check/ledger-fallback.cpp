// The journals the ledger cannot use, and the in-memory ledger it falls back to: a corrupt
// file (moved aside), a path it cannot write, a full disk, a server that is absent or has a
// newer schema; and the names its warnings give a journal (a server's without the password).
#include "ledger-fixture.h"

#include <glib/gstdio.h>

#include <csignal>
#include <cstdlib>
#include <sys/resource.h>

std::string read_file(const std::string &path) {
  g_autofree char *contents = nullptr;
  gsize length = 0;
  fail_unless(g_file_get_contents(path.c_str(), &contents, &length, nullptr), "%s", path.c_str());
  return std::string(contents, length);
}

// The one file of `dir` whose name starts with `prefix`.
std::string find_file(const std::string &dir, const std::string &prefix) {
  GDir *d = g_dir_open(dir.c_str(), 0, nullptr);
  fail_unless(d != nullptr);
  std::string found;
  while (const char *name = g_dir_read_name(d))
    if (g_str_has_prefix(name, prefix.c_str()) && !g_str_has_suffix(name, "-wal") &&
        !g_str_has_suffix(name, "-shm"))
      found = dir + "/" + name;
  g_dir_close(d);
  return found;
}

// Ends a forked child as a process ends (not _exit): its in-memory ledger's claims directory
// goes with it, as at any process's end, instead of staying in the temporary directory.
[[noreturn]] void child_exit(int status) {
  std::exit(status);
}

void check_replaces_corrupt_file(const std::string &path, const std::string &garbage) {
  std::string warning;
  auto ledger = Ledger::open(path, warning);
  fail_unless(ledger != nullptr);
  fail_unless_equals_string(ledger->path().c_str(), path.c_str());
  fail_unless(warning.find(path + " ") != std::string::npos, "warning: %s", warning.c_str());
  g_autofree char *dir = g_path_get_dirname(path.c_str());
  std::string aside = find_file(dir, "journal.db.corrupt-");
  fail_if(aside.empty(), "nothing moved aside");
  fail_unless(warning.find(aside) != std::string::npos, "warning: %s", warning.c_str());
  fail_unless(read_file(aside) == garbage, "the corrupt file was not kept as it was");
  create_ok(*ledger, request(), "task-new");
  ledger.reset();
  auto again = open_ok(path);
  fail_unless(claim_ok(*again, request()).result == ClaimResult::Recorded);
}

GST_START_TEST(test_garbage_file_is_moved_aside) {
  TestDir t;
  g_mkdir_with_parents((t.dir + "/gst-kirin").c_str(), 0700);
  std::string garbage;
  for (int i = 0; i < 8192; i++)
    garbage += (char)("not a database\n"[i % 15]);
  fail_unless(g_file_set_contents(t.path.c_str(), garbage.data(), garbage.size(), nullptr));
  check_replaces_corrupt_file(t.path, garbage);
}
GST_END_TEST;

// A real database whose pages past the header were overwritten.
GST_START_TEST(test_damaged_database_is_moved_aside) {
  TestDir t;
  {
    auto ledger = open_ok(t.path);
    for (int i = 0; i < 50; i++)
      create_ok(*ledger, request((std::to_string(i) + std::string(200, 'p')).c_str()), "task");
  }
  std::string damaged = read_file(t.path);
  fail_unless(damaged.size() > 4 * 4096, "size %zu", damaged.size());
  for (size_t i = 4096; i < damaged.size(); i++)
    damaged[i] = (char)(i * 7919 % 251);
  fail_unless(g_file_set_contents(t.path.c_str(), damaged.data(), damaged.size(), nullptr));
  check_replaces_corrupt_file(t.path, damaged);
}
GST_END_TEST;

GST_START_TEST(test_unwritable_path_falls_back_to_memory) {
  TestDir t;
  std::string file = t.dir + "/a-file";
  fail_unless(g_file_set_contents(file.c_str(), "x", 1, nullptr));
  std::string path = file + "/journal.db", warning;
  auto ledger = Ledger::open(path, warning);
  fail_unless(ledger != nullptr);
  fail_unless(warning.find(path) != std::string::npos, "warning: %s", warning.c_str());
  fail_unless_equals_string(ledger->path().c_str(), "");
  create_ok(*ledger, request(), "task-m");
  // The process's in-memory ledger is one, whichever object opens it.
  auto other = open_ok("");
  ClaimOutcome out = claim_ok(*other, request());
  fail_unless(out.result == ClaimResult::Recorded);
  fail_unless_equals_string(out.row.task_id.c_str(), "task-m");
}
GST_END_TEST;

// In a child that may not write the directory (as root, that means another user).
GST_START_TEST(test_permission_denied_falls_back_to_memory) {
  TestDir t;
  fail_unless(g_mkdir_with_parents((t.dir + "/gst-kirin").c_str(), 0700) == 0);
  // The directory is there to read, but not to write in.
  fail_unless(g_chmod(t.dir.c_str(), 0755) == 0);
  fail_unless(g_chmod((t.dir + "/gst-kirin").c_str(), 0555) == 0);
  pid_t pid = fork();
  fail_unless(pid >= 0);
  if (pid == 0) {
    if (getuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
      child_exit(2);
    std::string warning, error;
    auto ledger = Ledger::open(t.path, warning);
    g_printerr("permission denied: %s\n", warning.c_str());
    ClaimOutcome out;
    child_exit(ledger && ledger->path().empty() && warning.find(t.path) != std::string::npos &&
                       ledger->claim(request(), false, "gen", out, error) &&
                       out.result == ClaimResult::Claimed
                   ? 0
                   : 3);
  }
  int status = wait_child(pid);
  fail_unless(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
  g_chmod((t.dir + "/gst-kirin").c_str(), 0700);
}
GST_END_TEST;

// In a child whose files cannot grow: the ledger's calls fail with a reason, and the
// in-memory ledger takes over.
[[noreturn]] void disk_full_child(const TestDir &t) {
  std::string warning, error;
  auto ledger = Ledger::open(t.path, warning);
  signal(SIGXFSZ, SIG_IGN);
  struct rlimit limit = {64 * 1024, 64 * 1024};
  if (!ledger || setrlimit(RLIMIT_FSIZE, &limit) != 0)
    child_exit(2);
  ClaimOutcome out;
  if (ledger->claim(request(std::string(1 << 20, 'p').c_str()), false, "gen", out, error) ||
      error.empty())
    child_exit(3);
  g_printerr("disk full, as expected: %s\n", error.c_str());
  auto memory = Ledger::open_memory(error);
  if (!memory || !memory->claim(request(), false, "gen", out, error) ||
      out.result != ClaimResult::Claimed || !memory->mark_sending(out.claim, error) ||
      !memory->record_task_id(out.claim, "task-m", error))
    child_exit(4);
  // A new file cannot even get its schema: the in-memory ledger, with a warning.
  limit.rlim_cur = 0;
  if (setrlimit(RLIMIT_FSIZE, &limit) != 0)
    child_exit(5);
  auto fallback = Ledger::open(t.dir + "/other/journal.db", warning);
  g_printerr("opening a full disk: %s\n", warning.c_str());
  if (!fallback || warning.empty() || !fallback->path().empty())
    child_exit(6);
  child_exit(fallback->claim(request(), false, "gen", out, error) &&
                     out.result == ClaimResult::Recorded
                 ? 0
                 : 7);
}

GST_START_TEST(test_disk_full_is_an_error_not_a_crash) {
  TestDir t;
  open_ok(t.path); // the file exists before its disk fills
  pid_t pid = fork();
  fail_unless(pid >= 0);
  if (pid == 0)
    disk_full_child(t);
  int status = wait_child(pid);
  fail_unless(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
}
GST_END_TEST;

GST_START_TEST(test_server_names_without_password) {
  const std::pair<const char *, const char *> cases[] = {
      {"postgresql://kirin:s3cret@db:5432/media?sslmode=require",
       "postgresql://kirin@db:5432/media?sslmode=require"},
      {"postgres://db/media?password=s3cret&connect_timeout=3",
       "postgres://db/media?connect_timeout=3"},
      {"postgresql://db/m?pass%77ord=s3cret", "postgresql://db/m"},
      {"postgresql://u:a%40b@h", "postgresql://u@h"},
      {"postgresql:///media", "postgresql:///media"},
      {"/home/me/journal.db", "/home/me/journal.db"},
  };
  for (const auto &[journal, shown] : cases) {
    const std::string name = kirin::journal_display_name(journal);
    fail_unless_equals_string(name.c_str(), shown);
  }
  fail_unless(kirin::journal_on_server("postgres://h/d"));
  fail_if(kirin::journal_on_server("/tmp/postgresql://x"));
  fail_unless(kirin::journal_uri_readable("postgresql://u:p@h:5/d?sslmode=disable"));
  fail_if(kirin::journal_uri_readable("postgresql://h/d?no_such_option=1"));
}
GST_END_TEST;

// A server that is not there, or has a newer schema: the in-memory ledger, and a warning
// that names the server without the password.
GST_START_TEST(test_server_unusable_falls_back_to_memory) {
  TestDir t;
  std::string warning;
  auto ledger = Ledger::open(t.journal, warning);
  fail_unless(ledger && warning.empty(), "%s", warning.c_str());
  ledger.reset();
  std::string name = t.journal.substr(t.journal.rfind('/') + 1);
  server->query_in(name, "UPDATE gst_kirin.schema_version SET version = 3");
  ledger = Ledger::open(t.journal, warning);
  fail_unless(ledger && ledger->path().empty());
  fail_unless(warning.find("newer") != std::string::npos, "%s", warning.c_str());
  fail_unless(warning.find(kirin::journal_display_name(t.journal)) != std::string::npos, "%s",
              warning.c_str());
  fail_unless(warning.find(server->password) == std::string::npos, "%s", warning.c_str());

  // Nothing listens on the port.
  std::string absent = "postgresql://kirin:" + server->password +
                       "@127.0.0.1:" + std::to_string(kirin_test_free_port()) + "/kirin";
  ledger = Ledger::open(absent, warning);
  fail_unless(ledger && ledger->path().empty());
  fail_unless(warning.find(kirin::journal_display_name(absent)) != std::string::npos, "%s",
              warning.c_str());
  fail_unless(warning.find(server->password) == std::string::npos, "%s", warning.c_str());
  g_print("%s\n", warning.c_str());
}
GST_END_TEST;

static Suite *ledger_fallback_suite() {
  Suite *s = suite_create("ledger-fallback");
  TCase *tc = tcase_create("general");
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_garbage_file_is_moved_aside);
  tcase_add_test(tc, test_damaged_database_is_moved_aside);
  tcase_add_test(tc, test_unwritable_path_falls_back_to_memory);
  tcase_add_test(tc, test_permission_denied_falls_back_to_memory);
  tcase_add_test(tc, test_disk_full_is_an_error_not_a_crash);
  tcase_add_test(tc, test_server_names_without_password);

  // A server it cannot use.
  TCase *pg = add_server_case(s);
  tcase_add_test(pg, test_server_unusable_falls_back_to_memory);
  return s;
}

GST_CHECK_MAIN(ledger_fallback);
