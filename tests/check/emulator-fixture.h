// The emulator the element suites run against, and a kirinextendsrc set up for it.
#pragma once

#include <gst/check/gstcheck.h>

#include "emulator.h"

#include <memory>

// The suite's API key and short task timings; the rest as kirin_emu::Options has it.
inline kirin_emu::Options kirin_test_emulator_options(const char *api_key, guint pending_ms = 100,
                                                      guint processing_ms = 300) {
  kirin_emu::Options options;
  options.api_key = api_key;
  options.pending_ms = pending_ms;
  options.processing_ms = processing_ms;
  return options;
}

// A journal of the test's own: the element reads XDG_CACHE_HOME at every run, so no test
// replays another's task. Programs the test starts inherit it.
inline void kirin_test_own_journal() {
  g_autofree char *cache_home = g_dir_make_tmp("kirin-test-cache-XXXXXX", nullptr);
  fail_unless(cache_home != nullptr);
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
