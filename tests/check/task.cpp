// The wire-format parser: every variant of the task object the provider's pages and client
// describe (ID and status, progress, output, usage and error, the {"data": …} wrapper) and
// hostile input. The bodies around it, error answers and the create request, are in
// task-bodies.cpp.
#include "common.h"

#include <cstring>
#include <string>

#include "task.h"

using kirin::Task;
using kirin::TaskStatus;

static Task parse_ok(const std::string &body) {
  Task task;
  std::string error;
  fail_unless(kirin::parse_task(body.data(), body.size(), task, error), "rejected %s: %s",
              body.substr(0, 200).c_str(), error.c_str());
  return task;
}

// Returns the reason, so a test can check that the right check refused the body.
static std::string parse_fails(const std::string &body) {
  Task task;
  std::string error;
  fail_if(kirin::parse_task(body.data(), body.size(), task, error), "accepted %s",
          body.substr(0, 200).c_str());
  fail_if(error.empty(), "no reason given for %s", body.substr(0, 200).c_str());
  return error;
}

// A completed task whose content is `items` (the inside of the content array).
static Task parse_content(const std::string &items) {
  return parse_ok(R"({"id":"t","status":"completed","output":[{"content":[)" + items + "]}]}");
}

// ---- id and status ----

GST_START_TEST(test_id_from_id) {
  Task task = parse_ok(R"({"id":"task-1","status":"pending","model":"kirin_duration_extension"})");
  assert_same_text(task.id, "task-1");
  fail_unless_equals_int((int)task.status, (int)TaskStatus::Pending);
  assert_same_text(task.status_raw, "pending");
}
GST_END_TEST;

GST_START_TEST(test_id_from_task_id) {
  Task task = parse_ok(R"({"task_id":"task-2","status":"processing"})");
  assert_same_text(task.id, "task-2");
  fail_unless_equals_int((int)task.status, (int)TaskStatus::Processing);
  assert_same_text(parse_ok(R"({"id":"a","task_id":"b"})").id, "a");
  // An empty "id" is no id: "task_id" still counts.
  assert_same_text(parse_ok(R"({"id":"","task_id":"b"})").id, "b");
}
GST_END_TEST;

GST_START_TEST(test_id_numeric) {
  assert_same_text(parse_ok(R"({"id":12345})").id, "12345");
  assert_same_text(parse_ok(R"({"task_id":1764198000123})").id, "1764198000123");
  // Not text and not a number: ignored, and the status alone keeps the task valid.
  Task task = parse_ok(R"({"id":["x"],"status":"queued"})");
  assert_same_text(task.id, "");
  fail_unless_equals_int((int)task.status, (int)TaskStatus::Pending);
}
GST_END_TEST;

GST_START_TEST(test_status_spellings) {
  const struct {
    const char *spelling;
    TaskStatus status;
  } cases[] = {
      {"pending", TaskStatus::Pending},        {"queued", TaskStatus::Pending},
      {"submitted", TaskStatus::Pending},      {"processing", TaskStatus::Processing},
      {"in_progress", TaskStatus::Processing}, {"running", TaskStatus::Processing},
      {"completed", TaskStatus::Completed},    {"succeeded", TaskStatus::Completed},
      {"success", TaskStatus::Completed},      {"failed", TaskStatus::Failed},
      {"cancelled", TaskStatus::Failed},       {"canceled", TaskStatus::Failed},
      {"error", TaskStatus::Failed},           {"COMPLETED", TaskStatus::Completed},
      {"In_Progress", TaskStatus::Processing}, {"Failed", TaskStatus::Failed},
  };
  for (const auto &c : cases) {
    Task task = parse_ok(std::string(R"({"id":"t","status":")") + c.spelling + "\"}");
    fail_unless(task.status == c.status, "status \"%s\" mapped to %d", c.spelling,
                (int)task.status);
    assert_same_text(task.status_raw, c.spelling);
  }
}
GST_END_TEST;

GST_START_TEST(test_status_unknown) {
  Task task = parse_ok(R"({"id":"t","status":"paused"})");
  fail_unless_equals_int((int)task.status, (int)TaskStatus::Unknown);
  assert_same_text(task.status_raw, "paused");
  fail_if(kirin::task_status_is_final(task.status));
  assert_same_text(kirin::task_status_name(task.status), "processing");
}
GST_END_TEST;

