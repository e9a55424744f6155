// The element end to end against the emulator of the provider's API on loopback: its
// properties, the requests a run sends, its progress messages and tags, chained extensions
// and intermediate results, callbacks, source-setup and the result it streams. The other
// kirinextendsrc-* suites hold what a run pays once (cache), its errors and its stops.
#include "kirinextendsrc-fixture.h"

#include <json-glib/json-glib.h>
#include <libsoup/soup.h>

#include <memory>
#include <vector>

GST_START_TEST(test_properties_and_secret_key) {
  GstElement *src = gst_element_factory_make("kirinextendsrc", nullptr);
  fail_unless(src != nullptr);
  GstElementFactory *factory = gst_element_get_factory(src);
  assert_same_text(gst_element_factory_get_klass(factory), "Source/Network");
  const char *names[] = {"api-url",          "api-key",         "model",          "video-id",
                         "prompt",           "negative-prompt", "cfg-scale",      "callback-url",
                         "external-task-id", "task-id",         "poll-interval",  "timeout",
                         "result-url",       "result-video-id", "result-duration"};
  for (const char *name : names)
    fail_unless(g_object_class_find_property(G_OBJECT_GET_CLASS(src), name) != nullptr, "%s", name);
  assert_same_text(get_string_property(src, "model"), "kirin_duration_extension");
  guint timeout = 0;
  double cfg = 0;
  g_object_get(src, "timeout", &timeout, "cfg-scale", &cfg, nullptr);
  fail_unless_equals_int(timeout, 1200);
  fail_unless(cfg == 0.5);
  g_object_set(src, "api-key", kKey, nullptr);
  std::string read_back = get_string_property(src, "api-key");
  fail_if(read_back.empty(), "a set key should read back as set (masked)");
  fail_unless(read_back.find(kKey) == std::string::npos, "the key was readable");
  GParamSpec *pspec = g_object_class_find_property(G_OBJECT_GET_CLASS(src), "result-url");
  fail_if(pspec->flags & G_PARAM_WRITABLE);
  gst_object_unref(src);
}
GST_END_TEST;

GST_START_TEST(test_stream_intermediate_results) {
  auto emu = kirin_test_start_emulator(kKey);
  GstElement *pipeline = gst_pipeline_new(nullptr);
  GstElement *src = kirin_test_make_src(*emu);
  GstElement *sink = gst_element_factory_make("fakesink", nullptr);
  g_object_set(src, "video-id", "demo-5s", "extensions", 3, "stream-intermediate", TRUE, nullptr);
  gst_bin_add_many(GST_BIN(pipeline), src, sink, nullptr);
  fail_unless(gst_element_link(src, sink));
  struct Streams {
    std::mutex lock;
    std::vector<std::string> bytes; // one per stream-start
    int eos = 0;
  } streams;
  GstPad *pad = gst_element_get_static_pad(sink, "sink");
  gst_pad_add_probe(
      pad, (GstPadProbeType)(GST_PAD_PROBE_TYPE_BUFFER | GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM),
      [](GstPad *, GstPadProbeInfo *info, gpointer data) {
        auto *streams = static_cast<Streams *>(data);
        std::lock_guard<std::mutex> guard(streams->lock);
        if (info->type & GST_PAD_PROBE_TYPE_BUFFER) {
          GstBuffer *buffer = GST_PAD_PROBE_INFO_BUFFER(info);
          if (streams->bytes.empty())
            streams->bytes.emplace_back();
          GstMapInfo map;
          gst_buffer_map(buffer, &map, GST_MAP_READ);
          streams->bytes.back().append((const char *)map.data, map.size);
          gst_buffer_unmap(buffer, &map);
        } else if (GST_EVENT_TYPE(GST_PAD_PROBE_INFO_EVENT(info)) == GST_EVENT_STREAM_START) {
          streams->bytes.emplace_back();
        } else if (GST_EVENT_TYPE(GST_PAD_PROBE_INFO_EVENT(info)) == GST_EVENT_EOS) {
          streams->eos++;
        }
        return GST_PAD_PROBE_OK;
      },
      &streams, nullptr);
  gst_object_unref(pad);
  RunResult result;
  kirin_test_run(pipeline, 60, result);
  gst_object_unref(pipeline);
  assert_error_free_eos(result);
  fail_unless_equals_int(emu->create_count(), 3);
  std::vector<std::string> tasks;
  for (const GstStructure *s : result.task_messages)
    if (string_field(s, "status") == "completed")
      tasks.push_back(string_field(s, "task-id"));
  fail_unless_equals_int(tasks.size(), 3);
  fail_unless_equals_int(streams.bytes.size(), 3);
  for (size_t i = 0; i < 3; i++)
    fail_unless(streams.bytes[i] == kirin_test_read_file(emu->task_result_path(tasks[i])),
                "stream %zu is not step %zu's result", i + 1, i + 1);
  fail_unless_equals_int(streams.eos, 1);
}
GST_END_TEST;

