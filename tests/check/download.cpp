// kirinhttpsrc, the source that downloads a result (gst/kirin/download.h), against the
// emulator's file server on loopback: as an application meets it in source-setup, and alone
// in a pipeline of its own, seeking, resuming a download that broke off, refusing, going
// through a proxy and stopping while the server has not answered.
#include "common.h"

#include "emulator-fixture.h"

#include <string>

namespace {

using kirin_emu::Route;

constexpr const char *kKey = "test-key-download";
constexpr guint kWaitMs = 20000;

// A result on the emulator: its URL and the bytes it serves.
struct Served {
  std::string url;
  std::string bytes;
};

// Runs kirinextendsrc once to its result, as an application would. That also loads the
// client module, which registers kirinhttpsrc in this process.
Served a_result(kirin_emu::Emulator &emu) {
  GstElement *pipeline = gst_pipeline_new(nullptr);
  GstElement *src = kirin_test_make_src(emu);
  GstElement *sink = gst_element_factory_make("fakesink", nullptr);
  g_object_set(src, "video-id", "demo-5s", nullptr);
  gst_bin_add_many(GST_BIN(pipeline), src, sink, nullptr);
  fail_unless(gst_element_link(src, sink));
  RunResult result;
  kirin_test_run(pipeline, 60, result);
  fail_unless(result.eos && !result.error, "the first run did not end with EOS");
  Served served;
  g_autofree char *url = nullptr;
  g_autofree char *task_id = nullptr;
  g_object_get(src, "result-url", &url, "task-id", &task_id, nullptr);
  served.url = url ? url : "";
  served.bytes = kirin_test_read_file(emu.task_result_path(task_id ? task_id : ""));
  fail_if(served.url.empty() || served.bytes.empty());
  gst_object_unref(pipeline);
  return served;
}

GstElement *make_download(const std::string &url) {
  GstElement *source = gst_element_factory_make("kirinhttpsrc", nullptr);
  fail_unless(source != nullptr, "kirinhttpsrc is not registered");
  g_object_set(source, "location", url.c_str(), nullptr);
  return source;
}

// source ! appsink, the bytes collected on the streaming thread.
struct Reader {
  GstElement *pipeline = gst_pipeline_new(nullptr);
  GstElement *sink = gst_element_factory_make("fakesink", nullptr);
  std::string bytes;

