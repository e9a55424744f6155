// When to poll a running task next: from the progress its answers report and when they came,
// estimate when it will complete and poll just after that moment, in place of the growing
// schedule's poll (poll_delay_ms) that would come before or just after it; when
// progress tells nothing reliable, keep the schedule. Pure, no I/O:
// tests/check/poll-schedule.cpp tests it alone. Part of libgstkirin-client.module.
#pragma once

#include <glib.h>

#include <vector>

namespace kirin {
namespace module {

// Predictions never space polls closer than this fraction of poll-interval.
constexpr double kPollFloorFraction = 0.25;
// A prediction polls this long after the estimated completion, as a fraction of
// poll-interval, drawn from [min, max] (the jitter of predicted polls).
constexpr double kPollMarginMin = 0.02, kPollMarginMax = 0.08;

// The growing schedule: how long to wait before poll number `attempt` (0-based):
// poll-interval, growing by half each time up to four times poll-interval, times `jitter`
// (drawn from 0.9-1.1); never below `retry_after_ms`.
guint poll_delay_ms(guint poll_interval_ms, guint attempt, guint retry_after_ms, double jitter);

// One answer of a processing task: when it came (ms, monotonic) and its progress (0..1).
struct ProgressSample {
  gint64 at_ms = 0;
  double progress = 0;
};

// The samples that agree with one steady rate, oldest first (at most kMaxSamples).
struct PollSchedule {
  static constexpr size_t kMaxSamples = 8;
  std::vector<ProgressSample> samples;
};

// Takes the answer of a poll. `progress` < 0: absent. `processing`: the task says it is being
// processed (samples before that, while it waits in a queue, say nothing of its pace).
// Progress that is absent, unchanged, going back or off the rate of the samples before
// starts the estimate again from this answer.
void poll_schedule_add(PollSchedule &schedule, gint64 at_ms, double progress, bool processing);

// The estimated moment (ms, same clock as the samples) the task reaches progress 1; false
// when the samples cannot tell (fewer than three that agree).
bool poll_schedule_estimate(const PollSchedule &schedule, gint64 &done_at_ms);

// The wait before the next poll, at `now_ms`. `wait_ms` is the growing schedule's wait (the
// fall-back) and `then_ms` the schedule's wait after that one. Without an estimate:
// `wait_ms`. With one, just after the estimated moment (`margin` is a fraction of
// poll-interval, see kPollMargin*) whenever that comes before the schedule's poll after
// next: sooner than `wait_ms`, or later, skipping the schedule's next poll, which the
// estimate says would find the task still processing (a longer result: the caller counts
// that poll as made). Never sooner than kPollFloorFraction x poll-interval.
guint poll_schedule_delay(const PollSchedule &schedule, gint64 now_ms, guint poll_interval_ms,
                          guint wait_ms, guint then_ms, double margin);

} // namespace module
} // namespace kirin