GST_START_TEST(test_happy_path_byte_identical) {
  auto emu = kirin_test_start_emulator(kKey);
  GstElement *src = kirin_test_make_src(*emu);
  gst_object_ref(src);
  g_object_set(src, "video-id", "demo-5s", "prompt", "the camera keeps panning left", nullptr);

  RunResult result;
  std::string bytes = run_to_file(src, result);
  assert_error_free_eos(result);

  std::string task_id = get_string_property(src, "task-id");
  fail_if(task_id.empty(), "task-id not readable after creation");
  std::string served = kirin_test_read_file(emu->task_result_path(task_id));
  fail_unless(served.size() > 1000, "the emulator rendered no result");
  fail_unless(bytes == served, "output (%zu bytes) differs from the served file (%zu bytes)",
              bytes.size(), served.size());

  // The bus told the whole story: pending, processing, then completed with the result.
  fail_unless(result.task_messages.size() >= 3);
  assert_same_text(string_field(result.task_messages.front(), "status"), "pending");
  bool saw_processing = false;
  for (const GstStructure *s : result.task_messages) {
    saw_processing |= string_field(s, "status") == "processing";
    assert_same_text(string_field(s, "task-id").c_str(), task_id);
    double progress;
    if (gst_structure_get_double(s, "progress", &progress))
      fail_unless(progress >= 0 && progress <= 1);
  }
  fail_unless(saw_processing);
  const GstStructure *done = result.last_task_message();
  assert_same_text(string_field(done, "status").c_str(), "completed");
  fail_if(string_field(done, "url").empty());
  fail_if(string_field(done, "video-id").empty());
  assert_same_text(string_field(done, "cost").c_str(), "0.28");
  double duration = 0;
  fail_unless(gst_structure_get_double(done, "duration", &duration));
  fail_unless(duration > 9.9 && duration < 10.1, "duration %f, expected 5 s + 5 s", duration);
  std::string external_id = get_string_property(src, "external-task-id");
  fail_unless(g_str_has_prefix(external_id.c_str(), "gst-kirin-"));
  assert_same_text(string_field(done, "external-task-id").c_str(), external_id);

  // Read-only results.
  assert_same_text(get_string_property(src, "result-url"), string_field(done, "url"));
  assert_same_text(get_string_property(src, "result-video-id"), string_field(done, "video-id"));
  double result_duration = 0;
  g_object_get(src, "result-duration", &result_duration, nullptr);
  fail_unless(result_duration > 9.9 && result_duration < 10.1);

  // The create request had the provider's shape and only the set fields.
  std::string body = emu->last_create_body();
  fail_unless(body.find("\"input\"") != std::string::npos, "%s", body.c_str());
  fail_unless(body.find("\"video_id\" : \"demo-5s\"") != std::string::npos ||
                  body.find("\"video_id\":\"demo-5s\"") != std::string::npos,
              "%s", body.c_str());
  fail_unless(body.find("negative_prompt") == std::string::npos, "%s", body.c_str());
  fail_unless(body.find("cfg_scale") == std::string::npos, "%s", body.c_str());
  fail_unless(body.find(external_id) != std::string::npos, "%s", body.c_str());

  // The key went to the API only, never to the result host.
  fail_unless(emu->download_count() >= 1);
  fail_unless_equals_int(emu->download_auth_count(), 0);
  gst_object_unref(src);
}
GST_END_TEST;

