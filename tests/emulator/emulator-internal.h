// The emulator's private parts, shared by its sources: the server's state (Emulator::Impl),
// tasks, faults, and the helpers that answer requests. Not for tests: they use emulator.h.
//
// Threads: the server thread owns the GMainContext, the SoupServer, the SoupSession used for
// callbacks and every libsoup object; renders run on a small GThreadPool; the public methods
// run on the caller's thread. All shared state is behind one mutex, never held across I/O
// or rendering.
#pragma once

#include "emulator.h"

#include <json-glib/json-glib.h>
#include <libsoup/soup.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace kirin_emu {

constexpr const char *kModel = "kirin_duration_extension";
constexpr const char *kApiPath = "/model/v1/generation";
constexpr const char *kFilesPrefix = "/files/";
constexpr const char *kFilesPath = "/files";
constexpr int kFrameRate = 25;

// Faults (emulator-faults.cpp).

enum class FaultKind {
  Http,
  TooMany,
  Malformed,
  Empty,
  Hang,
  Drop,
  NonJson,
  Json,
  Big,
  Huge,
  Endless,
  Redirect,
  NoRange,
  Fail,
  FailText,
  Stuck,
  Url,
  Progress
};

// How a processing task's progress moves (the `progress:` task fault).
enum class ProgressShape { Linear, Steps, None, Stall, Back };

struct Fault {
  FaultKind kind = FaultKind::Http;
  gint64 number = 0; // HTTP status, Retry-After seconds or byte count
  std::string text;  // task error code (Fail), message, result URL (Url) or body (Json)
  ProgressShape shape =
      ProgressShape::Linear; // Progress; `number` is its length in ms (0: default)
};

// A fault spec as push_fault() and the X-Emulator-Fault header take it; nullopt when invalid.
std::optional<Fault> parse_fault(const std::string &spec);
// Fail, fail-text, stuck, url and progress: faults of the next task created.
bool is_task_fault(const Fault &fault);
bool fault_fits_route(const Fault &fault, Route route);

// Tasks (emulator-tasks.cpp).

// The provider reports task errors in three shapes; the emulator uses each of them.
struct TaskError {
  enum class Shape { CodeMessage, PlainString, CodeErrorMessage };
  std::string code, message;
  Shape shape = Shape::CodeMessage;
};

// The task error the provider reports for `code`.
TaskError task_error_for(const std::string &code);

enum class Render { NotNeeded, NotStarted, Running, Done, Failed };

struct Task {
  std::string id, external_task_id, callback_url;
  gint64 created_monotonic_us = 0, created_unix = 0;
  guint pending_ms = 0, processing_ms = 0;
  double result_seconds = 0;
  bool stuck = false;
  ProgressShape shape = ProgressShape::Linear;
  bool forced = false;            // complete_now(): the clock no longer matters
  std::optional<TaskError> error; // set once the task is bound to fail
  Render render = Render::NotStarted;
  std::string video_id, job_id, video_name, cover_name, video_path;
  std::string url_override; // the `url:` fault: reported instead of a rendered result
  std::string announced_status = "pending"; // the last status sent to the callback URL
};

struct Phase {
  std::string status;
  double progress = 0; // < 0: not reported
};

bool is_final(const std::string &status);
// The task's status and progress at `now_us` (monotonic).
Phase phase_of(const Task &task, gint64 now_us);
// The task object answered to a create or a poll, and sent to the callback URL.
std::string task_json(const Task &task, const Phase &phase, const std::string &base_url);

// Answers (emulator-server.cpp).

void set_string(JsonBuilder *builder, const char *name, const std::string &value);
std::string to_json(JsonBuilder *builder);
std::string message_json(const std::string &message);
std::string error_json(const char *code, const std::string &message);
void respond(SoupServerMessage *msg, guint status, const char *content_type,
             const std::string &body);
void respond_json(SoupServerMessage *msg, guint status, const std::string &body);
const char *request_header(SoupServerMessage *msg, const char *name);

// What a valid create body asks for (emulator-api.cpp).
struct CreateParams {
  std::string video_id, callback_url, external_task_id;
};

struct Emulator::Impl {
  explicit Impl(Options opts) : options(std::move(opts)) {
    context = g_main_context_new();
    loop = g_main_loop_new(context, FALSE);
    cancellable = g_cancellable_new();
    drop_cancellable = g_cancellable_new();
    // Two renders at a time: enough for tests, and the CI machines have two cores.
    render_pool = g_thread_pool_new(on_render_job, this, 2, FALSE, nullptr);
    videos["demo-5s"] = 5.0;
  }
  ~Impl();

  bool start(GError **error);
  void run_thread();
  bool open_server(GError **error);
  bool listen(GError **error);
  void close_server();
  void run_on_thread(std::function<void()> work); // from any thread; returns once it ran

  // A request on a provider route while its handler runs (server thread).
  struct Exchange {
    Route route = Route::Create;
    gint64 arrival_us = 0;
    std::string task_id, external_task_id, video_id;
    std::string task_status; // of the task object answered, "" when there is none
  };
  // An answer kept back by hold(). The entry lives in `held` until released or shut down.
  struct Held {
    Impl *impl = nullptr;
    Route route = Route::Create;
    size_t record = 0;                // its entry in `records`
    SoupServerMessage *msg = nullptr; // a reference; used on the server thread only
    gulong disconnected_id = 0;       // server thread
    bool gone = false;                // its connection closed while held (guarded by `mutex`)
    // The client closed its connection while held: it gave up on the answer (guarded by
    // `mutex`). Seen by `watch`, a source on the connection's socket (server thread).
    bool abandoned = false;
    GSource *watch = nullptr;
    void stop_watching() {
      if (watch) {
        g_source_destroy(watch);
        g_source_unref(watch);
        watch = nullptr;
      }
    }
  };

