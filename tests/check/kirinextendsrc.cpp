// The element end to end against the emulator of the provider's API on loopback.
#include "common.h"

#include "emulator-fixture.h"

#include <gio/gio.h>
#include <json-glib/json-glib.h>
#include <libsoup/soup.h>
#include <sqlite3.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>

#include <signal.h>
#include <sys/wait.h>

namespace {

constexpr const char *kKey = "test-key-5ecret-do-not-print";

// kirinextendsrc ! filesink, with the source's properties set by the caller.
GstElement *make_file_pipeline(GstElement *src, const std::string &path) {
  GstElement *pipeline = gst_pipeline_new(nullptr);
  GstElement *sink = gst_element_factory_make("filesink", nullptr);
  g_object_set(sink, "location", path.c_str(), nullptr);
  gst_bin_add_many(GST_BIN(pipeline), src, sink, nullptr);
  fail_unless(gst_element_link(src, sink));
  return pipeline;
}

std::string temp_path(const char *name) {
  g_autofree char *path =
      g_strdup_printf("%s/kirin-test-%d-%s", g_get_tmp_dir(), (int)getpid(), name);
  return path;
}

std::string string_field(const GstStructure *s, const char *field) {
  const char *value = s ? gst_structure_get_string(s, field) : nullptr;
  return value ? value : "";
}

std::string get_string_property(GstElement *element, const char *name) {
  g_autofree char *value = nullptr;
  g_object_get(element, name, &value, nullptr);
  return value ? value : "";
}

// Runs src ! filesink and returns the written bytes.
std::string run_to_file(GstElement *src, RunResult &result, double max_seconds = 60) {
  std::string path = temp_path("out.mp4");
  GstElement *pipeline = make_file_pipeline(src, path);
  kirin_test_run(pipeline, max_seconds, result);
  gst_object_unref(pipeline);
  std::string bytes = kirin_test_read_file(path);
  g_unlink(path.c_str());
  return bytes;
}

void assert_error_free_eos(const RunResult &result) {
  fail_if(result.error, "unexpected error: %s (%s)", result.error ? result.error->message : "",
          result.error_debug.c_str());
  fail_unless(result.eos, "no EOS within the bound");
}

// Asserts a run that should not pay for a task ended with a settings error naming
// `property`, before any request reached the provider.
void assert_settings_error(GstElement *src, const kirin_emu::Emulator &emu, const char *property) {
  RunResult result;
  run_to_file(src, result, 10);
  fail_unless(result.error != nullptr, "no error for a bad '%s'", property);
  fail_unless(g_error_matches(result.error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS));
  fail_unless(strstr(result.error->message, property) != nullptr, "'%s' not named in: %s", property,
              result.error->message);
  fail_unless_equals_int(emu.create_count(), 0);
  // The debug text says where the element found the problem, not where errors are posted.
  fail_unless(result.error_debug.find("gstkirinextendsrc.cpp") != std::string::npos &&
                  result.error_debug.find("messages.cpp") == std::string::npos,
              "the error's origin: %s", result.error_debug.c_str());
}

// The cache-dir journal entry of a request, parsed ("" members when absent).
struct JournalFile {
  bool exists = false;
  std::string status, task_id, media_file;
};

// The newest row of this test's journal ($XDG_CACHE_HOME/gst-kirin/journal.db), which
// another process may be writing.
JournalFile read_journal() {
  JournalFile entry;
  std::string path = std::string(g_getenv("XDG_CACHE_HOME")) + "/gst-kirin/journal.db";
  sqlite3 *db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt *row = nullptr;
    const char *sql = "SELECT status, COALESCE(task_id, ''), COALESCE(media_file, '') "
                      "FROM tasks ORDER BY id DESC LIMIT 1";
    if (sqlite3_prepare_v2(db, sql, -1, &row, nullptr) == SQLITE_OK &&
        sqlite3_step(row) == SQLITE_ROW) {
      auto text = [row](int column) {
        const unsigned char *value = sqlite3_column_text(row, column);
        return std::string(value ? (const char *)value : "");
      };
      entry.exists = true;
      entry.status = text(0);
      entry.task_id = text(1);
      entry.media_file = text(2);
    }
    sqlite3_finalize(row);
  }
  sqlite3_close(db);
  return entry;
}

