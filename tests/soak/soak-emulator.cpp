#include "soak-emulator.h"

#include "emulator.h"

#include <sys/wait.h>

#include <map>
#include <sstream>

namespace soak {

bool EmulatorProcess::start(const char *program) {
  const char *argv[] = {program, "emulator", nullptr};
  int to_child = -1, from_child = -1;
  GError *error = nullptr;
  if (!g_spawn_async_with_pipes(nullptr, const_cast<char **>(argv), nullptr,
                                G_SPAWN_DO_NOT_REAP_CHILD, nullptr, nullptr, &pid_, &to_child,
                                &from_child, nullptr, &error)) {
    g_printerr("kirin-soak: cannot start the emulator: %s\n", error->message);
    g_error_free(error);
    return false;
  }
  to_ = fdopen(to_child, "w");
  from_ = fdopen(from_child, "r");
  const std::string prefix = "listening on ", line = read_line();
  if (line.rfind(prefix, 0) != 0)
    return false;
  api_url_ = line.substr(prefix.size());
  return true;
}

EmulatorProcess::~EmulatorProcess() {
  if (to_)
    fclose(to_); // the child exits at the end of its input
  if (from_)
    fclose(from_);
  if (pid_ > 0) {
    int status;
    waitpid(pid_, &status, 0);
    g_spawn_close_pid(pid_);
  }
}

void EmulatorProcess::send(const std::string &command) {
  std::fprintf(to_, "%s\n", command.c_str());
  std::fflush(to_);
}

std::vector<CreateRecord> EmulatorProcess::creates() {
  send("creates");
  std::vector<CreateRecord> records;
  for (std::string line = read_line(); !line.empty() && line != "end"; line = read_line()) {
    std::istringstream words(line);
    CreateRecord record;
    words >> record.status >> record.video_id >> record.external_task_id >> record.task_id;
    if (record.task_id == "-")
      record.task_id.clear();
    records.push_back(record);
  }
  return records;
}

std::string EmulatorProcess::read_line() {
  char buffer[4096];
  if (!from_ || !std::fgets(buffer, sizeof buffer, from_))
    return {};
  std::string line = buffer;
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r'))
    line.pop_back();
  return line;
}

int run_emulator() {
  kirin_emu::Options options;
  options.api_key = "soak-key";
  options.pending_ms = 100;
  options.processing_ms = 300;
  options.processing_max_ms = 900;
  options.width = 64;
  options.height = 48;
  kirin_emu::Emulator emulator(options);
  GError *error = nullptr;
  if (!emulator.start(&error)) {
    g_printerr("kirin-soak emulator: %s\n", error->message);
    return 1;
  }
  std::printf("listening on %s\n", emulator.api_url().c_str());
  std::fflush(stdout);
  static const std::map<std::string, kirin_emu::Route> routes = {
      {"create", kirin_emu::Route::Create},
      {"poll", kirin_emu::Route::Poll},
      {"download", kirin_emu::Route::Download},
      {"task", kirin_emu::Route::Task}};
  char buffer[4096];
  while (std::fgets(buffer, sizeof buffer, stdin)) {
    std::istringstream words(buffer);
    std::string command, first, second;
    words >> command >> first >> second;
    if (command == "fault") {
      auto route = routes.find(first);
      if (route == routes.end() || !emulator.push_fault(route->second, second))
        g_printerr("kirin-soak emulator: unusable fault: %s", buffer);
    } else if (command == "offline" || command == "online") {
      emulator.set_offline(command == "offline");
    } else if (command == "video") {
      emulator.add_video(first, g_ascii_strtod(second.c_str(), nullptr));
    } else if (command == "creates") {
      for (const kirin_emu::RequestRecord &r : emulator.requests())
        if (r.route == kirin_emu::Route::Create)
          std::printf("%u %s %s %s\n", r.status, r.video_id.empty() ? "-" : r.video_id.c_str(),
                      r.external_task_id.empty() ? "-" : r.external_task_id.c_str(),
                      r.task_id.empty() ? "-" : r.task_id.c_str());
      std::printf("end\n");
      std::fflush(stdout);
    }
  }
  return 0;
}

} // namespace soak
