// What the element does with API answers it must not take as they come: bodies past the
// client's 1 MiB limit (endless, or 200 MB) and a create refused with Retry-After. Each test
// measures at the emulator what reached or left it, not only what the element reports.
#include "common.h"

#include "emulator-fixture.h"

#include <string>
#include <vector>

namespace {

constexpr const char *kKey = "api-answers-key";
constexpr guint64 kLimit = 1024 * 1024; // the client's limit on an API answer's body
// The element's request-timeout here: a body the limit cut off ends well before it, so a
// cut within this bound was the limit's, not the timeout's.
constexpr guint kRequestTimeoutS = 20;
constexpr gint64 kCutWithinUs = kRequestTimeoutS * G_USEC_PER_SEC / 2;

// What the sockets may hold beyond what the client read: the emulator's 64 KiB send buffer
// (doubled by the kernel) and the client's receive buffer, which the kernel grows as the
// reader keeps up, up to the third number of net.ipv4.tcp_rmem (how far it grows depends
// on how busy the machine is, so the bound is the kernel's, not a measured size).
guint64 socket_slack() {
  guint64 receive_max = 6 * 1024 * 1024; // Linux's default
  g_autofree char *text = nullptr;
  if (g_file_get_contents("/proc/sys/net/ipv4/tcp_rmem", &text, nullptr, nullptr)) {
    g_auto(GStrv) fields = g_strsplit_set(g_strstrip(text), " \t", -1);
    guint n = g_strv_length(fields);
    if (n > 0)
      receive_max = g_ascii_strtoull(fields[n - 1], nullptr, 10);
  }
  return 2 * 64 * 1024 + receive_max;
}

std::string get_string_property(GstElement *element, const char *name) {
  g_autofree char *value = nullptr;
  g_object_get(element, name, &value, nullptr);
  return value ? value : "";
}

// Runs src ! fakesink (src is kept by the caller) to EOS, an error or `max_seconds`.
void run(GstElement *src, RunResult &result, double max_seconds) {
  GstElement *pipeline = gst_pipeline_new(nullptr);
  GstElement *sink = gst_element_factory_make("fakesink", nullptr);
  gst_bin_add_many(GST_BIN(pipeline), src, sink, nullptr);
  fail_unless(gst_element_link(src, sink));
  kirin_test_run(pipeline, max_seconds, result);
  gst_object_unref(pipeline);
}

std::vector<kirin_emu::RequestRecord> records_on(const kirin_emu::Emulator &emu,
                                                 kirin_emu::Route route) {
  std::vector<kirin_emu::RequestRecord> found;
  for (const auto &record : emu.requests())
    if (record.route == route)
      found.push_back(record);
  return found;
}

// The streamed answer was cut off by the client soon after it arrived, having taken about
// the limit: at least what the client buffers, at most that plus the sockets' buffers.
void assert_cut_near_limit(const kirin_emu::RequestRecord &record, guint64 at_least) {
  fail_if(record.streaming, "%s: still being written", record.path.c_str());
  fail_unless(record.streamed_bytes >= at_least,
              "%s: the client hung up after %" G_GUINT64_FORMAT " bytes", record.path.c_str(),
              record.streamed_bytes);
  fail_unless(record.streamed_bytes <= kLimit + socket_slack(),
              "%s: the emulator wrote %" G_GUINT64_FORMAT " bytes before the client hung up",
              record.path.c_str(), record.streamed_bytes);
  const gint64 took = record.stream_end_us - record.arrival_us;
  g_print("%s: the client hung up after %" G_GUINT64_FORMAT " body bytes, %.3f s after the "
          "request\n",
          record.path.c_str(), record.streamed_bytes, took / 1e6);
  fail_unless(took <= kCutWithinUs, "%s: the connection was closed after %" G_GINT64_FORMAT " us",
              record.path.c_str(), took);
}

// A create answered with a body past the limit: the request was delivered, so the task may
// exist; the error says so with the external ID, nothing is resent, and it is quick.
void check_oversized_create(const char *spec, guint64 at_least) {
  auto emu = kirin_test_start_emulator(kKey);
  fail_unless(emu->push_fault(kirin_emu::Route::Create, spec));
  GstElement *src = kirin_test_make_src(*emu);
  gst_object_ref(src);
  g_object_set(src, "video-id", "demo-5s", "request-timeout", kRequestTimeoutS, nullptr);
  RunResult result;
  run(src, result, 30);
  fail_unless(result.error != nullptr, "%s: no error", spec);
  fail_unless(result.seconds < 5, "%s: the error came after %.2f s", spec, result.seconds);
  std::string message = result.error->message;
  std::string external_id = get_string_property(src, "external-task-id");
  fail_if(external_id.empty());
  fail_unless(message.find("may exist") != std::string::npos, "%s", message.c_str());
  fail_unless(message.find("external-task-id=" + external_id) != std::string::npos, "%s",
              message.c_str());
  fail_unless_equals_int(emu->create_count(), 1);
  fail_unless(emu->wait_streams_over(5000));
  assert_cut_near_limit(records_on(*emu, kirin_emu::Route::Create).at(0), at_least);
  gst_object_unref(src);
}

} // namespace