  explicit Reader(GstElement *source) {
    g_object_set(sink, "signal-handoffs", TRUE, "sync", FALSE, nullptr);
    g_signal_connect(sink, "handoff",
                     G_CALLBACK(+[](GstElement *, GstBuffer *buffer, GstPad *, gpointer data) {
                       GstMapInfo map;
                       gst_buffer_map(buffer, &map, GST_MAP_READ);
                       static_cast<Reader *>(data)->bytes.append((const char *)map.data, map.size);
                       gst_buffer_unmap(buffer, &map);
                     }),
                     this);
    gst_bin_add_many(GST_BIN(pipeline), source, sink, nullptr);
    fail_unless(gst_element_link(source, sink));
  }
  ~Reader() {
    gst_element_set_state(pipeline, GST_STATE_NULL);
    gst_object_unref(pipeline);
  }
};

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

GST_START_TEST(test_reads_the_result_and_knows_its_size) {
  auto emu = kirin_test_start_emulator(kKey);
  Served served = a_result(*emu);
  Reader reader(make_download(served.url));
  // PAUSED: the first answer's headers tell the size and that ranges are served.
  gst_element_set_state(reader.pipeline, GST_STATE_PAUSED);
  fail_unless(gst_element_get_state(reader.pipeline, nullptr, nullptr, 10 * GST_SECOND) ==
              GST_STATE_CHANGE_SUCCESS);
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

GST_START_TEST(test_a_seek_reads_from_its_offset) {
  auto emu = kirin_test_start_emulator(kKey);
  Served served = a_result(*emu);
  const guint64 offset = served.bytes.size() / 3;
  Reader reader(make_download(served.url));
  gst_element_set_state(reader.pipeline, GST_STATE_PAUSED);
  fail_unless(gst_element_get_state(reader.pipeline, nullptr, nullptr, 10 * GST_SECOND) ==
              GST_STATE_CHANGE_SUCCESS);
  reader.bytes.clear(); // the preroll buffer, from byte 0
  fail_unless(gst_element_seek_simple(reader.pipeline, GST_FORMAT_BYTES, GST_SEEK_FLAG_FLUSH,
                                      (gint64)offset));
  RunResult result;
  kirin_test_run(reader.pipeline, 30, result);
  assert_eos(result);
  fail_unless(reader.bytes == served.bytes.substr(offset), "read %zu bytes after the seek",
              reader.bytes.size());
}
GST_END_TEST;

GST_START_TEST(test_a_broken_download_resumes_where_it_stopped) {
  auto emu = kirin_test_start_emulator(kKey);
  Served served = a_result(*emu);
  size_t before = emu->requests().size();
  fail_unless(emu->push_fault(Route::Download, "drop:100000"));
  fail_unless(emu->push_fault(Route::Download, "drop:100000"));
  Reader reader(make_download(served.url));
  RunResult result;
  kirin_test_run(reader.pipeline, 30, result);
  assert_eos(result);
  fail_unless(reader.bytes == served.bytes, "read %zu bytes, the server has %zu",
              reader.bytes.size(), served.bytes.size());
  fail_unless_equals_int(downloads_from(*emu, before), 3);
}
GST_END_TEST;

GST_START_TEST(test_without_retries_a_broken_download_is_an_error) {
  auto emu = kirin_test_start_emulator(kKey);
  Served served = a_result(*emu);
  fail_unless(emu->push_fault(Route::Download, "drop:100000"));
  GstElement *source = make_download(served.url);
  g_object_set(source, "retries", 0, nullptr);
  Reader reader(source);
  RunResult result;
  kirin_test_run(reader.pipeline, 30, result);
  fail_unless(g_error_matches(result.error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_READ), "got %s",
              result.error ? result.error->message : "no error");
  fail_unless(strstr(result.error->message, "broke off") != nullptr, "%s", result.error->message);
  fail_unless(reader.bytes.size() <= 100000);
}
GST_END_TEST;

// The codes souphttpsrc gives, which kirinextendsrc reads to refresh an expired URL.
GST_START_TEST(test_refusals_carry_the_status) {
  auto emu = kirin_test_start_emulator(kKey);
  Served served = a_result(*emu);
  const struct {
    const char *fault;
    guint status;
    GstResourceError code;
  } cases[] = {{"http:403", 403, GST_RESOURCE_ERROR_NOT_AUTHORIZED},
               {"http:404", 404, GST_RESOURCE_ERROR_NOT_FOUND},
               {"http:500", 500, GST_RESOURCE_ERROR_OPEN_READ}};
  for (const auto &c : cases) {
    fail_unless(emu->push_fault(Route::Download, c.fault));
    Reader reader(make_download(served.url));
    RunResult result;
    kirin_test_run(reader.pipeline, 30, result);
    fail_unless(g_error_matches(result.error, GST_RESOURCE_ERROR, c.code), "%s: got %s", c.fault,
                result.error ? result.error->message : "no error");
    assert_same_text(result.detail("http-status-code"), std::to_string(c.status));
    fail_unless(strstr(result.error->message, std::to_string(c.status).c_str()) != nullptr, "%s",
                result.error->message);
    fail_unless(reader.bytes.empty());
  }
}
GST_END_TEST;

// The proxy is the emulator itself; the URL names a port nothing listens on, so only a
// request that went through the proxy can succeed.
GST_START_TEST(test_the_proxy_property_is_used) {
  auto emu = kirin_test_start_emulator(kKey);
  Served served = a_result(*emu);
  std::string path = served.url.substr(served.url.find("/files/"));
  std::string unreachable = "http://127.0.0.1:" + std::to_string(kirin_test_free_port()) + path;
  GstElement *source = make_download(unreachable);
  g_object_set(source, "proxy", emu->base_url().c_str(), nullptr);
  Reader reader(source);
  RunResult result;
  kirin_test_run(reader.pipeline, 30, result);
  assert_eos(result);
  fail_unless(reader.bytes == served.bytes);
}
GST_END_TEST;

// A server that has not answered yet does not hold up a stop: the blocking request is
// cancelled. The answer is held by the emulator until after the stop.
GST_START_TEST(test_stop_while_the_server_has_not_answered) {
  auto emu = kirin_test_start_emulator(kKey);
  Served served = a_result(*emu);
  emu->hold(Route::Download);
  Reader reader(make_download(served.url));
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

static Suite *download_suite() {
  Suite *s = suite_create("download");
  TCase *tc = tcase_create("general");
  suite_add_tcase(s, tc);
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_reads_the_result_and_knows_its_size);
  tcase_add_test(tc, test_a_seek_reads_from_its_offset);
  tcase_add_test(tc, test_a_broken_download_resumes_where_it_stopped);
  tcase_add_test(tc, test_without_retries_a_broken_download_is_an_error);
  tcase_add_test(tc, test_refusals_carry_the_status);
  tcase_add_test(tc, test_the_proxy_property_is_used);
  tcase_add_test(tc, test_stop_while_the_server_has_not_answered);
  return s;
}

int main(int argc, char **argv) {
  kirin_test_init(&argc, &argv, "download");
  return gst_check_run_suite(download_suite(), "download", __FILE__);
}