std::string make_temp_dir() {
  g_autofree char *dir = g_dir_make_tmp("kirin-cache-XXXXXX", nullptr);
  fail_unless(dir != nullptr);
  return dir;
}

void remove_dir(const std::string &dir) {
  GDir *listing = g_dir_open(dir.c_str(), 0, nullptr);
  if (listing) {
    while (const char *name = g_dir_read_name(listing))
      g_unlink((dir + "/" + name).c_str());
    g_dir_close(listing);
  }
  g_rmdir(dir.c_str());
}

// A replayed task says so, and reports no cost: nothing was paid by this run.
bool replayed_message_seen(const RunResult &result) {
  for (const GstStructure *s : result.task_messages) {
    gboolean replayed = FALSE;
    if (gst_structure_get_boolean(s, "replayed", &replayed) && replayed)
      return !gst_structure_has_field(s, "cost");
  }
  return false;
}

} // namespace

// A run killed between the task's creation and its completion: the next run with the
// same parameters attaches to the recorded task instead of paying again, keeps the result,
// and the run after that replays the kept file without any request.
GST_START_TEST(test_cache_survives_a_crash_then_replays) {
  auto emu = kirin_test_start_emulator(kKey);
  std::string dir = make_temp_dir();
  fail_unless(emu->push_fault(kirin_emu::Route::Task, "stuck"));

  // The first run is another process, killed once the provider has its task.
  g_autofree char *api_url_arg = g_strdup_printf("api-url=%s", emu->api_url().c_str());
  g_autofree char *cache_arg = g_strdup_printf("cache-dir=%s", dir.c_str());
  const char *argv[] = {"gst-launch-1.0",
                        "-q",
                        "kirinextendsrc",
                        api_url_arg,
                        "video-id=demo-5s",
                        "external-task-id=order-17",
                        "poll-interval=50",
                        cache_arg,
                        "!",
                        "fakesink",
                        nullptr};
  char **env = g_environ_setenv(g_get_environ(), "VTRIX_API_KEY", kKey, TRUE);
  GPid pid;
  GError *error = nullptr;
  fail_unless(g_spawn_async(nullptr, (char **)argv, env,
                            (GSpawnFlags)(G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD), nullptr,
                            nullptr, &pid, &error),
              "gst-launch-1.0: %s", error ? error->message : "?");
  g_strfreev(env);
  JournalFile recorded;
  for (gint64 end = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;
       g_get_monotonic_time() < end && recorded.task_id.empty(); g_usleep(10 * 1000))
    recorded = read_journal();
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  g_spawn_close_pid(pid);
  fail_if(recorded.task_id.empty(), "the first run recorded no task in %s", dir.c_str());
  assert_same_text(recorded.status, "created");
  fail_unless_equals_int(emu->create_count(), 1);

  // The provider finishes the task meanwhile; the next run attaches to it.
  emu->complete_now(recorded.task_id);
  GstElement *src = kirin_test_make_src(*emu);
  gst_object_ref(src);
  g_object_set(src, "video-id", "demo-5s", "external-task-id", "order-17", "cache-dir", dir.c_str(),
               nullptr);
  RunResult second;
  std::string bytes = run_to_file(src, second);
  assert_error_free_eos(second);
  fail_unless_equals_int(emu->create_count(), 1);
  assert_same_text(get_string_property(src, "task-id"), recorded.task_id);
  std::string served = kirin_test_read_file(emu->task_result_path(recorded.task_id));
  fail_unless(!served.empty() && bytes == served, "attached run streamed other bytes");
  JournalFile completed = read_journal();
  assert_same_text(completed.status, "completed");
  fail_if(completed.media_file.empty(), "the downloaded result was not kept");
  fail_unless(g_str_has_prefix(completed.media_file.c_str(), dir.c_str()));
  fail_unless(kirin_test_read_file(completed.media_file) == served);
  gst_object_unref(src);

  // Third run: from the cache, without a single request to the provider.
  guint polls = emu->poll_count(), downloads = emu->download_count();
  src = kirin_test_make_src(*emu);
  gst_object_ref(src);
  g_object_set(src, "video-id", "demo-5s", "external-task-id", "order-17", "cache-dir", dir.c_str(),
               nullptr);
  RunResult third;
  bytes = run_to_file(src, third);
  assert_error_free_eos(third);
  fail_unless(bytes == served, "the replayed result differs");
  fail_unless(replayed_message_seen(third), "no kirin-task message says replayed=true");
  fail_unless_equals_int(emu->create_count(), 1);
  fail_unless_equals_int(emu->poll_count(), polls);
  fail_unless_equals_int(emu->download_count(), downloads);
  assert_same_text(get_string_property(src, "task-id"), recorded.task_id);
  gst_object_unref(src);

  // A damaged copy is not replayed: the task is polled for its URL and downloaded again.
  fail_unless(g_file_set_contents(completed.media_file.c_str(), "x", 1, nullptr));
  src = kirin_test_make_src(*emu);
  g_object_set(src, "video-id", "demo-5s", "external-task-id", "order-17", "cache-dir", dir.c_str(),
               nullptr);
  RunResult fourth;
  bytes = run_to_file(src, fourth);
  assert_error_free_eos(fourth);
  fail_unless(bytes == served, "the re-downloaded result differs");
  fail_unless_equals_int(emu->create_count(), 1);
  fail_unless(emu->download_count() > downloads);
  fail_unless(kirin_test_read_file(completed.media_file) == served,
              "the damaged copy was not replaced");
  remove_dir(dir);
}
GST_END_TEST;

