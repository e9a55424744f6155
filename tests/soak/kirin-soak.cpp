// The soak: one process running many channels (kirinextendsrc ! fakesink, one thread each),
// extension after extension against the emulator, as a playout application runs for weeks:
// repeated requests (replays), fresh takes, chains, kept copies, stops at random moments
// (NULL, READY, a seek, an EOS), 429s, 5xx answers, dropped and hung answers, expired URLs
// and emulator restarts, one channel whose application blocks 5 s in its sync handler, and
// half the channels on a PostgreSQL journal whose server restarts every 20 s. At the end it checks
// that no request was paid twice, that every paid task's ID reached the application and the
// journal, that memory and threads stayed flat, and that the blocked channel held up no other.
// Seeded: the same seed makes the same choices.
//
// Usage: kirin-soak [--seconds N] [--channels N] [--seed N] [--assert-flat] [--no-server]
// (tests/soak/README.md; tests/soak/run sets up the environment and runs it.)
#include "soak-channel.h"
#include "soak-emulator.h"
#include "soak-journal.h"

#include <gst/gst.h>
#include <malloc.h>
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <thread>
#include <unistd.h>

namespace {

using namespace soak;

struct Args {
  int seconds = 45, channels = 16;
  guint32 seed = 1;
  bool assert_flat = false;
  bool server = true; // half the channels on a PostgreSQL journal, restarted as they run
};

Args parse_args(int argc, char **argv) {
  Args args;
  for (int i = 1; i < argc; i++) {
    std::string arg = argv[i];
    const char *value = i + 1 < argc ? argv[i + 1] : "0";
    if (arg == "--seconds")
      args.seconds = atoi(value), i++;
    else if (arg == "--channels")
      args.channels = atoi(value), i++;
    else if (arg == "--seed")
      args.seed = (guint32)g_ascii_strtoull(value, nullptr, 10), i++;
    else if (arg == "--assert-flat")
      args.assert_flat = true;
    else if (arg == "--no-server")
      args.server = false;
  }
  return args;
}

// One sample of the process: resident memory, the heap's bytes in use and threads.
struct Sample {
  gint64 at_us = 0;
  long rss_kb = 0, heap_kb = 0, threads = 0;
};

Sample sample_now() {
  Sample s;
  s.at_us = g_get_monotonic_time();
  // Bytes malloc handed out and not yet freed: a leak climbs here, while memory freed but
  // kept by malloc's arenas shows in RSS only.
  struct mallinfo2 heap = mallinfo2();
  s.heap_kb = long((heap.uordblks + heap.hblkhd) / 1024);
  std::ifstream status("/proc/self/status");
  std::string key;
  long value;
  while (status >> key) {
    if (key == "VmRSS:" && status >> value)
      s.rss_kb = value;
    else if (key == "Threads:" && status >> value)
      s.threads = value;
  }
  return s;
}

// The faults the provider and the network throw at the channels, one every few hundred ms,
// and a restart of the emulator (a second offline) every 15 s.
void throw_faults(EmulatorProcess &emu, const std::atomic<bool> &running, guint32 seed) {
  static const char *faults[] = {
      "create http:429",     "poll http:503",     "poll http:500", "poll hang",
      "download drop:60000", "download http:403", "download hang", "download redirect",
  };
  GRand *rand = g_rand_new_with_seed(seed ^ 0x5eed);
  gint64 next_restart = g_get_monotonic_time() + 15 * G_USEC_PER_SEC;
  while (running) {
    g_usleep(g_rand_int_range(rand, 150, 450) * 1000);
    emu.send(std::string("fault ") + faults[g_rand_int_range(rand, 0, G_N_ELEMENTS(faults))]);
    if (g_get_monotonic_time() >= next_restart) {
      emu.send("offline");
      g_usleep(G_USEC_PER_SEC);
      emu.send("online");
      next_restart = g_get_monotonic_time() + 15 * G_USEC_PER_SEC;
    }
  }
  g_rand_free(rand);
}

// The IDs (task-…, gst-kirin-…) the application saw, from every channel's file.
std::set<std::string> seen_ids(const std::string &dir, int channels) {
  std::set<std::string> ids;
  for (int c = 0; c < channels; c++) {
    std::ifstream file(dir + "/seen-" + std::to_string(c));
    std::string id;
    while (file >> id)
      ids.insert(id);
  }
  return ids;
}

// The external task IDs the journal recorded.
std::set<std::string> journal_ids(const std::string &path) {
  std::set<std::string> ids;
  sqlite3 *db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_stmt *statement = nullptr;
    sqlite3_prepare_v2(db, "SELECT external_task_id, task_id FROM tasks", -1, &statement, nullptr);
    while (statement && sqlite3_step(statement) == SQLITE_ROW)
      for (int column = 0; column < 2; column++)
        if (const unsigned char *text = sqlite3_column_text(statement, column))
          ids.insert(reinterpret_cast<const char *>(text));
    sqlite3_finalize(statement);
  }
  sqlite3_close(db);
  return ids;
}