GST_START_TEST(test_endless_create_answer) {
  // The client buffers up to the limit before it refuses a body of unknown length.
  check_oversized_create("endless", kLimit);
}
GST_END_TEST;

GST_START_TEST(test_200_mb_create_answer) {
  // Refused from its Content-Length: the client needs to read nothing of it.
  check_oversized_create("huge:200000000", 0);
}
GST_END_TEST;

// Polls are free and retried: one endless and one 200 MB answer cost about 1 MiB each,
// and the run goes on to its result.
GST_START_TEST(test_oversized_poll_answers_are_retried) {
  auto emu = kirin_test_start_emulator(kKey);
  fail_unless(emu->push_fault(kirin_emu::Route::Poll, "endless"));
  fail_unless(emu->push_fault(kirin_emu::Route::Poll, "huge:200000000"));
  GstElement *src = kirin_test_make_src(*emu);
  gst_object_ref(src);
  g_object_set(src, "video-id", "demo-5s", "request-timeout", kRequestTimeoutS, nullptr);
  RunResult result;
  run(src, result, 30);
  fail_if(result.error, "%s", result.error ? result.error->message : "");
  fail_unless(result.eos);
  fail_unless(emu->wait_streams_over(5000));
  auto polls = records_on(*emu, kirin_emu::Route::Poll);
  fail_unless(polls.size() >= 3);
  assert_cut_near_limit(polls[0], kLimit);
  assert_cut_near_limit(polls[1], 0);
  // Each was given up at once and the next poll followed within the poll backoff.
  fail_unless(polls[2].arrival_us - polls[0].arrival_us < 2 * kCutWithinUs);
  gst_object_unref(src);
}
GST_END_TEST;

// A provider that only ever answers polls with endless bodies: the user gets the timeout's
// error naming the task, on time, and each answer still cost about 1 MiB.
GST_START_TEST(test_endless_poll_answers_end_in_timeout) {
  auto emu = kirin_test_start_emulator(kKey);
  for (int i = 0; i < 60; i++)
    fail_unless(emu->push_fault(kirin_emu::Route::Poll, "endless"));
  GstElement *src = kirin_test_make_src(*emu, 50, 3);
  gst_object_ref(src);
  g_object_set(src, "video-id", "demo-5s", "request-timeout", kRequestTimeoutS, nullptr);
  RunResult result;
  run(src, result, 30);
  fail_unless(result.error != nullptr, "no error");
  fail_unless(result.seconds < 3 + 2.0, "the timeout of 3 s took %.2f s", result.seconds);
  std::string task_id = get_string_property(src, "task-id");
  fail_if(task_id.empty());
  fail_unless(std::string(result.error->message).find(task_id) != std::string::npos, "%s",
              result.error->message);
  assert_same_text(result.detail("task-id"), task_id);
  fail_unless(emu->wait_streams_over(5000));
  auto polls = records_on(*emu, kirin_emu::Route::Poll);
  fail_unless(polls.size() >= 2, "%zu polls", polls.size());
  for (const auto &poll : polls)
    if (poll.stream_end_us > 0 && poll.streamed_bytes > 0)
      fail_unless(poll.streamed_bytes <= kLimit + socket_slack());
  gst_object_unref(src);
}
GST_END_TEST;

// A 429 with Retry-After: 3 (above the 1 s backoff of a first retry) on a create: the second
// create waits the 3 s, and only one task is created (paid).
GST_START_TEST(test_create_honours_retry_after) {
  auto emu = kirin_test_start_emulator(kKey);
  fail_unless(emu->push_fault(kirin_emu::Route::Create, "http429:3"));
  GstElement *src = kirin_test_make_src(*emu);
  gst_object_ref(src);
  g_object_set(src, "video-id", "demo-5s", "request-timeout", kRequestTimeoutS, nullptr);
  RunResult result;
  run(src, result, 60);
  fail_if(result.error, "%s", result.error ? result.error->message : "");
  fail_unless(result.eos);
  auto creates = records_on(*emu, kirin_emu::Route::Create);
  fail_unless_equals_int(creates.size(), 2);
  fail_unless_equals_int(creates[0].status, 429);
  fail_unless(creates[0].task_id.empty());
  fail_unless_equals_int(creates[1].status, 200);
  assert_same_text(creates[1].task_id, get_string_property(src, "task-id"));
  const gint64 gap = creates[1].arrival_us - creates[0].arrival_us;
  fail_unless(gap >= 3 * G_USEC_PER_SEC, "the create was resent after %" G_GINT64_FORMAT " us",
              gap);
  gst_object_unref(src);
}
GST_END_TEST;

static Suite *api_answers_suite() {
  Suite *s = suite_create("api-answers");
  TCase *tc = tcase_create("answers");
  tcase_set_timeout(tc, 120);
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_endless_create_answer);
  tcase_add_test(tc, test_200_mb_create_answer);
  tcase_add_test(tc, test_oversized_poll_answers_are_retried);
  tcase_add_test(tc, test_endless_poll_answers_end_in_timeout);
  tcase_add_test(tc, test_create_honours_retry_after);
  return s;
}

int main(int argc, char **argv) {
  kirin_test_init(&argc, &argv, "api-answers");
  return gst_check_run_suite(api_answers_suite(), "api-answers", __FILE__);
}