// Other parameters or another external-task-id are other work: paid for, recorded apart.
// A chain replays every step from the journal.
GST_START_TEST(test_cache_keys_and_chains) {
  auto emu = kirin_test_start_emulator(kKey);
  std::string dir = make_temp_dir();
  auto run = [&](const char *prompt, const char *external_id, guint extensions) {
    GstElement *src = kirin_test_make_src(*emu);
    g_object_set(src, "video-id", "demo-5s", "prompt", prompt, "external-task-id", external_id,
                 "extensions", extensions, "cache-dir", dir.c_str(), nullptr);
    RunResult result;
    std::string bytes = run_to_file(src, result);
    assert_error_free_eos(result);
    return bytes;
  };
  std::string first = run("rain", "a", 1);
  fail_unless_equals_int(emu->create_count(), 1);
  fail_unless(run("rain", "a", 1) == first);
  fail_unless_equals_int(emu->create_count(), 1);
  run("snow", "a", 1);
  fail_unless_equals_int(emu->create_count(), 2);
  run("rain", "b", 1);
  fail_unless_equals_int(emu->create_count(), 3);

  // Two steps; the first is the entry of run "rain"/"c"; both recorded, both replayed.
  std::string chained = run("rain", "c", 2);
  fail_unless_equals_int(emu->create_count(), 5);
  guint polls = emu->poll_count();
  fail_unless(run("rain", "c", 2) == chained, "the replayed chain streamed other bytes");
  fail_unless_equals_int(emu->create_count(), 5);
  fail_unless_equals_int(emu->poll_count(), polls);
  remove_dir(dir);
}
GST_END_TEST;

// A task that failed at the provider is no result to keep: its row says failed, and the
// next run with the same parameters creates a new task (a new take) instead of attaching
// to the failed one.
GST_START_TEST(test_cache_forgets_a_failed_task) {
  auto emu = kirin_test_start_emulator(kKey);
  std::string dir = make_temp_dir();
  fail_unless(emu->push_fault(kirin_emu::Route::Task, "fail:014002095"));
  auto run = [&](RunResult &result) {
    GstElement *src = kirin_test_make_src(*emu);
    g_object_set(src, "video-id", "demo-5s", "external-task-id", "retry-me", "cache-dir",
                 dir.c_str(), nullptr);
    run_to_file(src, result);
  };
  RunResult failed;
  run(failed);
  fail_unless(failed.error != nullptr, "the failed task ended without an error");
  assert_same_text(read_journal().status, "failed");
  RunResult again;
  run(again);
  assert_error_free_eos(again);
  fail_unless_equals_int(emu->create_count(), 2);
  assert_same_text(read_journal().status, "completed");
  remove_dir(dir);
}
GST_END_TEST;

