// The provider's API as seen from a client: create a task (or attach to one), poll it
// until it ends, report every change. All HTTP runs on one process-wide thread with its
// own GMainContext and SoupSession; callers on any thread only start and cancel jobs.
// Knows nothing of GStreamer elements.
#pragma once

#include "task.h"

#include <glib-object.h>

#include <functional>
#include <memory>
#include <string>

namespace kirin {

struct JobConfig {
  std::string api_url; // the create endpoint; polls go to <api_url>/task/<id>
  std::string api_key;
  std::string user_agent;
  CreateRequest create;         // used when existing_task_id is empty
  std::string existing_task_id; // attach to this task instead of creating one
  guint poll_interval_ms = 5000;
  guint timeout_s = 1200;       // overall wait for the task; 0 = no limit
  guint request_timeout_s = 30; // wait for one API answer before counting it as failed
  // PEM file of CAs to trust for api-url besides the system's (certificates are always
  // verified; this only adds trust anchors).
  std::string ca_file;
  // With a callback listener (callback_listener_start), a notification for this task
  // triggers an immediate poll, and the regular polls slow down (they stay the source of
  // truth: a notification is only a hint, so a forged one cannot inject a result).
  bool use_callbacks = false;
};

enum class JobError {
  None,
  Unauthorized, // 401: missing or invalid key
  Forbidden,    // 403: no balance or no permission
  Rejected,     // another 4xx: the request itself is wrong
  NotFound,     // 404 on a poll: the task does not exist
  Network,      // could not reach the API within the deadline
  Ambiguous,    // the create request may have been accepted: do not resubmit blindly
  BadResponse,  // the server answered something we cannot use
  TaskFailed,   // the provider reports the task failed
  Timeout,      // the overall wait ran out
};

struct JobOutcome {
  JobError error = JobError::None;
  Task task; // the last task object seen (the result when error is None)
  std::string task_id;
  guint http_status = 0;  // the last HTTP status behind the error, 0 if none
  std::string error_code; // the provider's error code, when it sent one
  std::string message;    // what went wrong, for a person
};

struct JobCallbacks {
  // The task ID, as soon as the provider assigned it (before any poll).
  std::function<void(const std::string &task_id)> on_task_id;
  // Every task object received (create response and polls).
  std::function<void(const Task &task)> on_update;
  // Exactly once, when the task completed, failed or the wait ended; never after cancel.
  std::function<void(const JobOutcome &outcome)> on_finished;
};

class Job;
using JobHandle = std::shared_ptr<Job>;

// Starts a job on the client thread. Callbacks run on that thread: they must not block.
JobHandle job_start(JobConfig config, JobCallbacks callbacks);

// Cancels the job from any thread, also from one of the job's own callbacks: in-flight
// requests are aborted, timers removed, and no callback runs for it once the client thread
// has seen the cancel. Never blocks.
void job_cancel(const JobHandle &job);

const char *job_error_name(JobError error);

// Runs `work` on the client thread, later: never at once, also when called there, and in
// the order posted. The element's decider (workers.h) is this.
void client_post(std::function<void()> work);

// Starts (once per address, shared by all jobs of the process) an HTTP receiver for the
// provider's callbacks on `listen` ("host:port"; port 0 picks one). Returns the port
// listened on, or 0 with `error` set. Blocks until the client thread has tried.
guint callback_listener_start(const std::string &listen, std::string &error);

// ---- the client as a module of its own ----
//
// client-module.cpp, its parts (client-thread, proxy-cache, request, job,
// callback-receiver) and task.cpp are built into libgstkirin-client.module, which alone links
// libsoup, json-glib and GIO. The plugin loads it when an element first needs it
// (client-loader.cpp), the way gst-plugins-good's soup plugin loads libsoup: linked into
// the plugin, those libraries and theirs (Kerberos, SQLite, nghttp2, ...) made loading the
// plugin three times as slow as a gst-plugins-good plugin of its size, a cost paid by every
// process that only scans or inspects plugins (tests/bench/README.md, start cost). In the
// plugin, the functions above forward to the module, loading it first; the module's own
// implementations live in kirin::module, so neither side can bind the other's by name.

// Loads the module once per process. False, with the reason, when it cannot be loaded or
// is not of kClientAbiVersion.
bool client_load(std::string &error);

// g_tls_file_database_new from the module (GIO is loaded with it): a GTlsDatabase, or
// nullptr with `error` set.
GObject *tls_file_database_new(const std::string &path, std::string &error);

// The version of the table below and of every type that crosses it (JobConfig,
// JobCallbacks, JobOutcome, JobError, Task, TaskStatus, CreateRequest, and Job behind
// JobHandle). Version 4 added a download source, which version 5 removed again. Bump it whenever
// any of them changes, so that a plugin and a module of different builds refuse each other instead
// of misreading each other's memory. (They pass C++ library types too: both must be built with the
// same compiler and standard library.) Version 1 was the table before it carried a version.
constexpr guint32 kClientAbiVersion = 5;

// What the module exports, as kirin_client_api() (extern "C"). The first two fields stay
// where they are in every version: the loader reads them, and nothing else, before it
// knows the table is its own.
struct ClientApi {
  guint32 abi_version; // kClientAbiVersion of the module's build
  guint32 size;        // sizeof(ClientApi) of the module's build
  JobHandle (*job_start)(JobConfig config, JobCallbacks callbacks);
  void (*job_cancel)(const JobHandle &job);
  guint (*callback_listener_start)(const std::string &listen, std::string &error);
  const char *(*job_error_name)(JobError error);
  GObject *(*tls_file_database_new)(const std::string &path, std::string &error);
  void (*post)(std::function<void()> work);
};

// The exported symbol's name and type.
constexpr const char *kClientApiSymbol = "kirin_client_api";
using ClientApiFunction = const ClientApi *(*)();

} // namespace kirin
