// What the suites of the journal a fleet shares (fleet, fleet-outage) have in common: a
// server of the test's own, and a run of the element in the test's process.
#pragma once

#include "common.h"

#include "emulator-fixture.h"
#include "pg-server.h"
#include "program.h"

#include <functional>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr const char *kKey = "fleet-test-key";

std::unique_ptr<PgServer> start_server() {
  auto server = std::make_unique<PgServer>();
  std::string error;
  fail_unless(server->start(error), "PostgreSQL did not start: %s", error.c_str());
  return server;
}

bool contains(const std::string &text, const std::string &part) {
  return text.find(part) != std::string::npos;
}

struct InProcessRun {
  std::string task_id, bus;
  bool eos = false;
  std::vector<std::string> warnings;
};

// How a run meets a server that does not answer (journal-outage-wait; kOutageDefault: as
// the element's default), and what the test does once the run says it waits for it, or
// between the claim and the create's "sending" mark.
constexpr int kOutageDefault = -2;
struct OutagePolicy {
  int wait_s = kOutageDefault;
  std::function<void()> on_waiting; // on a thread of its own
  // On a thread of its own, while the element is held at its first "Extending video"
  // progress message: after the claim, before the "sending" mark (the create waits for the
  // message to be delivered).
  std::function<void()> before_sending;
};

// The element's info messages, as they are posted; runs `on_waiting` once one says the run
// waits for the journal's server, and holds the element at its first "Extending video"
// progress message until `before_sending` is done.
struct InfoWatch {
  std::function<void()> on_waiting, before_sending;
  std::thread thread, sending_thread;
  std::mutex lock;
  std::condition_variable changed;
  bool sending_done = false;
  std::string infos;

  static void hold_before_sending(InfoWatch *watch, GstMessage *message) {
    GstProgressType type;
    g_autofree char *text = nullptr;
    gst_message_parse_progress(message, &type, nullptr, &text);
    std::unique_lock<std::mutex> guard(watch->lock);
    if (type != GST_PROGRESS_TYPE_START || !g_str_has_prefix(text, "Extending video") ||
        watch->sending_thread.joinable())
      return;
    watch->sending_thread = std::thread([watch] {
      watch->before_sending();
      std::lock_guard<std::mutex> done(watch->lock);
      watch->sending_done = true;
      watch->changed.notify_all();
    });
    watch->changed.wait_for(guard, std::chrono::seconds(60), [&] { return watch->sending_done; });
  }

  static GstBusSyncReply seen(GstBus *, GstMessage *message, gpointer data) {
    auto *watch = static_cast<InfoWatch *>(data);
    if (GST_MESSAGE_TYPE(message) == GST_MESSAGE_PROGRESS && watch->before_sending)
      hold_before_sending(watch, message);
    if (GST_MESSAGE_TYPE(message) != GST_MESSAGE_INFO)
      return GST_BUS_PASS;
    GError *error = nullptr;
    gchar *debug = nullptr;
    gst_message_parse_info(message, &error, &debug);
    std::lock_guard<std::mutex> guard(watch->lock);
    watch->infos += std::string(error->message) + "\n";
    if (watch->on_waiting && !watch->thread.joinable() &&
        g_str_has_prefix(error->message, "Waiting for the journal's server"))
      watch->thread = std::thread(watch->on_waiting);
    g_error_free(error);
    g_free(debug);
    return GST_BUS_PASS;
  }
};

