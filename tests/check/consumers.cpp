// kirin:// in every consumer of URIs GStreamer has, end to end against the emulator:
// playbin and playbin3, uridecodebin and uridecodebin3 (which seek, and are seeked here),
// urisourcebin (the bytes as they come), gst-play-1.0, gst-discoverer-1.0 and GstDiscoverer
// from an application. The service and the key come from the environment, as a user sets
// them.
#include "common.h"

#include "emulator-fixture.h"
#include "program.h"

#include <gst/pbutils/pbutils.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <vector>

namespace {

constexpr const char *kKey = "consumers-test-key";
constexpr const char *kUri = "kirin://demo-5s?poll-interval=50";
constexpr int kFrames = 250; // the result: 10 s at 25 fps, every frame a key frame
constexpr GstClockTime kSeekTo = 5 * GST_SECOND;

// What reached a sink since the last flush: the frames, and the first one's time.
struct SinkCount {
  std::atomic<int> buffers{0};
  std::atomic<guint64> bytes{0};
  std::atomic<GstClockTime> first_pts{GST_CLOCK_TIME_NONE};
};

GstPadProbeReturn count(GstPad *, GstPadProbeInfo *info, gpointer data) {
  auto *counted = static_cast<SinkCount *>(data);
  if (GstBuffer *buffer = GST_PAD_PROBE_INFO_BUFFER(info); buffer && GST_IS_BUFFER(buffer)) {
    if (counted->buffers++ == 0)
      counted->first_pts = GST_BUFFER_PTS(buffer);
    counted->bytes += gst_buffer_get_size(buffer);
  } else if (GstEvent *event = GST_PAD_PROBE_INFO_EVENT(info);
             event && GST_EVENT_TYPE(event) == GST_EVENT_FLUSH_STOP) {
    counted->buffers = 0;
    counted->bytes = 0;
    counted->first_pts = GST_CLOCK_TIME_NONE;
  }
  return GST_PAD_PROBE_OK;
}

// A fakesink whose buffers are counted.
GstElement *counting_sink(SinkCount &counted) {
  GstElement *sink = gst_element_factory_make("fakesink", nullptr);
  GstPad *pad = gst_element_get_static_pad(sink, "sink");
  gst_pad_add_probe(pad,
                    (GstPadProbeType)(GST_PAD_PROBE_TYPE_BUFFER | GST_PAD_PROBE_TYPE_EVENT_FLUSH),
                    count, &counted, nullptr);
  gst_object_unref(pad);
  return sink;
}

// Waits (bounded) for a message of `type` on the pipeline's bus; fails on an error.
void wait_for(GstElement *pipeline, GstMessageType type, const char *what) {
  GstBus *bus = gst_element_get_bus(pipeline);
  GstMessage *message =
      gst_bus_timed_pop_filtered(bus, 60 * GST_SECOND, (GstMessageType)(type | GST_MESSAGE_ERROR));
  gst_object_unref(bus);
  fail_unless(message != nullptr, "no %s within 60 s", what);
  if (GST_MESSAGE_TYPE(message) == GST_MESSAGE_ERROR) {
    GError *error = nullptr;
    gst_message_parse_error(message, &error, nullptr);
    std::string text = error->message;
    g_error_free(error);
    gst_message_unref(message);
    fail("error before %s: %s", what, text.c_str());
  }
  gst_message_unref(message);
}

// Prerolls (the task is created and completed by then), seeks to 5 s when asked, plays to
// the end: what a player does when its user drags the position.
void play(GstElement *pipeline, bool seek) {
  fail_if(gst_element_set_state(pipeline, GST_STATE_PAUSED) == GST_STATE_CHANGE_FAILURE);
  wait_for(pipeline, GST_MESSAGE_ASYNC_DONE, "preroll");
  if (seek) {
    fail_unless(gst_element_seek_simple(
                    pipeline, GST_FORMAT_TIME,
                    (GstSeekFlags)(GST_SEEK_FLAG_FLUSH | GST_SEEK_FLAG_KEY_UNIT), kSeekTo),
                "the seek was refused");
    wait_for(pipeline, GST_MESSAGE_ASYNC_DONE, "the seek's preroll");
  }
  fail_if(gst_element_set_state(pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE);
  wait_for(pipeline, GST_MESSAGE_EOS, "EOS");
  gst_element_set_state(pipeline, GST_STATE_NULL);
}

// After a seek to 5 s: the second half, from its first frame; else every frame.
void assert_frames(const SinkCount &counted, bool seeked) {
  const int frames = seeked ? kFrames / 2 : kFrames;
  fail_unless_equals_int(counted.buffers.load(), frames);
  fail_unless_equals_uint64(counted.first_pts.load(), seeked ? kSeekTo : 0);
}

std::unique_ptr<kirin_emu::Emulator> start() {
  auto emu = kirin_test_start_emulator(kKey);
  kirin_test_export_emulator(*emu);
  return emu;
}

void check_player(const char *factory) {
  auto emu = start();
  SinkCount counted;
  GstElement *player = gst_element_factory_make(factory, nullptr);
  fail_unless(player != nullptr, "no %s", factory);
  g_object_set(player, "uri", kUri, "video-sink", counting_sink(counted), "audio-sink",
               gst_element_factory_make("fakesink", nullptr), nullptr);
  play(player, true);
  assert_frames(counted, true);
  fail_unless_equals_int(emu->create_count(), 1);
  gst_object_unref(player);
}

void link_to_sink(GstElement *, GstPad *pad, gpointer sink) {
  GstPad *sink_pad = gst_element_get_static_pad(GST_ELEMENT(sink), "sink");
  if (!gst_pad_is_linked(sink_pad))
    gst_pad_link(pad, sink_pad);
  gst_object_unref(sink_pad);
}

// `factory` in a pipeline, its pad linked to a counting fakesink as it appears.
void check_bin(const char *factory, bool seek, SinkCount &counted) {
  auto emu = start();
  GstElement *pipeline = gst_pipeline_new(nullptr);
  GstElement *bin = gst_element_factory_make(factory, nullptr);
  fail_unless(bin != nullptr, "no %s", factory);
  GstElement *sink = counting_sink(counted);
  g_object_set(bin, "uri", kUri, nullptr);
  gst_bin_add_many(GST_BIN(pipeline), bin, sink, nullptr);
  g_signal_connect(bin, "pad-added", G_CALLBACK(link_to_sink), sink);
  play(pipeline, seek);
  fail_unless_equals_int(emu->create_count(), 1);
  gst_object_unref(pipeline);
}

} // namespace

GST_START_TEST(test_playbin_plays_and_seeks) {
  check_player("playbin");
}
GST_END_TEST;

GST_START_TEST(test_playbin3_plays_and_seeks) {
  check_player("playbin3");
}
GST_END_TEST;

GST_START_TEST(test_uridecodebin_decodes_and_seeks) {
  SinkCount counted;
  check_bin("uridecodebin", true, counted);
  assert_frames(counted, true);
}
GST_END_TEST;

GST_START_TEST(test_uridecodebin3_decodes_and_seeks) {
  SinkCount counted;
  check_bin("uridecodebin3", true, counted);
  assert_frames(counted, true);
}
GST_END_TEST;

// urisourcebin hands on the bytes of the result as they come: all of them, in order.
GST_START_TEST(test_urisourcebin_streams_the_bytes) {
  SinkCount counted;
  check_bin("urisourcebin", false, counted);
  fail_unless(counted.bytes.load() > 100000, "%" G_GUINT64_FORMAT " bytes",
              (guint64)counted.bytes.load());
}
GST_END_TEST;

GST_START_TEST(test_gst_play_plays) {
  auto emu = start();
  WorkDir dir;
  for (const char *playbin3 : {"", "--use-playbin3"}) {
    std::vector<std::string> args{"gst-play-1.0", "--no-interactive", "--videosink=fakesink",
                                  "--audiosink=fakesink", kUri};
    if (*playbin3)
      args.insert(args.begin() + 1, playbin3);
    auto player = kirin_test_spawn(args, dir, *playbin3 ? "playbin3" : "playbin", {});
    fail_unless(kirin_test_wait_up_to(*player, 60), "gst-play-1.0 did not end: %s",
                player->both().c_str());
    fail_unless(player->exit_status == 0, "%s", player->both().c_str());
    fail_if(player->both().find("ERROR") != std::string::npos, "%s", player->both().c_str());
  }
  // The second play replays the first one's task.
  fail_unless_equals_int(emu->create_count(), 1);
}
GST_END_TEST;

GST_START_TEST(test_gst_discoverer_describes) {
  auto emu = start();
  WorkDir dir;
  auto discoverer = kirin_test_spawn({"gst-discoverer-1.0", "-t", "60", kUri}, dir, "out", {});
  fail_unless(kirin_test_wait_up_to(*discoverer, 90), "%s", discoverer->both().c_str());
  fail_unless(discoverer->exit_status == 0, "%s", discoverer->both().c_str());
  const std::string out = discoverer->out();
  fail_unless(out.find("Duration: 0:00:10.") != std::string::npos, "%s", out.c_str());
  fail_unless(out.find("Seekable: yes") != std::string::npos, "%s", out.c_str());
  fail_unless_equals_int(emu->create_count(), 1);
}
GST_END_TEST;

// GstDiscoverer as an application uses it: the duration, seekability and the video stream.
GST_START_TEST(test_discoverer_api_describes) {
  auto emu = start();
  GError *error = nullptr;
  GstDiscoverer *discoverer = gst_discoverer_new(60 * GST_SECOND, &error);
  fail_unless(discoverer != nullptr, "%s", error ? error->message : "");
  GstDiscovererInfo *info = gst_discoverer_discover_uri(discoverer, kUri, &error);
  fail_unless(info != nullptr, "%s", error ? error->message : "");
  fail_unless_equals_int(gst_discoverer_info_get_result(info), GST_DISCOVERER_OK);
  fail_unless_equals_uint64(gst_discoverer_info_get_duration(info), 10 * GST_SECOND);
  fail_unless(gst_discoverer_info_get_seekable(info));
  GList *videos = gst_discoverer_info_get_video_streams(info);
  fail_unless_equals_int(g_list_length(videos), 1);
  auto *video = GST_DISCOVERER_VIDEO_INFO(videos->data);
  fail_unless_equals_int(gst_discoverer_video_info_get_width(video), 320);
  fail_unless_equals_int(gst_discoverer_video_info_get_height(video), 240);
  gst_discoverer_stream_info_list_free(videos);
  gst_discoverer_info_unref(info);
  g_object_unref(discoverer);
  fail_unless_equals_int(emu->create_count(), 1);
}
GST_END_TEST;

// The video stream's ID as GstDiscoverer reports it for `uri`.
std::string discovered_stream_id(GstDiscoverer *discoverer, const char *uri) {
  GError *error = nullptr;
  GstDiscovererInfo *info = gst_discoverer_discover_uri(discoverer, uri, &error);
  fail_unless(info != nullptr, "%s: %s", uri, error ? error->message : "");
  GList *videos = gst_discoverer_info_get_video_streams(info);
  fail_unless_equals_int(g_list_length(videos), 1);
  const gchar *id =
      gst_discoverer_stream_info_get_stream_id(GST_DISCOVERER_STREAM_INFO(videos->data));
  std::string stream_id = id ? id : "";
  gst_discoverer_stream_info_list_free(videos);
  gst_discoverer_info_unref(info);
  return stream_id;
}

// Applications find a stream again in a later run by its ID (GES does, between discovery and
// render): the same request gives the same ID, although each run here is a new task whose
// result has another URL, and another request gives another ID.
GST_START_TEST(test_stream_id_follows_the_request) {
  auto emu = start();
  GstDiscoverer *discoverer = gst_discoverer_new(60 * GST_SECOND, nullptr);
  const std::string first = discovered_stream_id(discoverer, "kirin://demo-5s?fresh=true");
  const std::string again = discovered_stream_id(discoverer, "kirin://demo-5s?fresh=true");
  const std::string other =
      discovered_stream_id(discoverer, "kirin://demo-5s?fresh=true&prompt=another");
  g_object_unref(discoverer);
  fail_unless_equals_int(emu->create_count(), 3);
  std::vector<std::string> downloads;
  for (const auto &request : emu->requests())
    if (request.route == kirin_emu::Route::Download &&
        std::find(downloads.begin(), downloads.end(), request.path) == downloads.end())
      downloads.push_back(request.path);
  fail_unless_equals_int(downloads.size(), 3);
  fail_if(first.empty());
  assert_same_text(again, first);
  fail_if(other == first, "another request has the same stream ID %s", other.c_str());
}
GST_END_TEST;

static Suite *consumers_suite() {
  Suite *s = suite_create("consumers");
  TCase *tc = tcase_create("consumers");
  tcase_set_timeout(tc, 180);
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_playbin_plays_and_seeks);
  tcase_add_test(tc, test_playbin3_plays_and_seeks);
  tcase_add_test(tc, test_uridecodebin_decodes_and_seeks);
  tcase_add_test(tc, test_uridecodebin3_decodes_and_seeks);
  tcase_add_test(tc, test_urisourcebin_streams_the_bytes);
  tcase_add_test(tc, test_gst_play_plays);
  tcase_add_test(tc, test_gst_discoverer_describes);
  tcase_add_test(tc, test_discoverer_api_describes);
  tcase_add_test(tc, test_stream_id_follows_the_request);
  return s;
}

int main(int argc, char **argv) {
  kirin_test_init(&argc, &argv, "consumers");
  return gst_check_run_suite(consumers_suite(), "consumers", __FILE__);
}