struct Verdict {
  int checks = 0, failures = 0;
  void check(bool ok, const std::string &what) {
    checks++;
    if (!ok) {
      failures++;
      g_printerr("soak: FAILED: %s\n", what.c_str());
    }
  }
};

// No request paid twice: the creates the provider answered, per requested video, are at most
// one plus the fresh takes asked for it.
void check_creates(Verdict &verdict, const std::vector<CreateRecord> &creates,
                   const std::map<std::string, int> &fresh_takes) {
  std::map<std::string, int> paid;
  for (const CreateRecord &c : creates)
    if (c.status / 100 == 2 && fresh_takes.count(c.video_id))
      paid[c.video_id]++;
  int twice = 0;
  for (const auto &[video, count] : paid)
    if (count > 1 + fresh_takes.at(video)) {
      twice++;
      g_printerr("soak: %s was paid %d times with %d fresh takes\n", video.c_str(), count,
                 fresh_takes.at(video));
    }
  verdict.check(twice == 0, std::to_string(twice) + " requests paid twice");
}

// Every paid task (a create answered 2xx) reached the application and a journal, by its
// task ID or, when the answer came after a stop, by the external ID the run sent. A task the
// file's journal lacks must be on the server's (when there is one) within 5 s: what the
// process recorded while the server was down is written back once it answers.
void check_paid_tasks(Verdict &verdict, const std::vector<CreateRecord> &creates,
                      const std::set<std::string> &app, const std::set<std::string> &file,
                      const JournalServer *server) {
  int lost_app = 0;
  std::set<std::string> not_in_file;
  for (const CreateRecord &c : creates) {
    if (c.status / 100 != 2)
      continue;
    if (!app.count(c.task_id) && !app.count(c.external_task_id)) {
      lost_app++;
      g_printerr("soak: task %s (%s) never reached the application\n", c.task_id.c_str(),
                 c.external_task_id.c_str());
    }
    if (!file.count(c.external_task_id))
      not_in_file.insert(c.external_task_id);
  }
  const std::set<std::string> lost =
      server ? server->wait_for(not_in_file, 5 * G_USEC_PER_SEC) : not_in_file;
  for (const std::string &id : lost)
    g_printerr("soak: the task sent as %s is in no journal\n", id.c_str());
  verdict.check(lost_app == 0, std::to_string(lost_app) + " paid tasks unknown to the application");
  verdict.check(lost.empty(), std::to_string(lost.size()) + " paid tasks missing from the journal");
}

// Memory and threads after warm-up (the first fifth, at least 5 s): growth from the end of
// warm-up to the end, and the most threads in the second half against the first.
void check_flat(Verdict &verdict, const std::vector<Sample> &samples, bool assert_flat) {
  if (samples.size() < 10)
    return;
  size_t warm = std::max<size_t>(samples.size() / 5, 10);
  warm = std::min(warm, samples.size() - 2);
  size_t half = warm + (samples.size() - warm) / 2;
  auto max_of = [&](size_t from, size_t to, long Sample::*field) {
    long most = 0;
    for (size_t i = from; i < to; i++)
      most = std::max(most, samples[i].*field);
    return most;
  };
  long rss_warm = max_of(warm, half, &Sample::rss_kb),
       rss_end = max_of(half, samples.size(), &Sample::rss_kb);
  long threads_first = max_of(warm, half, &Sample::threads);
  long threads_second = max_of(half, samples.size(), &Sample::threads);
  // Its course, for a reader who must tell a leak (a steady climb) from a plateau.
  std::string course, heap_course;
  for (size_t tenth = 1; tenth <= 10; tenth++) {
    const Sample &at = samples[samples.size() * tenth / 10 - 1];
    course += " " + std::to_string(at.rss_kb);
    heap_course += " " + std::to_string(at.heap_kb);
  }
  g_print("soak: RSS at each tenth of the run (kB):%s\n", course.c_str());
  if (samples.back().heap_kb > 0) // the sanitizers' allocator does not report it
    g_print("soak: heap in use at each tenth of the run (kB):%s\n", heap_course.c_str());
  g_print("soak: RSS %ld kB after warm-up, %ld kB at most in the second half (%+ld kB); "
          "threads at most %ld, then %ld\n",
          rss_warm, rss_end, rss_end - rss_warm, threads_first, threads_second);
  if (!assert_flat)
    return;
  verdict.check(rss_end - rss_warm < 2048,
                "RSS grew by " + std::to_string(rss_end - rss_warm) + " kB after warm-up");
  verdict.check(threads_second <= threads_first + 4, "threads grew from " +
                                                         std::to_string(threads_first) + " to " +
                                                         std::to_string(threads_second));
}

