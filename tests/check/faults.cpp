// The fault matrix: every fault the network and the provider can produce, each with the
// outcome it must have. A case either recovers to byte-identical output or ends in a clear
// error within its bound, carrying the task ID whenever a task exists. Each case runs in its
// own process, so a crash or a hang is counted instead of ending the run.
#include "common.h"

#include "emulator-fixture.h"

#include <gio/gio.h>
#include <sys/wait.h>

#include <functional>
#include <memory>
#include <thread>

namespace {

constexpr const char *kKey = "fault-matrix-key-do-not-print";

enum class Outcome { Recovers, CleanError };

// What one case may look at and change before the run.
struct Fixture {
  kirin_emu::Emulator &emu;
  GstElement *src;
  // A result rendered before the case started, for bodies that point at a real file.
  const std::string &known_url;
  const std::string &known_path;
  std::string expected_path;         // the file the output must equal ("" = the task's own result)
  std::unique_ptr<std::thread> side; // something the case does while the run goes on
};

// What a run left to look at after it ended.
struct Observed {
  kirin_emu::Emulator &emu;
  GstElement *src;
  GstClockTime tag_duration; // the duration tag that reached the sink, or NONE
};

// What a case asserts beyond its outcome: "" when it holds, else what went wrong.
using Check = std::function<std::string(const Observed &)>;

struct Case {
  const char *name;
  std::function<void(Fixture &)> setup;
  Outcome outcome;
  const char *error_text = nullptr; // a part of the error message, when it must say something
  double bound_s = 30;              // the run must be over within this
  bool task_exists = true;          // then the error must carry its ID
  Check check = nullptr;
};

void fault(Fixture &f, kirin_emu::Route route, const std::string &spec) {
  fail_unless(f.emu.push_fault(route, spec), "emulator refused fault %s", spec.c_str());
}

std::function<void(Fixture &)> on(kirin_emu::Route route, std::string spec) {
  return [route, spec](Fixture &f) { fault(f, route, spec); };
}

std::function<void(Fixture &)> on_poll_body(std::string body) {
  return on(kirin_emu::Route::Poll, "json:" + body);
}

// A completed task object pointing at the pre-rendered result, with `duration` verbatim
// (none when empty).
std::function<void(Fixture &)> completed_with_duration(std::string duration) {
  return [duration](Fixture &f) {
    std::string member = duration.empty() ? "" : "\"duration\":" + duration + ",";
    fault(f, kirin_emu::Route::Poll,
          "json:{\"id\":\"t\",\"status\":\"completed\",\"output\":[{\"content\":[{\"type\":"
          "\"video\",\"url\":\"" +
              f.known_url + "\"," + member + "\"id\":\"v\"}]}]}");
    f.expected_path = f.known_path;
  };
}

// The element's result-duration and the duration tag say `seconds` (-1: unknown, no tag).
Check duration_is(double seconds) {
  return [seconds](const Observed &o) -> std::string {
    double property = 0;
    g_object_get(o.src, "result-duration", &property, nullptr);
    GstClockTime tag = seconds < 0 ? GST_CLOCK_TIME_NONE : GstClockTime(seconds * GST_SECOND);
    if (property != seconds || o.tag_duration != tag)
      return "result-duration " + std::to_string(property) + ", duration tag " +
             (GST_CLOCK_TIME_IS_VALID(o.tag_duration) ? std::to_string(o.tag_duration) : "none") +
             "; the emulator said " + std::to_string(seconds);
    return {};
  };
}

// The request after the first one answered 429 on `route` came at least `seconds` later.
Check waited_after_429(kirin_emu::Route route, double seconds) {
  return [route, seconds](const Observed &o) -> std::string {
    gint64 refused_at = 0;
    for (const auto &record : o.emu.requests()) {
      if (record.route != route)
        continue;
      if (refused_at) {
        const double gap = (record.arrival_us - refused_at) / double(G_USEC_PER_SEC);
        return gap >= seconds ? "" : "retried after " + std::to_string(gap) + " s";
      }
      if (record.status == 429)
        refused_at = record.arrival_us;
    }
    return "no request after the 429";
  };
}

std::function<void(Fixture &)> set(const char *property, guint value) {
  return [property, value](Fixture &f) { g_object_set(f.src, property, value, nullptr); };
}

std::function<void(Fixture &)> all(std::vector<std::function<void(Fixture &)>> steps) {
  return [steps](Fixture &f) {
    for (const auto &step : steps)
      step(f);
  };
}

using Route = kirin_emu::Route;

const char *kBadDuration = "\"ten seconds\"";

std::vector<Case> matrix() {
  const std::string image_only =
      "{\"id\":\"t\",\"status\":\"completed\",\"output\":[{\"content\":[{\"type\":\"image\","
      "\"url\":\"http://127.0.0.1:9/c.jpg\"}]}]}";
  return {
      // create
      {"create: connection refused",
       [](Fixture &f) {
         std::string url = "http://127.0.0.1:" + std::to_string(kirin_test_free_port()) + "/v1";
         g_object_set(f.src, "api-url", url.c_str(), nullptr);
       },
       Outcome::CleanError, "No task was created", 20, false},
      {"create: 400 with JSON body", on(Route::Create, "http:400"), Outcome::CleanError, "400", 10,
       false},
      {"create: 400 with non-JSON body", on(Route::Create, "non-json:400"), Outcome::CleanError,
       "400", 10, false},
      {"create: 401", on(Route::Create, "http:401"), Outcome::CleanError, "401", 10, false},
      {"create: 403", on(Route::Create, "http:403"), Outcome::CleanError, "403", 10, false},
      // Retry-After: 2 is longer than the first retry's own backoff (1 s for a create, the
      // poll interval for a poll), so only honouring it makes the gap.
      {"create: 429 with Retry-After", on(Route::Create, "http429:2"), Outcome::Recovers, nullptr,
       30, true, waited_after_429(Route::Create, 2.0)},
      {"create: 429 without Retry-After", on(Route::Create, "http429:-1"), Outcome::Recovers,
       nullptr, 30, true, waited_after_429(Route::Create, 1.0)},
      {"create: 500", on(Route::Create, "http:500"), Outcome::CleanError, "external-task-id", 10,
       false},
      {"create: 502", on(Route::Create, "http:502"), Outcome::CleanError, "external-task-id", 10,
       false},
      {"create: 503", on(Route::Create, "http:503"), Outcome::CleanError, "external-task-id", 10,
       false},
      {"create: no answer (request timeout)",
       all({on(Route::Create, "hang"), set("request-timeout", 1)}), Outcome::CleanError,
       "external-task-id", 10, false},
      {"create: body cut off mid-JSON", on(Route::Create, "malformed"), Outcome::CleanError,
       "external-task-id", 10, false},
      {"create: empty 200", on(Route::Create, "empty"), Outcome::CleanError, "external-task-id", 10,
       false},
      {"create: 200 without an id", on(Route::Create, "json:{\"status\":\"pending\"}"),
       Outcome::CleanError, "external-task-id", 10, false},
      {"create: oversized body", on(Route::Create, "big:2000000"), Outcome::CleanError,
       "external-task-id", 10, false},

      // poll
      {"poll: 400", on(Route::Poll, "http:400"), Outcome::CleanError, "400"},
      {"poll: 400 non-JSON", on(Route::Poll, "non-json:400"), Outcome::CleanError, "400"},
      {"poll: 401", on(Route::Poll, "http:401"), Outcome::CleanError, "401"},
      {"poll: 403", on(Route::Poll, "http:403"), Outcome::CleanError, "403"},
      {"poll: 429 with Retry-After", on(Route::Poll, "http429:2"), Outcome::Recovers, nullptr, 30,
       true, waited_after_429(Route::Poll, 2.0)},
      {"poll: 429 without Retry-After", on(Route::Poll, "http429:-1"), Outcome::Recovers},
      {"poll: 500", on(Route::Poll, "http:500"), Outcome::Recovers},
      {"poll: 502", on(Route::Poll, "http:502"), Outcome::Recovers},
      {"poll: 503", on(Route::Poll, "http:503"), Outcome::Recovers},
      {"poll: 503 non-JSON", on(Route::Poll, "non-json:503"), Outcome::Recovers},
      {"poll: no answer (request timeout)",
       all({on(Route::Poll, "hang"), set("request-timeout", 1)}), Outcome::Recovers},
      {"poll: body cut off mid-JSON", on(Route::Poll, "malformed"), Outcome::Recovers},
      {"poll: empty 200", on(Route::Poll, "empty"), Outcome::Recovers},
      {"poll: 200 without an id", on_poll_body("{\"status\":\"processing\"}"), Outcome::Recovers},
      {"poll: oversized body", on(Route::Poll, "big:2000000"), Outcome::Recovers},
      {"poll: unknown status", on_poll_body("{\"id\":\"t\",\"status\":\"thinking\"}"),
       Outcome::Recovers},
      {"poll: status missing", on_poll_body("{\"id\":\"t\"}"), Outcome::Recovers},
      {"poll: progress above 1",
       on_poll_body("{\"id\":\"t\",\"status\":\"processing\",\"progress\":7}"), Outcome::Recovers},
      {"poll: progress below 0",
       on_poll_body("{\"id\":\"t\",\"status\":\"processing\",\"progress\":-3}"), Outcome::Recovers},
      {"poll: output empty", on_poll_body("{\"id\":\"t\",\"status\":\"completed\",\"output\":[]}"),
       Outcome::CleanError, "no video URL"},
      {"poll: output without a video item", on_poll_body(image_only), Outcome::CleanError,
       "no video URL"},
      // 12.5 s: not the length of the file streamed, so only the emulator's word gives it.
      {"poll: duration as a number", completed_with_duration("12.5"), Outcome::Recovers, nullptr,
       30, true, duration_is(12.5)},
      {"poll: duration as a string", completed_with_duration("\"12.5\""), Outcome::Recovers,
       nullptr, 30, true, duration_is(12.5)},
      {"poll: duration garbage", completed_with_duration(kBadDuration), Outcome::Recovers, nullptr,
       30, true, duration_is(-1)},
      {"poll: duration missing", completed_with_duration(""), Outcome::Recovers, nullptr, 30, true,
       duration_is(-1)},
      {"poll: error as an object",
       on_poll_body("{\"id\":\"t\",\"status\":\"failed\",\"error\":{\"code\":\"014002095\","
                    "\"message\":\"Internal generation error\"}}"),
       Outcome::CleanError, "014002095"},
      {"poll: error as a string",
       on_poll_body("{\"id\":\"t\",\"status\":\"failed\",\"error\":\"content rejected\"}"),
       Outcome::CleanError, "content rejected"},
      {"poll: error missing", on_poll_body("{\"id\":\"t\",\"status\":\"failed\"}"),
       Outcome::CleanError, "no reason given"},
      {"task: error 014002095", on(Route::Task, "fail:014002095"), Outcome::CleanError,
       "014002095"},
      {"task: error 014002096", on(Route::Task, "fail:014002096"), Outcome::CleanError,
       "014002096"},
      {"task: error 014002097", on(Route::Task, "fail:014002097"), Outcome::CleanError,
       "014002097"},
      {"task: error 014002099", on(Route::Task, "fail:014002099"), Outcome::CleanError,
       "014002099"},
      {"task: pending past timeout", all({on(Route::Task, "stuck"), set("timeout", 2)}),
       Outcome::CleanError, "task-id=", 10},
      {"poll: server disappears and comes back",
       [](Fixture &f) {
         f.emu.set_timing(200, 1500);
         f.side = std::make_unique<std::thread>([&emu = f.emu, src = f.src] {
           // Goes away once the element has its task (the create was answered), for longer
           // than a poll interval. The emulator's create count would not tell: the warm-up
           // run made one, so the server went away at once, racing the case's create request
           // on the kept-alive connection (a create cut off after it was sent is an error).
           for (int i = 0; i < 500; i++) {
             g_autofree char *task = nullptr;
             g_object_get(src, "task-id", &task, nullptr);
             if (task && *task)
               break;
             g_usleep(10 * 1000);
           }
           emu.set_offline(true);
           g_usleep(1500 * 1000);
           emu.set_offline(false);
         });
       },
       Outcome::Recovers},

      // download
      {"download: 404 once (fresh URL)", on(Route::Download, "http:404"), Outcome::Recovers},
      {"download: 403 once (fresh URL)", on(Route::Download, "http:403"), Outcome::Recovers},
      {"download: 404 twice",
       all({on(Route::Download, "http:404"), on(Route::Download, "http:404")}), Outcome::CleanError,
       "freshly polled"},
      {"download: redirect chain",
       all({on(Route::Download, "redirect"), on(Route::Download, "redirect"),
            on(Route::Download, "redirect")}),
       Outcome::Recovers},
      {"download: connection dropped mid-body", on(Route::Download, "drop:200000"),
       Outcome::Recovers},
      {"download: dropped, then Range ignored",
       all({on(Route::Download, "drop:200000"), on(Route::Download, "no-range")}),
       Outcome::CleanError, "task-id="},
      {"download: server ignores Range (no seek needed)", on(Route::Download, "no-range"),
       Outcome::Recovers},
      {"download: file:// URL", on(Route::Task, "url:file:///etc/passwd"), Outcome::CleanError,
       "not http or https"},
      {"download: ftp:// URL", on(Route::Task, "url:ftp://127.0.0.1/x.mp4"), Outcome::CleanError,
       "not http or https"},
      {"download: empty URL",
       on_poll_body("{\"id\":\"t\",\"status\":\"completed\",\"output\":[{\"content\":[{"
                    "\"type\":\"video\",\"url\":\"\"}]}]}"),
       Outcome::CleanError, "no video URL"},
  };
}

std::string sha256(const std::string &data) {
  g_autofree char *hex = g_compute_checksum_for_data(
      G_CHECKSUM_SHA256, reinterpret_cast<const guchar *>(data.data()), data.size());
  return hex;
}

// Keeps the duration tag of the stream (the pipeline is stopped before it is read).
GstPadProbeReturn remember_duration_tag(GstPad *, GstPadProbeInfo *info, gpointer data) {
  GstEvent *event = GST_PAD_PROBE_INFO_EVENT(info);
  GstTagList *tags = nullptr;
  guint64 duration = 0;
  if (GST_EVENT_TYPE(event) == GST_EVENT_TAG) {
    gst_event_parse_tag(event, &tags);
    if (gst_tag_list_get_uint64(tags, GST_TAG_DURATION, &duration))
      *static_cast<GstClockTime *>(data) = duration;
  }
  return GST_PAD_PROBE_OK;
}

// A finished task whose result the body-replacing cases can point at: its URL and the file
// the emulator serves for it. False when it did not complete.
bool warm_up(kirin_emu::Emulator &emu, std::string &known_url, std::string &known_path) {
  GstElement *pipeline = gst_parse_launch(
      "kirinextendsrc name=src video-id=demo-5s external-task-id=warm-up poll-interval=50 ! "
      "fakesink",
      nullptr);
  GstElement *src = gst_bin_get_by_name(GST_BIN(pipeline), "src");
  g_object_set(src, "api-url", emu.api_url().c_str(), "api-key", kKey, nullptr);
  RunResult warmup;
  kirin_test_run(pipeline, 60, warmup);
  g_autofree char *url = nullptr, *task = nullptr;
  g_object_get(src, "result-url", &url, "task-id", &task, nullptr);
  known_url = url ? url : "";
  known_path = emu.task_result_path(task ? task : "");
  gst_object_unref(src);
  gst_object_unref(pipeline);
  return warmup.eos && !known_path.empty();
}

// Plays `src` into a file for at most `bound_s`: what the file got, and the stream's
// duration tag.
std::string play_to_file(GstElement *src, int bound_s, RunResult &result,
                         GstClockTime &tag_duration) {
  g_autofree char *path = g_strdup_printf("%s/kirin-fault-%d.mp4", g_get_tmp_dir(), getpid());
  GstElement *pipeline = gst_pipeline_new(nullptr);
  GstElement *sink = gst_element_factory_make("filesink", nullptr);
  g_object_set(sink, "location", path, nullptr);
  GstPad *sink_pad = gst_element_get_static_pad(sink, "sink");
  gst_pad_add_probe(sink_pad, GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM, remember_duration_tag,
                    &tag_duration, nullptr);
  gst_object_unref(sink_pad);
  gst_bin_add_many(GST_BIN(pipeline), src, sink, nullptr);
  gst_element_link(src, sink);
  kirin_test_run(pipeline, bound_s, result);
  gst_object_unref(pipeline);
  std::string output = kirin_test_read_file(path);
  g_unlink(path);
  return output;
}

// What is wrong with how a case ended ("" when it had its outcome).
std::string judge(const Case &c, kirin_emu::Emulator &emu, const Fixture &fixture,
                  const RunResult &result, const std::string &output, const char *task_id) {
  if (result.timed_out)
    return "no EOS or error at all";
  if (result.seconds > c.bound_s)
    return "took " + std::to_string(result.seconds) + " s";
  if (c.outcome == Outcome::Recovers) {
    std::string expected_path = fixture.expected_path.empty()
                                    ? emu.task_result_path(task_id ? task_id : "")
                                    : fixture.expected_path;
    std::string expected = kirin_test_read_file(expected_path);
    if (result.error)
      return std::string("error: ") + result.error->message;
    if (expected.empty() || sha256(output) != sha256(expected))
      return "output (sha256 " + sha256(output) + ") differs from the result (sha256 " +
             sha256(expected) + ")";
    return "";
  }
  if (!result.error)
    return "ended without an error";
  std::string message = result.error->message;
  if (c.error_text && message.find(c.error_text) == std::string::npos)
    return "error does not say '" + std::string(c.error_text) + "': " + message;
  if (c.task_exists && (result.detail("task-id").empty() ||
                        message.find(result.detail("task-id")) == std::string::npos))
    return "error does not carry the task ID: " + message;
  if (message.find(kKey) != std::string::npos)
    return "error shows the API key";
  return "";
}

// Runs one case and returns 0 when it had its outcome, 1 when not (with the reason).
int run_case(const Case &c) {
  // Not kirin_test_start_emulator(): this runs in a child of its own, outside any check test,
  // and reports a failure through its exit status.
  kirin_test_own_journal();
  kirin_emu::Emulator emu(kirin_test_emulator_options(kKey));
  GError *error = nullptr;
  if (!emu.start(&error)) {
    g_printerr("emulator: %s\n", error->message);
    return 1;
  }
  std::string known_url, known_path;
  if (!warm_up(emu, known_url, known_path)) {
    g_printerr("the warm-up task did not complete\n");
    return 1;
  }
  guint creates_before = emu.create_count();

  GstElement *src = gst_element_factory_make("kirinextendsrc", nullptr);
  gst_object_ref(src);
  g_object_set(src, "api-url", emu.api_url().c_str(), "api-key", kKey, "video-id", "demo-5s",
               "poll-interval", 100, "timeout", 30, nullptr);
  Fixture fixture{emu, src, known_url, known_path, {}, nullptr};
  c.setup(fixture);
  RunResult result;
  GstClockTime tag_duration = GST_CLOCK_TIME_NONE;
  std::string output = play_to_file(src, c.bound_s + 30, result, tag_duration);
  if (fixture.side)
    fixture.side->join();
  g_autofree char *task_id = nullptr;
  g_object_get(src, "task-id", &task_id, nullptr);

  std::string problem = judge(c, emu, fixture, result, output, task_id);
  if (problem.empty() && c.check)
    problem = c.check(Observed{emu, src, tag_duration});
  gst_object_unref(src);
  if (problem.empty() && emu.download_auth_count() != 0)
    problem = "the API key was sent to the result host";
  if (problem.empty() && emu.create_count() - creates_before > 1 &&
      c.outcome == Outcome::CleanError && !c.task_exists)
    problem = "a failed create was sent again";
  if (!problem.empty()) {
    g_printerr("  %s: %s\n", c.name, problem.c_str());
    return 1;
  }
  g_print("  %-48s %s in %.2f s%s%s\n", c.name,
          c.outcome == Outcome::Recovers ? "recovered" : "clean error", result.seconds,
          result.error ? ": " : "", result.error ? result.error->message : "");
  return 0;
}

} // namespace

