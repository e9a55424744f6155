// What the element says when a paid task is in doubt or lost: each text must tell the user
// what happened to the money and what to do next, without contradicting itself.
#include "common.h"

#include "emulator-fixture.h"

namespace {

constexpr const char *kKey = "messages-test-key";

bool contains(const std::string &text, const std::string &part) {
  return text.find(part) != std::string::npos;
}

GstElement *pipeline_with(GstElement *src) {
  GstElement *pipeline = gst_pipeline_new(nullptr);
  GstElement *sink = gst_element_factory_make("fakesink", nullptr);
  gst_bin_add_many(GST_BIN(pipeline), src, sink, nullptr);
  fail_unless(gst_element_link(src, sink));
  return pipeline;
}

// Plays until the element names its task (a kirin-task message), then stops: a run that
// ends while its task is pending. What the bus said, the stop's messages included, goes
// into `result`. Returns the task ID.
std::string start_then_stop(GstElement *src, RunResult &result) {
  GstElement *pipeline = pipeline_with(src);
  GstBus *bus = gst_element_get_bus(pipeline);
  gst_element_set_state(pipeline, GST_STATE_PLAYING);
  std::string task_id;
  for (gint64 end = g_get_monotonic_time() + 20 * G_USEC_PER_SEC;
       task_id.empty() && !result.error && g_get_monotonic_time() < end;) {
    if (GstMessage *msg = gst_bus_timed_pop(bus, 100 * GST_MSECOND)) {
      kirin_test_take_message(msg, result);
      gst_message_unref(msg);
      if (const GstStructure *s = result.last_task_message())
        task_id = gst_structure_get_string(s, "task-id");
    }
  }
  // READY, not NULL: a pipeline going to NULL drops what its bus still holds.
  gst_element_set_state(pipeline, GST_STATE_READY);
  while (GstMessage *msg = gst_bus_pop(bus)) {
    kirin_test_take_message(msg, result);
    gst_message_unref(msg);
  }
  gst_element_set_state(pipeline, GST_STATE_NULL);
  gst_object_unref(bus);
  gst_object_unref(pipeline);
  fail_if(result.error, "the first run failed: %s", result.error ? result.error->message : "");
  fail_if(task_id.empty(), "no task was named within 20 s");
  return task_id;
}

} // namespace

// A 5xx answer to the create request is not a refusal: the provider may have made the task.
GST_START_TEST(test_create_500_may_exist) {
  auto emu = kirin_test_start_emulator(kKey);
  fail_unless(emu->push_fault(kirin_emu::Route::Create, "http:500"));
  GstElement *src = kirin_test_make_src(*emu);
  g_object_set(src, "video-id", "demo-5s", "external-task-id", "promo-500", nullptr);
  GstElement *pipeline = pipeline_with(src);
  RunResult result;
  kirin_test_run(pipeline, 30, result);
  gst_object_unref(pipeline);
  fail_unless(result.error != nullptr, "no error");
  const std::string text = result.error->message;
  fail_unless(contains(text, "may exist"), "%s", text.c_str());
  fail_unless(contains(text, "Do not resubmit blindly"), "%s", text.c_str());
  fail_unless(contains(text, "external-task-id=promo-500"), "%s", text.c_str());
  fail_if(contains(text, "refused"), "says both refused and may exist: %s", text.c_str());
  fail_unless_equals_int(emu->create_count(), 1);
  assert_same_text(result.detail("http-status"), "500");
}
GST_END_TEST;

// A 4xx is a refusal, and says so (nothing was created).
GST_START_TEST(test_create_400_is_refused) {
  auto emu = kirin_test_start_emulator(kKey);
  fail_unless(emu->push_fault(kirin_emu::Route::Create, "http:400"));
  GstElement *src = kirin_test_make_src(*emu);
  g_object_set(src, "video-id", "demo-5s", nullptr);
  GstElement *pipeline = pipeline_with(src);
  RunResult result;
  kirin_test_run(pipeline, 30, result);
  gst_object_unref(pipeline);
  fail_unless(result.error != nullptr, "no error");
  fail_unless(contains(result.error->message, "The provider refused to create the task"), "%s",
              result.error->message);
  fail_if(contains(result.error->message, "may exist"), "%s", result.error->message);
}
GST_END_TEST;

