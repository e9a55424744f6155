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
#include <utility>
#include <vector>

namespace kirin_emu {

struct Options {
  std::string host = "127.0.0.1";
  guint port = 0; // 0 = pick a free port
  std::string api_key = "test-key";
  // Keys of other accounts, accepted as api_key is: each account pays for its own tasks.
  std::vector<std::string> other_api_keys;
  std::string no_balance_key = "broke-key"; // accepted as a key, but answered with 403
  guint pending_ms = 500, processing_ms = 2000;
  // Above processing_ms: each task's processing time is drawn from [processing_ms,
  // processing_max_ms] (uniformly, in whole ms).
  guint processing_max_ms = 0;
  guint width = 320, height = 240, jpeg_quality = 85; // of rendered results
  bool audio = false;    // rendered results also carry a sound track (a tone, 16-bit PCM)
  std::string media_dir; // empty = a temporary dir, removed on destruction
  bool quiet = true;     // false = one line per request on stderr
  // PEM files; both set = HTTPS (and https:// URLs), both empty = plain HTTP.
  std::string tls_cert_file, tls_key_file;
};

// Where a one-shot fault applies. Create/Poll/Download: the next request on that route.
// Task: the next task created (fail:<code>, stuck, progress:<shape>[:<ms>]).
enum class Route { Create, Poll, Download, Task };

// Which answers hold() keeps back. Every condition set must match.
struct HoldFilter {
  // Poll and Download: only requests for this task (a download's task is the one whose result
  // or cover it asks for). "" = any. Ignored on Create.
  std::string task_id;
  // Only answers that carry a task object whose status is final ("completed" or "failed"),
  // as computed for that answer: a poll of a task still processing is answered at once.
  // Ignored on Download.
  bool only_final = false;
};

// One request on the provider's routes (Create, Poll, Download), as requests() lists it.
struct RequestRecord {
  Route route = Route::Create;
  std::string method, path;
  // Poll and Download: the task asked about ("" for a file of no task). Create: the task the
  // request created ("" when it created none).
  std::string task_id;
  // Create: from the request body, either shape ("" when absent or unreadable).
  std::string external_task_id, video_id;
  // The request's User-Agent header ("" when absent): shows what configured the client,
  // e.g. a source-setup handler that set the download source's user-agent.
  std::string user_agent;
  // Every request header (name, value) in the order received, a repeated one (Cookie) once
  // per line, less a Range the emulator ignored: what else configured the client, e.g. a
  // source-setup handler's cookies and extra headers, or the Via a proxy added on the way.
  std::vector<std::pair<std::string, std::string>> headers;
  // The values of header `name` (any case) joined with ", "; "" when absent.
  std::string header(const std::string &name) const;
  gint64 arrival_us = 0; // g_get_monotonic_time() once the request was read whole
  // The HTTP status answered. 0 while held, and for an answer never sent: held when the
  // connection closed (set_offline, destruction), or the `hang` fault.
  guint status = 0;
  // The `huge` and `endless` faults: the body bytes the socket accepted (the emulator sends
  // with a 64 KiB buffer, so that is close to what the client read), whether they are still
  // being written, and when writing stopped (all written, the client hung up, or shutdown).
  guint64 streamed_bytes = 0;
  bool streaming = false;
  gint64 stream_end_us = 0;
};

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
  std::string api_key() const;  // Options::api_key

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

  // Applies to tasks created afterwards; a fixed processing time (ends a range).
  void set_timing(guint pending_ms, guint processing_ms);
  // Skips the waiting: renders the result (blocking until done), then the task reports its
  // final status. Also releases a task held by the `stuck` fault.
  void complete_now(const std::string &task_id);
  // Offline: stops listening and closes every open connection, so clients get "connection
  // refused". Online again: listens on the same port; tasks, files and faults are kept.
  // Returns once done. Only between start() and destruction.
  void set_offline(bool offline);

  // Holding answers, to place a race deterministically. From now on, the requests on `route`
  // (Create, Poll or Download) that match `filter` are read, answered and recorded as usual,
  // but the answer is not sent until it is released. Its content is computed on arrival, as
  // without the hold: a held poll answers the task's status at the time it arrived. Faults
  // apply first (a held `http:503` is sent as a 503 on release); `hang` and `drop` answers
  // are never held. Holding again replaces the filter of the route.
  void hold(Route route, HoldFilter filter = {});
  // Waits up to `timeout_ms` until at least `at_least` answers on `route` are held; returns
  // how many are. An answer stops counting when the server closes its connection
  // (set_offline, destruction). A client that gives up still counts (wait_abandoned tells),
  // and its answer is written in vain on release.
  size_t wait_held(Route route, size_t at_least, guint timeout_ms) const;
  // Waits up to `timeout_ms` until the clients of at least `at_least` answers held on `route`
  // closed their connections (they gave up waiting: a cancelled request); returns how many
  // did. Only answers still held count.
  size_t wait_abandoned(Route route, size_t at_least, guint timeout_ms) const;
  // Sends every held answer of `route`, in arrival order, and stops holding the route.
  // Returns once the server thread has resumed them; they are written right after.
  void release(Route route);
  // Sends the oldest held answer of `route` and keeps holding; false when none was held.
  bool release_one(Route route);
  // Every request on Create, Poll and Download so far, in arrival order (faulted, refused
  // and held ones too).
  std::vector<RequestRecord> requests() const;
  // Waits up to `timeout_ms` until no `huge` or `endless` answer is being written; false
  // when one still is.
  bool wait_streams_over(guint timeout_ms) const;

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
