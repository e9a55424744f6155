// The journal as users meet it: several processes with one request at once, processes
// killed at any moment of a run, players and tools that open the same kirin:// URI again,
// and what a replay says on the bus. The processes are the GStreamer tools themselves,
// sharing the test's XDG_CACHE_HOME, against the emulator on loopback.
#include "common.h"

#include "emulator-fixture.h"
#include "program.h"

#include <glib/gstdio.h>
#include <sqlite3.h>

#include <csignal>
#include <memory>
#include <unistd.h>

namespace {

constexpr const char *kKey = "journal-test-key";

using Tool = Program;

// A tool run as a user runs it: the key in the environment (and the service, once
// kirin_test_export_emulator set it), the test's journal; `preload` after what is preloaded
// already (the sanitizers' runtime must stay first).
std::unique_ptr<Tool> spawn(const std::vector<std::string> &args, const WorkDir &dir,
                            const std::string &name, const char *preload = nullptr) {
  std::vector<std::pair<std::string, std::string>> env{{"VTRIX_API_KEY", kKey}};
  if (preload) {
    const char *before = g_getenv("LD_PRELOAD");
    env.emplace_back("LD_PRELOAD", before && *before ? std::string(before) + ":" + preload
                                                     : std::string(preload));
  }
  return kirin_test_spawn(args, dir, name, env);
}

bool wait_up_to(Tool &tool, double seconds) {
  return kirin_test_wait_up_to(tool, seconds);
}

// Waits for a tool that must end by itself within 60 s, and records its exit status.
void finish(Tool &tool) {
  fail_unless(wait_up_to(tool, 60), "the tool did not end within 60 s; stderr: %s",
              tool.err().c_str());
}

void assert_exit_0(const Tool &tool) {
  fail_unless(tool.exit_status == 0, "exit status %d, stderr: %s", tool.exit_status,
              tool.err().c_str());
}

void kill_now(Tool &tool) {
  g_subprocess_send_signal(tool.process, SIGKILL);
  wait_up_to(tool, 10);
}

// gst-launch-1.0 -q kirinextendsrc api-url=... video-id=demo-5s poll-interval=50 [extra]
// ! filesink location=OUT
std::vector<std::string> launch_line(const kirin_emu::Emulator &emu, const std::string &out,
                                     const std::vector<std::string> &extra = {}) {
  std::vector<std::string> args{"gst-launch-1.0",   "-q",
                                "kirinextendsrc",   "api-url=" + emu.api_url(),
                                "video-id=demo-5s", "poll-interval=50"};
  args.insert(args.end(), extra.begin(), extra.end());
  args.insert(args.end(), {"!", "filesink", "location=" + out});
  return args;
}

// The newest row of this test's journal for a request with this external-task-id ("" for
// none): what a user reads with sqlite3 while pipelines run.
struct JournalRow {
  bool exists = false;
  std::string status, task_id;
};

JournalRow journal_row(const std::string &user_external_id) {
  JournalRow entry;
  std::string path = std::string(g_getenv("XDG_CACHE_HOME")) + "/gst-kirin/journal.db";
  sqlite3 *db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt *row = nullptr;
    const char *sql = "SELECT status, COALESCE(task_id, '') FROM tasks "
                      "WHERE user_external_task_id = ?1 ORDER BY id DESC LIMIT 1";
    if (sqlite3_prepare_v2(db, sql, -1, &row, nullptr) == SQLITE_OK &&
        sqlite3_bind_text(row, 1, user_external_id.c_str(), -1, SQLITE_TRANSIENT) == SQLITE_OK &&
        sqlite3_step(row) == SQLITE_ROW) {
      entry.exists = true;
      entry.status = (const char *)sqlite3_column_text(row, 0);
      entry.task_id = (const char *)sqlite3_column_text(row, 1);
    }
    sqlite3_finalize(row);
  }
  sqlite3_close(db);
  return entry;
}

// Waits (bounded) until the request's row has this status; returns the row as last read.
JournalRow wait_for_row(const std::string &external_id, const char *status) {
  JournalRow row;
  for (gint64 end = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;
       g_get_monotonic_time() < end && row.status != status; g_usleep(5 * 1000))
    row = journal_row(external_id);
  return row;
}

// The create requests the provider received for this external-task-id, and the tasks they
// made.
std::vector<std::string> created_tasks(const kirin_emu::Emulator &emu,
                                       const std::string &external_id) {
  std::vector<std::string> tasks;
  for (const kirin_emu::RequestRecord &r : emu.requests())
    if (r.route == kirin_emu::Route::Create && r.external_task_id == external_id)
      tasks.push_back(r.task_id);
  return tasks;
}

