// kirin-extend's command line: its options, parsed and checked.
#pragma once

#include <glib.h>

#include <string>

namespace kirin_extend {

constexpr int kUnset = G_MININT; // an option not given: the element's default applies

struct Options {
  std::string api_url; // empty: the element's own choice (VTRIX_API_URL, else the provider)
  std::string prompt;
  std::string task_id;
  std::string video_id;
  std::string output;
  int poll_interval_ms = kUnset;
  int timeout_s = kUnset;
  int extensions = 1;
  gboolean fresh = FALSE; // a new task even when the journal holds one for this request
};

// Parses and checks the command line; false after saying what is wrong (then exit 2).
bool parse_options(int argc, char **argv, Options &options);

} // namespace kirin_extend
