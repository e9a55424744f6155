// When a running task is polled next (gst/kirin/client/poll-schedule.h): the estimate of its
// completion from the progress its answers report, and the fall-back to the growing
// schedule when progress says nothing reliable. Pure: no emulator, no element.
#include "poll-schedule.h"

#include <gst/check/gstcheck.h>

using kirin::module::poll_schedule_add;
using kirin::module::poll_schedule_delay;
using kirin::module::poll_schedule_estimate;
using kirin::module::PollSchedule;

namespace {

constexpr guint kInterval = 1000;
constexpr guint kFallback = 4000; // the growing schedule's wait, at its cap

// A task processing from `start_ms` for `length_ms`, polled at `times`, reporting its
// progress exactly.
PollSchedule linear_task(gint64 start_ms, gint64 length_ms, std::initializer_list<gint64> times) {
  PollSchedule schedule;
  for (gint64 t : times)
    poll_schedule_add(schedule, t, double(t - start_ms) / double(length_ms), true);
  return schedule;
}

} // namespace

GST_START_TEST(test_linear_progress_predicts_completion) {
  PollSchedule s = linear_task(1000, 60000, {2000, 4000, 7000, 11000});
  gint64 done = 0;
  fail_unless(poll_schedule_estimate(s, done));
  fail_unless(done >= 61000 && done <= 61001, "estimated %" G_GINT64_FORMAT, done);
  // Far from completion: the growing schedule's wait, which comes earlier.
  fail_unless_equals_int(poll_schedule_delay(s, 11000, kInterval, kFallback, kFallback, 0.05),
                         kFallback);
  // Close to it: just after the estimated moment.
  poll_schedule_add(s, 59000, 58000.0 / 60000, true);
  const guint delay = poll_schedule_delay(s, 59000, kInterval, kFallback, kFallback, 0.05);
  fail_unless(delay >= 2050 && delay <= 2052, "delay %u", delay);
}
GST_END_TEST;

GST_START_TEST(test_estimate_follows_a_new_pace) {
  // Twice as fast from 10 s on: the step off the old pace starts the estimate again.
  PollSchedule s = linear_task(0, 40000, {1000, 4000, 7000, 10000});
  poll_schedule_add(s, 12000, 0.25 + 2000.0 / 20000, true);
  gint64 done = 0;
  fail_if(poll_schedule_estimate(s, done), "a changed pace must not be trusted at once");
  poll_schedule_add(s, 14000, 0.25 + 4000.0 / 20000, true);
  poll_schedule_add(s, 16000, 0.25 + 6000.0 / 20000, true);
  fail_unless(poll_schedule_estimate(s, done));
  fail_unless(done >= 24990 && done <= 25010, "estimated %" G_GINT64_FORMAT, done);
}
GST_END_TEST;

GST_START_TEST(test_floor_bounds_a_wrong_estimate) {
  // The estimate says the task completed already: still no poll before the floor.
  PollSchedule s = linear_task(0, 10000, {2000, 4000, 6000});
  fail_unless_equals_int(poll_schedule_delay(s, 20000, kInterval, kFallback, kFallback, 0.05), 250);
}
GST_END_TEST;

GST_START_TEST(test_no_progress_keeps_the_schedule) {
  PollSchedule s;
  for (gint64 t : {1000, 2000, 3000, 4000})
    poll_schedule_add(s, t, -1, true);
  gint64 done = 0;
  fail_if(poll_schedule_estimate(s, done));
  fail_unless_equals_int(poll_schedule_delay(s, 4000, kInterval, 1500, 2250, 0.05), 1500);
}
GST_END_TEST;

GST_START_TEST(test_waiting_in_queue_says_nothing_of_the_pace) {
  PollSchedule s;
  for (gint64 t : {1000, 2000, 3000})
    poll_schedule_add(s, t, 0, false);
  gint64 done = 0;
  fail_if(poll_schedule_estimate(s, done));
  poll_schedule_add(s, 4000, 0.1, true);
  poll_schedule_add(s, 5000, 0.2, true);
  fail_if(poll_schedule_estimate(s, done), "two samples are not enough");
  poll_schedule_add(s, 6000, 0.3, true);
  fail_unless(poll_schedule_estimate(s, done));
  fail_unless_equals_int(done, 13000);
}
GST_END_TEST;