// A number from the create request's input[0].params, or -1.
static double create_param_double(const std::string &body, const char *name) {
  g_autoptr(JsonParser) parser = json_parser_new();
  if (!json_parser_load_from_data(parser, body.c_str(), body.size(), nullptr))
    return -1;
  JsonObject *root = json_node_get_object(json_parser_get_root(parser));
  JsonArray *input = json_object_get_array_member(root, "input");
  JsonObject *params =
      json_object_get_object_member(json_array_get_object_element(input, 0), "params");
  return json_object_has_member(params, name) ? json_object_get_double_member(params, name) : -1;
}

GST_START_TEST(test_optional_fields_passed_through) {
  auto emu = kirin_test_start_emulator(kKey);
  GstElement *src = kirin_test_make_src(*emu);
  g_object_set(src, "video-id", "demo-5s", "negative-prompt", "no text overlays", "cfg-scale", 0.7,
               "external-task-id", "order-4711", nullptr);
  gst_object_ref(src);
  RunResult result;
  run_to_file(src, result);
  assert_error_free_eos(result);
  std::string body = emu->last_create_body();
  fail_unless(body.find("no text overlays") != std::string::npos, "%s", body.c_str());
  fail_unless(create_param_double(body, "cfg_scale") == 0.7, "%s", body.c_str());
  fail_unless(body.find("order-4711") != std::string::npos, "%s", body.c_str());
  fail_unless(body.find("\"prompt\"") == std::string::npos, "unset prompt sent: %s", body.c_str());
  // The user's own external ID is used as is, and reported with every message.
  assert_same_text(get_string_property(src, "external-task-id"), "order-4711");
  assert_same_text(string_field(result.last_task_message(), "external-task-id"), "order-4711");
  gst_object_unref(src);
}
GST_END_TEST;

GST_START_TEST(test_callback_url_reaches_the_provider) {
  auto emu = kirin_test_start_emulator(kKey);
  GstElement *src = kirin_test_make_src(*emu);
  gst_object_ref(src);
  std::string callback = emu->base_url() + "/callbacks";
  g_object_set(src, "video-id", "demo-5s", "callback-url", callback.c_str(), nullptr);
  RunResult result;
  run_to_file(src, result);
  assert_error_free_eos(result);
  // The provider notified the callback URL of the task's changes, ending with completion.
  std::string task_id = get_string_property(src, "task-id");
  // pending -> processing, processing -> completed; they may trail the download a little.
  std::vector<std::string> bodies = emu->received_callbacks(2, 5000);
  fail_unless(bodies.size() >= 2, "%zu callbacks", bodies.size());
  fail_unless(bodies.back().find(task_id) != std::string::npos, "%s", bodies.back().c_str());
  fail_unless(bodies.back().find("completed") != std::string::npos, "%s", bodies.back().c_str());
  gst_object_unref(src);
}
GST_END_TEST;

static GstPadProbeReturn keep_tags(GstPad *, GstPadProbeInfo *info, gpointer data) {
  GstEvent *event = GST_PAD_PROBE_INFO_EVENT(info);
  if (GST_EVENT_TYPE(event) == GST_EVENT_TAG) {
    GstTagList *tags = nullptr;
    gst_event_parse_tag(event, &tags);
    auto **kept = static_cast<GstTagList **>(data);
    if (!*kept)
      *kept = gst_tag_list_copy(tags);
  }
  return GST_PAD_PROBE_OK;
}