// kirinextendsrc ! fakesink in this process, with `journal` and `extensions` steps (paid
// again with `fresh`), and `prompt` when given (a request of its own); `during` runs once
// the task is created, before its final poll is answered.
InProcessRun run_here(kirin_emu::Emulator &emu, const std::string &journal,
                      const std::function<void()> &during = nullptr, guint extensions = 1,
                      bool fresh = false, const std::string &prompt = "",
                      const OutagePolicy &outage = {}) {
  if (during) {
    kirin_emu::HoldFilter final_only;
    final_only.only_final = true;
    emu.hold(kirin_emu::Route::Poll, final_only);
  }
  GstElement *src = kirin_test_make_src(emu);
  gst_object_ref(src);
  g_object_set(src, "video-id", "demo-5s", "journal", journal.c_str(), "extensions", extensions,
               "fresh", fresh, nullptr);
  if (!prompt.empty())
    g_object_set(src, "prompt", prompt.c_str(), nullptr);
  if (outage.wait_s != kOutageDefault)
    g_object_set(src, "journal-outage-wait", outage.wait_s, nullptr);
  GstElement *pipeline = gst_pipeline_new(nullptr);
  InfoWatch watch;
  watch.on_waiting = outage.on_waiting;
  watch.before_sending = outage.before_sending;
  GstBus *bus = gst_element_get_bus(pipeline);
  gst_bus_set_sync_handler(bus, InfoWatch::seen, &watch, nullptr);
  gst_object_unref(bus);
  GstElement *sink = gst_element_factory_make("fakesink", nullptr);
  gst_bin_add_many(GST_BIN(pipeline), src, sink, nullptr);
  fail_unless(gst_element_link(src, sink));
  std::thread releaser;
  if (during)
    releaser = std::thread([&emu, during] {
      emu.wait_held(kirin_emu::Route::Poll, 1, 30000);
      during();
      emu.release(kirin_emu::Route::Poll);
    });
  RunResult result;
  kirin_test_run(pipeline, 60, result);
  if (releaser.joinable())
    releaser.join();
  if (watch.thread.joinable())
    watch.thread.join();
  if (watch.sending_thread.joinable())
    watch.sending_thread.join();
  InProcessRun run;
  run.bus = watch.infos;
  run.eos = result.eos;
  run.warnings = result.warnings;
  for (const std::string &w : result.warnings)
    run.bus += w + "\n";
  for (const GstStructure *s : result.task_messages) {
    g_autofree char *text = gst_structure_to_string(s);
    run.bus += text;
  }
  for (const auto &p : result.progress)
    run.bus += p.second + "\n";
  if (result.error)
    run.bus += std::string(result.error->message) + result.error_debug;
  g_autofree char *task_id = nullptr;
  g_object_get(src, "task-id", &task_id, nullptr);
  run.task_id = task_id ? task_id : "";
  g_autofree char *read_back = nullptr;
  g_object_get(src, "journal", &read_back, nullptr);
  run.bus += std::string("journal property: ") + (read_back ? read_back : "") + "\n";
  gst_object_unref(src);
  gst_object_unref(pipeline);
  return run;
}

// A machine of the fleet: gst-launch-1.0 with a local cache of its own (XDG_CACHE_HOME),
// the key in the environment and `journal` as given.
std::unique_ptr<Program> machine(const kirin_emu::Emulator &emu, const std::string &journal,
                                 const WorkDir &dir, const std::string &name,
                                 const std::vector<std::string> &extra = {},
                                 std::vector<std::pair<std::string, std::string>> env = {}) {
  std::string cache = dir.file(name + "-cache");
  g_mkdir_with_parents(cache.c_str(), 0700);
  env.emplace_back("VTRIX_API_KEY", kKey);
  env.emplace_back("XDG_CACHE_HOME", cache);
  std::vector<std::string> args{"gst-launch-1.0",    "-m",
                                "kirinextendsrc",    "api-url=" + emu.api_url(),
                                "video-id=demo-5s",  "poll-interval=50",
                                "journal=" + journal};
  args.insert(args.end(), extra.begin(), extra.end());
  args.insert(args.end(), {"!", "filesink", "location=" + dir.file(name + ".mp4")});
  return kirin_test_spawn(args, dir, name, env);
}

void finish(Program &program) {
  fail_unless(kirin_test_wait_up_to(program, 60), "it did not end within 60 s: %s",
              program.both().c_str());
}

std::string result_bytes(const kirin_emu::Emulator &emu, const std::string &task_id) {
  std::string path = emu.task_result_path(task_id);
  fail_if(path.empty(), "the emulator has no result for task '%s'", task_id.c_str());
  return kirin_test_read_file(path);
}

// One warning names the server, without the password.
void assert_warned(const InProcessRun &run, const PgServer &server) {
  bool named = false;
  for (const std::string &w : run.warnings)
    named |= contains(w, server.uri_without_password());
  fail_unless(named, "no warning names %s: %s", server.uri_without_password().c_str(),
              run.bus.c_str());
  fail_if(contains(run.bus, server.password), "the password shows: %s", run.bus.c_str());
}

} // namespace
