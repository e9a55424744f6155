// kirin:// clips in editing timelines (GStreamer Editing Services), end to end against the
// emulator, whose results here carry video and sound: a timeline is built from kirin://
// assets as an editor builds it, rendered to a file, and the file is checked as its user
// would check it (duration, a video and an audio stream). GES discovers each asset first
// and then makes a source per track: all of them must be the same request, paid once.
#include "common.h"

#include "emulator-fixture.h"
#include "program.h"

#include <ges/ges.h>
#include <gst/pbutils/pbutils.h>

#include <memory>
#include <string>
#include <vector>

namespace {

constexpr const char *kKey = "editing-test-key";
// Encoders and a muxer of the test registry (gst-plugins-good and -base): what the cut is
// encoded with does not matter here, only that it is a real file with both tracks.
constexpr const char *kFormat = "video/x-matroska:image/jpeg:audio/x-vorbis";
// Half a frame at 25 fps: the rendered length is a whole number of frames.
constexpr GstClockTime kTolerance = GST_SECOND / 50;

struct Clip {
  std::string uri;
  GstClockTime inpoint, duration;
};

std::unique_ptr<kirin_emu::Emulator> start(guint processing_ms = 300) {
  kirin_emu::Options options = kirin_test_emulator_options(kKey, 100, processing_ms);
  options.audio = true;
  auto emu = kirin_test_start_emulator(options);
  kirin_test_export_emulator(*emu);
  return emu;
}

GstEncodingProfile *profile() {
  GstEncodingProfile *profile = nullptr;
  GValue value = G_VALUE_INIT;
  g_value_init(&value, GST_TYPE_ENCODING_PROFILE);
  fail_unless(gst_value_deserialize(&value, kFormat), "cannot read the profile %s", kFormat);
  profile = GST_ENCODING_PROFILE(g_value_dup_object(&value));
  g_value_unset(&value);
  return profile;
}

// A timeline with a video and an audio track and the clips back to back on one layer, as
// an editor makes it: each asset is discovered first (which runs its task).
GESTimeline *timeline_of(const std::vector<Clip> &clips) {
  GESTimeline *timeline = ges_timeline_new_audio_video();
  GESLayer *layer = ges_timeline_append_layer(timeline);
  GstClockTime start = 0;
  for (const Clip &clip : clips) {
    GError *error = nullptr;
    GESUriClipAsset *asset = ges_uri_clip_asset_request_sync(clip.uri.c_str(), &error);
    fail_unless(asset != nullptr, "%s was not discovered: %s", clip.uri.c_str(),
                error ? error->message : "?");
    GESClip *added = ges_layer_add_asset(layer, GES_ASSET(asset), start, clip.inpoint,
                                         clip.duration, GES_TRACK_TYPE_UNKNOWN);
    fail_unless(added != nullptr, "%s could not be added", clip.uri.c_str());
    start += clip.duration;
    gst_object_unref(asset);
  }
  return timeline;
}

// Renders the timeline into `path`; "" when it reached EOS, else the error.
std::string render(GESTimeline *timeline, const std::string &path) {
  GESPipeline *pipeline = ges_pipeline_new();
  fail_unless(ges_pipeline_set_timeline(pipeline, timeline));
  g_autofree char *uri = gst_filename_to_uri(path.c_str(), nullptr);
  GstEncodingProfile *encoding = profile();
  fail_unless(ges_pipeline_set_render_settings(pipeline, uri, encoding));
  gst_object_unref(encoding);
  fail_unless(ges_pipeline_set_mode(pipeline, GES_PIPELINE_MODE_RENDER));
  fail_if(gst_element_set_state(GST_ELEMENT(pipeline), GST_STATE_PLAYING) ==
          GST_STATE_CHANGE_FAILURE);
  GstBus *bus = gst_element_get_bus(GST_ELEMENT(pipeline));
  GstMessage *message = gst_bus_timed_pop_filtered(
      bus, 120 * GST_SECOND, (GstMessageType)(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
  gst_object_unref(bus);
  std::string error_text = message ? "" : "neither EOS nor an error within 120 s";
  if (message && GST_MESSAGE_TYPE(message) == GST_MESSAGE_ERROR) {
    GError *error = nullptr;
    gchar *debug = nullptr;
    gst_message_parse_error(message, &error, &debug);
    error_text = std::string(error->message) + " (" + (debug ? debug : "") + ")";
    g_error_free(error);
    g_free(debug);
  }
  if (message)
    gst_message_unref(message);
  gst_element_set_state(GST_ELEMENT(pipeline), GST_STATE_NULL);
  gst_object_unref(pipeline);
  return error_text;
}

// The rendered file, as gst-discoverer-1.0 describes it: its length and one video and one
// audio stream.
void assert_cut(const std::string &path, GstClockTime expected) {
  GError *error = nullptr;
  GstDiscoverer *discoverer = gst_discoverer_new(30 * GST_SECOND, &error);
  fail_unless(discoverer != nullptr, "%s", error ? error->message : "");
  g_autofree char *uri = gst_filename_to_uri(path.c_str(), nullptr);
  GstDiscovererInfo *info = gst_discoverer_discover_uri(discoverer, uri, &error);
  fail_unless(info != nullptr, "the cut cannot be read: %s", error ? error->message : "");
  fail_unless_equals_int(gst_discoverer_info_get_result(info), GST_DISCOVERER_OK);
  const GstClockTime duration = gst_discoverer_info_get_duration(info);
  fail_unless(duration + kTolerance >= expected && duration <= expected + kTolerance,
              "the cut lasts %" GST_TIME_FORMAT ", expected %" GST_TIME_FORMAT,
              GST_TIME_ARGS(duration), GST_TIME_ARGS(expected));
  GList *videos = gst_discoverer_info_get_video_streams(info);
  GList *audios = gst_discoverer_info_get_audio_streams(info);
  fail_unless_equals_int(g_list_length(videos), 1);
  fail_unless_equals_int(g_list_length(audios), 1);
  gst_discoverer_stream_info_list_free(videos);
  gst_discoverer_stream_info_list_free(audios);
  gst_discoverer_info_unref(info);
  g_object_unref(discoverer);
}

void render_and_check(const std::vector<Clip> &clips, GstClockTime expected) {
  WorkDir dir;
  const std::string path = dir.file("cut.mkv");
  GESTimeline *timeline = timeline_of(clips);
  const std::string error = render(timeline, path);
  fail_unless(error.empty(), "the render failed: %s", error.c_str());
  assert_cut(path, expected);
}

} // namespace

// A cut from 1 s to 3 s of an extended video, with its sound: discovery and the two tracks'
// sources are one request, paid once.
GST_START_TEST(test_clip_renders_a_cut) {
  auto emu = start();
  render_and_check({{"kirin://demo-5s", 1 * GST_SECOND, 2 * GST_SECOND}}, 2 * GST_SECOND);
  fail_unless_equals_int(emu->create_count(), 1);
}
GST_END_TEST;

// Two extended videos back to back: one task each.
GST_START_TEST(test_two_clips_back_to_back) {
  auto emu = start();
  emu->add_video("second-clip", 6.0);
  render_and_check({{"kirin://demo-5s", 1 * GST_SECOND, 2 * GST_SECOND},
                    {"kirin://second-clip", 0, 3 * GST_SECOND}},
                   5 * GST_SECOND);
  fail_unless_equals_int(emu->create_count(), 2);
}
GST_END_TEST;

// The render's sources stream results from other URLs than discovery did (fresh=true pays
// for a new task each time: the discovery's and one per track), arriving seconds after the
// composition set them up. GES finds a track's stream by the ID discovery saw: the element
// names its streams after the request, not after the result's URL.
GST_START_TEST(test_results_from_other_urls_than_discovery) {
  auto emu = start(2000);
  render_and_check({{"kirin://demo-5s?fresh=true", 1 * GST_SECOND, 2 * GST_SECOND}},
                   2 * GST_SECOND);
  fail_unless_equals_int(emu->create_count(), 3);
}
GST_END_TEST;

// The documented ges-launch-1.0 line, as a user runs it.
GST_START_TEST(test_ges_launch_renders) {
  auto emu = start();
  WorkDir dir;
  const std::string path = dir.file("cut.mkv");
  g_autofree char *uri = gst_filename_to_uri(path.c_str(), nullptr);
  auto launch = kirin_test_spawn(
      {"ges-launch-1.0", "+clip", "kirin://demo-5s", "i=1.0", "d=2.0", "-o", uri, "-f", kFormat},
      dir, "ges-launch", {});
  fail_unless(kirin_test_wait_up_to(*launch, 120), "ges-launch-1.0 did not end: %s",
              launch->both().c_str());
  fail_unless(launch->exit_status == 0, "%s", launch->both().c_str());
  assert_cut(path, 2 * GST_SECOND);
  fail_unless_equals_int(emu->create_count(), 1);
}
GST_END_TEST;

static Suite *editing_suite() {
  Suite *s = suite_create("editing");
  TCase *tc = tcase_create("editing");
  tcase_set_timeout(tc, 240);
  suite_add_tcase(s, tc);
  tcase_add_checked_fixture(
      tc, [] { ges_init(); }, [] { ges_deinit(); });
  tcase_add_test(tc, test_clip_renders_a_cut);
  tcase_add_test(tc, test_two_clips_back_to_back);
  tcase_add_test(tc, test_results_from_other_urls_than_discovery);
  tcase_add_test(tc, test_ges_launch_renders);
  return s;
}

int main(int argc, char **argv) {
  kirin_test_init(&argc, &argv, "editing");
  return gst_check_run_suite(editing_suite(), "editing", __FILE__);
}
