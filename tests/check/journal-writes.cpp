// How the journal's work reaches the disk (gst/kirin/journal/serial-worker.h, journal.h): a serial
// worker keeps the order of its work across the threads it starts and ends, holds no thread
// while idle, and the task IDs that reach a ledger while its worker is busy are recorded
// together, each claim let go only once its record is in the file.
#include "journal.h"
#include "serial-worker.h"
#include "threads-named.h"

#include <gst/check/gstcheck.h>
#include <glib/gstdio.h>

#include <condition_variable>
#include <ftw.h>
#include <unistd.h>
#include <mutex>
#include <string>
#include <vector>

using kirin::ClaimResult;
using kirin::JournalAnswer;
using kirin::JournalQuestion;
using kirin::Ledger;

namespace {

struct TestDir {
  std::string dir, journal;
  TestDir() {
    g_autofree char *made = g_dir_make_tmp("kirin-journal-writes-XXXXXX", nullptr);
    fail_unless(made != nullptr);
    dir = made;
    journal = dir + "/journal.db";
  }
  ~TestDir() {
    nftw(
        dir.c_str(),
        [](const char *file, const struct stat *, int, struct FTW *) { return remove(file); }, 16,
        FTW_DEPTH | FTW_PHYS);
  }
};

// Holds a worker inside one piece of work until released.
struct Gate {
  std::mutex lock;
  std::condition_variable cond;
  bool entered = false, open = false;

  // The piece of work that waits for release().
  std::function<void()> piece() {
    return [this] {
      std::unique_lock<std::mutex> guard(lock);
      entered = true;
      cond.notify_all();
      cond.wait(guard, [this] { return open; });
    };
  }
  void wait_entered() {
    std::unique_lock<std::mutex> guard(lock);
    cond.wait(guard, [this] { return entered; });
  }
  void release() {
    std::lock_guard<std::mutex> guard(lock);
    open = true;
    cond.notify_all();
  }
};

// A worker of the test's own. Workers live as long as the process: this one is kept where
// the leak checker sees it, as the file worker is.
kirin::SerialWorker *test_worker() {
  static kirin::SerialWorker *worker = kirin::serial_worker("kirin-test");
  return worker;
}

// The worker's thread ends by itself once idle: waits for that, 5 s at most (a bounded
// wait for an event, checked every millisecond).
bool thread_ends(const char *name) {
  for (int i = 0; i < 5000; i++) {
    if (threads_named(name) == 0)
      return true;
    g_usleep(1000);
  }
  return false;
}

JournalQuestion question(const std::string &journal, const char *prompt) {
  JournalQuestion q;
  q.journal = journal;
  q.request.api_url = "https://api.example/v1";
  q.request.request.video_id = "vid-1";
  q.request.request.prompt = prompt;
  q.external_task_id = std::string("gen-") + prompt;
  return q;
}

// Claims the request on the file worker, as a run does.
JournalAnswer claimed(const std::string &journal, const char *prompt) {
  JournalAnswer answer;
  kirin::file_work([&] { answer = journal_claim(question(journal, prompt)); });
  kirin::file_work_flush();
  fail_unless(answer.result == ClaimResult::Claimed, "%s not claimed", prompt);
  fail_unless(answer.warning.empty(), "%s", answer.warning.c_str());
  return answer;
}

// Claims the request and marks its create as leaving, one step at a time.
JournalAnswer claimed_and_sent(const std::string &journal, const char *prompt) {
  JournalAnswer answer = claimed(journal, prompt);
  std::string failure;
  kirin::file_work([&] { failure = journal_sending(*answer.ledger, *answer.claim); });
  kirin::file_work_flush();
  fail_unless(failure.empty(), "%s", failure.c_str());
  return answer;
}

// The pages the journal's commits have written so far: the frames of its write-ahead log
// (a 32-byte header, then per frame a 24-byte header and a page). A commit writes at least
// one; nothing checkpoints the log while the tests' few rows are written.
gint64 log_frames(const std::string &journal) {
  g_autofree char *log = nullptr;
  gsize size = 0;
  if (!g_file_get_contents((journal + "-wal").c_str(), &log, &size, nullptr) || size < 32)
    return 0;
  const auto *header = reinterpret_cast<const guint8 *>(log);
  const gint64 page =
      (gint64(header[8]) << 24) | (header[9] << 16) | (header[10] << 8) | header[11];
  return (gint64(size) - 32) / (24 + page);
}

// What another process finds for the request: its row, through a ledger of its own.
kirin::ClaimOutcome seen_by_another(const std::string &journal, const char *prompt) {
  std::string warning, error;
  std::unique_ptr<Ledger> other = Ledger::open(journal, warning);
  fail_unless(other != nullptr && warning.empty(), "%s", warning.c_str());
  kirin::ClaimOutcome out;
  fail_unless(other->claim(question(journal, prompt).request, false, "gen-other", out, error), "%s",
              error.c_str());
  return out;
}

struct Answers {
  std::mutex lock;
  std::vector<std::string> said; // one per step, in the order answered
  std::function<void(const std::string &)> sink() {
    return [this](const std::string &warning) {
      std::lock_guard<std::mutex> guard(lock);
      said.push_back(warning);
    };
  }
};

// Has `hand_over` hand three steps to the file worker while it is busy, then lets it take
// them: each must answer "" (done, no warning). Returns the pages the journal's log gained.
gint64 while_busy(const std::string &journal, const std::function<void(Answers &)> &hand_over) {
  Answers answers;
  const gint64 frames = log_frames(journal);
  Gate gate;
  kirin::file_work(gate.piece());
  hand_over(answers);
  gate.release();
  kirin::file_work_flush();
  fail_unless_equals_int((int)answers.said.size(), 3);
  for (const std::string &answer : answers.said)
    fail_unless_equals_string(answer.c_str(), "");
  return log_frames(journal) - frames;
}

} // namespace