GST_START_TEST(test_status_missing) {
  Task task = parse_ok(R"({"id":"t"})");
  fail_unless_equals_int((int)task.status, (int)TaskStatus::Unknown);
  assert_same_text(task.status_raw, "");
  task = parse_ok(R"({"id":"t","status":{"state":"completed"}})");
  fail_unless_equals_int((int)task.status, (int)TaskStatus::Unknown);
  task = parse_ok(R"({"id":"t","status":null})");
  fail_unless_equals_int((int)task.status, (int)TaskStatus::Unknown);
}
GST_END_TEST;

GST_START_TEST(test_status_status_only) {
  Task task = parse_ok(R"({"status":"failed"})");
  assert_same_text(task.id, "");
  fail_unless_equals_int((int)task.status, (int)TaskStatus::Failed);
}
GST_END_TEST;

GST_START_TEST(test_status_names) {
  assert_same_text(kirin::task_status_name(TaskStatus::Pending), "pending");
  assert_same_text(kirin::task_status_name(TaskStatus::Processing), "processing");
  assert_same_text(kirin::task_status_name(TaskStatus::Unknown), "processing");
  assert_same_text(kirin::task_status_name(TaskStatus::Completed), "completed");
  assert_same_text(kirin::task_status_name(TaskStatus::Failed), "failed");
  fail_unless(kirin::task_status_is_final(TaskStatus::Completed));
  fail_unless(kirin::task_status_is_final(TaskStatus::Failed));
  fail_if(kirin::task_status_is_final(TaskStatus::Pending));
  fail_if(kirin::task_status_is_final(TaskStatus::Processing));
}
GST_END_TEST;

// ---- progress ----

GST_START_TEST(test_progress) {
  const struct {
    const char *json;
    double expected;
  } cases[] = {
      {"", -1},
      {R"(,"progress":0.4)", 0.4},
      {R"(,"progress":0)", 0},
      {R"(,"progress":1)", 1},
      {R"(,"progress":1.7)", 1},
      {R"(,"progress":-0.2)", 0},
      {R"(,"progress":150)", 1},
      {R"(,"progress":"0.5")", -1},
      {R"(,"progress":null)", -1},
      {R"(,"progress":true)", -1},
      {R"(,"progress":{"value":0.5})", -1},
  };
  for (const auto &c : cases) {
    Task task = parse_ok(std::string(R"({"id":"t","status":"processing")") + c.json + "}");
    fail_unless(std::fabs(task.progress - c.expected) < 1e-9, "progress for '%s' is %g, not %g",
                c.json, task.progress, c.expected);
  }
}
GST_END_TEST;

// ---- output ----

GST_START_TEST(test_output_image_then_video) {
  Task task =
      parse_content(R"({"type":"image","url":"https://cdn.example/cover.jpg","id":"img-1"},)"
                    R"({"type":"video","url":"https://cdn.example/out.mp4","duration":10.1,)"
                    R"("jobId":"job-7","id":"vid-7"})");
  fail_unless(task.has_video);
  assert_same_text(task.video_url, "https://cdn.example/out.mp4");
  assert_same_text(task.video_id, "vid-7");
  fail_unless_equals_float(task.duration, 10.1);
  fail_unless_equals_int((int)task.status, (int)TaskStatus::Completed);
}
GST_END_TEST;

GST_START_TEST(test_output_several_outputs) {
  Task task = parse_ok(R"({"id":"t","status":"completed","output":[
      {"content":[{"type":"image","url":"https://cdn.example/a.jpg"}]},
      {"content":[]},
      {"content":[{"type":"video","url":"https://cdn.example/first.mp4","id":"v1"}]},
      {"content":[{"type":"video","url":"https://cdn.example/second.mp4","id":"v2"}]}]})");
  fail_unless(task.has_video);
  assert_same_text(task.video_url, "https://cdn.example/first.mp4");
  assert_same_text(task.video_id, "v1");
}
GST_END_TEST;

