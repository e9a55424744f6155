// What a user sees when a run fails, end to end against the emulator: settings refused
// before anything is paid (naming the property), the provider's refusals and task errors with
// their codes, retries after 429 and 5xx answers (and a create never sent twice), a timeout
// that names the task, and a result URL that is not HTTP.
#include "kirinextendsrc-fixture.h"

// Runs a task expected to fail and returns the run, for its error and details.
static void run_expecting_error(kirin_emu::Emulator &emu, GstElement *src, RunResult &result,
                                double max_seconds = 30) {
  run_to_file(src, result, max_seconds);
  fail_unless(result.error != nullptr, "no error reached the bus");
  fail_if(result.timed_out);
  (void)emu;
}

GST_START_TEST(test_validation_errors_name_the_property) {
  auto emu = kirin_test_start_emulator(kKey);
  {
    GstElement *src = kirin_test_make_src(*emu); // no video-id, no task-id
    assert_settings_error(src, *emu, "video-id");
  }
  {
    GstElement *src = kirin_test_make_src(*emu);
    g_object_set(src, "video-id", "demo-5s", "api-key", nullptr, nullptr);
    g_unsetenv("VTRIX_API_KEY");
    assert_settings_error(src, *emu, "api-key");
  }
  {
    // 2501 characters, though far fewer than 2500 * 3 bytes would allow.
    GString *prompt = g_string_new(nullptr);
    for (int i = 0; i < 2501; i++)
      g_string_append(prompt, "é");
    GstElement *src = kirin_test_make_src(*emu);
    g_object_set(src, "video-id", "demo-5s", "prompt", prompt->str, nullptr);
    assert_settings_error(src, *emu, "prompt");
    GstElement *src2 = kirin_test_make_src(*emu);
    g_object_set(src2, "video-id", "demo-5s", "negative-prompt", prompt->str, nullptr);
    assert_settings_error(src2, *emu, "negative-prompt");
    g_string_free(prompt, TRUE);
  }
  {
    GstElement *src = kirin_test_make_src(*emu);
    g_object_set(src, "video-id", "demo-5s", "api-url", "ftp://127.0.0.1/model", nullptr);
    assert_settings_error(src, *emu, "api-url");
  }
}
GST_END_TEST;

GST_START_TEST(test_exactly_2500_characters_accepted) {
  auto emu = kirin_test_start_emulator(kKey);
  GString *prompt = g_string_new(nullptr);
  for (int i = 0; i < 2500; i++)
    g_string_append(prompt, "é");
  GstElement *src = kirin_test_make_src(*emu);
  g_object_set(src, "video-id", "demo-5s", "prompt", prompt->str, nullptr);
  g_string_free(prompt, TRUE);
  RunResult result;
  std::string bytes = run_to_file(src, result);
  assert_error_free_eos(result);
  fail_unless_equals_int(emu->create_count(), 1);
}
GST_END_TEST;

GST_START_TEST(test_unauthorized_and_no_balance) {
  auto emu = kirin_test_start_emulator(kKey);
  const struct {
    const char *key;
    guint status;
  } cases[] = {{"wrong-key", 401}, {"broke-key", 403}};
  for (const auto &c : cases) {
    GstElement *src = kirin_test_make_src(*emu);
    g_object_set(src, "video-id", "demo-5s", "api-key", c.key, nullptr);
    RunResult result;
    run_expecting_error(*emu, src, result);
    fail_unless(
        g_error_matches(result.error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_NOT_AUTHORIZED), "%s",
        result.error->message);
    assert_same_text(result.detail("http-status"), std::to_string(c.status));
    fail_unless(strstr(result.error->message, std::to_string(c.status).c_str()) != nullptr, "%s",
                result.error->message);
    // The key is never echoed back, not even a wrong one.
    fail_unless(strstr(result.error->message, c.key) == nullptr);
    fail_unless(result.error_debug.find(c.key) == std::string::npos);
  }
}
GST_END_TEST;

