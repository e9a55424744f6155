// The plan of a step (gst/kirin/run/plan.h): what is sent, and whether it costs money, for
// every branch. Pure: no emulator, no element.
#include "plan.h"

#include <gst/check/gstcheck.h>

using kirin::Action;
using kirin::JournalEntry;
using kirin::PlanInput;
using kirin::Settings;

namespace {

struct Fixture {
  Settings settings;
  PlanInput in;
  Fixture() {
    settings.video_id = "vid-1";
    settings.prompt = "rain";
    in.settings = &settings;
    in.request.video_id = "vid-1";
    in.request.prompt = "rain";
    in.generated_external_id = "gst-kirin-generated";
  }
};

JournalEntry created_entry(const char *task_id) {
  JournalEntry entry;
  entry.task_id = task_id;
  entry.external_task_id = "ext-of-journal";
  return entry;
}

} // namespace

GST_START_TEST(test_new_request_creates_with_a_generated_id) {
  Fixture f;
  kirin::Plan plan = kirin::plan_step(f.in);
  fail_unless(plan.action == Action::Create);
  fail_unless(plan.costs_money());
  fail_unless(plan.task_id.empty());
  fail_unless_equals_string(plan.external_task_id.c_str(), "gst-kirin-generated");
  fail_unless_equals_string(plan.request.external_task_id.c_str(), "gst-kirin-generated");
  fail_unless_equals_string(plan.request.video_id.c_str(), "vid-1");
  fail_if(plan.journal);
}
GST_END_TEST;

GST_START_TEST(test_new_request_uses_the_users_external_id) {
  Fixture f;
  f.settings.external_task_id = "order-17";
  f.in.journal_in_use = true;
  kirin::Plan plan = kirin::plan_step(f.in);
  fail_unless(plan.action == Action::Create);
  fail_unless_equals_string(plan.external_task_id.c_str(), "order-17");
  fail_unless(plan.journal);
}
GST_END_TEST;

GST_START_TEST(test_task_id_attaches_without_paying) {
  Fixture f;
  f.settings.task_id = "task-9";
  kirin::Plan plan = kirin::plan_step(f.in);
  fail_unless(plan.action == Action::Attach);
  fail_if(plan.costs_money());
  fail_unless_equals_string(plan.task_id.c_str(), "task-9");
}
GST_END_TEST;

GST_START_TEST(test_same_request_again_attaches_to_the_paid_task) {
  Fixture f;
  f.in.remembered = {"task-paid", "ext-paid", f.in.request, ""};
  kirin::Plan plan = kirin::plan_step(f.in);
  fail_unless(plan.action == Action::Attach);
  fail_unless_equals_string(plan.task_id.c_str(), "task-paid");
  fail_unless_equals_string(plan.external_task_id.c_str(), "ext-paid");

  // Another account (the api-key changed since) pays for its own.
  f.in.remembered.account = "account-a";
  f.in.account = "account-b";
  fail_unless(kirin::plan_step(f.in).action == Action::Create);
  f.in.account = "account-a";
  fail_unless(kirin::plan_step(f.in).action == Action::Attach);

  // Another prompt is another video: paid for.
  f.in.request.prompt = "snow";
  plan = kirin::plan_step(f.in);
  fail_unless(plan.action == Action::Create);
  fail_unless(plan.costs_money());
}
GST_END_TEST;

GST_START_TEST(test_journal_entry_attaches_or_replays) {
  Fixture f;
  f.in.journal_in_use = true;
  JournalEntry entry = created_entry("task-j");
  f.in.journal = &entry;
  kirin::Plan plan = kirin::plan_step(f.in);
  fail_unless(plan.action == Action::Attach);
  fail_unless_equals_string(plan.task_id.c_str(), "task-j");
  fail_unless_equals_string(plan.external_task_id.c_str(), "ext-of-journal");
  fail_unless(plan.journal);

  entry.completed = true;
  plan = kirin::plan_step(f.in);
  fail_unless(plan.action == Action::Replay);
  fail_if(plan.costs_money());
  fail_unless_equals_string(plan.task_id.c_str(), "task-j");

  // An entry without a task (nothing was created) does not stop a create.
  JournalEntry empty;
  f.in.journal = &empty;
  plan = kirin::plan_step(f.in);
  fail_unless(plan.action == Action::Create);
}
GST_END_TEST;