GST_START_TEST(test_stuck_progress_falls_back) {
  PollSchedule s = linear_task(0, 10000, {1000, 2000, 3000});
  poll_schedule_add(s, 4000, 0.3, true);
  gint64 done = 0;
  fail_if(poll_schedule_estimate(s, done));
  fail_unless_equals_int(poll_schedule_delay(s, 4000, kInterval, kFallback, kFallback, 0.05),
                         kFallback);
}
GST_END_TEST;

GST_START_TEST(test_steps_back_and_jumps_fall_back) {
  PollSchedule back = linear_task(0, 10000, {1000, 2000, 3000});
  poll_schedule_add(back, 4000, 0.2, true);
  gint64 done = 0;
  fail_if(poll_schedule_estimate(back, done), "a step back");
  PollSchedule jump = linear_task(0, 10000, {1000, 2000, 3000});
  poll_schedule_add(jump, 4000, 0.75, true);
  fail_if(poll_schedule_estimate(jump, done), "a jump");
  // Coarse steps (0, 0.25, 0.5 ...) seen every second never give three on one pace.
  PollSchedule steps;
  for (gint64 t = 0; t <= 12000; t += 1000)
    poll_schedule_add(steps, t, 0.25 * double(t / 4000), true);
  fail_if(poll_schedule_estimate(steps, done), "coarse steps");
}
GST_END_TEST;

GST_START_TEST(test_progress_of_one_while_running_falls_back) {
  PollSchedule s = linear_task(0, 10000, {1000, 2000, 3000});
  poll_schedule_add(s, 4000, 1.0, true);
  gint64 done = 0;
  fail_if(poll_schedule_estimate(s, done));
}
GST_END_TEST;

// The schedule's next poll would come before the estimated completion and find the task still
// processing: the predicted poll takes the place of that one and the one after it.
GST_START_TEST(test_prediction_saves_the_poll_before_completion) {
  PollSchedule s = linear_task(0, 20000, {2000, 6000, 10000});
  // Completion in 10 s, beyond the schedule's next two waits (4 s + 4 s): its next poll.
  fail_unless_equals_int(poll_schedule_delay(s, 10000, kInterval, kFallback, kFallback, 0.05),
                         kFallback);
  // Completion in 6 s, between the next poll (4 s) and the one after (8 s): at 6.05 s.
  poll_schedule_add(s, 14000, 0.7, true);
  fail_unless_equals_int(poll_schedule_delay(s, 14000, kInterval, kFallback, kFallback, 0.05),
                         6050);
  // Completion in 2 s, before the next poll: at 2.05 s.
  poll_schedule_add(s, 18000, 0.9, true);
  fail_unless_equals_int(poll_schedule_delay(s, 18000, kInterval, kFallback, kFallback, 0.05),
                         2050);
}
GST_END_TEST;

static Suite *poll_schedule_suite() {
  Suite *s = suite_create("poll-schedule");
  TCase *tc = tcase_create("general");
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_linear_progress_predicts_completion);
  tcase_add_test(tc, test_estimate_follows_a_new_pace);
  tcase_add_test(tc, test_floor_bounds_a_wrong_estimate);
  tcase_add_test(tc, test_no_progress_keeps_the_schedule);
  tcase_add_test(tc, test_waiting_in_queue_says_nothing_of_the_pace);
  tcase_add_test(tc, test_stuck_progress_falls_back);
  tcase_add_test(tc, test_steps_back_and_jumps_fall_back);
  tcase_add_test(tc, test_progress_of_one_while_running_falls_back);
  tcase_add_test(tc, test_prediction_saves_the_poll_before_completion);
  return s;
}

GST_CHECK_MAIN(poll_schedule);