GST_START_TEST(test_work_keeps_its_order_across_threads) {
  kirin::SerialWorker *worker = test_worker();
  std::vector<int> done;
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < 100; i++)
      serial_push(worker, [&done, n = round * 100 + i] { done.push_back(n); });
    fail_unless(serial_flush(worker, -1));
    // The next round starts a new thread: the order still holds.
    fail_unless(thread_ends("kirin-test"), "the idle worker kept its thread");
  }
  fail_unless_equals_int((int)done.size(), 300);
  for (int i = 0; i < 300; i++)
    fail_unless_equals_int(done[i], i);
}
GST_END_TEST;

GST_START_TEST(test_idle_worker_holds_no_thread) {
  kirin::SerialWorker *worker = test_worker();
  fail_unless_equals_int(threads_named("kirin-test"), 0);
  Gate gate;
  serial_push(worker, gate.piece());
  gate.wait_entered();
  fail_unless_equals_int(threads_named("kirin-test"), 1);
  // A flush that gives up waits no longer than asked.
  fail_if(serial_flush(worker, 10000), "flushed while the work was held");
  gate.release();
  fail_unless(serial_flush(worker, -1));
  fail_unless(thread_ends("kirin-test"), "the idle worker kept its thread");
}
GST_END_TEST;

// Three runs' marks that their creates leave, then their task IDs, each reach the file
// worker while it is busy: one commit writes each three, and only after it does a create
// leave or a claim go, so another process waits, then attaches to each task.
GST_START_TEST(test_steps_waiting_are_written_together) {
  TestDir dir;
  const char *prompts[] = {"rain", "snow", "fog"};
  std::vector<JournalAnswer> answers;
  for (const char *prompt : prompts)
    answers.push_back(claimed(dir.journal, prompt));
  std::shared_ptr<Ledger> ledger = answers[0].ledger;

  gint64 pages = while_busy(dir.journal, [&](Answers &sent) {
    for (JournalAnswer &answer : answers)
      journal_mark_sending(dir.journal, ledger, answer.claim, sent.sink());
  });
  fail_unless(pages < 3, "%d pages written for three marks", (int)pages);
  for (const char *prompt : prompts) {
    kirin::ClaimOutcome out = seen_by_another(dir.journal, prompt);
    fail_unless(out.result == ClaimResult::Busy, "%s not held", prompt);
    fail_unless_equals_string(out.row.status.c_str(), "sending");
  }

  pages = while_busy(dir.journal, [&](Answers &recorded) {
    for (size_t i = 0; i < answers.size(); i++)
      journal_record_created(dir.journal, ledger, answers[i].claim,
                             std::string("task-") + prompts[i], recorded.sink());
    for (JournalAnswer &answer : answers)
      answer.claim.reset(); // the run's hold goes; the record's keeps the claim
  });
  fail_unless(pages < 3, "%d pages written for three task IDs", (int)pages);
  for (const char *prompt : prompts) {
    kirin::ClaimOutcome out = seen_by_another(dir.journal, prompt);
    fail_unless(out.result == ClaimResult::Recorded, "%s not recorded", prompt);
    fail_unless_equals_string(out.row.status.c_str(), "created");
    const std::string task_id = std::string("task-") + prompt;
    fail_unless_equals_string(out.row.task_id.c_str(), task_id.c_str());
  }
}
GST_END_TEST;