GST_START_TEST(test_cache_dir_must_be_usable) {
  auto emu = kirin_test_start_emulator(kKey);
  std::string file = temp_path("not-a-dir");
  fail_unless(g_file_set_contents(file.c_str(), "", 0, nullptr));
  GstElement *src = kirin_test_make_src(*emu);
  g_object_set(src, "video-id", "demo-5s", "cache-dir", file.c_str(), nullptr);
  assert_settings_error(src, *emu, "cache-dir");
  g_unlink(file.c_str());
}
GST_END_TEST;

// Each step's result, one stream after the other: its own stream-start, its own bytes, and
// a single EOS after the last.
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

static bool wait_for_message(GstBus *bus, const char *status, double max_seconds);

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

static void run_expecting_error(kirin_emu::Emulator &emu, GstElement *src, RunResult &result,
                                double max_seconds = 30);

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

// Runs a task expected to fail and returns the run, for its error and details.
static void run_expecting_error(kirin_emu::Emulator &emu, GstElement *src, RunResult &result,
                                double max_seconds) {
  run_to_file(src, result, max_seconds);
  fail_unless(result.error != nullptr, "no error reached the bus");
  fail_if(result.timed_out);
  (void)emu;
}

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

GST_START_TEST(test_resume_by_task_id_without_create) {
  auto emu = kirin_test_start_emulator(kKey);
  std::string task_id;
  {
    GstElement *src = kirin_test_make_src(*emu);
    gst_object_ref(src);
    g_object_set(src, "video-id", "demo-5s", nullptr);
    RunResult result;
    run_to_file(src, result);
    assert_error_free_eos(result);
    task_id = get_string_property(src, "task-id");
    gst_object_unref(src);
  }
  fail_unless_equals_int(emu->create_count(), 1);

  GstElement *src = kirin_test_make_src(*emu);
  g_object_set(src, "task-id", task_id.c_str(), nullptr);
  RunResult result;
  std::string bytes = run_to_file(src, result);
  assert_error_free_eos(result);
  fail_unless_equals_int(emu->create_count(), 1);
  fail_unless(bytes == kirin_test_read_file(emu->task_result_path(task_id)));
}
GST_END_TEST;

GST_START_TEST(test_restart_does_not_pay_twice) {
  auto emu = kirin_test_start_emulator(kKey);
  GstElement *src = kirin_test_make_src(*emu);
  g_object_set(src, "video-id", "demo-5s", nullptr);
  std::string path = temp_path("restart.mp4");
  GstElement *pipeline = make_file_pipeline(src, path);
  for (int run = 0; run < 2; run++) {
    RunResult result;
    kirin_test_run(pipeline, 60, result);
    assert_error_free_eos(result);
  }
  gst_object_unref(pipeline);
  g_unlink(path.c_str());
  fail_unless_equals_int(emu->create_count(), 1);
}
GST_END_TEST;

// Set from the element's weak-ref notify, on whichever thread drops the last reference.
struct Finalized {
  std::mutex lock;
  std::condition_variable cond;
  bool done = false;

  static void notify(gpointer data, GObject *) {
    auto *self = static_cast<Finalized *>(data);
    std::lock_guard<std::mutex> guard(self->lock);
    self->done = true;
    self->cond.notify_all();
  }

  // A callback of the client thread or a call-async may hold the element for an instant
  // after the pipeline is gone; it must let go promptly.
  bool wait(std::chrono::milliseconds bound = std::chrono::milliseconds(1000)) {
    std::unique_lock<std::mutex> guard(lock);
    return cond.wait_for(guard, bound, [this] { return done; });
  }
};