GST_START_TEST(test_progress_messages_and_tags) {
  auto emu = kirin_test_start_emulator(kKey);
  GstElement *pipeline = gst_pipeline_new(nullptr);
  GstElement *src = kirin_test_make_src(*emu);
  g_object_set(src, "video-id", "demo-5s", "prompt", "a slow zoom", nullptr);
  GstElement *sink = gst_element_factory_make("fakesink", nullptr);
  gst_bin_add_many(GST_BIN(pipeline), src, sink, nullptr);
  fail_unless(gst_element_link(src, sink));
  GstTagList *tags = nullptr;
  GstPad *pad = gst_element_get_static_pad(sink, "sink");
  gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM, keep_tags, &tags, nullptr);
  gst_object_unref(pad);
  RunResult result;
  kirin_test_run(pipeline, 60, result);
  assert_error_free_eos(result);

  // start, continue with a percentage, complete: what gst-launch prints as progress.
  fail_unless(result.progress.size() >= 3);
  fail_unless_equals_int(result.progress.front().first, GST_PROGRESS_TYPE_START);
  fail_unless(result.progress.front().second.find("demo-5s") != std::string::npos);
  bool percent = false;
  for (const auto &[type, text] : result.progress)
    percent |= type == GST_PROGRESS_TYPE_CONTINUE && text.find('%') != std::string::npos;
  fail_unless(percent, "no progress message with a percentage");
  fail_unless_equals_int(result.progress.back().first, GST_PROGRESS_TYPE_COMPLETE);

  // The stream carries what the provider said of the result.
  fail_unless(tags != nullptr, "no tags on the stream");
  guint64 duration = 0;
  fail_unless(gst_tag_list_get_uint64(tags, GST_TAG_DURATION, &duration));
  fail_unless(duration == 10 * GST_SECOND, "duration tag %" G_GUINT64_FORMAT, duration);
  g_autofree char *comment = nullptr, *task = nullptr, *video = nullptr, *model = nullptr;
  fail_unless(gst_tag_list_get_string(tags, GST_TAG_COMMENT, &comment));
  assert_same_text(comment, "a slow zoom");
  fail_unless(gst_tag_list_get_string(tags, "kirin-task-id", &task));
  assert_same_text(task, get_string_property(src, "task-id"));
  fail_unless(gst_tag_list_get_string(tags, "kirin-video-id", &video));
  assert_same_text(video, get_string_property(src, "result-video-id"));
  fail_unless(gst_tag_list_get_string(tags, "kirin-model", &model));
  assert_same_text(model, "kirin_duration_extension");
  gst_tag_list_unref(tags);
  gst_object_unref(pipeline);
}
GST_END_TEST;

GST_START_TEST(test_chained_extensions) {
  auto emu = kirin_test_start_emulator(kKey);
  GstElement *src = kirin_test_make_src(*emu);
  gst_object_ref(src);
  g_object_set(src, "video-id", "demo-5s", "extensions", 3, nullptr);
  RunResult result;
  std::string bytes = run_to_file(src, result);
  assert_error_free_eos(result);
  // Three paid tasks, each on the previous result: 5 s + 3 x 5 s.
  fail_unless_equals_int(emu->create_count(), 3);
  double duration = 0;
  g_object_get(src, "result-duration", &duration, nullptr);
  fail_unless(duration > 19.9 && duration < 20.1, "final duration %f", duration);
  std::string last_task = get_string_property(src, "task-id");
  fail_unless(bytes == kirin_test_read_file(emu->task_result_path(last_task)),
              "the final result was not what was streamed");
  // Every step posted its own messages, numbered; each extended the video before it.
  std::vector<std::string> completed_videos;
  guint last_step = 0;
  for (const GstStructure *s : result.task_messages) {
    guint step = 0;
    fail_unless(gst_structure_get_uint(s, "step", &step));
    fail_unless(step >= last_step && step <= 3);
    last_step = step;
    if (string_field(s, "status") == "completed")
      completed_videos.push_back(string_field(s, "video-id"));
  }
  fail_unless_equals_int(last_step, 3);
  fail_unless_equals_int(completed_videos.size(), 3);
  std::string body = emu->last_create_body();
  fail_unless(body.find(completed_videos[1]) != std::string::npos,
              "step 3 did not extend step 2's video: %s", body.c_str());
  gst_object_unref(src);
}
GST_END_TEST;

GST_START_TEST(test_chain_stops_before_three_minutes) {
  auto options = kirin_test_emulator_options(kKey);
  options.width = 64; // long results: keep them small
  options.height = 48;
  auto emu = kirin_test_start_emulator(options);
  emu->add_video("long-170", 170);
  GstElement *src = kirin_test_make_src(*emu);
  gst_object_ref(src);
  g_object_set(src, "video-id", "long-170", "extensions", 3, nullptr);
  RunResult result;
  std::string bytes = run_to_file(src, result, 120);
  assert_error_free_eos(result);
  // 170 -> 175 -> 180 s; a third task would pass 3 minutes and is not paid for.
  fail_unless_equals_int(emu->create_count(), 2);
  fail_unless(!result.warnings.empty(), "no warning about the stop");
  fail_unless(result.warnings.front().find("3-minute") != std::string::npos, "%s",
              result.warnings.front().c_str());
  double duration = 0;
  g_object_get(src, "result-duration", &duration, nullptr);
  fail_unless(duration > 179.9 && duration < 180.1, "final duration %f", duration);
  fail_unless(bytes ==
              kirin_test_read_file(emu->task_result_path(get_string_property(src, "task-id"))));
  gst_object_unref(src);
}
GST_END_TEST;