GST_START_TEST(test_task_error_codes_reach_the_bus) {
  auto emu = kirin_test_start_emulator(kKey);
  for (const char *code : {"014002095", "014002096", "014002097", "014002099"}) {
    fail_unless(emu->push_fault(kirin_emu::Route::Task, std::string("fail:") + code));
    GstElement *src = kirin_test_make_src(*emu);
    g_object_set(src, "video-id", "demo-5s", nullptr);
    gst_object_ref(src);
    RunResult result;
    run_expecting_error(*emu, src, result);
    assert_same_text(result.detail("kirin-error-code").c_str(), code);
    std::string task_id = get_string_property(src, "task-id");
    fail_if(task_id.empty());
    assert_same_text(result.detail("task-id").c_str(), task_id);
    fail_unless(strstr(result.error->message, code) != nullptr, "%s", result.error->message);
    fail_unless(strstr(result.error->message, task_id.c_str()) != nullptr);
    assert_same_text(string_field(result.last_task_message(), "status"), "failed");
    gst_object_unref(src);
  }
}
GST_END_TEST;

GST_START_TEST(test_task_error_as_plain_string) {
  auto emu = kirin_test_start_emulator(kKey);
  fail_unless(emu->push_fault(kirin_emu::Route::Task, "fail-text:the prompt was rejected"));
  GstElement *src = kirin_test_make_src(*emu);
  g_object_set(src, "video-id", "demo-5s", nullptr);
  RunResult result;
  run_expecting_error(*emu, src, result);
  fail_unless(strstr(result.error->message, "the prompt was rejected") != nullptr, "%s",
              result.error->message);
  fail_if(result.detail("task-id").empty());
  fail_unless(!result.progress.empty());
  fail_unless_equals_int(result.progress.back().first, GST_PROGRESS_TYPE_ERROR);
}
GST_END_TEST;

// The gap between a request answered 429 and the next request on its route.
static gint64 gap_after_429_us(const kirin_emu::Emulator &emu, kirin_emu::Route route) {
  gint64 refused_at = 0;
  for (const auto &record : emu.requests()) {
    if (record.route != route)
      continue;
    if (refused_at)
      return record.arrival_us - refused_at;
    if (record.status == 429)
      refused_at = record.arrival_us;
  }
  return -1;
}

GST_START_TEST(test_recovers_from_429_and_5xx) {
  auto emu = kirin_test_start_emulator(kKey);
  // Retry-After: 2 exceeds the backoff of a first retry (1 s for a create, the poll
  // interval for a poll), so only honouring it makes the gaps asserted below.
  fail_unless(emu->push_fault(kirin_emu::Route::Create, "http429:2"));
  fail_unless(emu->push_fault(kirin_emu::Route::Poll, "http429:2"));
  fail_unless(emu->push_fault(kirin_emu::Route::Poll, "http:500"));
  fail_unless(emu->push_fault(kirin_emu::Route::Poll, "http:502"));
  fail_unless(emu->push_fault(kirin_emu::Route::Poll, "http:503"));
  fail_unless(emu->push_fault(kirin_emu::Route::Poll, "http429:-1"));
  GstElement *src = kirin_test_make_src(*emu);
  gst_object_ref(src);
  g_object_set(src, "video-id", "demo-5s", nullptr);
  RunResult result;
  std::string bytes = run_to_file(src, result);
  assert_error_free_eos(result);
  std::string task_id = get_string_property(src, "task-id");
  fail_unless(bytes == kirin_test_read_file(emu->task_result_path(task_id)));
  // The rate-limited create was refused, so retrying it could not charge twice.
  fail_unless_equals_int(emu->create_count(), 2);
  fail_unless(emu->poll_count() >= 6);
  const gint64 create_gap = gap_after_429_us(*emu, kirin_emu::Route::Create);
  fail_unless(create_gap >= 2 * G_USEC_PER_SEC,
              "create resent %" G_GINT64_FORMAT " us after Retry-After: 2", create_gap);
  const gint64 poll_gap = gap_after_429_us(*emu, kirin_emu::Route::Poll);
  fail_unless(poll_gap >= 2 * G_USEC_PER_SEC,
              "poll resent %" G_GINT64_FORMAT " us after Retry-After: 2", poll_gap);
  gst_object_unref(src);
}
GST_END_TEST;