static bool wait_for_message(GstBus *bus, const char *status, double max_seconds) {
  gint64 deadline = g_get_monotonic_time() + (gint64)(max_seconds * G_USEC_PER_SEC);
  while (g_get_monotonic_time() < deadline) {
    GstMessage *msg = gst_bus_timed_pop_filtered(
        bus, 100 * GST_MSECOND, (GstMessageType)(GST_MESSAGE_ELEMENT | GST_MESSAGE_ERROR));
    if (!msg)
      continue;
    const GstStructure *s = gst_message_get_structure(msg);
    bool found = GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ELEMENT && s &&
                 gst_structure_has_name(s, "kirin-task") && string_field(s, "status") == status;
    gst_message_unref(msg);
    if (found)
      return true;
  }
  return false;
}

// Counts GST_PROGRESS_TYPE_CANCELED as it is posted: the bus is flushed on the way to NULL.
static GstBusSyncReply count_canceled(GstBus *, GstMessage *message, gpointer data) {
  GstProgressType type;
  if (GST_MESSAGE_TYPE(message) == GST_MESSAGE_PROGRESS) {
    gst_message_parse_progress(message, &type, nullptr, nullptr);
    if (type == GST_PROGRESS_TYPE_CANCELED)
      g_atomic_int_inc(static_cast<gint *>(data));
  }
  return GST_BUS_PASS;
}

GST_START_TEST(test_stop_while_polling_waits_for_no_answer) {
  auto options = kirin_test_emulator_options(kKey);
  options.pending_ms = 60000; // the task stays pending for the whole test
  auto emu = kirin_test_start_emulator(options);
  for (int i = 0; i < 20; i++) {
    GstElement *src = kirin_test_make_src(*emu);
    g_object_set(src, "video-id", "demo-5s", nullptr);
    Finalized finalized;
    g_object_weak_ref(G_OBJECT(src), Finalized::notify, &finalized);
    std::string path = temp_path("stop.mp4");
    GstElement *pipeline = make_file_pipeline(src, path);
    GstBus *bus = gst_element_get_bus(pipeline);
    gint canceled = 0;
    gst_bus_set_sync_handler(bus, count_canceled, &canceled, nullptr);
    gst_element_set_state(pipeline, GST_STATE_PLAYING);
    fail_unless(wait_for_message(bus, "pending", 10));
    // The next poll is held: the stop must end without its answer, and give it up.
    emu->hold(kirin_emu::Route::Poll);
    fail_unless(emu->wait_held(kirin_emu::Route::Poll, 1, 10000) == 1);
    fail_unless(kirin_test_stop_within(*emu, pipeline, 10) >= 0, "the stop waited for the poll");
    kirin_test_assert_held_given_up(*emu, kirin_emu::Route::Poll, i);
    // The progress an application shows ends as canceled, once.
    fail_unless_equals_int(g_atomic_int_get(&canceled), 1);
    gst_bus_set_sync_handler(bus, nullptr, nullptr, nullptr);
    gst_object_unref(bus);
    gst_object_unref(pipeline);
    // The job holds no reference: the element is gone with the pipeline.
    fail_unless(finalized.wait(), "element leaked after stop");
    g_unlink(path.c_str());
  }
}
GST_END_TEST;

// Stops the pipeline from where it is called, once: from the client thread, inside one of
// the job's own callbacks.
struct StopFromCallback {
  GstElement *pipeline = nullptr;
  gint stopping = 0;
  GAsyncQueue *results = g_async_queue_new(); // the state change's return, plus one
  GThread *main_thread = g_thread_self();

  ~StopFromCallback() { g_async_queue_unref(results); }

  void stop() {
    if (!g_atomic_int_compare_and_exchange(&stopping, 0, 1))
      return;
    fail_if(g_thread_self() == main_thread);
    GstStateChangeReturn result = gst_element_set_state(pipeline, GST_STATE_NULL);
    g_async_queue_push(results, GINT_TO_POINTER(result + 1));
  }

