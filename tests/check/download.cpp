// The result's download: the http source the registry makes from the result URL (souphttpsrc
// on Debian), as kirinextendsrc gives it to source-setup and streams through it, against the
// emulator's file server on loopback: its size and seeks through the element, a download that
// broke off and resumes byte for byte, refusals that carry the status and the task ID, and
// stops while the server has not answered and around a refusal.
#include "common.h"

#include "emulator-fixture.h"

#include <string>

namespace {

using kirin_emu::Route;

constexpr const char *kKey = "test-key-download";
constexpr guint kWaitMs = 20000;

// A completed task on the emulator: its ID and the bytes of its result.
struct Served {
  std::string task_id;
  std::string bytes;
};

// kirinextendsrc attached to `task_id` (one poll, then the download), with no journal, so
// that every run downloads again.
GstElement *attached_src(const kirin_emu::Emulator &emu, const std::string &task_id) {
  GstElement *src = kirin_test_make_src(emu);
  g_object_set(src, "task-id", task_id.c_str(), "journal", "none", nullptr);
  return src;
}

// kirinextendsrc ! fakesink, the bytes collected on the streaming thread.
struct Reader {
  GstElement *pipeline = gst_pipeline_new(nullptr);
  GstElement *src;
  GstElement *sink = gst_element_factory_make("fakesink", nullptr);
  std::string bytes;
  std::string factory; // of the source that source-setup handed out

  explicit Reader(GstElement *source) : src(source) {
    g_object_set(sink, "signal-handoffs", TRUE, "sync", FALSE, nullptr);
    g_signal_connect(sink, "handoff",
                     G_CALLBACK(+[](GstElement *, GstBuffer *buffer, GstPad *, gpointer data) {
                       GstMapInfo map;
                       gst_buffer_map(buffer, &map, GST_MAP_READ);
                       static_cast<Reader *>(data)->bytes.append((const char *)map.data, map.size);
                       gst_buffer_unmap(buffer, &map);
                     }),
                     this);
    g_signal_connect(
        src, "source-setup", G_CALLBACK(+[](GstElement *, GstElement *child, gpointer data) {
          static_cast<Reader *>(data)->factory = GST_OBJECT_NAME(gst_element_get_factory(child));
        }),
        this);
    gst_bin_add_many(GST_BIN(pipeline), src, sink, nullptr);
    fail_unless(gst_element_link(src, sink));
  }
  ~Reader() {
    gst_element_set_state(pipeline, GST_STATE_NULL);
    gst_object_unref(pipeline);
  }

  // PAUSED, prerolled on the result's first buffer.
  void preroll() {
    gst_element_set_state(pipeline, GST_STATE_PAUSED);
    fail_unless(gst_element_get_state(pipeline, nullptr, nullptr, 30 * GST_SECOND) ==
                    GST_STATE_CHANGE_SUCCESS,
                "no preroll");
  }
};

Served a_completed_task(kirin_emu::Emulator &emu) {
  Reader reader(kirin_test_make_src(emu));
  g_object_set(reader.src, "video-id", "demo-5s", "journal", "none", nullptr);
  RunResult result;
  kirin_test_run(reader.pipeline, 60, result);
  fail_unless(result.eos && !result.error, "the first run did not end with EOS");
  g_autofree char *task_id = nullptr;
  g_object_get(reader.src, "task-id", &task_id, nullptr);
  Served served{task_id ? task_id : "", ""};
  served.bytes = kirin_test_read_file(emu.task_result_path(served.task_id));
  fail_if(served.bytes.empty() || reader.bytes != served.bytes);
  return served;
}

void assert_eos(const RunResult &result) {
  fail_if(result.error, "unexpected error: %s (%s)", result.error ? result.error->message : "",
          result.error_debug.c_str());
  fail_unless(result.eos, "no EOS within the bound");
}

guint downloads_from(const kirin_emu::Emulator &emu, size_t first) {
  auto requests = emu.requests();
  guint count = 0;
  for (size_t i = first; i < requests.size(); i++)
    count += requests[i].route == Route::Download;
  return count;
}

} // namespace