GST_START_TEST(test_output_without_video) {
  const char *bodies[] = {
      R"({"id":"t","status":"completed","output":[]})",
      R"({"id":"t","status":"completed","output":[{"content":[]}]})",
      R"({"id":"t","status":"completed","output":[{}]})",
      R"({"id":"t","status":"completed"})",
  };
  for (const char *body : bodies) {
    Task task = parse_ok(body);
    fail_if(task.has_video, "a video in %s", body);
    assert_same_text(task.video_url, "");
    fail_unless_equals_float(task.duration, -1);
  }
  fail_if(parse_content(R"({"type":"image","url":"https://cdn.example/a.jpg"})").has_video);
  fail_if(parse_content(R"({"type":"video","id":"v"})").has_video);
  fail_if(parse_content(R"({"type":"video","url":""})").has_video);
  fail_if(parse_content(R"({"url":"https://cdn.example/untyped.mp4"})").has_video);
}
GST_END_TEST;

GST_START_TEST(test_output_video_without_url_skipped) {
  Task task = parse_content(R"({"type":"video","id":"no-url"},)"
                            R"({"type":"video","url":{"href":"x"},"id":"url-object"},)"
                            R"({"type":"video","url":"https://cdn.example/ok.mp4","id":"ok"})");
  fail_unless(task.has_video);
  assert_same_text(task.video_id, "ok");
  assert_same_text(task.video_url, "https://cdn.example/ok.mp4");
}
GST_END_TEST;

GST_START_TEST(test_output_wrong_types) {
  const char *bodies[] = {
      R"({"id":"t","status":"completed","output":"https://cdn.example/out.mp4"})",
      R"({"id":"t","status":"completed","output":{"content":[]}})",
      R"({"id":"t","status":"completed","output":[1,"x",null,true,[],{"content":"x"}]})",
      R"({"id":"t","status":"completed","output":[{"content":[1,"s",null,[],)"
      R"({"type":5,"url":"https://cdn.example/a.mp4"},{"type":"video","url":7}]}]})",
  };
  for (const char *body : bodies) {
    Task task = parse_ok(body);
    fail_if(task.has_video, "a video in %s", body);
  }
}
GST_END_TEST;

GST_START_TEST(test_output_duration) {
  const struct {
    const char *value;
    double expected;
  } cases[] = {
      {"10.1", 10.1}, {"10", 10},       {"0", 0},         {R"("10.1")", 10.1}, {R"(" 9.5 ")", 9.5},
      {R"("5")", 5},  {R"("ten")", -1}, {R"("10s")", -1}, {R"("")", -1},       {R"(" ")", -1},
      {"-3", -1},     {R"("-3")", -1},  {R"("inf")", -1}, {R"("nan")", -1},    {R"("1e999")", -1},
      {"1e999", -1},  {"null", -1},     {"[10]", -1},     {"true", -1},
  };
  for (const auto &c : cases) {
    Task task =
        parse_content(std::string(R"({"type":"video","url":"u","duration":)") + c.value + "}");
    fail_unless(task.has_video);
    fail_unless(std::fabs(task.duration - c.expected) < 1e-9, "duration %s read as %g, not %g",
                c.value, task.duration, c.expected);
  }
  fail_unless_equals_float(parse_content(R"({"type":"video","url":"u"})").duration, -1);
}
GST_END_TEST;

GST_START_TEST(test_output_video_id) {
  assert_same_text(parse_content(R"({"type":"video","url":"u","id":"vid","jobId":"job"})").video_id,
                   "vid");
  assert_same_text(parse_content(R"({"type":"video","url":"u","jobId":"job"})").video_id, "job");
  assert_same_text(parse_content(R"({"type":"video","url":"u","id":"","jobId":"job"})").video_id,
                   "job");
  assert_same_text(parse_content(R"({"type":"video","url":"u","id":42})").video_id, "42");
  assert_same_text(parse_content(R"({"type":"video","url":"u"})").video_id, "");
}
GST_END_TEST;

// ---- usage and error ----

GST_START_TEST(test_usage_cost) {
  assert_same_text(parse_ok(R"({"id":"t","usage":{"cost":"0.28","discount":0}})").cost, "0.28");
  assert_same_text(parse_ok(R"({"id":"t","usage":{"cost":0.28}})").cost, "0.28");
  assert_same_text(parse_ok(R"({"id":"t","usage":{"cost":1}})").cost, "1");
  assert_same_text(parse_ok(R"({"id":"t","usage":{}})").cost, "");
  assert_same_text(parse_ok(R"({"id":"t","usage":"0.28"})").cost, "");
  assert_same_text(parse_ok(R"({"id":"t"})").cost, "");
}
GST_END_TEST;

GST_START_TEST(test_error_object) {
  Task task = parse_ok(R"({"id":"t","status":"failed",)"
                       R"("error":{"code":"014002095","message":"Internal generation error"}})");
  fail_unless_equals_int((int)task.status, (int)TaskStatus::Failed);
  assert_same_text(task.error_code, "014002095");
  assert_same_text(task.error_message, "Internal generation error");

  task = parse_ok(R"({"id":"t","status":"failed",)"
                  R"("error":{"code":14002096,"error_message":"Result parsing exception"}})");
  assert_same_text(task.error_code, "14002096");
  assert_same_text(task.error_message, "Result parsing exception");
}
GST_END_TEST;

GST_START_TEST(test_error_string) {
  Task task = parse_ok(R"({"id":"t","status":"failed","error":"content moderation"})");
  assert_same_text(task.error_code, "");
  assert_same_text(task.error_message, "content moderation");

  task = parse_ok(R"({"id":"t","status":"failed","error_message":"video too long"})");
  assert_same_text(task.error_message, "video too long");

  task = parse_ok(R"({"id":"t","status":"failed","error":null,"error_message":"top level"})");
  assert_same_text(task.error_message, "top level");
}
GST_END_TEST;

// The server's error text reaches error messages and logs: one short printable line.
GST_START_TEST(test_error_text_cleaned) {
  std::string long_text(10000, 'x');
  Task task = parse_ok(
      R"({"id":"t","status":"failed","error":{"code":"0140\u0007","message":"line one\nline two\u001b[31m )" +
      long_text + R"("}})");
  assert_same_text(task.error_code, "0140?");
  fail_unless(g_str_has_prefix(task.error_message.c_str(), "line one line two?[31m xxx"), "%s",
              task.error_message.substr(0, 60).c_str());
  fail_unless(g_utf8_strlen(task.error_message.c_str(), -1) <= 201, "%zu bytes kept",
              task.error_message.size());
}
GST_END_TEST;

GST_START_TEST(test_error_missing) {
  const char *bodies[] = {
      R"({"id":"t","status":"failed"})",
      R"({"id":"t","status":"failed","error":null})",
      R"({"id":"t","status":"failed","error":42})",
      R"({"id":"t","status":"failed","error":{"code":{},"message":["x"]}})",
  };
  for (const char *body : bodies) {
    Task task = parse_ok(body);
    assert_same_text(task.error_code, "");
    assert_same_text(task.error_message, "");
  }
}
GST_END_TEST;

// ---- the {"data": …} wrapper ----

GST_START_TEST(test_data_wrapper) {
  Task task = parse_ok(R"({"code":0,"message":"ok","data":{"id":"wrapped","status":"completed",)"
                       R"("output":[{"content":[{"type":"video","url":"https://cdn.example/w.mp4",)"
                       R"("duration":"10.1","jobId":"job-w"}]}],"usage":{"cost":"0.28"}}})");
  assert_same_text(task.id, "wrapped");
  fail_unless_equals_int((int)task.status, (int)TaskStatus::Completed);
  fail_unless(task.has_video);
  assert_same_text(task.video_id, "job-w");
  fail_unless_equals_float(task.duration, 10.1);
  assert_same_text(task.cost, "0.28");

  // A task that merely has a "data" member is not unwrapped.
  task = parse_ok(R"({"id":"outer","status":"pending","data":{"id":"inner","status":"failed"}})");
  assert_same_text(task.id, "outer");
  fail_unless_equals_int((int)task.status, (int)TaskStatus::Pending);

  task = parse_ok(R"({"status":"pending","data":{"id":"inner","status":"failed"}})");
  assert_same_text(task.id, "");
  fail_unless_equals_int((int)task.status, (int)TaskStatus::Pending);
  assert_same_text(parse_ok(R"({"task_id":"outer","data":{"id":"inner"}})").id, "outer");

  parse_fails(R"({"data":"task-1"})");
  parse_fails(R"({"data":{"progress":0.5}})");
}
GST_END_TEST;

// ---- rejected and hostile bodies ----

GST_START_TEST(test_reject_not_json) {
  parse_fails("not json");
  parse_fails("{id: \"t\"}");
  parse_fails(R"({"id":"t","status":"pending",})");
  parse_fails(R"({'id':'t'})");
  parse_fails(R"(var task = {"id":"t"};)");
  parse_fails("<html><body>502 Bad Gateway</body></html>");
}
GST_END_TEST;

GST_START_TEST(test_reject_truncated) {
  const std::string body =
      R"({"id":"t","status":"completed","progress":1,"output":[{"content":[{"type":"video",)"
      R"("url":"https://cdn.example/out.mp4","duration":"10.1","id":"v"}]}],)"
      R"("usage":{"cost":0.28},"error":{"code":"1","message":"m"}})";
  fail_unless(parse_ok(body).has_video);
  // Every proper prefix is truncated JSON.
  for (size_t length = 0; length < body.size(); length++)
    parse_fails(body.substr(0, length));
}
GST_END_TEST;

GST_START_TEST(test_reject_empty) {
  Task task;
  std::string error;
  fail_if(kirin::parse_task(nullptr, 0, task, error));
  fail_if(error.empty());
  parse_fails("");
  parse_fails("   \n ");
}
GST_END_TEST;

GST_START_TEST(test_reject_not_object) {
  const std::string reason = parse_fails(R"([{"id":"t","status":"pending"}])");
  fail_unless(reason.find("object") != std::string::npos, "reason: %s", reason.c_str());
  parse_fails(R"("t")");
  parse_fails("42");
  parse_fails("null");
  parse_fails("true");
}
GST_END_TEST;

GST_START_TEST(test_reject_no_id_no_status) {
  const std::string reason = parse_fails(R"({"progress":0.5,"model":"kirin_duration_extension"})");
  fail_unless(reason.find("id") != std::string::npos, "reason: %s", reason.c_str());
  parse_fails("{}");
  parse_fails(R"({"id":"","status":""})");
  parse_fails(R"({"id":null,"status":true})");
}
GST_END_TEST;

GST_START_TEST(test_reject_deep_nesting) {
  const gint64 start = g_get_monotonic_time();
  std::string reason = parse_fails(std::string(100000, '['));
  fail_unless(reason.find("deep") != std::string::npos, "reason: %s", reason.c_str());
  std::string objects;
  for (int i = 0; i < 100000; i++)
    objects += R"({"a":)";
  parse_fails(objects);
  // Brackets after a comment holding a quote must not escape the count: json-glib skips
  // comments, so a scan that took the quote for a string would let them all through.
  parse_fails("/* \" */" + std::string(100000, '['));
  parse_fails("'\"'" + std::string(100000, '['));
  // Surplus closing brackets must not make room for more opening ones.
  parse_fails(R"({"id":"t"})" + std::string(100000, ']') + std::string(100000, '['));
  fail_unless(g_get_monotonic_time() - start < G_USEC_PER_SEC, "rejecting took too long");
}
GST_END_TEST;

GST_START_TEST(test_nesting_limit) {
  // The task object itself is level 1, so 63 arrays inside make 64 levels: allowed.
  auto nested = [](int arrays) {
    return R"({"id":"t","metadata":)" + std::string(arrays, '[') + std::string(arrays, ']') + "}";
  };
  assert_same_text(parse_ok(nested(63)).id, "t");
  parse_fails(nested(64));
  // Brackets inside strings, escaped quotes included, are text, not nesting.
  Task task = parse_ok(R"({"id":"t","prompt":"\"[{)" + std::string(1000, '[') + R"(\\"})");
  assert_same_text(task.id, "t");
}
GST_END_TEST;

GST_START_TEST(test_reject_bad_bytes) {
  parse_fails("{\"id\":\"t\xff\xfe\",\"status\":\"pending\"}");
  parse_fails("{\"id\":\"caf\xe9\"}");
  parse_fails(std::string("{\"id\":\"t\"}\0", 11));
  parse_fails(std::string("{\"id\":\"t\0x\"}", 12));
}
GST_END_TEST;

GST_START_TEST(test_size_limits) {
  const std::string prompt(512 * 1024, 'p');
  Task task =
      parse_ok(R"({"id":"big","status":"pending","metadata":{"prompt":")" + prompt + "\"}}");
  assert_same_text(task.id, "big");
  fail_unless_equals_int((int)task.status, (int)TaskStatus::Pending);

  const std::string too_big(1024 * 1024 + 1, ' ');
  const std::string reason = parse_fails(R"({"id":"t","pad":")" + too_big + "\"}");
  fail_unless(reason.find("MiB") != std::string::npos, "reason: %s", reason.c_str());
}
GST_END_TEST;