GST_START_TEST(test_fault_matrix) {
  std::vector<Case> cases = matrix();
  guint recovered = 0, clean_errors = 0, wrong = 0, crashes = 0, hangs = 0;
  for (const Case &c : cases) {
    pid_t child = fork();
    fail_if(child < 0);
    if (child == 0)
      _exit(run_case(c));
    // Bounded wait for the child: past its bound plus a margin it counts as a hang.
    gint64 deadline = g_get_monotonic_time() + (gint64)((c.bound_s + 45) * G_USEC_PER_SEC);
    int status = 0;
    pid_t done = 0;
    while ((done = waitpid(child, &status, WNOHANG)) == 0 && g_get_monotonic_time() < deadline)
      g_usleep(20 * 1000);
    if (done == 0) {
      kill(child, SIGKILL);
      waitpid(child, &status, 0);
      hangs++;
      g_printerr("  %s: HANG\n", c.name);
    } else if (WIFSIGNALED(status)) {
      crashes++;
      g_printerr("  %s: CRASH (signal %d)\n", c.name, WTERMSIG(status));
    } else if (WEXITSTATUS(status) != 0) {
      wrong++;
    } else if (c.outcome == Outcome::Recovers) {
      recovered++;
    } else {
      clean_errors++;
    }
  }
  g_print("fault matrix: %zu cases, %u recovered, %u clean errors, %u wrong outcomes, %u "
          "crashes, %u hangs\n",
          cases.size(), recovered, clean_errors, wrong, crashes, hangs);
  fail_unless(recovered + clean_errors == cases.size());
}
GST_END_TEST;

static Suite *faults_suite() {
  Suite *s = suite_create("faults");
  TCase *tc = tcase_create("matrix");
  tcase_set_timeout(tc, 1200);
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_fault_matrix);
  return s;
}

int main(int argc, char **argv) {
  kirin_test_init(&argc, &argv, "faults");
  return gst_check_run_suite(faults_suite(), "faults", __FILE__);
}
