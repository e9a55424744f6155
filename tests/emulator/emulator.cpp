// The emulator's public interface (emulator.h): the calls tests make, over Emulator::Impl.
// Holding answers is in emulator-holds.cpp.
#include "emulator-internal.h"

#include <chrono>

namespace kirin_emu {

Emulator::Emulator(Options options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Emulator::~Emulator() = default;

bool Emulator::start(GError **error) {
  return impl_->start(error);
}
guint Emulator::port() const {
  return impl_->bound_port;
}
std::string Emulator::base_url() const {
  return impl_->base_url;
}
std::string Emulator::api_url() const {
  return impl_->base_url + kApiPath;
}
std::string Emulator::api_key() const {
  return impl_->options.api_key;
}

void Emulator::add_video(const std::string &id, double seconds) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->videos[id] = seconds;
}

bool Emulator::push_fault(Route route, const std::string &spec) {
  const auto fault = parse_fault(spec);
  if (!fault || !fault_fits_route(*fault, route))
    return false;
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->faults[route].push_back(*fault);
  return true;
}

guint Emulator::create_count() const {
  return impl_->locked([&] { return impl_->creates; });
}
guint Emulator::poll_count() const {
  return impl_->locked([&] { return impl_->polls; });
}
guint Emulator::download_count() const {
  return impl_->locked([&] { return impl_->downloads; });
}

guint Emulator::download_auth_count() const {
  return impl_->locked([&] { return impl_->download_auths; });
}

std::vector<std::string> Emulator::received_callbacks(size_t at_least, guint wait_ms) const {
  std::unique_lock<std::mutex> lock(impl_->mutex);
  impl_->state_changed.wait_for(lock, std::chrono::milliseconds(wait_ms),
                                [&] { return impl_->received_callbacks.size() >= at_least; });
  return impl_->received_callbacks;
}

std::string Emulator::last_create_body() const {
  return impl_->locked([&] { return impl_->last_create_body; });
}

std::string Emulator::task_result_path(const std::string &task_id) const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  const auto found = impl_->tasks.find(task_id);
  return found == impl_->tasks.end() ? std::string() : found->second.video_path;
}

std::string Emulator::task_status(const std::string &task_id) const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  const auto found = impl_->tasks.find(task_id);
  return found == impl_->tasks.end() ? std::string()
                                     : phase_of(found->second, g_get_monotonic_time()).status;
}

void Emulator::set_timing(guint pending_ms, guint processing_ms) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->options.pending_ms = pending_ms;
  impl_->options.processing_ms = processing_ms;
  impl_->options.processing_max_ms = 0;
}

void Emulator::complete_now(const std::string &task_id) {
  std::unique_lock<std::mutex> lock(impl_->mutex);
  const auto found = impl_->tasks.find(task_id);
  if (found == impl_->tasks.end())
    return;
  Task &task = found->second;
  task.forced = true;
  if (task.render == Render::NotStarted) {
    task.render = Render::Running;
    g_thread_pool_push(impl_->render_pool, new std::string(task_id), nullptr);
  }
  impl_->state_changed.wait(lock,
                            [&] { return impl_->stopping || task.render != Render::Running; });
}

std::string RequestRecord::header(const std::string &name) const {
  std::string values;
  for (const auto &[found, value] : headers)
    if (g_ascii_strcasecmp(found.c_str(), name.c_str()) == 0)
      values += (values.empty() ? "" : ", ") + value;
  return values;
}

std::vector<RequestRecord> Emulator::requests() const {
  return impl_->locked([&] { return impl_->records; });
}

bool Emulator::wait_streams_over(guint timeout_ms) const {
  std::unique_lock<std::mutex> lock(impl_->mutex);
  return impl_->state_changed.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] {
    return std::none_of(impl_->records.begin(), impl_->records.end(),
                        [](const RequestRecord &record) { return record.streaming; });
  });
}

void Emulator::set_offline(bool offline) {
  impl_->run_on_thread([this, offline] { impl_->set_online(!offline); });
}

bool Emulator::make_self_signed(const std::string &dir, std::string &cert_path,
                                std::string &key_path, GError **error) {
  if (g_mkdir_with_parents(dir.c_str(), 0700) != 0) {
    g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno), "cannot create %s: %s",
                dir.c_str(), g_strerror(errno));
    return false;
  }
  g_autofree char *cert = g_build_filename(dir.c_str(), "cert.pem", nullptr);
  g_autofree char *key = g_build_filename(dir.c_str(), "key.pem", nullptr);
  // CA:TRUE lets clients take the certificate itself as their CA file.
  const char *argv[] = {"openssl",  "req",
                        "-x509",    "-newkey",
                        "rsa:2048", "-nodes",
                        "-days",    "2",
                        "-subj",    "/CN=127.0.0.1",
                        "-addext",  "subjectAltName=IP:127.0.0.1,DNS:localhost",
                        "-addext",  "basicConstraints=critical,CA:TRUE",
                        "-keyout",  key,
                        "-out",     cert,
                        nullptr};
  g_autofree char *errors = nullptr;
  gint status = 0;
  if (!g_spawn_sync(nullptr, const_cast<char **>(argv), nullptr,
                    GSpawnFlags(G_SPAWN_SEARCH_PATH | G_SPAWN_STDOUT_TO_DEV_NULL), nullptr, nullptr,
                    nullptr, &errors, &status, error))
    return false;
  if (!g_spawn_check_wait_status(status, error)) {
    g_prefix_error(error, "openssl req: %s: ", errors ? g_strstrip(errors) : "");
    return false;
  }
  cert_path = cert;
  key_path = key;
  return true;
}

} // namespace kirin_emu
