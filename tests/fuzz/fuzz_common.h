// What every fuzz target shares: a broken promise is a crash, and so is a GLib critical.
#pragma once

#include <glib.h>

#include <cstdio>
#include <cstdlib>
#include <string>

// Aborts when a promise made in task.h does not hold, so that libFuzzer saves the input
// that broke it like any other crash.
inline void fuzz_require(bool condition, const char *promise) {
  if (!condition) {
    fprintf(stderr, "broken promise: %s\n", promise);
    abort();
  }
}

inline bool fuzz_is_utf8(const std::string &text) {
  return g_utf8_validate(text.data(), (gssize)text.size(), nullptr);
}

// The parser checks every node's type before reading it; a critical or warning from GLib or
// json-glib means an accessor was handed something it does not accept.
inline void fuzz_make_glib_warnings_fatal() {
  g_log_set_always_fatal((GLogLevelFlags)(G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING));
}
