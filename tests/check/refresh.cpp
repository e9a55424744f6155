// The expired-URL refresh is only for a result URL refused before any byte flowed. Once
// bytes went downstream, a fresh URL would restart the file from byte 0 behind them, so a
// refusal then (here: the connection drops mid-body and the CDN answers the child's Range
// retry with 403) is an error that names the task, without another poll.
#include "common.h"
#include "emulator-fixture.h"

#include <mutex>
#include <string>
#include <vector>

namespace {

constexpr const char *kKey = "refresh-key";
constexpr guint kDropAfter = 200000; // bytes of the first download before its connection drops

using kirin_emu::RequestRecord;
using kirin_emu::Route;

// Every byte that leaves the element, in the order it does.
struct Output {
  std::mutex lock;
  std::string bytes;

  void append(GstBuffer *buffer) {
    GstMapInfo map;
    if (!gst_buffer_map(buffer, &map, GST_MAP_READ))
      return;
    std::lock_guard<std::mutex> guard(lock);
    bytes.append(reinterpret_cast<const char *>(map.data), map.size);
    gst_buffer_unmap(buffer, &map);
  }

  static GstPadProbeReturn probe(GstPad *, GstPadProbeInfo *info, gpointer data) {
    auto *output = static_cast<Output *>(data);
    if (info->type & GST_PAD_PROBE_TYPE_BUFFER) {
      output->append(GST_PAD_PROBE_INFO_BUFFER(info));
    } else {
      GstBufferList *list = GST_PAD_PROBE_INFO_BUFFER_LIST(info);
      for (guint i = 0; i < gst_buffer_list_length(list); i++)
        output->append(gst_buffer_list_get(list, i));
    }
    return GST_PAD_PROBE_OK;
  }
};

} // namespace

GST_START_TEST(test_refusal_after_data_is_an_error_without_a_refresh) {
  auto emu = kirin_test_start_emulator(kKey, 0, 20);
  // The first download ends early; the child's Range retry for the rest is refused.
  fail_unless(emu->push_fault(Route::Download, "drop:" + std::to_string(kDropAfter)));
  fail_unless(emu->push_fault(Route::Download, "http:403"));
  GstElement *pipeline = gst_pipeline_new(nullptr);
  GstElement *src = kirin_test_make_src(*emu, 50);
  g_object_set(src, "video-id", "demo-5s", nullptr);
  GstElement *sink = gst_element_factory_make("fakesink", nullptr);
  g_object_set(sink, "sync", FALSE, nullptr);
  gst_bin_add_many(GST_BIN(pipeline), src, sink, nullptr);
  fail_unless(gst_element_link(src, sink));
  Output output;
  GstPad *pad = gst_element_get_static_pad(src, "src");
  gst_pad_add_probe(pad,
                    (GstPadProbeType)(GST_PAD_PROBE_TYPE_BUFFER | GST_PAD_PROBE_TYPE_BUFFER_LIST),
                    Output::probe, &output, nullptr);
  gst_object_unref(pad);

  RunResult result;
  kirin_test_run(pipeline, 60, result, G_USEC_PER_SEC / 2);
  g_autofree char *task_id = nullptr;
  g_object_get(src, "task-id", &task_id, nullptr);
  fail_unless(task_id && *task_id, "no task was created");
  fail_if(result.timed_out, "neither an error nor the end came");
  fail_if(result.eos, "the stream ended as if complete");
  fail_unless(result.error != nullptr);
  fail_unless(strstr(result.error->message, task_id), "the error does not name the task: %s",
              result.error->message);
  assert_same_text(result.detail("task-id"), task_id);

  // Two downloads (the dropped one, the refused retry) and no poll after the first of them.
  std::vector<RequestRecord> records = emu->requests();
  gint64 first_download_us = 0;
  guint downloads = 0;
  for (const RequestRecord &r : records) {
    if (r.route != Route::Download)
      continue;
    if (!downloads++)
      first_download_us = r.arrival_us;
    fail_unless(r.task_id == task_id, "a download of another task: %s", r.path.c_str());
  }
  fail_unless_equals_int(downloads, 2);
  fail_unless_equals_int(records.back().status, 403);
  for (const RequestRecord &r : records)
    fail_if(r.route == Route::Poll && r.arrival_us > first_download_us,
            "the task was polled again after its download began");

  // What went downstream is the start of the result, each byte once.
  std::string file = kirin_test_read_file(emu->task_result_path(task_id));
  fail_unless(file.size() > kDropAfter);
  std::lock_guard<std::mutex> guard(output.lock);
  fail_if(output.bytes.empty(), "no byte flowed before the refusal");
  fail_unless(output.bytes.size() <= kDropAfter, "%zu bytes went downstream, %u were sent",
              output.bytes.size(), kDropAfter);
  fail_unless(file.compare(0, output.bytes.size(), output.bytes) == 0,
              "the output is not a prefix of the result");
  gst_object_unref(pipeline);
}
GST_END_TEST;

static Suite *refresh_suite() {
  Suite *s = suite_create("refresh");
  TCase *tc = tcase_create("general");
  suite_add_tcase(s, tc);
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_refusal_after_data_is_an_error_without_a_refresh);
  return s;
}

int main(int argc, char **argv) {
  kirin_test_init(&argc, &argv, "refresh");
  return gst_check_run_suite(refresh_suite(), "refresh", __FILE__);
}