GST_START_TEST(test_wrong_types_everywhere) {
  Task task = parse_ok(R"({"id":"t","status":"completed","progress":{},"output":[{"content":)"
                       R"([{"type":["video"],"url":"u"}]}],"usage":[1],"error":5,)"
                       R"("error_message":{"text":"x"},"data":[]})");
  assert_same_text(task.id, "t");
  fail_unless_equals_float(task.progress, -1);
  fail_if(task.has_video);
  assert_same_text(task.cost, "");
  assert_same_text(task.error_message, "");
}
GST_END_TEST;

GST_START_TEST(test_task_reset_between_parses) {
  Task task = parse_content(R"({"type":"video","url":"u","id":"v","duration":4})");
  std::string error;
  const std::string next = R"({"id":"second","status":"pending"})";
  fail_unless(kirin::parse_task(next.data(), next.size(), task, error));
  fail_if(task.has_video);
  assert_same_text(task.video_url, "");
  assert_same_text(task.video_id, "");
  fail_unless_equals_float(task.duration, -1);
  assert_same_text(task.id, "second");
}
GST_END_TEST;

GST_START_TEST(test_mutated_bodies) {
  // A cheap fuzz pass: flip every byte of a full task to characters that change its
  // structure; any outcome is fine as long as nothing crashes or logs a critical.
  const std::string body =
      R"({"data":{"id":"t","status":"completed","progress":0.5,"output":[{"content":[)"
      R"({"type":"video","url":"https://cdn.example/out.mp4","duration":"10.1","id":7}]}],)"
      R"("usage":{"cost":0.28},"error":{"code":"1","error_message":"m"}}})";
  const char replacements[] = {'[', ']', '{', '}', '"', ',', ':', '1', '\\', '\xc3'};
  int accepted = 0;
  for (size_t i = 0; i < body.size(); i++) {
    for (char replacement : replacements) {
      std::string mutated = body;
      mutated[i] = replacement;
      Task task;
      std::string error;
      accepted += kirin::parse_task(mutated.data(), mutated.size(), task, error);
    }
  }
  fail_unless(accepted > 0);
}
GST_END_TEST;

