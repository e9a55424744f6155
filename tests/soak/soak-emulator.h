// The soak's emulator, in a child process of its own so that its memory (it keeps a record
// of every request) and threads stay out of the soak's figures, driven over a pipe.
#pragma once

#include <glib.h>

#include <cstdio>
#include <string>
#include <vector>

namespace soak {

// One create the emulator answered, as its report lists it.
struct CreateRecord {
  guint status = 0; // 0: no answer was sent (the connection closed first)
  std::string video_id, external_task_id, task_id;
};

class EmulatorProcess {
public:
  // Starts `program emulator`; false when it does not say where it listens.
  bool start(const char *program);
  ~EmulatorProcess();

  const std::string &api_url() const { return api_url_; }
  // `fault ROUTE SPEC`, `offline`, `online`, `video ID SECONDS`: carried out in order.
  void send(const std::string &command);
  // Every create the emulator saw so far.
  std::vector<CreateRecord> creates();

private:
  std::string read_line();

  GPid pid_ = 0;
  FILE *to_ = nullptr, *from_ = nullptr;
  std::string api_url_;
};

// The child's side: an in-process emulator that carries out the commands read on stdin.
int run_emulator();

} // namespace soak