// The registry's http source, not one of the element's own: whatever
// gst_element_make_from_uri gives for the URL, which on Debian is souphttpsrc.
GST_START_TEST(test_the_download_is_the_registry_http_source) {
  auto emu = kirin_test_start_emulator(kKey);
  Served served = a_completed_task(*emu);
  Reader reader(attached_src(*emu, served.task_id));
  reader.preroll();
  assert_same_text(reader.factory, "souphttpsrc");
  // The source's answer to a BYTES duration query reaches the application through the
  // element, and so does its seekability.
  gint64 duration = -1;
  fail_unless(gst_element_query_duration(reader.pipeline, GST_FORMAT_BYTES, &duration));
  fail_unless_equals_int64(duration, (gint64)served.bytes.size());
  GstQuery *seeking = gst_query_new_seeking(GST_FORMAT_BYTES);
  fail_unless(gst_element_query(reader.pipeline, seeking));
  gboolean seekable = FALSE;
  gst_query_parse_seeking(seeking, nullptr, &seekable, nullptr, nullptr);
  gst_query_unref(seeking);
  fail_unless(seekable, "a server that serves ranges is not seekable");
  RunResult result;
  kirin_test_run(reader.pipeline, 30, result);
  assert_eos(result);
  fail_unless(reader.bytes == served.bytes, "read %zu bytes, the server has %zu",
              reader.bytes.size(), served.bytes.size());
}
GST_END_TEST;

// A byte seek (what qtdemux does for a file whose index is at its end) is a Range request.
GST_START_TEST(test_a_seek_reads_from_its_offset) {
  auto emu = kirin_test_start_emulator(kKey);
  Served served = a_completed_task(*emu);
  const guint64 offset = served.bytes.size() / 3;
  Reader reader(attached_src(*emu, served.task_id));
  reader.preroll();
  reader.bytes.clear(); // the preroll buffer, from byte 0
  size_t before = emu->requests().size();
  fail_unless(gst_element_seek_simple(reader.pipeline, GST_FORMAT_BYTES, GST_SEEK_FLAG_FLUSH,
                                      (gint64)offset));
  RunResult result;
  kirin_test_run(reader.pipeline, 30, result);
  assert_eos(result);
  fail_unless(reader.bytes == served.bytes.substr(offset), "read %zu bytes after the seek",
              reader.bytes.size());
  fail_unless_equals_int(downloads_from(*emu, before), 1);
}
GST_END_TEST;

// Two connections dropped mid-body: the download goes on from where each stopped, and the
// stream is the file, byte for byte.
GST_START_TEST(test_a_broken_download_resumes_where_it_stopped) {
  auto emu = kirin_test_start_emulator(kKey);
  Served served = a_completed_task(*emu);
  size_t before = emu->requests().size();
  fail_unless(emu->push_fault(Route::Download, "drop:100000"));
  fail_unless(emu->push_fault(Route::Download, "drop:100000"));
  Reader reader(attached_src(*emu, served.task_id));
  RunResult result;
  kirin_test_run(reader.pipeline, 30, result);
  assert_eos(result);
  fail_unless(reader.bytes == served.bytes, "read %zu bytes, the server has %zu",
              reader.bytes.size(), served.bytes.size());
  fail_unless_equals_int(downloads_from(*emu, before), 3);
}
GST_END_TEST;

// A refusal that a fresh URL cannot cure is an error naming the status and the task.
GST_START_TEST(test_a_server_error_carries_the_status_and_the_task) {
  auto emu = kirin_test_start_emulator(kKey);
  Served served = a_completed_task(*emu);
  // souphttpsrc retries a 500 on its own (its retries): every answer is one.
  for (int i = 0; i < 8; i++)
    fail_unless(emu->push_fault(Route::Download, "http:500"));
  Reader reader(attached_src(*emu, served.task_id));
  RunResult result;
  kirin_test_run(reader.pipeline, 30, result);
  fail_unless(result.error != nullptr, "no error");
  fail_unless(result.detail("http-status") == "500", "%s (%s)", result.error->message,
              result.error_debug.c_str());
  assert_same_text(result.detail("task-id"), served.task_id);
  fail_unless(strstr(result.error->message, served.task_id.c_str()) != nullptr, "%s",
              result.error->message);
  fail_unless(reader.bytes.empty());
}
GST_END_TEST;

