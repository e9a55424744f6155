// One channel of the soak: a thread that plays extension after extension, each ended in a
// way drawn from the seed, and what all channels share.
#pragma once

#include <glib.h>

#include <atomic>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace soak {

// What every channel reads and adds to.
struct Shared {
  std::string api_url, dir;
  // The fleet's journal (a postgresql:// URI) of the odd channels, which ask for videos of
  // their own ("pg-…"); the even ones use the file's. "" : every channel the file's.
  std::string server_journal;
  gint64 deadline_us = 0;
  std::atomic<int> runs{0}, completed{0}, errors{0}, stops{0}, seeks{0}, eos_sent{0}, stuck_runs{0};
  std::atomic<int> held_for_answer{0}; // stops or EOS that waited for a download's answer
  std::atomic<int> channels_done{0};   // channels whose loop returned
  // The longest wait from a task's completion message to its download's source (source-setup),
  // on the channels beside the blocked one.
  std::atomic<gint64> neighbour_max_us{0};

  void add_fresh_take(const std::string &video);
  std::map<std::string, int> fresh_takes_snapshot();
  void report(int checks, int failures) const;

private:
  std::mutex lock_;
  std::map<std::string, int> fresh_takes_; // per requested video
};

// The videos the channels ask to extend: single extensions and chains of two, for the file's
// journal and for the server's.
std::vector<std::string> all_videos();
bool on_server(const std::string &video);

// Channel `channel`'s loop until the deadline; channel 0 is the one whose application blocks.
void run_channel(Shared &shared, int channel, guint32 seed);

} // namespace soak