GST_START_TEST(test_callback_listener_wakes_the_element) {
  auto emu = kirin_test_start_emulator(kKey);
  std::string listen = "127.0.0.1:" + std::to_string(kirin_test_free_port());
  GstElement *src = kirin_test_make_src(*emu);
  gst_object_ref(src);
  // Without callbacks the first poll would come after 20 s.
  g_object_set(src, "video-id", "demo-5s", "poll-interval", 20000, "callback-listen",
               listen.c_str(), nullptr);
  std::string path = temp_path("callback.mp4");
  GstElement *pipeline = make_file_pipeline(src, path);
  GstBus *bus = gst_element_get_bus(pipeline);
  gst_element_set_state(pipeline, GST_STATE_PLAYING);
  fail_unless(wait_for_message(bus, "pending", 10));

  // A forged notification claims completion with another URL: it may only cause a poll.
  std::string task_id = get_string_property(src, "task-id");
  std::string forged = "{\"id\": \"" + task_id +
                       "\", \"status\": \"completed\", \"output\": [{\"content\": [{"
                       "\"type\": \"video\", \"url\": \"http://127.0.0.1:9/forged.mp4\"}]}]}";
  SoupSession *session = soup_session_new();
  SoupMessage *msg = soup_message_new("POST", ("http://" + listen + "/").c_str());
  GBytes *body = g_bytes_new(forged.data(), forged.size());
  soup_message_set_request_body_from_bytes(msg, "application/json", body);
  GBytes *reply = soup_session_send_and_read(session, msg, nullptr, nullptr);
  fail_unless_equals_int(soup_message_get_status(msg), SOUP_STATUS_NO_CONTENT);
  g_bytes_unref(reply);
  g_bytes_unref(body);
  g_object_unref(msg);
  g_object_unref(session);

  RunResult result;
  gint64 deadline = g_get_monotonic_time() + 15 * G_USEC_PER_SEC;
  while (!result.eos && !result.error && g_get_monotonic_time() < deadline) {
    GstMessage *message = gst_bus_timed_pop(bus, 100 * GST_MSECOND);
    if (message) {
      kirin_test_take_message(message, result);
      gst_message_unref(message);
    }
  }
  gint64 left_ms = (deadline - g_get_monotonic_time()) / 1000;
  gst_element_set_state(pipeline, GST_STATE_NULL);
  assert_error_free_eos(result);
  // Done long before the first regular poll: the provider's callbacks woke the element.
  fail_unless(left_ms > 10000, "took %" G_GINT64_FORMAT " ms", 15000 - left_ms);
  std::string bytes = kirin_test_read_file(path);
  fail_unless(bytes == kirin_test_read_file(emu->task_result_path(task_id)),
              "the output is not the real result");
  fail_unless(get_string_property(src, "result-url").find("forged") == std::string::npos);
  gst_object_unref(bus);
  gst_object_unref(pipeline);
  gst_object_unref(src);
  g_unlink(path.c_str());
}
GST_END_TEST;

static void on_source_setup(GstElement *, GstElement *source, gpointer data) {
  auto *seen = static_cast<std::string *>(data);
  *seen = GST_OBJECT_NAME(gst_element_get_factory(source));
  // What an application would do here: its own settings on the HTTP source.
  g_object_set(source, "user-agent", "my-broadcast-tool/2.0", nullptr);
}

GST_START_TEST(test_source_setup_lets_applications_configure_the_download) {
  auto emu = kirin_test_start_emulator(kKey);
  GstElement *src = kirin_test_make_src(*emu);
  gst_object_ref(src);
  g_object_set(src, "video-id", "demo-5s", nullptr);
  std::string factory;
  g_signal_connect(src, "source-setup", G_CALLBACK(on_source_setup), &factory);
  RunResult result;
  run_to_file(src, result);
  assert_error_free_eos(result);
  assert_same_text(factory, "souphttpsrc");
  fail_unless_equals_int(emu->download_count() >= 1, TRUE);
  // The handler's setting reached the result host: it was applied before the download.
  for (const auto &request : emu->requests())
    if (request.route == kirin_emu::Route::Download)
      assert_same_text(request.user_agent, "my-broadcast-tool/2.0");
  gst_object_unref(src);
}
GST_END_TEST;

