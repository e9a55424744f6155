// An emulator of the provider's Kirin duration-extension API on loopback, for tests and
// for trying the element without an account. It runs its own thread with its own
// GMainContext and a SoupServer, so tests can use it in-process next to a GstHarness.
//
// It does not run a generative model: the "extended" video it returns is a synthetic test
// pattern of the right length, rendered with GStreamer.
#pragma once

#include <glib.h>

#include <memory>
#include <string>
#include <vector>

namespace kirin_emu {

struct Options {
  std::string host = "127.0.0.1";
  guint port = 0; // 0 = pick a free port
  std::string api_key = "test-key";
  std::string no_balance_key = "broke-key"; // accepted as a key, but answered with 403
  guint pending_ms = 500, processing_ms = 2000;
  guint width = 320, height = 240, jpeg_quality = 85; // of rendered results
  std::string media_dir; // empty = a temporary dir, removed on destruction
  bool quiet = true;     // false = one line per request on stderr
  // PEM files; both set = HTTPS (and https:// URLs), both empty = plain HTTP.
  std::string tls_cert_file, tls_key_file;
};

// Where a one-shot fault applies. Create/Poll/Download: the next request on that route.
// Task: the next task created (fail:<code>, stuck).
enum class Route { Create, Poll, Download, Task };

class Emulator {
public:
  explicit Emulator(Options options = {});
  ~Emulator(); // stops the thread, closes the server, removes temp media
  Emulator(const Emulator &) = delete;
  Emulator &operator=(const Emulator &) = delete;

  bool start(GError **error); // starts the thread + server; returns when listening
  guint port() const;
  std::string base_url() const; // "http://127.0.0.1:PORT" ("https://" with TLS)
  std::string api_url() const;  // base_url() + "/model/v1/generation"

  // Registers a video that tasks may extend. "demo-5s" (5 s) exists from the start.
  void add_video(const std::string &id, double seconds);
  // Queues a one-shot fault; false when the spec is not valid for the route.
  bool push_fault(Route route, const std::string &spec);

  // Observations for tests (thread-safe).
  guint create_count() const;
  guint poll_count() const;
  guint download_count() const;
  guint download_auth_count() const; // /files requests that carried Authorization
  std::string last_create_body() const;
  // Bodies POSTed to <base_url>/callbacks, a receiver for callback_url, in arrival order;
  // waits up to `wait_ms` for at least `at_least` of them.
  std::vector<std::string> received_callbacks(size_t at_least = 0, guint wait_ms = 0) const;
  // Local path of the result MP4, "" until rendered.
  std::string task_result_path(const std::string &task_id) const;
  // "pending", "processing", "completed", "failed"; "" for an unknown task.
  std::string task_status(const std::string &task_id) const;

  // Applies to tasks created afterwards.
  void set_timing(guint pending_ms, guint processing_ms);
  // Skips the waiting: renders the result (blocking until done), then the task reports its
  // final status. Also releases a task held by the `stuck` fault.
  void complete_now(const std::string &task_id);
  // Offline: stops listening and closes every open connection, so clients get "connection
  // refused". Online again: listens on the same port; tasks, files and faults are kept.
  // Returns once done. Only between start() and destruction.
  void set_offline(bool offline);

  // Writes cert.pem and key.pem into `dir` (created if needed): a self-signed certificate
  // for IP 127.0.0.1 and DNS localhost that is its own CA, for Options::tls_*_file and as
  // the client's CA file. Runs the `openssl` command.
  static bool make_self_signed(const std::string &dir, std::string &cert_path,
                               std::string &key_path, GError **error);

  struct Impl;

private:
  std::unique_ptr<Impl> impl_;
};

} // namespace kirin_emu