// Whether the process has the journal open: it reached its run's first step.
bool has_journal_open(GSubprocess *process) {
  std::string fds = std::string("/proc/") + g_subprocess_get_identifier(process) + "/fd";
  GDir *dir = g_dir_open(fds.c_str(), 0, nullptr);
  bool found = false;
  while (dir && !found)
    if (const char *name = g_dir_read_name(dir)) {
      g_autofree char *target = g_file_read_link((fds + "/" + name).c_str(), nullptr);
      found = target && g_str_has_suffix(target, "/gst-kirin/journal.db");
    } else {
      break;
    }
  if (dir)
    g_dir_close(dir);
  return found;
}

std::string result_bytes(const kirin_emu::Emulator &emu, const std::string &task_id) {
  std::string path = emu.task_result_path(task_id);
  fail_if(path.empty(), "the emulator has no result for task '%s'", task_id.c_str());
  return kirin_test_read_file(path);
}

bool contains(const std::string &text, const std::string &part) {
  return text.find(part) != std::string::npos;
}

} // namespace

// Eight processes started together with the same request: one pays, the seven others
// wait for it and attach, and all eight save the same video.
GST_START_TEST(test_eight_processes_one_create) {
  auto emu = kirin_test_start_emulator(kKey);
  WorkDir dir;
  constexpr int kProcesses = 8;
  // The first create is kept unanswered until every process has reached the journal.
  emu->hold(kirin_emu::Route::Create);
  std::vector<std::unique_ptr<Tool>> tools;
  for (int i = 0; i < kProcesses; i++) {
    std::string name = "out-" + std::to_string(i);
    tools.push_back(spawn(launch_line(*emu, dir.file(name + ".mp4")), dir, name));
  }
  fail_unless_equals_int(emu->wait_held(kirin_emu::Route::Create, 1, 30000), 1);
  auto all_in_journal = [&] {
    for (auto &tool : tools)
      if (!has_journal_open(tool->process))
        return false;
    return true;
  };
  gint64 end = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;
  while (!all_in_journal() && g_get_monotonic_time() < end)
    g_usleep(10 * 1000);
  fail_unless(all_in_journal(), "not every process reached the journal within 30 s");
  fail_unless_equals_int(emu->create_count(), 1);
  emu->release(kirin_emu::Route::Create);

  for (auto &tool : tools) {
    finish(*tool);
    assert_exit_0(*tool);
  }
  fail_unless_equals_int(emu->create_count(), 1);
  std::string task_id = emu->requests().front().task_id;
  std::string served = result_bytes(*emu, task_id);
  for (int i = 0; i < kProcesses; i++) {
    std::string saved = kirin_test_read_file(dir.file("out-" + std::to_string(i) + ".mp4"));
    fail_unless(!saved.empty() && saved == served, "process %d saved other bytes (%zu, not %zu)", i,
                saved.size(), served.size());
  }
}
GST_END_TEST;

// ---- kill -9 at moments spread over a run ----

// The element line of request `external_id`, run in this process after the kill.
GstElement *rerun_pipeline(const kirin_emu::Emulator &emu, const std::string &external_id,
                           const std::string &out, GstElement **src) {
  *src = kirin_test_make_src(emu);
  g_object_set(*src, "video-id", "demo-5s", "external-task-id", external_id.c_str(), nullptr);
  GstElement *pipeline = gst_pipeline_new(nullptr);
  GstElement *sink = gst_element_factory_make("filesink", nullptr);
  g_object_set(sink, "location", out.c_str(), nullptr);
  gst_bin_add_many(GST_BIN(pipeline), *src, sink, nullptr);
  fail_unless(gst_element_link(*src, sink));
  return pipeline;
}

struct Rerun {
  std::string error, task_id, bytes;
  bool eos = false, replayed = false;
};

