// The emulator the element suites run against, and a kirinextendsrc set up for it.
#pragma once

#include <gst/check/gstcheck.h>

#include "common.h"
#include "emulator.h"

#include <chrono>
#include <future>
#include <memory>
#include <thread>
#include <unistd.h>

// The suite's API key and short task timings; the rest as kirin_emu::Options has it.
inline kirin_emu::Options kirin_test_emulator_options(const char *api_key, guint pending_ms = 100,
                                                      guint processing_ms = 300) {
  kirin_emu::Options options;
  options.api_key = api_key;
  options.pending_ms = pending_ms;
  options.processing_ms = processing_ms;
  return options;
}

// The test process's journal directories, removed when it ends (a test's elements and the
// programs it started may use one until then), and only by the process that made them: a
// forked child ends before its parent is done with them.
struct KirinTestCacheHomes {
  std::vector<std::pair<pid_t, std::string>> paths;
  ~KirinTestCacheHomes() {
    for (const auto &[maker, path] : paths)
      if (maker == getpid())
        kirin_test_remove_tree(path);
  }
};

// A journal of the test's own: the element reads XDG_CACHE_HOME at every run, so no test
// replays another's task. Programs the test starts inherit it.
inline void kirin_test_own_journal() {
  static KirinTestCacheHomes homes;
  g_autofree char *cache_home = g_dir_make_tmp("kirin-test-cache-XXXXXX", nullptr);
  fail_unless(cache_home != nullptr);
  homes.paths.emplace_back(getpid(), cache_home);
  g_setenv("XDG_CACHE_HOME", cache_home, TRUE);
}

// A started emulator, and a journal of the test's own; the test fails when it does not
// start.
inline std::unique_ptr<kirin_emu::Emulator>
kirin_test_start_emulator(const kirin_emu::Options &options) {
  kirin_test_own_journal();
  auto emu = std::make_unique<kirin_emu::Emulator>(options);
  GError *error = nullptr;
  fail_unless(emu->start(&error), "the emulator did not start: %s", error ? error->message : "?");
  return emu;
}

inline std::unique_ptr<kirin_emu::Emulator>
kirin_test_start_emulator(const char *api_key, guint pending_ms = 100, guint processing_ms = 300) {
  return kirin_test_start_emulator(kirin_test_emulator_options(api_key, pending_ms, processing_ms));
}

// As a user sets it up: the service and its key in VTRIX_API_URL and VTRIX_API_KEY.
inline void kirin_test_export_emulator(const kirin_emu::Emulator &emu) {
  g_setenv("VTRIX_API_URL", emu.api_url().c_str(), TRUE);
  g_setenv("VTRIX_API_KEY", emu.api_key().c_str(), TRUE);
}

// A kirinextendsrc pointed at the emulator with its key; video-id and the rest are the
// caller's to set.
inline GstElement *kirin_test_make_src(const kirin_emu::Emulator &emu, guint poll_interval_ms = 50,
                                       guint timeout_s = 60, const char *name = nullptr) {
  GstElement *src = gst_element_factory_make("kirinextendsrc", name);
  fail_unless(src != nullptr, "no kirinextendsrc");
  g_object_set(src, "api-url", emu.api_url().c_str(), "api-key", emu.api_key().c_str(),
               "poll-interval", poll_interval_ms, "timeout", timeout_s, nullptr);
  return src;
}

// Sets the pipeline to NULL, giving the stop `deadline_s` (times the sanitizers' slowdown):
// a stop that waits for an answer the emulator holds would never end by itself, so past the
// deadline every held answer is released, and the stop counts as stuck. Returns how long
// the stop took, or -1 when it was stuck.
inline gint64 kirin_test_stop_within(kirin_emu::Emulator &emu, GstElement *pipeline,
                                     double deadline_s) {
  std::promise<GstStateChangeReturn> stopped;
  std::future<GstStateChangeReturn> done = stopped.get_future();
  const gint64 start = g_get_monotonic_time();
  std::thread stopper([&] { stopped.set_value(gst_element_set_state(pipeline, GST_STATE_NULL)); });
  const auto deadline = std::chrono::duration<double>(deadline_s * kirin_test_slowdown());
  bool in_time = done.wait_for(deadline) == std::future_status::ready;
  const gint64 took = g_get_monotonic_time() - start;
  if (!in_time)
    for (auto route : {kirin_emu::Route::Create, kirin_emu::Route::Poll})
      emu.release(route);
  stopper.join();
  fail_unless(done.get() == GST_STATE_CHANGE_SUCCESS);
  return in_time ? took : -1;
}

// After a stop: the answers still held on `route` (the request the run had in flight, and
// one that was on its way as the stop came) were given up by the client, then are released
// (written in vain).
inline void kirin_test_assert_held_given_up(kirin_emu::Emulator &emu, kirin_emu::Route route,
                                            int cycle) {
  const size_t held = emu.wait_held(route, 1, 0);
  const size_t given_up = emu.wait_abandoned(route, held, (guint)(10000 * kirin_test_slowdown()));
  fail_unless(given_up >= held, "cycle %d: %zu of %zu held requests given up after the stop", cycle,
              given_up, held);
  emu.release(route);
}
