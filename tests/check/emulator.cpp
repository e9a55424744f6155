// The emulator's own test aids: holding answers until the test releases them, and the
// request log. Requests come from kirinextendsrc or from a plain libsoup client.
#include "common.h"

#include "emulator-fixture.h"

#include <json-glib/json-glib.h>
#include <libsoup/soup.h>

#include <algorithm>
#include <memory>
#include <thread>

namespace {

constexpr const char *kKey = "emulator-test-key";
constexpr guint kWaitMs = 30000; // bounds waits that end as soon as the condition holds

using kirin_emu::Route;

struct Answer {
  guint status = 0;
  std::string body, error; // error: the client's, when no answer came
};

// One request on a session of the calling thread (a held answer blocks only that thread).
Answer send(const std::string &method, const std::string &url, const std::string &body = "",
            const char *key = kKey, GCancellable *cancellable = nullptr) {
  g_autoptr(SoupSession) session = soup_session_new_with_options("timeout", 60, nullptr);
  g_autoptr(SoupMessage) msg = soup_message_new(method.c_str(), url.c_str());
  Answer answer;
  if (!msg) {
    answer.error = "not a URL: " + url;
    return answer;
  }
  if (key) {
    g_autofree char *authorization = g_strdup_printf("Bearer %s", key);
    soup_message_headers_replace(soup_message_get_request_headers(msg), "Authorization",
                                 authorization);
  }
  if (!body.empty()) {
    g_autoptr(GBytes) bytes = g_bytes_new(body.data(), body.size());
    soup_message_set_request_body_from_bytes(msg, "application/json", bytes);
  }
  g_autoptr(GError) error = nullptr;
  g_autoptr(GBytes) reply = soup_session_send_and_read(session, msg, cancellable, &error);
  if (error) {
    answer.error = error->message;
    return answer;
  }
  answer.status = soup_message_get_status(msg);
  gsize size = 0;
  const char *data = static_cast<const char *>(g_bytes_get_data(reply, &size));
  answer.body.assign(data ? data : "", size);
  return answer;
}

// send() on a thread of its own; reports its end on `ended` (when given) with itself.
struct Background {
  Answer answer;
  GCancellable *cancellable = g_cancellable_new();
  std::thread thread;