Rerun rerun(const kirin_emu::Emulator &emu, const std::string &external_id, const WorkDir &dir) {
  GstElement *src = nullptr;
  std::string out = dir.file(external_id + "-rerun.mp4");
  GstElement *pipeline = rerun_pipeline(emu, external_id, out, &src);
  RunResult result;
  kirin_test_run(pipeline, 60, result);
  Rerun rerun;
  rerun.eos = result.eos;
  if (result.error)
    rerun.error = result.error->message;
  g_autofree char *task_id = nullptr;
  g_object_get(src, "task-id", &task_id, nullptr);
  rerun.task_id = task_id ? task_id : "";
  for (const GstStructure *s : result.task_messages) {
    gboolean replayed = FALSE;
    rerun.replayed |= gst_structure_get_boolean(s, "replayed", &replayed) && replayed;
  }
  gst_object_unref(pipeline);
  rerun.bytes = kirin_test_read_file(out);
  g_unlink(out.c_str());
  return rerun;
}

// What every rerun must show after the kill, whatever the moment: one create at most for
// the request; an error naming the external ID and fresh=true exactly when the killed run
// left the create sent but unanswered in the journal; otherwise the task's own bytes.
void assert_rerun(const kirin_emu::Emulator &emu, const std::string &id, const JournalRow &killed,
                  const Rerun &again) {
  std::vector<std::string> creates = created_tasks(emu, id);
  fail_unless(creates.size() <= 1, "%s: %zu creates", id.c_str(), creates.size());
  if (killed.status == "sending") {
    fail_unless(!again.error.empty(), "%s: the rerun after a lost create answer did not fail",
                id.c_str());
    fail_unless(contains(again.error, id) && contains(again.error, "fresh=true"),
                "%s: the error does not name the external ID and fresh=true: %s", id.c_str(),
                again.error.c_str());
    return;
  }
  fail_unless(again.error.empty() && again.eos, "%s (killed at '%s'): rerun error '%s'", id.c_str(),
              killed.status.c_str(), again.error.c_str());
  fail_unless_equals_int(creates.size(), 1);
  assert_same_text(again.task_id, creates.front());
  fail_unless(again.bytes == result_bytes(emu, creates.front()), "%s: the rerun saved other bytes",
              id.c_str());
}

// The kinds of moment the emulator can place.
enum class Moment { CreateHeld, Stuck, FinalPollHeld, DownloadHeld, ClaimedNotSent, Timed };

const char *moment_name(Moment moment) {
  static const char *const names[] = {"create sent, unanswered",  "task stuck at the provider",
                                      "final poll unanswered",    "download unanswered",
                                      "claimed, create not sent", "timed"};
  return names[(int)moment];
}

// Runs request `id` in gst-launch-1.0, kills it at `moment` (after `delay` seconds for a
// timed one) and returns the journal row the kill left.
JournalRow kill_at(kirin_emu::Emulator &emu, Moment moment, double delay, const std::string &id,
                   const WorkDir &dir) {
  using kirin_emu::Route;
  if (moment == Moment::CreateHeld)
    emu.hold(Route::Create);
  if (moment == Moment::Stuck)
    fail_unless(emu.push_fault(Route::Task, "stuck"));
  if (moment == Moment::FinalPollHeld)
    emu.hold(Route::Poll, {"", true});
  if (moment == Moment::DownloadHeld)
    emu.hold(Route::Download);
  const char *preload =
      moment == Moment::ClaimedNotSent ? g_getenv("KIRIN_DIE_BEFORE_SENDING") : nullptr;
  auto tool =
      spawn(launch_line(emu, dir.file(id + ".mp4"), {"external-task-id=" + id}), dir, id, preload);
  JournalRow row;
  switch (moment) {
  case Moment::CreateHeld:
    fail_unless_equals_int(emu.wait_held(Route::Create, 1, 30000), 1);
    break;
  case Moment::Stuck:
    row = wait_for_row(id, "created");
    break;
  case Moment::FinalPollHeld:
    fail_unless_equals_int(emu.wait_held(Route::Poll, 1, 30000), 1);
    break;
  case Moment::DownloadHeld:
    fail_unless_equals_int(emu.wait_held(Route::Download, 1, 30000), 1);
    // The download may start before the journal's write of the outcome is on disk.
    row = wait_for_row(id, "completed");
    break;
  case Moment::ClaimedNotSent:
    // It kills itself (die-before-sending.cpp).
    fail_unless(wait_up_to(*tool, 60), "the process did not die before sending");
    fail_unless(g_subprocess_get_if_signaled(tool->process) &&
                    g_subprocess_get_term_sig(tool->process) == SIGKILL,
                "the process was not killed before sending; stderr: %s", tool->err().c_str());
    break;
  case Moment::Timed:
    wait_up_to(*tool, delay);
    break;
  }
  kill_now(*tool);
  if (moment == Moment::CreateHeld)
    emu.release(Route::Create);
  if (moment == Moment::FinalPollHeld)
    emu.release(Route::Poll);
  if (moment == Moment::DownloadHeld)
    emu.release(Route::Download);
  return journal_row(id);
}

