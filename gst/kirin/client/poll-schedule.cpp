#include "poll-schedule.h"

#include <algorithm>
#include <cmath>

namespace kirin {
namespace module {

namespace {

// How far the rate of the newest step may be from the rate of the samples before it
// (a factor either way) and still count as the same pace.
constexpr double kRateTolerance = 1.5;
// Three samples, two steps: a rate and one check of it.
constexpr size_t kMinSamples = 3;

// The least-squares slope of progress over time (per ms); 0 when it cannot be computed.
double fitted_rate(const std::vector<ProgressSample> &samples, double &mean_t, double &mean_p) {
  mean_t = 0;
  mean_p = 0;
  for (const ProgressSample &s : samples) {
    mean_t += double(s.at_ms - samples.front().at_ms);
    mean_p += s.progress;
  }
  mean_t /= double(samples.size());
  mean_p /= double(samples.size());
  double covariance = 0, variance = 0;
  for (const ProgressSample &s : samples) {
    const double dt = double(s.at_ms - samples.front().at_ms) - mean_t;
    covariance += dt * (s.progress - mean_p);
    variance += dt * dt;
  }
  return variance > 0 ? covariance / variance : 0;
}

// Whether `next` keeps the pace of the samples so far: progress went up, at a rate within
// kRateTolerance of theirs (with a single sample there is no rate yet to compare with).
bool keeps_pace(const std::vector<ProgressSample> &samples, const ProgressSample &next) {
  const ProgressSample &last = samples.back();
  if (next.progress <= last.progress || next.at_ms <= last.at_ms)
    return false;
  if (samples.size() < 2)
    return true;
  double mean_t, mean_p;
  const double rate = fitted_rate(samples, mean_t, mean_p);
  const double step = (next.progress - last.progress) / double(next.at_ms - last.at_ms);
  return rate > 0 && step <= rate * kRateTolerance && step >= rate / kRateTolerance;
}

} // namespace

guint poll_delay_ms(guint poll_interval_ms, guint attempt, guint retry_after_ms, double jitter) {
  double base = poll_interval_ms * std::pow(1.5, MIN(attempt, 8u));
  base = MIN(base, 4.0 * poll_interval_ms);
  double jittered = base * jitter;
  return MAX((guint)jittered, retry_after_ms);
}

void poll_schedule_add(PollSchedule &schedule, gint64 at_ms, double progress, bool processing) {
  auto &samples = schedule.samples;
  if (!processing || progress < 0 || progress >= 1) {
    samples.clear();
    return;
  }
  const ProgressSample sample{at_ms, progress};
  if (!samples.empty() && !keeps_pace(samples, sample))
    samples.clear();
  samples.push_back(sample);
  if (samples.size() > PollSchedule::kMaxSamples)
    samples.erase(samples.begin());
}

bool poll_schedule_estimate(const PollSchedule &schedule, gint64 &done_at_ms) {
  const auto &samples = schedule.samples;
  if (samples.size() < kMinSamples)
    return false;
  double mean_t, mean_p;
  const double rate = fitted_rate(samples, mean_t, mean_p);
  if (rate <= 0)
    return false;
  const double done = mean_t + (1.0 - mean_p) / rate;
  done_at_ms = samples.front().at_ms + gint64(std::ceil(done));
  return true;
}

guint poll_schedule_delay(const PollSchedule &schedule, gint64 now_ms, guint poll_interval_ms,
                          guint wait_ms, guint then_ms, double margin) {
  gint64 done_at_ms = 0;
  if (!poll_schedule_estimate(schedule, done_at_ms))
    return wait_ms;
  const double floor_ms = kPollFloorFraction * poll_interval_ms;
  const double wanted = double(done_at_ms - now_ms) + margin * poll_interval_ms;
  const double delay = std::max(wanted, floor_ms);
  // A predicted poll takes the place of the schedule's poll that would find the task
  // completed; the one before it, which would find it still processing, is saved. So a
  // prediction that misses by a little costs no more polls than the schedule made.
  return delay < double(wait_ms) + double(then_ms) ? guint(std::lround(delay)) : wait_ms;
}

} // namespace module
} // namespace kirin