  Background(std::string method, std::string url, std::string body = "",
             GAsyncQueue *ended = nullptr) {
    thread = std::thread([this, method, url, body, ended] {
      answer = send(method, url, body, kKey, cancellable);
      if (ended)
        g_async_queue_push(ended, this);
    });
  }
  ~Background() {
    if (thread.joinable())
      thread.join();
    g_object_unref(cancellable);
  }
  const Answer &wait() {
    thread.join();
    return answer;
  }
};

std::string member(const std::string &json, const char *name) {
  g_autoptr(JsonParser) parser = json_parser_new();
  if (!json_parser_load_from_data(parser, json.data(), json.size(), nullptr))
    return "";
  JsonNode *root = json_parser_get_root(parser);
  if (!root || !JSON_NODE_HOLDS_OBJECT(root))
    return "";
  const char *value =
      json_object_get_string_member_with_default(json_node_get_object(root), name, "");
  return value;
}

std::string create_body(const char *video_id, const char *external_task_id) {
  return std::string("{\"model\": \"kirin_duration_extension\", \"input\": [{\"params\": ") +
         "{\"video_id\": \"" + video_id + "\", \"external_task_id\": \"" + external_task_id +
         "\"}}]}";
}

// Creates a task (nothing held on Create) and returns its ID.
std::string create_task(const kirin_emu::Emulator &emu, const char *external_task_id) {
  Answer created = send("POST", emu.api_url(), create_body("demo-5s", external_task_id));
  fail_unless_equals_int(created.status, 200);
  std::string id = member(created.body, "id");
  fail_if(id.empty(), "no task ID in %s", created.body.c_str());
  return id;
}

std::string poll_url(const kirin_emu::Emulator &emu, const std::string &task_id) {
  return emu.api_url() + "/task/" + task_id;
}

// A number member of a JSON object; -1 when absent.
double number_member(const std::string &json, const char *name) {
  g_autoptr(JsonParser) parser = json_parser_new();
  if (!json_parser_load_from_data(parser, json.data(), json.size(), nullptr))
    return -1;
  JsonNode *root = json_parser_get_root(parser);
  if (!root || !JSON_NODE_HOLDS_OBJECT(root))
    return -1;
  return json_object_get_double_member_with_default(json_node_get_object(root), name, -1);
}

// The progress of each answer of a task polled until it completed (-1: absent); the last
// one is the completed answer's.
struct ProgressSeen {
  std::string shape;
  std::string task_id;
  gint64 created_us = 0; // when the create request was sent
  gint64 completed_us = 0;
  std::vector<double> progress;
};

// Polls every task in turn until all completed. The polls are spaced by 20 ms only to keep
// their number down: what each answer says does not depend on it.
void poll_until_completed(const kirin_emu::Emulator &emu, std::vector<ProgressSeen> &tasks) {
  const gint64 give_up = g_get_monotonic_time() + gint64(kWaitMs) * 1000;
  for (size_t open = tasks.size(); open > 0 && g_get_monotonic_time() < give_up;) {
    open = 0;
    for (ProgressSeen &task : tasks) {
      if (task.completed_us)
        continue;
      Answer polled = send("GET", poll_url(emu, task.task_id));
      fail_unless_equals_int(polled.status, 200);
      task.progress.push_back(number_member(polled.body, "progress"));
      if (member(polled.body, "status") == "completed")
        task.completed_us = g_get_monotonic_time();
      else
        open++;
    }
    g_usleep(20000);
  }
}

bool never_goes_back(const std::vector<double> &values) {
  return std::is_sorted(values.begin(), values.end());
}

size_t count_status(const std::vector<kirin_emu::RequestRecord> &records, Route route,
                    guint status) {
  size_t count = 0;
  for (const auto &record : records)
    count += record.route == route && record.status == status;
  return count;
}

// Takes the bus's messages, waiting up to `wait` for each next one; true when a kirin-task
// message with status "completed" was among all taken into `result` so far.
bool completed_message_seen(GstBus *bus, RunResult &result, GstClockTime wait) {
  while (GstMessage *msg = gst_bus_timed_pop(bus, wait)) {
    kirin_test_take_message(msg, result);
    gst_message_unref(msg);
  }
  for (const GstStructure *s : result.task_messages)
    if (g_strcmp0(gst_structure_get_string(s, "status"), "completed") == 0)
      return true;
  return false;
}

} // namespace