// The held moments each say what the kill must have left.
void assert_held_moment(kirin_emu::Emulator &emu, Moment moment, const std::string &id,
                        const JournalRow &row) {
  const char *expected = moment == Moment::CreateHeld       ? "sending"
                         : moment == Moment::DownloadHeld   ? "completed"
                         : moment == Moment::ClaimedNotSent ? "claimed"
                                                            : "created";
  fail_unless(row.status == expected, "%s (%s): the journal says '%s', expected '%s'", id.c_str(),
              moment_name(moment), row.status.c_str(), expected);
  if (moment == Moment::Stuck)
    emu.complete_now(row.task_id);
  if (moment == Moment::ClaimedNotSent)
    fail_unless_equals_int(created_tasks(emu, id).size(), 0);
}

// As a user meets a lost create answer: gst-launch-1.0 fails, naming the external ID and
// the way out; with fresh=true it pays for a new task and saves it.
void assert_user_sees_abandoned(const kirin_emu::Emulator &emu, const std::string &id,
                                const WorkDir &dir) {
  std::string out = dir.file(id + "-again.mp4");
  auto again = spawn(launch_line(emu, out, {"external-task-id=" + id}), dir, id + "-again");
  finish(*again);
  fail_if(again->exit_status == 0, "gst-launch-1.0 succeeded after a lost create answer");
  std::string err = again->err();
  fail_unless(contains(err, id) && contains(err, "fresh=true"), "stderr: %s", err.c_str());
  fail_unless_equals_int(created_tasks(emu, id).size(), 1);

  auto fresh =
      spawn(launch_line(emu, out, {"external-task-id=" + id, "fresh=true"}), dir, id + "-fresh");
  finish(*fresh);
  assert_exit_0(*fresh);
  std::vector<std::string> creates = created_tasks(emu, id);
  fail_unless_equals_int(creates.size(), 2);
  fail_unless(kirin_test_read_file(out) == result_bytes(emu, creates.back()));
}

// 30 requests, each run as a process killed with SIGKILL at its own moment: twelve the
// emulator can hold (create, a stuck task, the final poll, the download), one between the
// claim and the create (die-before-sending.cpp), and seventeen moments spread evenly over
// an unheld run, whatever they hit.
GST_START_TEST(test_kill_at_thirty_moments) {
  auto emu = kirin_test_start_emulator(kKey);
  WorkDir dir;
  // An unheld run from start to exit, to spread the timed moments over.
  gint64 start = g_get_monotonic_time();
  auto calibration = spawn(launch_line(*emu, dir.file("calibrate.mp4")), dir, "calibrate");
  finish(*calibration);
  fail_unless_equals_int(calibration->exit_status, 0);
  double run_seconds = (g_get_monotonic_time() - start) / (double)G_USEC_PER_SEC;
  g_print("kill test: an unheld run takes %.2f s\n", run_seconds);

  const Moment held[] = {Moment::CreateHeld, Moment::Stuck, Moment::FinalPollHeld,
                         Moment::DownloadHeld};
  constexpr int kMoments = 30, kHeld = 13, kTimed = kMoments - kHeld;
  for (int i = 0; i < kMoments; i++) {
    std::string id = "kill-" + std::to_string(i);
    Moment moment = i < kHeld - 1 ? held[i % 4]
                    : i < kHeld   ? Moment::ClaimedNotSent
                                  : Moment::Timed;
    double delay = (i - kHeld + 0.5) * run_seconds / kTimed;
    JournalRow row = kill_at(*emu, moment, delay, id, dir);
    if (moment != Moment::Timed)
      assert_held_moment(*emu, moment, id, row);
    guint polls = emu->poll_count();
    Rerun again = rerun(*emu, id, dir);
    g_print("%s: %s%s -> journal '%s', rerun %s\n", id.c_str(), moment_name(moment),
            moment == Moment::Timed ? (" " + std::to_string(delay) + " s").c_str() : "",
            row.status.c_str(), again.error.empty() ? "streamed the task" : "failed");
    assert_rerun(*emu, id, row, again);
    if (row.status == "completed") {
      // The recorded URL is fetched again: no create and no poll.
      fail_unless(again.replayed, "%s: no kirin-task message says replayed=true", id.c_str());
      fail_unless_equals_int(emu->poll_count(), polls);
    }
    if (i == 0)
      assert_user_sees_abandoned(*emu, id, dir);
  }
}
GST_END_TEST;