// Claims that reach the file worker while it is busy are taken in one commit, and decided
// as one by one: a second claim of the same request finds the first's, alive.
GST_START_TEST(test_claims_waiting_are_taken_together) {
  TestDir dir;
  JournalAnswer first = claimed(dir.journal, "mist"); // the journal is made
  gint64 frames = log_frames(dir.journal);
  JournalAnswer alone = claimed(dir.journal, "dust");
  const gint64 one_claim = log_frames(dir.journal) - frames;
  fail_unless(one_claim > 0);

  const char *prompts[] = {"rain", "snow", "fog", "rain"};
  std::vector<JournalAnswer> answers(4);
  frames = log_frames(dir.journal);
  Gate gate;
  kirin::file_work(gate.piece());
  for (size_t i = 0; i < 4; i++)
    journal_claim_soon(question(dir.journal, prompts[i]),
                       [&answers, i](const JournalAnswer &answer) { answers[i] = answer; });
  gate.release();
  kirin::file_work_flush();

  for (size_t i = 0; i < 3; i++) {
    fail_unless(answers[i].result == ClaimResult::Claimed, "%s not claimed", prompts[i]);
    fail_unless_equals_string(answers[i].warning.c_str(), "");
    fail_unless(seen_by_another(dir.journal, prompts[i]).result == ClaimResult::Busy);
  }
  fail_unless(answers[3].result == ClaimResult::Busy, "the same request was claimed twice");
  fail_unless_equals_int((int)answers[3].row.claimer_pid, (int)getpid());
  // Four claims, three rows: one commit writes each page once, where four would write more.
  fail_unless(log_frames(dir.journal) - frames < 2 * one_claim,
              "%d pages for four claims (%d for one)", (int)(log_frames(dir.journal) - frames),
              (int)one_claim);

  // Let go unsent, the rows go: another process claims each request then.
  for (JournalAnswer &answer : answers)
    answer.claim.reset();
  kirin::file_work_flush();
  for (size_t i = 0; i < 3; i++)
    fail_unless(seen_by_another(dir.journal, prompts[i]).result == ClaimResult::Claimed);
}
GST_END_TEST;

// A record that cannot be written together with the others (its claim was taken on another
// journal) does not hold them back: they are recorded one by one, and it alone warns.
GST_START_TEST(test_a_failing_record_does_not_hold_back_the_others) {
  TestDir dir, elsewhere;
  JournalAnswer rain = claimed_and_sent(dir.journal, "rain");
  JournalAnswer snow = claimed_and_sent(dir.journal, "snow");
  JournalAnswer foreign = claimed_and_sent(elsewhere.journal, "fog");

  Answers warnings;
  Gate gate;
  kirin::file_work(gate.piece());
  journal_record_created(dir.journal, rain.ledger, rain.claim, "task-rain", warnings.sink());
  journal_record_created(dir.journal, rain.ledger, foreign.claim, "task-fog", warnings.sink());
  journal_record_created(dir.journal, rain.ledger, snow.claim, "task-snow", warnings.sink());
  gate.release();
  kirin::file_work_flush();

  fail_unless_equals_int((int)warnings.said.size(), 3);
  fail_unless_equals_string(warnings.said[0].c_str(), "");
  fail_unless(warnings.said[1].find("the claim is not held on this journal") != std::string::npos,
              "%s", warnings.said[1].c_str());
  fail_unless_equals_string(warnings.said[2].c_str(), "");
  fail_unless(seen_by_another(dir.journal, "rain").row.task_id == "task-rain");
  fail_unless(seen_by_another(dir.journal, "snow").row.task_id == "task-snow");
}
GST_END_TEST;

static Suite *journal_writes_suite() {
  Suite *s = suite_create("journal-writes");
  TCase *tc = tcase_create("general");
  tcase_set_timeout(tc, 60);
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_work_keeps_its_order_across_threads);
  tcase_add_test(tc, test_idle_worker_holds_no_thread);
  tcase_add_test(tc, test_steps_waiting_are_written_together);
  tcase_add_test(tc, test_claims_waiting_are_taken_together);
  tcase_add_test(tc, test_a_failing_record_does_not_hold_back_the_others);
  return s;
}

GST_CHECK_MAIN(journal_writes);