// The element's poll whose answer says "completed" is held: the element cannot know the
// task is done, however long it waits, and learns it as soon as the answer is released.
GST_START_TEST(test_held_completed_poll_reaches_the_element_on_release) {
  auto emu = kirin_test_start_emulator(kKey, 0, 200);
  kirin_emu::HoldFilter only_final;
  only_final.only_final = true;
  emu->hold(Route::Poll, only_final);

  GstElement *pipeline = gst_pipeline_new(nullptr);
  GstElement *src = kirin_test_make_src(*emu);
  GstElement *sink = gst_element_factory_make("fakesink", nullptr);
  g_object_set(src, "video-id", "demo-5s", "external-task-id", "held-1", nullptr);
  gst_bin_add_many(GST_BIN(pipeline), src, sink, nullptr);
  fail_unless(gst_element_link(src, sink));
  GstBus *bus = gst_element_get_bus(pipeline);
  fail_if(gst_element_set_state(pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE);

  fail_unless_equals_int(emu->wait_held(Route::Poll, 1, kWaitMs), 1);
  // The held answer is the first that says "completed"; those before it were delivered.
  std::vector<kirin_emu::RequestRecord> records = emu->requests();
  fail_unless_equals_int(count_status(records, Route::Poll, 0), 1);
  const size_t held_index = records.size() - 1;
  const kirin_emu::RequestRecord held = records[held_index];
  fail_unless(held.route == Route::Poll && held.status == 0);
  assert_same_text(emu->task_status(held.task_id), "completed");

  RunResult result;
  // Whatever the bus got so far, and nothing more for a while: no completion, no EOS.
  fail_if(completed_message_seen(bus, result, 0));
  fail_if(completed_message_seen(bus, result, 300 * GST_MSECOND));
  fail_if(result.eos || result.error, "the run ended while the answer was held");
  g_autofree char *url_while_held = nullptr;
  g_object_get(src, "result-url", &url_while_held, nullptr);
  fail_unless(url_while_held == nullptr || *url_while_held == '\0');
  fail_unless_equals_int(emu->wait_held(Route::Poll, 1, 0), 1);

  emu->release(Route::Poll);
  for (gint64 end = g_get_monotonic_time() + 60 * G_USEC_PER_SEC;
       !result.eos && !result.error && g_get_monotonic_time() < end;) {
    if (GstMessage *msg = gst_bus_timed_pop(bus, 100 * GST_MSECOND)) {
      kirin_test_take_message(msg, result);
      gst_message_unref(msg);
    }
  }
  gst_element_set_state(pipeline, GST_STATE_NULL);
  fail_if(result.error, "%s", result.error ? result.error->message : "");
  fail_unless(result.eos);
  const GstStructure *last = nullptr;
  for (const GstStructure *s : result.task_messages)
    if (g_strcmp0(gst_structure_get_string(s, "status"), "completed") == 0)
      last = s;
  fail_unless(last != nullptr, "no kirin-task message with status completed after release");
  assert_same_text(gst_structure_get_string(last, "task-id"), held.task_id);

  records = emu->requests();
  fail_unless_equals_int(count_status(records, Route::Poll, 0), 0);
  fail_unless_equals_int(records[held_index].status, 200); // the log keeps its place
  gst_object_unref(bus);
  gst_object_unref(pipeline);
}
GST_END_TEST;

// A hold for one task leaves the others alone; release_one sends the oldest and keeps
// holding; release sends the rest and stops.
GST_START_TEST(test_hold_one_task_release_one_then_all) {
  auto emu = kirin_test_start_emulator(kKey);
  const std::string a = create_task(*emu, "a"), b = create_task(*emu, "b");
  kirin_emu::HoldFilter only_a;
  only_a.task_id = a;
  emu->hold(Route::Poll, only_a);

  fail_unless_equals_int(send("GET", poll_url(*emu, b)).status, 200);
  GAsyncQueue *ended = g_async_queue_new();
  auto first = std::make_unique<Background>("GET", poll_url(*emu, a), "", ended);
  auto second = std::make_unique<Background>("GET", poll_url(*emu, a), "", ended);
  fail_unless_equals_int(emu->wait_held(Route::Poll, 2, kWaitMs), 2);
  fail_unless(g_async_queue_try_pop(ended) == nullptr);
  fail_unless_equals_int(count_status(emu->requests(), Route::Poll, 0), 2);

  fail_unless(emu->release_one(Route::Poll));
  auto *done = static_cast<Background *>(g_async_queue_timeout_pop(ended, kWaitMs * 1000));
  fail_unless(done != nullptr, "the released answer did not arrive");
  fail_unless_equals_int(done->wait().status, 200);
  assert_same_text(member(done->answer.body, "id"), a);
  fail_unless_equals_int(emu->wait_held(Route::Poll, 1, 0), 1);
  fail_unless_equals_int(count_status(emu->requests(), Route::Poll, 0), 1);

  // Still holding: a new poll of `a` waits too.
  auto third = std::make_unique<Background>("GET", poll_url(*emu, a), "", ended);
  fail_unless_equals_int(emu->wait_held(Route::Poll, 2, kWaitMs), 2);
  fail_unless(g_async_queue_try_pop(ended) == nullptr);

  emu->release(Route::Poll);
  for (int i = 0; i < 2; i++) {
    auto *other = static_cast<Background *>(g_async_queue_timeout_pop(ended, kWaitMs * 1000));
    fail_unless(other != nullptr && other != done);
    fail_unless_equals_int(other->wait().status, 200);
  }
  fail_unless_equals_int(emu->wait_held(Route::Poll, 0, 0), 0);
  fail_if(emu->release_one(Route::Poll));
  // No longer held.
  fail_unless_equals_int(send("GET", poll_url(*emu, a)).status, 200);
  fail_unless_equals_int(count_status(emu->requests(), Route::Poll, 0), 0);
  fail_unless_equals_int(count_status(emu->requests(), Route::Poll, 200), 5);
  first.reset();
  second.reset();
  third.reset();
  g_async_queue_unref(ended);
}
GST_END_TEST;

// Every request on the three routes, in order, with what identifies it and its answer.
GST_START_TEST(test_request_log) {
  auto emu = kirin_test_start_emulator(kKey, 0, 0);
  const gint64 start = g_get_monotonic_time();
  const std::string first = create_task(*emu, "order-1");
  Answer flat = send("POST", emu->api_url(),
                     "{\"model\": \"kirin_duration_extension\", \"video_id\": \"demo-5s\", "
                     "\"external_task_id\": \"order-2\"}");
  fail_unless_equals_int(flat.status, 200);
  const std::string second = member(flat.body, "id");
  fail_unless_equals_int(
      send("POST", emu->api_url(), create_body("demo-5s", "order-3"), "wrong-key").status, 401);
  fail_unless_equals_int(send("POST", emu->api_url(), create_body("nope", "order-4")).status, 400);
  fail_unless_equals_int(send("GET", emu->base_url() + "/videos/demo-5s").status, 200);
  emu->complete_now(first);
  Answer polled = send("GET", poll_url(*emu, first));
  fail_unless_equals_int(polled.status, 200);
  assert_same_text(member(polled.body, "status"), "completed");
  fail_unless_equals_int(send("GET", poll_url(*emu, "task-unknown")).status, 404);
  const std::string cover = "/files/" + first + ".jpg";
  fail_unless_equals_int(send("GET", emu->base_url() + cover).status, 200);
  fail_unless_equals_int(send("GET", emu->base_url() + "/files/none.mp4").status, 404);
  const gint64 end = g_get_monotonic_time();

  const std::vector<kirin_emu::RequestRecord> records = emu->requests();
  fail_unless_equals_int(records.size(), 8); // not the /videos request
  struct Expected {
    Route route;
    const char *method;
    std::string path, task_id, external_task_id, video_id;
    guint status;
  } expected[] = {
      {Route::Create, "POST", "/model/v1/generation", first, "order-1", "demo-5s", 200},
      {Route::Create, "POST", "/model/v1/generation", second, "order-2", "demo-5s", 200},
      {Route::Create, "POST", "/model/v1/generation", "", "order-3", "demo-5s", 401},
      {Route::Create, "POST", "/model/v1/generation", "", "order-4", "nope", 400},
      {Route::Poll, "GET", "/model/v1/generation/task/" + first, first, "", "", 200},
      {Route::Poll, "GET", "/model/v1/generation/task/task-unknown", "task-unknown", "", "", 404},
      {Route::Download, "GET", cover, first, "", "", 200},
      {Route::Download, "GET", "/files/none.mp4", "", "", "", 404},
  };
  gint64 previous = start;
  for (size_t i = 0; i < records.size(); i++) {
    const kirin_emu::RequestRecord &r = records[i];
    const Expected &e = expected[i];
    fail_unless(r.route == e.route, "record %zu: another route", i);
    assert_same_text(r.method, e.method);
    assert_same_text(r.path, e.path);
    assert_same_text(r.task_id, e.task_id);
    assert_same_text(r.external_task_id, e.external_task_id);
    assert_same_text(r.video_id, e.video_id);
    fail_unless_equals_int(r.status, e.status);
    fail_unless(r.arrival_us >= previous && r.arrival_us <= end, "record %zu: arrival out of order",
                i);
    previous = r.arrival_us;
  }
}
GST_END_TEST;

// Destroying the emulator with answers held on every route: the clients lose their
// connections, nothing crashes or leaks (the sanitizer run checks the latter).
GST_START_TEST(test_destroy_with_held_answers) {
  auto emu = kirin_test_start_emulator(kKey, 0, 0);
  const std::string task = create_task(*emu, "before");
  emu->complete_now(task);
  emu->hold(Route::Create);
  emu->hold(Route::Poll);
  emu->hold(Route::Download);
  Background create("POST", emu->api_url(), create_body("demo-5s", "held"));
  Background poll("GET", poll_url(*emu, task));
  Background download("GET", emu->base_url() + "/files/" + task + ".jpg");
  fail_unless_equals_int(emu->wait_held(Route::Create, 1, kWaitMs), 1);
  fail_unless_equals_int(emu->wait_held(Route::Poll, 1, kWaitMs), 1);
  fail_unless_equals_int(emu->wait_held(Route::Download, 1, kWaitMs), 1);
  const std::vector<kirin_emu::RequestRecord> records = emu->requests();
  fail_unless_equals_int(records.size(), 4);
  fail_unless_equals_int(count_status(records, Route::Create, 0), 1);
  fail_unless_equals_int(count_status(records, Route::Poll, 0), 1);
  fail_unless_equals_int(count_status(records, Route::Download, 0), 1);
  for (const auto &record : records)
    if (record.route == Route::Create && record.status == 0)
      assert_same_text(record.external_task_id, "held");
  emu.reset();
  for (Background *request : {&create, &poll, &download}) {
    const Answer &answer = request->wait();
    fail_unless_equals_int(answer.status, 0);
    fail_if(answer.error.empty());
  }
}
GST_END_TEST;

// A held answer whose client gave up, and one whose connection the emulator closed (going
// offline): neither is a problem, and the emulator goes on answering.
GST_START_TEST(test_held_answers_of_gone_clients) {
  auto emu = kirin_test_start_emulator(kKey);
  const std::string task = create_task(*emu, "gone");
  emu->hold(Route::Poll);

  // The client cancels and closes its connection; the answer is written into the void.
  auto cancelled = std::make_unique<Background>("GET", poll_url(*emu, task));
  fail_unless_equals_int(emu->wait_held(Route::Poll, 1, kWaitMs), 1);
  g_cancellable_cancel(cancelled->cancellable);
  fail_if(cancelled->wait().error.empty());
  cancelled.reset();
  emu->release_one(Route::Poll); // true or false: libsoup may not have noticed yet

  // Offline closes the held connection: the answer is no longer held, and never sent.
  Background dropped("GET", poll_url(*emu, task));
  fail_unless_equals_int(emu->wait_held(Route::Poll, 1, kWaitMs), 1);
  emu->set_offline(true);
  fail_unless_equals_int(emu->wait_held(Route::Poll, 0, 0), 0);
  fail_unless_equals_int(dropped.wait().status, 0);
  emu->set_offline(false);
  fail_if(emu->release_one(Route::Poll));
  emu->release(Route::Poll);

  fail_unless_equals_int(send("GET", poll_url(*emu, task)).status, 200);
  const std::vector<kirin_emu::RequestRecord> records = emu->requests();
  fail_unless_equals_int(records.size(), 4);
  fail_unless_equals_int(records[2].status, 0); // the one dropped while offline
  fail_unless_equals_int(records[3].status, 200);
}
GST_END_TEST;

// The progress shapes of the `progress:` task fault, and the processing time it carries.
GST_START_TEST(test_progress_shapes) {
  auto emu = kirin_test_start_emulator(kKey, 0, 1000);
  const std::pair<const char *, guint> shapes[] = {
      {"linear", 1500}, {"steps", 1500}, {"none", 1500}, {"stall", 1500}, {"back", 6000}};
  std::vector<ProgressSeen> tasks;
  for (const auto &[shape, length_ms] : shapes) {
    const std::string spec = std::string("progress:") + shape + ":" + std::to_string(length_ms);
    fail_unless(emu->push_fault(Route::Task, spec), "%s refused", spec.c_str());
    ProgressSeen seen;
    seen.shape = shape;
    seen.created_us = g_get_monotonic_time();
    seen.task_id = create_task(*emu, shape);
    tasks.push_back(seen);
  }
  poll_until_completed(*emu, tasks);
  for (size_t i = 0; i < tasks.size(); i++) {
    const ProgressSeen &task = tasks[i];
    const char *shape = task.shape.c_str();
    fail_unless(task.completed_us, "%s: not completed", shape);
    fail_unless(task.completed_us - task.created_us >= gint64(shapes[i].second) * 1000,
                "%s: completed before its processing time", shape);
    std::vector<double> running(task.progress.begin(), task.progress.end() - 1);
    const double last = task.progress.back();
    fail_unless(running.size() >= 3, "%s: only %zu answers while running", shape, running.size());
    if (task.shape == "none") {
      fail_unless(
          std::all_of(task.progress.begin(), task.progress.end(), [](double p) { return p == -1; }),
          "none: a progress member");
      continue;
    }
    fail_unless(last == 1, "%s: completed with progress %g", shape, last);
    fail_unless(
        std::all_of(running.begin(), running.end(), [](double p) { return p >= 0 && p <= 0.99; }),
        "%s: progress absent or out of range", shape);
    if (task.shape == "steps")
      fail_unless(
          std::all_of(running.begin(), running.end(),
                      [](double p) { return p == 0 || p == 0.25 || p == 0.5 || p == 0.75; }),
          "steps: a value between steps");
    if (task.shape == "stall")
      fail_unless(running.back() == 0.2 && std::all_of(running.begin(), running.end(),
                                                       [](double p) { return p <= 0.2; }),
                  "stall: not stuck at 0.2 before completing");
    if (task.shape == "back") {
      fail_if(never_goes_back(running), "back: no step back");
      for (size_t k = 1; k < running.size(); k++)
        fail_unless(running[k] >= running[k - 1] - 0.1 - 1e-9, "back: more than 0.1 back");
    } else {
      fail_unless(never_goes_back(running), "%s: progress went back", shape);
      std::vector<double> distinct = running;
      distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
      fail_unless(distinct.size() >= 2, "%s: progress never moved", shape);
    }
  }
}
GST_END_TEST;

GST_START_TEST(test_progress_fault_specs) {
  auto emu = kirin_test_start_emulator(kKey, 0, 0);
  for (const char *spec : {"progress:linear", "progress:steps:4000", "progress:none:1",
                           "progress:stall:30000", "progress:back"})
    fail_unless(emu->push_fault(Route::Task, spec), "%s refused", spec);
  for (const char *spec : {"progress", "progress:", "progress:zigzag", "progress:linear:0",
                           "progress:linear:-5", "progress:linear:ms", "progress:steps:10:2"})
    fail_if(emu->push_fault(Route::Task, spec), "%s accepted", spec);
  fail_if(emu->push_fault(Route::Poll, "progress:linear"), "a task fault on the poll route");
}
GST_END_TEST;

static Suite *emulator_suite() {
  Suite *s = suite_create("emulator");
  TCase *tc = tcase_create("emulator");
  tcase_set_timeout(tc, 120);
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_held_completed_poll_reaches_the_element_on_release);
  tcase_add_test(tc, test_hold_one_task_release_one_then_all);
  tcase_add_test(tc, test_request_log);
  tcase_add_test(tc, test_destroy_with_held_answers);
  tcase_add_test(tc, test_held_answers_of_gone_clients);
  tcase_add_test(tc, test_progress_shapes);
  tcase_add_test(tc, test_progress_fault_specs);
  return s;
}

int main(int argc, char **argv) {
  kirin_test_init(&argc, &argv, "emulator");
  return gst_check_run_suite(emulator_suite(), "emulator", __FILE__);
}