// ---- players and tools opening the same request again ----

// The task IDs of the kirin-task messages gst-launch-1.0 -m printed, in order.
std::vector<std::string> printed_task_ids(const std::string &out) {
  std::vector<std::string> ids;
  const std::string field = "task-id=(string)";
  for (size_t at = out.find("kirin-task"); at != std::string::npos;
       at = out.find("kirin-task", at + 1)) {
    size_t value = out.find(field, at);
    if (value == std::string::npos)
      break;
    value += field.size();
    ids.push_back(out.substr(value, out.find_first_of(", ;\n", value) - value));
  }
  return ids;
}

void play_with_playbin(const char *uri) {
  GstElement *playbin = gst_element_factory_make("playbin", nullptr);
  fail_unless(playbin != nullptr);
  g_object_set(playbin, "uri", uri, "video-sink", gst_element_factory_make("fakesink", nullptr),
               "audio-sink", gst_element_factory_make("fakesink", nullptr), nullptr);
  RunResult result;
  kirin_test_run(playbin, 60, result);
  fail_if(result.error, "playbin: %s", result.error ? result.error->message : "");
  fail_unless(result.eos, "playbin did not reach EOS");
  gst_object_unref(playbin);
}

// One request opened by playbin twice, gst-discoverer-1.0, and the same element line in
// gst-launch-1.0 twice: all of them are served by the one task paid for. fresh=true pays
// for another.
GST_START_TEST(test_players_and_tools_share_one_task) {
  auto emu = kirin_test_start_emulator(kKey);
  kirin_test_export_emulator(*emu);
  WorkDir dir;
  const char *uri = "kirin://demo-5s?poll-interval=50";
  play_with_playbin(uri);
  play_with_playbin(uri);
  fail_unless_equals_int(emu->create_count(), 1);

  auto discoverer = spawn({"gst-discoverer-1.0", "-t", "60", uri}, dir, "discoverer");
  finish(*discoverer);
  assert_exit_0(*discoverer);
  fail_unless(contains(discoverer->out(), "Duration: 0:00:10."), "gst-discoverer-1.0 printed: %s",
              discoverer->out().c_str());
  fail_unless_equals_int(emu->create_count(), 1);
  std::string task_id = emu->requests().front().task_id;
  std::string served = result_bytes(*emu, task_id);

  // -m prints the bus messages, the kirin-task ones with their task-id.
  auto launch = [&](const std::string &name, const std::vector<std::string> &extra) {
    std::vector<std::string> args = launch_line(*emu, dir.file(name + ".mp4"), extra);
    args[1] = "-m"; // instead of -q, which silences -m too
    auto tool = spawn(args, dir, name);
    finish(*tool);
    assert_exit_0(*tool);
    fail_unless(kirin_test_read_file(dir.file(name + ".mp4")) == served || name == "fresh",
                "%s saved other bytes", name.c_str());
    std::vector<std::string> ids = printed_task_ids(tool->out());
    fail_if(ids.empty(), "%s printed no kirin-task message: %s", name.c_str(), tool->out().c_str());
    return ids.back();
  };
  assert_same_text(launch("first", {}), task_id);
  assert_same_text(launch("second", {}), task_id);
  fail_unless_equals_int(emu->create_count(), 1);
  std::string fresh_task = launch("fresh", {"fresh=true"});
  fail_unless_equals_int(emu->create_count(), 2);
  fail_if(fresh_task == task_id, "fresh=true reported the old task %s", task_id.c_str());
  assert_same_text(fresh_task, emu->requests().back().task_id);
  fail_unless(kirin_test_read_file(dir.file("fresh.mp4")) == result_bytes(*emu, fresh_task));
}
GST_END_TEST;