  // Server thread. The provider's API (emulator-api.cpp).
  void handle_api(SoupServerMessage *msg, const char *path);
  std::string handle_create(SoupServerMessage *msg, Exchange &exchange);
  std::string add_task(SoupServerMessage *msg, const CreateParams &params,
                       std::optional<Fault> fault, Exchange &exchange);
  std::string handle_poll(SoupServerMessage *msg, Exchange &exchange);
  bool authorize(SoupServerMessage *msg);
  // The result files (emulator-media.cpp).
  void handle_files(SoupServerMessage *msg, const char *path);
  std::string serve_file(SoupServerMessage *msg, const char *path);
  // Holding answers (emulator-holds.cpp).
  bool record_and_hold(SoupServerMessage *msg, const char *path, Exchange &exchange);
  size_t release_held(Route route, bool only_one);
  void drop_held();
  static void on_held_disconnected(SoupServerMessage *msg, gpointer data);
  static gboolean on_held_socket(GSocket *socket, GIOCondition, gpointer data);
  // Faults (emulator-faults.cpp).
  bool take_fault(SoupServerMessage *msg, Route route, std::optional<Fault> &fault);
  std::string apply_fault(SoupServerMessage *msg, const Fault &fault);
  void start_drop(SoupServerMessage *msg, std::string head, GBytes *body);
  void start_stream(SoupServerMessage *msg, gint64 body_bytes);
  void stream_progress(size_t record, guint64 bytes, bool over);
  // Tasks' side effects (emulator-tasks.cpp).
  void post_callback(const std::string &url, const std::string &body);
  void tick();
  // The server itself (emulator-server.cpp).
  void set_online(bool online);
  void log_request(SoupServerMessage *msg, const char *path, const std::string &note);
  // Any thread.
  void render(const std::string &task_id); // emulator-tasks.cpp
  void log(const char *format, ...) G_GNUC_PRINTF(2, 3);

  static void on_api(SoupServer *, SoupServerMessage *msg, const char *path, GHashTable *,
                     gpointer self) {
    static_cast<Impl *>(self)->handle_api(msg, path);
  }
  static void on_files(SoupServer *, SoupServerMessage *msg, const char *path, GHashTable *,
                       gpointer self) {
    static_cast<Impl *>(self)->handle_files(msg, path);
  }
  // Not the provider's: lets scripts and people see a video's length (GET /videos/<id>).
  static void on_videos(SoupServer *, SoupServerMessage *msg, const char *path, GHashTable *,
                        gpointer data);
  // Not the provider's: a callback receiver, so callback_url can point at the emulator.
  static void on_callbacks(SoupServer *, SoupServerMessage *msg, const char *path, GHashTable *,
                           gpointer data);
  static void on_unknown(SoupServer *, SoupServerMessage *msg, const char *path, GHashTable *,
                         gpointer self) {
    respond_json(msg, SOUP_STATUS_NOT_FOUND, message_json("not found"));
    static_cast<Impl *>(self)->log_request(msg, path, "");
  }
  template <typename Read> auto locked(Read read) const {
    std::lock_guard<std::mutex> lock(mutex);
    return read();
  }
  static void on_render_job(gpointer item, gpointer self) {
    std::unique_ptr<std::string> task_id(static_cast<std::string *>(item));
    static_cast<Impl *>(self)->render(*task_id);
  }

  Options options; // pending_ms/processing_ms are guarded by `mutex`, the rest is constant
  std::string media_dir;
  bool media_dir_is_temporary = false;
  GMainContext *context = nullptr;
  GMainLoop *loop = nullptr;
  GCancellable *cancellable = nullptr; // cancels callbacks on shutdown
  // Cancels drops in flight on shutdown and on going offline (then replaced).
  GCancellable *drop_cancellable = nullptr;
  GThreadPool *render_pool = nullptr;
  std::thread thread;
  std::atomic<bool> stopping{false};
  guint bound_port = 0;
  std::string base_url;

  // Owned by the server thread.
  SoupServer *server = nullptr;
  GTlsCertificate *certificate = nullptr; // with TLS
  bool online = true;
  SoupSession *session = nullptr;
  GSource *tick_source = nullptr;
  guint outstanding_io = 0; // callbacks and drops still in flight
  bool shutting_down = false;
  bool taken_over = false; // the current handler paused its answer itself (hang, drop)
  bool streamed = false;   // ... to write it by hand (huge, endless)

  mutable std::mutex mutex;
  std::condition_variable state_changed; // start-up, render completions, shutdown
  bool thread_ready = false;
  bool serving = false; // the server thread takes work (run_on_thread)
  GError *start_error = nullptr;
  std::map<std::string, double> videos; // video ID -> seconds
  std::map<std::string, Task> tasks;
  std::map<std::string, std::string> files; // name under /files/ -> local path
  std::map<Route, std::deque<Fault>> faults;
  guint creates = 0, polls = 0, downloads = 0, download_auths = 0;
  std::string last_create_body;
  std::vector<std::string> received_callbacks; // bodies POSTed to /callbacks
  std::map<Route, HoldFilter> holds;           // the routes held, with their filters
  std::deque<std::unique_ptr<Held>> held;      // in arrival order
  std::vector<RequestRecord> records;

  size_t held_count(Route route) const { // with `mutex` held
    return size_t(std::count_if(held.begin(), held.end(), [route](const auto &entry) {
      return entry->route == route && !entry->gone;
    }));
  }
};

} // namespace kirin_emu