// The journal recorded a task the provider no longer knows: the error says the record was
// dropped and that the next run pays, and the next run does create a new task.
GST_START_TEST(test_journal_task_unknown_to_provider) {
  auto emu = kirin_test_start_emulator(kKey);
  fail_unless(emu->push_fault(kirin_emu::Route::Task, "stuck"));
  GstElement *first = kirin_test_make_src(*emu);
  g_object_set(first, "video-id", "demo-5s", nullptr);
  RunResult first_run;
  const std::string task_id = start_then_stop(first, first_run);

  fail_unless(emu->push_fault(kirin_emu::Route::Poll, "http:404"));
  GstElement *second = kirin_test_make_src(*emu);
  g_object_set(second, "video-id", "demo-5s", nullptr);
  GstElement *pipeline = pipeline_with(second);
  RunResult result;
  kirin_test_run(pipeline, 30, result);
  gst_object_unref(pipeline);
  fail_unless(result.error != nullptr, "no error");
  const std::string text = result.error->message;
  fail_unless_equals_int(emu->create_count(), 1); // the second run attached
  fail_unless(contains(text, "404"), "%s", text.c_str());
  fail_unless(contains(text, "recorded task " + task_id), "%s", text.c_str());
  fail_unless(contains(text, "record was dropped"), "%s", text.c_str());
  fail_unless(contains(text, "creates a new task and pays for it"), "%s", text.c_str());

  GstElement *third = kirin_test_make_src(*emu);
  g_object_set(third, "video-id", "demo-5s", nullptr);
  pipeline = pipeline_with(third);
  RunResult again;
  kirin_test_run(pipeline, 60, again);
  gst_object_unref(pipeline);
  fail_unless(again.eos, "%s", again.error ? again.error->message : "no EOS");
  fail_unless_equals_int(emu->create_count(), 2);
}
GST_END_TEST;

// A stop names the task that goes on at the provider and the ways back to it.
GST_START_TEST(test_canceled_progress_names_task) {
  auto emu = kirin_test_start_emulator(kKey);
  fail_unless(emu->push_fault(kirin_emu::Route::Task, "stuck"));
  GstElement *src = kirin_test_make_src(*emu);
  g_object_set(src, "video-id", "demo-5s", "external-task-id", "promo-stop", nullptr);
  RunResult result;
  const std::string task_id = start_then_stop(src, result);
  std::string created, canceled;
  for (const auto &[type, text] : result.progress) {
    if (type == GST_PROGRESS_TYPE_CONTINUE && contains(text, "created"))
      created = text;
    if (type == GST_PROGRESS_TYPE_CANCELED)
      canceled = text;
  }
  // Said as soon as the task exists, for tools that stop reading the bus before stopping.
  fail_unless(contains(created, "Task " + task_id + " created (external-task-id promo-stop)"), "%s",
              created.c_str());
  fail_unless(contains(created, "task-id=" + task_id), "%s", created.c_str());
  fail_unless(
      contains(canceled, "Stopped before task " + task_id + " (external-task-id promo-stop) ended"),
      "%s", canceled.c_str());
  fail_unless(contains(canceled, "run the same pipeline again"), "%s", canceled.c_str());
  fail_unless(contains(canceled, "task-id=" + task_id), "%s", canceled.c_str());
}
GST_END_TEST;

// Downstream that stops taking the result (here: nothing linked after an identity) is not a
// failed download: the error says where the data stopped, and names the task to resume.
GST_START_TEST(test_downstream_not_linked_is_not_a_download_failure) {
  auto emu = kirin_test_start_emulator(kKey);
  GstElement *src = kirin_test_make_src(*emu);
  g_object_set(src, "video-id", "demo-5s", nullptr);
  GstElement *pipeline = gst_pipeline_new(nullptr);
  GstElement *dangling = gst_element_factory_make("identity", nullptr);
  gst_bin_add_many(GST_BIN(pipeline), src, dangling, nullptr);
  fail_unless(gst_element_link(src, dangling));
  RunResult result;
  kirin_test_run(pipeline, 30, result);
  g_autofree char *task_id = nullptr;
  g_object_get(src, "task-id", &task_id, nullptr);
  gst_object_unref(pipeline);
  fail_unless(result.error != nullptr, "no error");
  const std::string text = result.error->message;
  fail_unless(task_id && *task_id, "no task");
  fail_unless(contains(text, std::string("Streaming the result of task ") + task_id +
                                 " stopped, downstream answered not-linked"),
              "%s", text.c_str());
  fail_unless(contains(text, std::string("Resume with task-id=") + task_id), "%s", text.c_str());
  fail_if(contains(text, "Could not download"), "%s", text.c_str());
  fail_unless(result.error->domain == GST_STREAM_ERROR);
  assert_same_text(result.detail("task-id"), task_id);
  // The result was there to download: one task, its download answered.
  fail_unless_equals_int(emu->create_count(), 1);
}
GST_END_TEST;

static Suite *messages_suite() {
  Suite *s = suite_create("messages");
  TCase *tc = tcase_create("general");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_create_500_may_exist);
  tcase_add_test(tc, test_create_400_is_refused);
  tcase_add_test(tc, test_journal_task_unknown_to_provider);
  tcase_add_test(tc, test_canceled_progress_names_task);
  tcase_add_test(tc, test_downstream_not_linked_is_not_a_download_failure);
  suite_add_tcase(s, tc);
  return s;
}

int main(int argc, char **argv) {
  kirin_test_init(&argc, &argv, "messages");
  return gst_check_run_suite(messages_suite(), "messages", __FILE__);
}