GST_START_TEST(test_create_5xx_is_not_resubmitted) {
  auto emu = kirin_test_start_emulator(kKey);
  fail_unless(emu->push_fault(kirin_emu::Route::Create, "http:502"));
  GstElement *src = kirin_test_make_src(*emu);
  gst_object_ref(src);
  g_object_set(src, "video-id", "demo-5s", nullptr);
  RunResult result;
  run_expecting_error(*emu, src, result);
  // The provider may have taken the task: no second create, and the handle to find it.
  fail_unless_equals_int(emu->create_count(), 1);
  std::string external_id = get_string_property(src, "external-task-id");
  fail_unless(strstr(result.error->message, external_id.c_str()) != nullptr, "%s",
              result.error->message);
  assert_same_text(result.detail("http-status").c_str(), "502");
  gst_object_unref(src);
}
GST_END_TEST;

GST_START_TEST(test_timeout_carries_task_id) {
  auto emu = kirin_test_start_emulator(kKey);
  fail_unless(emu->push_fault(kirin_emu::Route::Task, "stuck"));
  GstElement *src = kirin_test_make_src(*emu);
  gst_object_ref(src);
  g_object_set(src, "video-id", "demo-5s", "timeout", 1, nullptr);
  RunResult result;
  run_expecting_error(*emu, src, result, 20);
  fail_unless(result.seconds < 5, "timeout of 1 s took %.2f s", result.seconds);
  std::string task_id = get_string_property(src, "task-id");
  fail_if(task_id.empty());
  assert_same_text(result.detail("task-id").c_str(), task_id);
  std::string hint = "task-id=" + task_id;
  fail_unless(strstr(result.error->message, hint.c_str()) != nullptr, "%s", result.error->message);
  gst_object_unref(src);
}
GST_END_TEST;

GST_START_TEST(test_provider_refuses_past_three_minutes) {
  auto options = kirin_test_emulator_options(kKey);
  options.width = 64;
  options.height = 48;
  auto emu = kirin_test_start_emulator(options);
  emu->add_video("long-178", 178);
  GstElement *src = kirin_test_make_src(*emu);
  gst_object_ref(src);
  g_object_set(src, "video-id", "long-178", nullptr);
  RunResult result;
  run_expecting_error(*emu, src, result);
  // The provider's own limit, reported with its code and the task to look up.
  assert_same_text(result.detail("kirin-error-code"), "014002099");
  fail_unless(strstr(result.error->message, "3-minute") != nullptr, "%s", result.error->message);
  assert_same_text(result.detail("task-id"), get_string_property(src, "task-id"));
  gst_object_unref(src);
}
GST_END_TEST;

GST_START_TEST(test_non_http_result_url_refused) {
  auto emu = kirin_test_start_emulator(kKey);
  for (const char *url : {"file:///etc/passwd", "ftp://127.0.0.1/out.mp4", "data:,x"}) {
    fail_unless(emu->push_fault(kirin_emu::Route::Task, std::string("url:") + url));
    GstElement *src = kirin_test_make_src(*emu);
    gst_object_ref(src);
    g_object_set(src, "video-id", "demo-5s", nullptr);
    RunResult result;
    run_expecting_error(*emu, src, result);
    fail_unless(strstr(result.error->message, "is not http or https") != nullptr, "%s",
                result.error->message);
    std::string task_id = get_string_property(src, "task-id");
    assert_same_text(result.detail("task-id").c_str(), task_id);
    fail_unless_equals_int(emu->download_count(), 0);
    gst_object_unref(src);
  }
}
GST_END_TEST;

static Suite *kirinextendsrc_errors_suite() {
  Suite *s = suite_create("kirinextendsrc-errors");
  TCase *tc = add_general_case(s);
  tcase_add_test(tc, test_provider_refuses_past_three_minutes);
  tcase_add_test(tc, test_validation_errors_name_the_property);
  tcase_add_test(tc, test_exactly_2500_characters_accepted);
  tcase_add_test(tc, test_unauthorized_and_no_balance);
  tcase_add_test(tc, test_task_error_codes_reach_the_bus);
  tcase_add_test(tc, test_task_error_as_plain_string);
  tcase_add_test(tc, test_recovers_from_429_and_5xx);
  tcase_add_test(tc, test_create_5xx_is_not_resubmitted);
  tcase_add_test(tc, test_timeout_carries_task_id);
  tcase_add_test(tc, test_non_http_result_url_refused);
  return s;
}

int main(int argc, char **argv) {
  kirin_test_init(&argc, &argv, "kirinextendsrc-errors");
  return gst_check_run_suite(kirinextendsrc_errors_suite(), "kirinextendsrc-errors", __FILE__);
}