// What a user sees when a request is served again: a progress message that names the task
// and how to pay for a new one, and a kirin-task message marked replayed, without a cost.
GST_START_TEST(test_replay_says_so_on_the_bus) {
  auto emu = kirin_test_start_emulator(kKey);
  WorkDir dir;
  auto run = [&](RunResult &result, std::string &task_id) {
    GstElement *src = nullptr;
    GstElement *pipeline = rerun_pipeline(*emu, "replay-me", dir.file("out.mp4"), &src);
    gst_object_ref(src);
    kirin_test_run(pipeline, 60, result);
    fail_if(result.error, "%s", result.error ? result.error->message : "");
    fail_unless(result.eos);
    g_autofree char *id = nullptr;
    g_object_get(src, "task-id", &id, nullptr);
    task_id = id ? id : "";
    gst_object_unref(src);
    gst_object_unref(pipeline);
  };
  RunResult first, second;
  std::string first_task, second_task;
  run(first, first_task);
  const GstStructure *paid = first.last_task_message();
  fail_unless(paid && gst_structure_has_field(paid, "cost"), "the paid run reported no cost");
  fail_if(gst_structure_has_field(paid, "replayed"));

  run(second, second_task);
  fail_unless_equals_int(emu->create_count(), 1);
  assert_same_text(second_task, first_task);
  bool said = false;
  for (const auto &progress : second.progress)
    said |= contains(progress.second, first_task) && contains(progress.second, "fresh=true");
  fail_unless(said, "no progress message names task %s and fresh=true", first_task.c_str());
  fail_if(second.task_messages.empty(), "the replay posted no kirin-task message");
  for (const GstStructure *s : second.task_messages) {
    gboolean replayed = FALSE;
    fail_unless(gst_structure_get_boolean(s, "replayed", &replayed) && replayed,
                "a replayed kirin-task message without replayed=true");
    fail_if(gst_structure_has_field(s, "cost"), "a replay reported a cost");
    assert_same_text(gst_structure_get_string(s, "task-id"), first_task);
  }
}
GST_END_TEST;

// A libpq keyword string is no journal: it is refused before any request, naming the property
// and the URI form, without making a file of that name or showing its password.
GST_START_TEST(test_keyword_string_journal_is_refused) {
  auto emu = kirin_test_start_emulator(kKey);
  WorkDir dir;
  g_autofree char *cwd = g_get_current_dir();
  fail_unless(g_chdir(dir.path.c_str()) == 0);
  GstElement *src = kirin_test_make_src(*emu);
  g_object_set(src, "video-id", "demo-5s", "journal",
               "host=127.0.0.1 port=55432 user=kirin password='hunter 2' dbname=media", nullptr);
  g_autofree char *read_back = nullptr;
  g_object_get(src, "journal", &read_back, nullptr);
  assert_same_text(read_back, "host=127.0.0.1 port=55432 user=kirin dbname=media");
  GstElement *pipeline = gst_pipeline_new(nullptr);
  GstElement *sink = gst_element_factory_make("fakesink", nullptr);
  gst_bin_add_many(GST_BIN(pipeline), src, sink, nullptr);
  fail_unless(gst_element_link(src, sink));
  RunResult result;
  kirin_test_run(pipeline, 30, result);
  gst_object_unref(pipeline);
  fail_unless(g_chdir(cwd) == 0);

  fail_unless(result.error &&
                  g_error_matches(result.error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS),
              "%s", result.error ? result.error->message : "no error");
  const std::string text = result.error->message;
  fail_unless(contains(text, "Property 'journal' (host=127.0.0.1 port=55432 user=kirin "
                             "dbname=media) is a libpq keyword=value string"),
              "%s", text.c_str());
  fail_unless(contains(text, "postgresql://"), "%s", text.c_str());
  assert_same_text(result.detail("error-kind"), "settings");
  std::string everything = text + result.error_debug;
  for (const std::string &warning : result.warnings)
    everything += warning;
  fail_if(contains(everything, "hunter"), "the password shows: %s", everything.c_str());
  fail_unless_equals_int(emu->create_count(), 0);
  GDir *files = g_dir_open(dir.path.c_str(), 0, nullptr);
  const char *made = files ? g_dir_read_name(files) : nullptr;
  fail_if(made, "a file was made in the working directory: %s", made);
  g_dir_close(files);
}
GST_END_TEST;

static Suite *journal_suite() {
  Suite *s = suite_create("journal");
  TCase *tc = tcase_create("processes");
  tcase_set_timeout(tc, 240);
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_eight_processes_one_create);
  tcase_add_test(tc, test_kill_at_thirty_moments);
  tcase_add_test(tc, test_players_and_tools_share_one_task);
  tcase_add_test(tc, test_replay_says_so_on_the_bus);
  tcase_add_test(tc, test_keyword_string_journal_is_refused);
  return s;
}

int main(int argc, char **argv) {
  kirin_test_init(&argc, &argv, "journal");
  return gst_check_run_suite(journal_suite(), "journal", __FILE__);
}