// The channels end once the deadline passed and their last run ended, within its bound. A
// channel blocked in a call into GStreamer for good (a deadlock) never does: it is counted
// instead of waited for. Returns how many did not return.
int join_channels(std::vector<std::thread> &channels, Shared &shared) {
  constexpr gint64 kMarginUs = 120 * G_USEC_PER_SEC; // twice a run's bound
  const gint64 give_up_us = shared.deadline_us + kMarginUs;
  while (shared.channels_done < int(channels.size()) && g_get_monotonic_time() < give_up_us)
    g_usleep(G_USEC_PER_SEC / 10);
  const int hung = int(channels.size()) - shared.channels_done;
  for (std::thread &channel : channels)
    if (hung)
      channel.detach();
    else
      channel.join();
  return hung;
}

} // namespace

// Under LeakSanitizer, for this program only: Debian 12's libsoup (3.2.3) leaks the task of a
// request cancelled while its answer's headers are read (soup-client-message-io-http1.c,
// run_until_read_async), which the soak's hung answers, timeouts and emulator restarts do
// every few seconds, on the API client's thread. Its frames carry no names in Debian's build,
// so only the whole library can be named here; the suites, which run with the project's
// narrow suppressions (tests/sanitizers/lsan.supp), still see every leak of the client.
extern "C" __attribute__((visibility("default"))) const char *__lsan_default_suppressions() {
  return "leak:libsoup-3.0.so.0\n";
}

int main(int argc, char **argv) {
  if (argc > 1 && std::string(argv[1]) == "emulator") {
    gst_init(&argc, &argv);
    return run_emulator();
  }
  gst_init(&argc, &argv);
  const Args args = parse_args(argc, argv);
  g_autofree char *dir = g_dir_make_tmp("kirin-soak-XXXXXX", nullptr);
  g_setenv("XDG_CACHE_HOME", dir, TRUE); // a journal of the soak's own
  EmulatorProcess emu;
  if (!emu.start("/proc/self/exe"))
    return 1;
  for (const std::string &video : all_videos())
    emu.send("video " + video + " 5");

  std::unique_ptr<JournalServer> server;
  if (args.server) {
    server = std::make_unique<JournalServer>();
    std::string error;
    if (!server->start(error)) {
      g_printerr("soak: cannot start the journal's PostgreSQL server: %s\n", error.c_str());
      return 1;
    }
  }
  Shared shared;
  shared.api_url = emu.api_url();
  shared.server_journal = server ? server->uri() : "";
  shared.dir = dir;
  shared.deadline_us = g_get_monotonic_time() + gint64(args.seconds) * G_USEC_PER_SEC;
  std::atomic<bool> running{true};
  std::thread faults(throw_faults, std::ref(emu), std::cref(running), args.seed);
  std::thread restarts;
  if (server)
    restarts = std::thread([&] { server->restart_while(running, 20, 2); });
  std::vector<std::thread> channels;
  for (int c = 0; c < args.channels; c++)
    channels.emplace_back(run_channel, std::ref(shared), c, args.seed);
  std::vector<Sample> samples;
  while (g_get_monotonic_time() < shared.deadline_us) {
    g_usleep(G_USEC_PER_SEC / 2);
    samples.push_back(sample_now());
  }
  const int hung = join_channels(channels, shared);
  running = false;
  faults.join();
  if (restarts.joinable())
    restarts.join();
  emu.send("online");

  Verdict verdict;
  const std::vector<CreateRecord> creates = emu.creates();
  check_creates(verdict, creates, shared.fresh_takes_snapshot());
  check_paid_tasks(verdict, creates, seen_ids(dir, args.channels),
                   journal_ids(std::string(dir) + "/gst-kirin/journal.db"), server.get());
  check_flat(verdict, samples, args.assert_flat);
  shared.report(verdict.checks, verdict.failures);
  verdict.check(shared.stuck_runs == 0, std::to_string(shared.stuck_runs.load()) +
                                            " runs neither ended nor stopped within their bound");
  verdict.check(hung == 0, std::to_string(hung) +
                               " channels never returned: a call into GStreamer blocked for good");
  // The sanitizers make every instruction slower: their test setup says by how much.
  const char *slowdown = g_getenv("KIRIN_TEST_SLOWDOWN");
  const double factor = slowdown ? MAX(g_ascii_strtod(slowdown, nullptr), 1.0) : 1.0;
  verdict.check(shared.neighbour_max_us < gint64(factor * G_USEC_PER_SEC),
                "a channel waited " + std::to_string(shared.neighbour_max_us / 1000) +
                    " ms from its completion to its download beside the blocked one");
  g_print("soak: %d creates answered; the journal's server restarted %d times\n",
          (int)creates.size(), server ? server->restarts() : 0);
  // The gst-check summary line, which scripts/count-checks reads.
  g_print("%d%%: Checks: %d, Failures: %d, Errors: 0\n",
          verdict.checks ? 100 * (verdict.checks - verdict.failures) / verdict.checks : 0,
          verdict.checks, verdict.failures);
  g_autofree char *remove = g_strdup_printf("rm -rf '%s'", dir);
  if (system(remove) != 0)
    g_printerr("soak: could not remove %s\n", dir);
  if (hung)
    _exit(1); // the hung channels' threads cannot be joined, nor GStreamer shut down under them
  return verdict.failures ? 1 : 0;
}
