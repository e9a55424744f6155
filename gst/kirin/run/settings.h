// What a user set on the element, and what a run makes of it before any request: the
// checks that name the property at fault, and the job configuration. Plain data and pure
// functions (validate() and load_ca_file() look at files): no element, no lock.
#pragma once

#include "client.h"

#include <glib.h>

#include <string>

namespace kirin {

constexpr const char *kDefaultApiUrl = "https://cloud.vtrix.ai/model/v1/generation";
constexpr const char *kDefaultModel = "kirin_duration_extension";
constexpr guint kMaxPromptChars = 2500;
constexpr double kDefaultCfgScale = 0.5;
constexpr guint kDefaultPollIntervalMs = 5000;
constexpr guint kDefaultTimeoutS = 1200;
constexpr guint kDefaultRequestTimeoutS = 30;
// What one task adds, and the provider's limit on a video's length (WIRE.md "Chaining").
constexpr double kExtensionSeconds = 5.0;
constexpr double kMaxVideoSeconds = 180.0;
constexpr guint kMaxExtensions = 36; // 36 x 5 s = 3 minutes
constexpr const char *kJournalOff = "none";
// How long a run that must create waits for a server's journal that does not answer before
// it creates on this process's journal alone (about a server restart's length); 0: at once;
// kJournalNeverAlone: never.
constexpr gint kDefaultJournalOutageWaitS = 10;
constexpr gint kJournalNeverAlone = -1;

struct Settings {
  std::string api_url;
  std::string api_key;
  std::string model = kDefaultModel;
  std::string video_id;
  std::string prompt;
  std::string negative_prompt;
  double cfg_scale = kDefaultCfgScale;
  bool cfg_scale_set = false;
  std::string callback_url;
  std::string external_task_id; // as set by the user
  std::string task_id;          // as set by the user: attach instead of creating
  guint poll_interval_ms = kDefaultPollIntervalMs;
  guint timeout_s = kDefaultTimeoutS;
  guint request_timeout_s = kDefaultRequestTimeoutS;
  std::string ca_file;
  bool allow_http_result = false;
  guint extensions = 1;            // tasks in sequence, each extending the previous result
  std::string callback_listen;     // "host:port" of the process's callback receiver
  std::string callback_public_url; // where the provider reaches that receiver
  std::string cache_dir;           // kept copies of downloaded results
  guint64 cache_max_size = 0;      // bytes of kept copies; 0: no bound
  std::string journal;             // "": the default path; kJournalOff: none
  bool fresh = false;              // a new task even when the journal has one
  gint journal_outage_wait_s = kDefaultJournalOutageWaitS;
  bool stream_intermediate = false; // stream every step's result of a chain, in turn

  // Overwrites the key's bytes before they are freed.
  void forget_key();
  // The key and the journal (a server's URI may hold a password), overwritten before they go:
  // for a copy of the settings that goes away.
  void forget_secrets();
};

// The journal's file: the `journal` property, else $XDG_CACHE_HOME/gst-kirin/journal.db
// (read at each call, so a process may move it); "" when the journal is off.
std::string journal_path(const Settings &settings);

// The key set on the element, else the VTRIX_API_KEY environment variable.
std::string effective_api_key(const Settings &settings);

// Checks the settings before any network call. Returns the problem, naming the property,
// or "" when fine. Looks at cache-dir on disk, so it is called on the application thread
// with no lock held.
std::string validate(const Settings &settings);

// ca-file as a GTlsDatabase (a new reference), null when not set or, with `problem` set,
// when it cannot be read. Reads the file: application thread, no lock held.
GObject *load_ca_file(const Settings &settings, std::string &problem);

// The callback URL sent to the provider: callback-public-url, else the receiver's own
// address, else callback-url. `problem` is set when the receiver listens on every address
// and no public URL says where the provider can reach it.
std::string callback_url_for(const Settings &settings, guint callback_port, std::string &problem);

// The job of one step, as far as the settings decide it: where, with which key, how often;
// the request of step 1. The plan (plan.h) says whether it creates or attaches.
JobConfig job_config(const Settings &settings, const std::string &callback_url, bool use_callbacks);

// Which result URLs may be fetched: http(s) only, and no downgrade from an https API to a
// plain-http download unless the user opted in. Returns the reason to refuse, or "".
std::string result_url_problem(const Settings &settings, const std::string &url);

// ca-file also applies to the download when the result is served by the API's own host.
bool result_shares_api_host(const Settings &settings, const std::string &url);

} // namespace kirin