  static void on_task_id(GObject *, GParamSpec *, gpointer data) {
    static_cast<StopFromCallback *>(data)->stop();
  }

  static GstBusSyncReply on_task_message(GstBus *, GstMessage *message, gpointer data) {
    const GstStructure *s = gst_message_get_structure(message);
    if (GST_MESSAGE_TYPE(message) == GST_MESSAGE_ELEMENT && s &&
        gst_structure_has_name(s, "kirin-task"))
      static_cast<StopFromCallback *>(data)->stop();
    return GST_BUS_PASS;
  }
};

// An application may stop the pipeline from a handler that the element runs while it
// decides: "notify::task-id" or a sync bus handler for the kirin-task message.
GST_START_TEST(test_stop_from_inside_a_callback) {
  // The task stays pending for the whole test.
  auto emu = kirin_test_start_emulator(kirin_test_emulator_options(kKey, 60000));
  for (bool from_notify : {true, false}) {
    GstElement *src = kirin_test_make_src(*emu);
    g_object_set(src, "video-id", "demo-5s", nullptr);
    Finalized finalized;
    g_object_weak_ref(G_OBJECT(src), Finalized::notify, &finalized);
    std::string path = temp_path("stop-inside.mp4");
    StopFromCallback stopper;
    stopper.pipeline = make_file_pipeline(src, path);
    GstBus *bus = gst_element_get_bus(stopper.pipeline);
    if (from_notify)
      g_signal_connect(src, "notify::task-id", G_CALLBACK(StopFromCallback::on_task_id), &stopper);
    else
      gst_bus_set_sync_handler(bus, StopFromCallback::on_task_message, &stopper, nullptr);
    gst_element_set_state(stopper.pipeline, GST_STATE_PLAYING);
    gpointer result = g_async_queue_timeout_pop(stopper.results, 10 * G_USEC_PER_SEC);
    fail_unless(result != nullptr, "the pipeline was not stopped from the callback");
    fail_unless_equals_int(GPOINTER_TO_INT(result) - 1, GST_STATE_CHANGE_SUCCESS);
    GstMessage *error = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
    fail_if(error != nullptr, "an error from the stop");
    gst_bus_set_sync_handler(bus, nullptr, nullptr, nullptr);
    if (from_notify)
      g_signal_handlers_disconnect_by_data(src, &stopper);
    gst_object_unref(bus);
    gst_object_unref(stopper.pipeline);
    fail_unless(finalized.wait(), "element leaked after a stop from its callback");
    g_unlink(path.c_str());
  }
}
GST_END_TEST;

static GstPadProbeReturn signal_first_buffer(GstPad *, GstPadProbeInfo *, gpointer data) {
  auto *seen = static_cast<GAsyncQueue *>(data);
  g_async_queue_push(seen, GINT_TO_POINTER(1));
  return GST_PAD_PROBE_REMOVE;
}

