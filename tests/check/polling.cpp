// When the element polls a running task (gst/kirin/client/poll-schedule.h): just after the
// completion that steady progress predicts, and never sooner than a quarter of poll-interval
// after an answer, whatever the progress says. Measured at the emulator, from the arrival of
// each poll.
#include "common.h"

#include "emulator-fixture.h"
#include "poll-schedule.h"

#include <string>
#include <vector>

namespace {

constexpr const char *kKey = "polling-key";
constexpr guint kPendingMs = 100;
constexpr guint kIntervalMs = 1000;

struct Polled {
  gint64 due_us = 0;         // when the task completed: created + pending + processing
  std::vector<gint64> polls; // arrivals of its polls
};

// Runs one element on a task of `spec` (a progress: task fault) to EOS and reads its polls
// from the emulator's log.
Polled run_task(const std::string &spec, guint processing_ms) {
  auto emu = kirin_test_start_emulator(kKey, kPendingMs, 1000);
  fail_unless(emu->push_fault(kirin_emu::Route::Task, spec), "%s refused", spec.c_str());
  GstElement *pipeline = gst_pipeline_new(nullptr);
  GstElement *src = kirin_test_make_src(*emu, kIntervalMs);
  GstElement *sink = gst_element_factory_make("fakesink", nullptr);
  g_object_set(src, "video-id", "demo-5s", nullptr);
  gst_bin_add_many(GST_BIN(pipeline), src, sink, nullptr);
  fail_unless(gst_element_link(src, sink));
  RunResult result;
  kirin_test_run(pipeline, 60, result);
  gst_object_unref(pipeline);
  fail_if(result.error, "%s", result.error ? result.error->message : "");
  fail_unless(result.eos);
  Polled polled;
  for (const kirin_emu::RequestRecord &r : emu->requests()) {
    if (r.route == kirin_emu::Route::Create && r.status == 200)
      polled.due_us = r.arrival_us + gint64(kPendingMs + processing_ms) * 1000;
    else if (r.route == kirin_emu::Route::Poll)
      polled.polls.push_back(r.arrival_us);
  }
  fail_unless(polled.due_us && !polled.polls.empty());
  return polled;
}

// No two polls closer than `min_gap_ms`: an answer comes after its poll arrived, and the next
// poll's wait starts from the answer.
void assert_spacing(const Polled &polled, double min_gap_ms, const char *what) {
  for (size_t i = 1; i < polled.polls.size(); i++) {
    const gint64 gap = polled.polls[i] - polled.polls[i - 1];
    fail_unless(gap >= gint64(min_gap_ms * 1000),
                "%s: polls %zu and %zu %" G_GINT64_FORMAT " us apart", what, i - 1, i, gap);
  }
}

// The most polls the growing schedule (poll-schedule.h) makes for a task that completes `due_ms`
// after its create, with every wait at its shortest (10 % below its nominal length).
size_t most_scheduled_polls(gint64 due_ms) {
  size_t polls = 0;
  for (double at = 0; at < due_ms; polls++)
    at += kirin::module::poll_delay_ms(kIntervalMs, guint(polls), 0, 0.9);
  return polls;
}

} // namespace

// Linear progress over 8 s, polled at 1 s growing to 4 s: the poll that finds the task
// completed comes within a quarter of the interval after completion (the growing schedule
// alone would come anywhere up to 4 intervals after it), with no more polls than that
// schedule.
GST_START_TEST(test_linear_progress_is_noticed_at_completion) {
  const Polled polled = run_task("progress:linear:8000", 8000);
  const gint64 late = polled.polls.back() - polled.due_us;
  g_print("completion noticed %.0f ms late, after %zu polls\n", late / 1000.0, polled.polls.size());
  fail_unless(late >= 0, "the last poll came before completion");
  fail_unless(late <= gint64(kIntervalMs * 250 * kirin_test_slowdown()),
              "completion noticed %" G_GINT64_FORMAT " us late", late);
  assert_spacing(polled, kIntervalMs / 4.0, "linear");
  const size_t most = most_scheduled_polls(kPendingMs + 8000);
  fail_unless(polled.polls.size() <= most, "%zu polls, the growing schedule makes at most %zu",
              polled.polls.size(), most);
}
GST_END_TEST;

// When the growing schedule alone makes poll number `poll` (0-based, after the create),
// with every wait drawn at `jitter`.
gint64 scheduled_at_ms(guint poll, double jitter) {
  gint64 at = 0;
  for (guint i = 0; i <= poll; i++)
    at += kirin::module::poll_delay_ms(kIntervalMs, i, 0, jitter);
  return at;
}

// Linear progress over 6.1 s, completed 6.2 s after the create: the growing schedule polls at
// about 1, 2.5 and 4.75 s, then not before 7.3 s whatever its jitter draws, over a second
// late. From the three answers' progress the element polls just after the completion
// instead: a fourth poll, the last, within a quarter of the interval.
GST_START_TEST(test_predicted_poll_comes_at_completion) {
  constexpr guint kProcessingMs = 6100;
  const gint64 due_ms = kPendingMs + kProcessingMs;
  const gint64 quarter_us = gint64(kIntervalMs * 250);
  const gint64 bound_us = gint64(quarter_us * kirin_test_slowdown()); // sanitizers are slower
  // The schedule's third poll comes before completion, its fourth past a quarter interval
  // late by more than half a second, whatever its jitter: only the prediction meets that.
  fail_unless(scheduled_at_ms(2, 1.1) < due_ms - 500);
  fail_unless(scheduled_at_ms(3, 0.9) * 1000 > due_ms * 1000 + quarter_us + 500 * 1000);
  const Polled polled = run_task("progress:linear:" + std::to_string(kProcessingMs), kProcessingMs);
  const gint64 late = polled.polls.back() - polled.due_us;
  g_print("completion noticed %.0f ms late, after %zu polls\n", late / 1000.0, polled.polls.size());
  fail_unless(late >= 0, "the last poll came before completion");
  fail_unless(late <= bound_us, "completion noticed %" G_GINT64_FORMAT " us late", late);
  fail_unless_equals_int(polled.polls.size(), 4);
}
GST_END_TEST;

// Progress that cannot be trusted (a step back, steps, a stall) never brings polls closer
// than the floor, and without progress the growing schedule alone runs (its shortest wait is
// poll-interval less the 10 % jitter).
GST_START_TEST(test_untrusted_progress_keeps_polls_apart) {
  for (const char *shape : {"back", "steps", "stall"}) {
    const Polled polled = run_task(std::string("progress:") + shape + ":6000", 6000);
    assert_spacing(polled, kIntervalMs / 4.0, shape);
  }
  assert_spacing(run_task("progress:none:6000", 6000), kIntervalMs * 0.9, "none");
}
GST_END_TEST;

static Suite *polling_suite() {
  Suite *s = suite_create("polling");
  TCase *tc = tcase_create("polling");
  tcase_set_timeout(tc, 180);
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_linear_progress_is_noticed_at_completion);
  tcase_add_test(tc, test_predicted_poll_comes_at_completion);
  tcase_add_test(tc, test_untrusted_progress_keeps_polls_apart);
  return s;
}

int main(int argc, char **argv) {
  kirin_test_init(&argc, &argv, "polling");
  return gst_check_run_suite(polling_suite(), "polling", __FILE__);
}