static Suite *task_suite(void) {
  Suite *suite = suite_create("kirin-task");

  TCase *ids = tcase_create("id-status");
  suite_add_tcase(suite, ids);
  tcase_add_test(ids, test_id_from_id);
  tcase_add_test(ids, test_id_from_task_id);
  tcase_add_test(ids, test_id_numeric);
  tcase_add_test(ids, test_status_spellings);
  tcase_add_test(ids, test_status_unknown);
  tcase_add_test(ids, test_status_missing);
  tcase_add_test(ids, test_status_status_only);
  tcase_add_test(ids, test_status_names);
  tcase_add_test(ids, test_progress);

  TCase *output = tcase_create("output");
  suite_add_tcase(suite, output);
  tcase_add_test(output, test_output_image_then_video);
  tcase_add_test(output, test_output_several_outputs);
  tcase_add_test(output, test_output_without_video);
  tcase_add_test(output, test_output_video_without_url_skipped);
  tcase_add_test(output, test_output_wrong_types);
  tcase_add_test(output, test_output_duration);
  tcase_add_test(output, test_output_video_id);

  TCase *usage = tcase_create("usage-error");
  suite_add_tcase(suite, usage);
  tcase_add_test(usage, test_usage_cost);
  tcase_add_test(usage, test_error_object);
  tcase_add_test(usage, test_error_string);
  tcase_add_test(usage, test_error_text_cleaned);
  tcase_add_test(usage, test_error_missing);
  tcase_add_test(usage, test_data_wrapper);

  TCase *hostile = tcase_create("hostile");
  suite_add_tcase(suite, hostile);
  tcase_add_test(hostile, test_reject_not_json);
  tcase_add_test(hostile, test_reject_truncated);
  tcase_add_test(hostile, test_reject_empty);
  tcase_add_test(hostile, test_reject_not_object);
  tcase_add_test(hostile, test_reject_no_id_no_status);
  tcase_add_test(hostile, test_reject_deep_nesting);
  tcase_add_test(hostile, test_nesting_limit);
  tcase_add_test(hostile, test_reject_bad_bytes);
  tcase_add_test(hostile, test_size_limits);
  tcase_add_test(hostile, test_wrong_types_everywhere);
  tcase_add_test(hostile, test_task_reset_between_parses);
  tcase_add_test(hostile, test_mutated_bodies);

  return suite;
}

int main(int argc, char **argv) {
  kirin_test_init(&argc, &argv, "task");
  return gst_check_run_suite(task_suite(), "task", __FILE__);
}