GST_START_TEST(test_stop_while_downloading_is_fast_and_clean) {
  auto options = kirin_test_emulator_options(kKey);
  options.width = 1280;
  options.height = 720;
  options.jpeg_quality = 90;
  auto emu = kirin_test_start_emulator(options);
  std::string task_id;
  {
    // Render the big result once; the loop below downloads it again and again.
    GstElement *src = kirin_test_make_src(*emu);
    gst_object_ref(src);
    g_object_set(src, "video-id", "demo-5s", nullptr);
    RunResult result;
    run_to_file(src, result, 120);
    assert_error_free_eos(result);
    task_id = get_string_property(src, "task-id");
    gst_object_unref(src);
  }
  for (int i = 0; i < 10; i++) {
    GstElement *pipeline = gst_pipeline_new(nullptr);
    GstElement *src = kirin_test_make_src(*emu);
    g_object_set(src, "task-id", task_id.c_str(), nullptr);
    // A slow consumer keeps the download going while we stop.
    GstElement *slow = gst_element_factory_make("identity", nullptr);
    g_object_set(slow, "sleep-time", 20000, nullptr);
    GstElement *sink = gst_element_factory_make("fakesink", nullptr);
    gst_bin_add_many(GST_BIN(pipeline), src, slow, sink, nullptr);
    fail_unless(gst_element_link_many(src, slow, sink, nullptr));
    Finalized finalized;
    g_object_weak_ref(G_OBJECT(src), Finalized::notify, &finalized);
    GAsyncQueue *first_buffer = g_async_queue_new();
    GstPad *srcpad = gst_element_get_static_pad(src, "src");
    gst_pad_add_probe(srcpad, GST_PAD_PROBE_TYPE_BUFFER, signal_first_buffer, first_buffer,
                      nullptr);
    gst_object_unref(srcpad);
    gst_element_set_state(pipeline, GST_STATE_PLAYING);
    fail_unless(g_async_queue_timeout_pop(first_buffer, 20 * G_USEC_PER_SEC) != nullptr,
                "no data within 20 s");
    gint64 start = g_get_monotonic_time();
    fail_unless(gst_element_set_state(pipeline, GST_STATE_NULL) == GST_STATE_CHANGE_SUCCESS);
    gint64 took_us = g_get_monotonic_time() - start;
    fail_unless(took_us < 500 * 1000, "stopping a download took %" G_GINT64_FORMAT " us", took_us);
    gst_object_unref(pipeline);
    fail_unless(finalized.wait(), "element leaked after stop");
    g_async_queue_unref(first_buffer);
  }
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

static Suite *kirinextendsrc_suite() {
  Suite *s = suite_create("kirinextendsrc");
  TCase *tc = tcase_create("general");
  tcase_set_timeout(tc, 180);
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_properties_and_secret_key);
  tcase_add_test(tc, test_happy_path_byte_identical);
  tcase_add_test(tc, test_optional_fields_passed_through);
  tcase_add_test(tc, test_callback_url_reaches_the_provider);
  tcase_add_test(tc, test_progress_messages_and_tags);
  tcase_add_test(tc, test_chained_extensions);
  tcase_add_test(tc, test_stream_intermediate_results);
  tcase_add_test(tc, test_cache_survives_a_crash_then_replays);
  tcase_add_test(tc, test_cache_keys_and_chains);
  tcase_add_test(tc, test_cache_forgets_a_failed_task);
  tcase_add_test(tc, test_cache_dir_must_be_usable);
  tcase_add_test(tc, test_source_setup_lets_applications_configure_the_download);
  tcase_add_test(tc, test_provider_refuses_past_three_minutes);
  tcase_add_test(tc, test_callback_listener_wakes_the_element);
  tcase_add_test(tc, test_chain_stops_before_three_minutes);
  tcase_add_test(tc, test_moov_at_end_over_10mb_decodes);
  tcase_add_test(tc, test_validation_errors_name_the_property);
  tcase_add_test(tc, test_exactly_2500_characters_accepted);
  tcase_add_test(tc, test_unauthorized_and_no_balance);
  tcase_add_test(tc, test_task_error_codes_reach_the_bus);
  tcase_add_test(tc, test_task_error_as_plain_string);
  tcase_add_test(tc, test_recovers_from_429_and_5xx);
  tcase_add_test(tc, test_create_5xx_is_not_resubmitted);
  tcase_add_test(tc, test_timeout_carries_task_id);
  tcase_add_test(tc, test_resume_by_task_id_without_create);
  tcase_add_test(tc, test_restart_does_not_pay_twice);
  tcase_add_test(tc, test_stop_while_polling_waits_for_no_answer);
  tcase_add_test(tc, test_stop_from_inside_a_callback);
  tcase_add_test(tc, test_stop_while_downloading_is_fast_and_clean);
  tcase_add_test(tc, test_non_http_result_url_refused);
  return s;
}

int main(int argc, char **argv) {
  kirin_test_init(&argc, &argv, "kirinextendsrc");
  return gst_check_run_suite(kirinextendsrc_suite(), "kirinextendsrc", __FILE__);
}