// Walks the top-level MP4 boxes and returns their types in order.
static std::vector<std::string> mp4_boxes(const std::string &data) {
  std::vector<std::string> boxes;
  size_t offset = 0;
  while (offset + 8 <= data.size()) {
    guint64 size = GST_READ_UINT32_BE(data.data() + offset);
    if (size == 1 && offset + 16 <= data.size())
      size = GST_READ_UINT64_BE(data.data() + offset + 8);
    boxes.emplace_back(data.substr(offset + 4, 4));
    if (size < 8)
      break;
    offset += size;
  }
  return boxes;
}

static GstPadProbeReturn count_buffer(GstPad *, GstPadProbeInfo *, gpointer data) {
  g_atomic_int_inc(static_cast<gint *>(data));
  return GST_PAD_PROBE_OK;
}

static void link_decoded_pad(GstElement *, GstPad *pad, gpointer sink) {
  GstPad *sinkpad = gst_element_get_static_pad(GST_ELEMENT(sink), "sink");
  if (!gst_pad_is_linked(sinkpad))
    gst_pad_link(pad, sinkpad);
  gst_object_unref(sinkpad);
}

GST_START_TEST(test_moov_at_end_over_10mb_decodes) {
  auto options = kirin_test_emulator_options(kKey);
  options.width = 1280;
  options.height = 720;
  options.jpeg_quality = 90;
  auto emu = kirin_test_start_emulator(options);
  GstElement *src = kirin_test_make_src(*emu);
  gst_object_ref(src);
  g_object_set(src, "video-id", "demo-5s", nullptr);

  GstElement *pipeline = gst_pipeline_new(nullptr);
  GstElement *decodebin = gst_element_factory_make("decodebin", nullptr);
  GstElement *sink = gst_element_factory_make("fakesink", nullptr);
  gst_bin_add_many(GST_BIN(pipeline), src, decodebin, sink, nullptr);
  fail_unless(gst_element_link(src, decodebin));
  g_signal_connect(decodebin, "pad-added", G_CALLBACK(link_decoded_pad), sink);
  gint frames = 0;
  GstPad *sinkpad = gst_element_get_static_pad(sink, "sink");
  gst_pad_add_probe(sinkpad, GST_PAD_PROBE_TYPE_BUFFER, count_buffer, &frames, nullptr);
  gst_object_unref(sinkpad);

  RunResult result;
  kirin_test_run(pipeline, 120, result);
  gst_object_unref(pipeline);
  assert_error_free_eos(result);

  std::string served =
      kirin_test_read_file(emu->task_result_path(get_string_property(src, "task-id")));
  fail_unless(served.size() > 10 * 1024 * 1024, "result is only %zu bytes", served.size());
  std::vector<std::string> boxes = mp4_boxes(served);
  fail_unless(!boxes.empty() && boxes.back() == "moov", "moov is not the last box");
  // 10 s at 25 fps: every frame decoded.
  fail_unless_equals_int(g_atomic_int_get(&frames), 250);
  gst_object_unref(src);
}
GST_END_TEST;

static Suite *kirinextendsrc_suite() {
  Suite *s = suite_create("kirinextendsrc");
  TCase *tc = add_general_case(s);
  tcase_add_test(tc, test_properties_and_secret_key);
  tcase_add_test(tc, test_happy_path_byte_identical);
  tcase_add_test(tc, test_optional_fields_passed_through);
  tcase_add_test(tc, test_callback_url_reaches_the_provider);
  tcase_add_test(tc, test_progress_messages_and_tags);
  tcase_add_test(tc, test_chained_extensions);
  tcase_add_test(tc, test_stream_intermediate_results);
  tcase_add_test(tc, test_source_setup_lets_applications_configure_the_download);
  tcase_add_test(tc, test_callback_listener_wakes_the_element);
  tcase_add_test(tc, test_chain_stops_before_three_minutes);
  tcase_add_test(tc, test_moov_at_end_over_10mb_decodes);
  return s;
}

int main(int argc, char **argv) {
  kirin_test_init(&argc, &argv, "kirinextendsrc");
  return gst_check_run_suite(kirinextendsrc_suite(), "kirinextendsrc", __FILE__);
}