GST_START_TEST(test_chain_step_creates_on_the_previous_video) {
  Fixture f;
  f.in.step = 3;
  f.in.previous_video_id = "vid-2";
  // Neither task-id nor the remembered task applies past step 1.
  f.settings.task_id = "task-9";
  f.in.remembered = {"task-paid", "ext-paid", f.in.request, ""};
  kirin::Plan plan = kirin::plan_step(f.in);
  fail_unless(plan.action == Action::Create);
  fail_unless_equals_string(plan.request.video_id.c_str(), "vid-2");
  fail_unless_equals_string(plan.external_task_id.c_str(), "gst-kirin-generated");

  f.settings.external_task_id = "order-17";
  plan = kirin::plan_step(f.in);
  fail_unless_equals_string(plan.external_task_id.c_str(), "order-17-step3");
}
GST_END_TEST;

GST_START_TEST(test_refresh_polls_the_completed_task) {
  Fixture f;
  f.in.journal_in_use = true;
  JournalEntry entry = created_entry("task-j");
  entry.completed = true;
  f.in.journal = &entry;
  f.in.refresh_task_id = "task-r";
  kirin::Plan plan = kirin::plan_step(f.in);
  fail_unless(plan.action == Action::Refresh);
  fail_if(plan.costs_money());
  fail_unless_equals_string(plan.task_id.c_str(), "task-r");
  fail_if(plan.journal, "a refresh records no new task");
}
GST_END_TEST;

GST_START_TEST(test_journal_request_keys_the_step) {
  Settings settings;
  settings.video_id = "vid-1";
  settings.external_task_id = "order-17";
  settings.api_url = "http://127.0.0.1:9/api";
  settings.extensions = 2;
  kirin::LedgerRequest step_one = kirin::journal_request(settings, 1, "ignored");
  kirin::LedgerRequest step_two = kirin::journal_request(settings, 2, "vid-2");
  fail_unless_equals_string(step_one.request.video_id.c_str(), "vid-1");
  fail_unless_equals_string(step_two.request.video_id.c_str(), "vid-2");
  fail_unless_equals_int(step_two.step, 2);
  fail_unless_equals_int(step_two.extensions, 2);
  fail_unless_equals_string(step_one.api_url.c_str(), "http://127.0.0.1:9/api");
  // The external ID a create of the step sends is the one recorded.
  fail_unless_equals_string(step_one.request.external_task_id.c_str(), "order-17");
  fail_unless_equals_string(step_two.request.external_task_id.c_str(), "order-17-step2");
  fail_unless(!step_one.request.cfg_scale.has_value());
  settings.cfg_scale = 0.25;
  settings.cfg_scale_set = true;
  fail_unless(kirin::journal_request(settings, 1, "").request.cfg_scale == 0.25);
}
GST_END_TEST;

GST_START_TEST(test_fresh_pays_again) {
  Fixture f;
  f.in.remembered = {"task-paid", "ext-paid", f.in.request, ""};
  f.in.fresh = true;
  kirin::Plan plan = kirin::plan_step(f.in);
  fail_unless(plan.action == Action::Create);
  fail_unless(plan.costs_money());
  fail_unless_equals_string(plan.external_task_id.c_str(), "gst-kirin-generated");
}
GST_END_TEST;

static Suite *plan_suite() {
  Suite *s = suite_create("plan");
  TCase *tc = tcase_create("general");
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_new_request_creates_with_a_generated_id);
  tcase_add_test(tc, test_new_request_uses_the_users_external_id);
  tcase_add_test(tc, test_fresh_pays_again);
  tcase_add_test(tc, test_task_id_attaches_without_paying);
  tcase_add_test(tc, test_same_request_again_attaches_to_the_paid_task);
  tcase_add_test(tc, test_journal_entry_attaches_or_replays);
  tcase_add_test(tc, test_chain_step_creates_on_the_previous_video);
  tcase_add_test(tc, test_refresh_polls_the_completed_task);
  tcase_add_test(tc, test_journal_request_keys_the_step);
  return s;
}

GST_CHECK_MAIN(plan);
