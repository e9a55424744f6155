// kirin-bench: the in-process measurements behind tests/bench/run. Each subcommand measures
// one thing once and prints one JSON object on stdout; the driver repeats the runs, takes
// medians, compares them with their references and prints the table.
//
//   kirin-bench fetch --source element|souphttpsrc --url URL [--api-url URL --api-key KEY]
//   kirin-bench first-byte --reps N [--poll-interval MS] [--callback yes]
//   kirin-bench wait --api-url URL --api-key KEY --seconds S
//   kirin-bench scale --url URL --sha256 HEX --count N [--sample-ms MS] [--journal none|PATH]
//   kirin-bench emulator (the scale run's helper: commands on stdin)
//
// The figures are in bench-<figure>.cpp, their shared helpers in bench-common.h.
#include "bench-common.h"

#include <string>

using namespace kirin_bench;

int main(int argc, char **argv) {
  gst_init(&argc, &argv);
  const std::string command = argc > 1 ? argv[1] : "";
  Args args(argc, argv);
  if (command == "fetch")
    return run_fetch(args);
  if (command == "first-byte")
    return run_first_byte(args);
  if (command == "wait")
    return run_wait(args);
  if (command == "scale")
    return run_scale(args);
  if (command == "emulator")
    return run_emulator(args);
  g_printerr("usage: kirin-bench fetch|first-byte|wait|scale|emulator [--option value]...\n"
             "(see tests/bench/README.md; tests/bench/run runs them all)\n");
  return 2;
}