// A server that has not answered yet does not hold up a stop. The answer is held by the
// emulator until after the stop.
GST_START_TEST(test_stop_while_the_server_has_not_answered) {
  auto emu = kirin_test_start_emulator(kKey);
  Served served = a_completed_task(*emu);
  emu->hold(Route::Download);
  Reader reader(attached_src(*emu, served.task_id));
  gst_element_set_state(reader.pipeline, GST_STATE_PLAYING);
  fail_unless(emu->wait_held(Route::Download, 1, kWaitMs) == 1);
  gint64 start = g_get_monotonic_time();
  fail_unless(gst_element_set_state(reader.pipeline, GST_STATE_NULL) == GST_STATE_CHANGE_SUCCESS);
  double seconds = (g_get_monotonic_time() - start) / 1e6;
  fail_unless(seconds < 2 * kirin_test_slowdown(), "the stop took %.2f s", seconds);
  fail_unless(emu->wait_abandoned(Route::Download, 1, kWaitMs) == 1,
              "the request was not given up");
  emu->release(Route::Download);
  fail_unless(reader.bytes.empty());
}
GST_END_TEST;

// Stops around an expired URL's refusal, placed by holding answers: while the 403 is held
// (the source waits for its answer), and once the element has taken the refusal and lets go
// of the refused source (the refreshing poll is held). Every stop returns at once, no source
// outlives it, and the process lives on. KIRIN_TEST_REFUSAL_STOPS sets how many (default 1000).
GST_START_TEST(test_stops_around_a_refusal) {
  auto emu = kirin_test_start_emulator(kKey);
  Served served = a_completed_task(*emu);
  const char *count = g_getenv("KIRIN_TEST_REFUSAL_STOPS");
  const int runs = count ? atoi(count) : 1000;
  for (int i = 0; i < runs; i++) {
    const bool after_refusal = i % 2;
    fail_unless(emu->push_fault(Route::Download, "http:403"));
    emu->hold(Route::Download);
    Reader reader(attached_src(*emu, served.task_id));
    gst_element_set_state(reader.pipeline, GST_STATE_PLAYING);
    fail_unless(emu->wait_held(Route::Download, 1, kWaitMs) == 1, "run %d: no download", i);
    if (after_refusal) {
      // The attach's poll came before the download: the next poll is the refresh.
      emu->hold(Route::Poll);
      emu->release(Route::Download);
      fail_unless(emu->wait_held(Route::Poll, 1, kWaitMs) == 1, "run %d: no refresh", i);
    }
    gint64 start = g_get_monotonic_time();
    GstState target = i % 4 < 2 ? GST_STATE_NULL : GST_STATE_READY;
    fail_unless(gst_element_set_state(reader.pipeline, target) == GST_STATE_CHANGE_SUCCESS,
                "run %d: the stop failed", i);
    double seconds = (g_get_monotonic_time() - start) / 1e6;
    fail_unless(seconds < 2 * kirin_test_slowdown(), "run %d: the stop took %.2f s", i, seconds);
    emu->release(Route::Poll);
    emu->release(Route::Download);
    fail_unless(reader.bytes.empty(), "run %d: bytes after a refusal", i);
  }
}
GST_END_TEST;

static Suite *download_suite() {
  Suite *s = suite_create("download");
  TCase *tc = tcase_create("general");
  suite_add_tcase(s, tc);
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_the_download_is_the_registry_http_source);
  tcase_add_test(tc, test_a_seek_reads_from_its_offset);
  tcase_add_test(tc, test_a_broken_download_resumes_where_it_stopped);
  tcase_add_test(tc, test_a_server_error_carries_the_status_and_the_task);
  tcase_add_test(tc, test_stop_while_the_server_has_not_answered);
  TCase *stops = tcase_create("stops");
  suite_add_tcase(s, stops);
  tcase_set_timeout(stops, 900);
  tcase_add_test(stops, test_stops_around_a_refusal);
  return s;
}

int main(int argc, char **argv) {
  kirin_test_init(&argc, &argv, "download");
  return gst_check_run_suite(download_suite(), "download", __FILE__);
}
