/**
 * SECTION:element-kirinextendsrc
 * @title: kirinextendsrc
 *
 * Extends a video with the Vtrix `kirin_duration_extension` model and streams the longer
 * video into the pipeline. On the way to PAUSED the element submits an extension task
 * (or attaches to an existing one with #GstKirinExtendSrc:task-id), waits for it on a
 * shared client thread, then downloads the result through an HTTP source made from its
 * URL (normally souphttpsrc), which supports byte seeking.
 *
 * Progress is posted on the bus as element messages named `kirin-task`. Errors carry
 * the task ID, so a paid task can always be resumed.
 *
 * ## Example launch lines
 * |[
 * export VTRIX_API_KEY=...
 * gst-launch-1.0 kirinextendsrc video-id=VID prompt="the camera keeps panning left" ! \
 *     decodebin ! videoconvert ! autovideosink
 * gst-launch-1.0 kirinextendsrc video-id=VID ! filesink location=extended.mp4
 * gst-launch-1.0 kirinextendsrc task-id=TASK ! filesink location=extended.mp4
 * ]|
 */

#include "gstkirinextendsrc.h"

#include "cache.h"
#include "client.h"

#include <gio/gio.h>

#include <atomic>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

GST_DEBUG_CATEGORY_STATIC(kirin_extend_src_debug);
#define GST_CAT_DEFAULT kirin_extend_src_debug

namespace {

constexpr const char *kDefaultApiUrl = "https://cloud.vtrix.ai/model/v1/generation";
constexpr const char *kDefaultModel = "kirin_duration_extension";
constexpr const char *kMaskedKey = "********";
constexpr guint kMaxPromptChars = 2500;
constexpr double kDefaultCfgScale = 0.5;
constexpr guint kDefaultPollIntervalMs = 5000;
constexpr guint kDefaultTimeoutS = 1200;
constexpr guint kDefaultRequestTimeoutS = 30;
// What one task adds, and the provider's limit on a video's length (WIRE.md "Chaining").
constexpr double kExtensionSeconds = 5.0;
constexpr double kMaxVideoSeconds = 180.0;
constexpr guint kMaxExtensions = 36; // 36 x 5 s = 3 minutes

enum {
  PROP_0,
  PROP_API_URL,
  PROP_API_KEY,
  PROP_MODEL,
  PROP_VIDEO_ID,
  PROP_PROMPT,
  PROP_NEGATIVE_PROMPT,
  PROP_CFG_SCALE,
  PROP_CALLBACK_URL,
  PROP_EXTERNAL_TASK_ID,
  PROP_TASK_ID,
  PROP_POLL_INTERVAL,
  PROP_TIMEOUT,
  PROP_REQUEST_TIMEOUT,
  PROP_CA_FILE,
  PROP_ALLOW_HTTP_RESULT,
  PROP_EXTENSIONS,
  PROP_CALLBACK_LISTEN,
  PROP_CALLBACK_PUBLIC_URL,
  PROP_CACHE_DIR,
  PROP_STREAM_INTERMEDIATE,
  PROP_RESULT_URL,
  PROP_RESULT_VIDEO_ID,
  PROP_RESULT_DURATION,
};

enum { SIGNAL_SOURCE_SETUP, N_SIGNALS };
guint signals[N_SIGNALS];

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
  guint extensions = 1;             // tasks in sequence, each extending the previous result
  std::string callback_listen;      // "host:port" of the process's callback receiver
  std::string callback_public_url;  // where the provider reaches that receiver
  std::string cache_dir;            // journal of paid tasks and their media
  bool stream_intermediate = false; // stream every step's result of a chain, in turn
};

bool same_request(const kirin::CreateRequest &a, const kirin::CreateRequest &b) {
  return a.model == b.model && a.video_id == b.video_id && a.prompt == b.prompt &&
         a.negative_prompt == b.negative_prompt && a.cfg_scale == b.cfg_scale &&
         a.callback_url == b.callback_url;
}

// A result ready to stream: the final one, or with stream-intermediate each step's in turn.
struct Exposure {
  std::string url; // the provider's http(s) URL, or file:// of the cached copy
  bool from_cache = false;
  std::string task_id;
  std::string video_id;
  double duration = -1;
  guint step = 1;
  bool final = true; // its EOS ends the stream; an intermediate one's EOS is dropped
  // With cache-dir, the entry the downloaded media is recorded in (empty dir: not kept).
  std::string cache_dir;
  kirin::JournalEntry journal;
};

} // namespace

struct GstKirinExtendSrcPrivate {
  // Guards everything below. Never held across I/O, a state change or a bus post.
  std::mutex lock;
  Settings settings;

  // The task of the current or last run.
  std::string external_task_id;         // the one sent (the user's or a generated one)
  std::string task_id;                  // the provider's ID once known
  std::string created_task_id;          // a task this element paid for, with its request:
  kirin::CreateRequest created_request; // running again unchanged attaches, not re-pays
  kirin::TaskStatus last_status = kirin::TaskStatus::Unknown;
  double last_progress = -1;
  std::string result_url;
  std::string result_video_id;
  double result_duration = -1;

  kirin::JobHandle job;
  // Bumped on every start and stop, so results of an older run are dropped.
  guint generation = 0;
  bool flushing = true;
  GstElement *source = nullptr; // the HTTP source child, once exposed
  // A result URL that expired (403/404 from the CDN before any data) is polled for once more.
  bool url_refreshed = false;
  GstElement *failed_source = nullptr; // the child being replaced: its messages are dropped
  std::atomic<bool> data_flowed{false};
  bool progress_open = false; // a GST_MESSAGE_PROGRESS start was posted and not yet closed
  guint step = 1;             // which of `extensions` tasks runs now (1-based)
  std::string chain_video_id; // the video the current step extends, from step 2 on

  // Results waiting to be streamed, oldest first, and whether a child still streams one.
  std::deque<Exposure> exposures;
  bool child_streaming = false;
  bool streaming_final = true; // the child streams the last result (its URL may be refreshed)

  // cache-dir: where the current step's task is recorded ("" when the cache is not used).
  std::string cache_dir;
  kirin::JournalEntry journal;
};

struct _GstKirinExtendSrc {
  GstBin parent;
  GstPad *srcpad; // always present; targets the child's pad once the result is known
  GstKirinExtendSrcPrivate *priv;
};

static void gst_kirin_extend_src_uri_handler_init(gpointer iface, gpointer data);

// Tags for what identifies a result at the provider, beside the standard ones.
#define KIRIN_TAG_TASK_ID "kirin-task-id"
#define KIRIN_TAG_VIDEO_ID "kirin-video-id"
#define KIRIN_TAG_MODEL "kirin-model"

static void register_tags() {
  gst_tag_register(KIRIN_TAG_TASK_ID, GST_TAG_FLAG_META, G_TYPE_STRING, "kirin task ID",
                   "The provider's ID of the extension task", gst_tag_merge_use_first);
  gst_tag_register(KIRIN_TAG_VIDEO_ID, GST_TAG_FLAG_META, G_TYPE_STRING, "kirin video ID",
                   "The provider's ID of this video (can be extended again)",
                   gst_tag_merge_use_first);
  gst_tag_register(KIRIN_TAG_MODEL, GST_TAG_FLAG_META, G_TYPE_STRING, "kirin model",
                   "The model that made this video", gst_tag_merge_use_first);
}

G_DEFINE_TYPE_WITH_CODE(GstKirinExtendSrc, gst_kirin_extend_src, GST_TYPE_BIN,
                        G_IMPLEMENT_INTERFACE(GST_TYPE_URI_HANDLER,
                                              gst_kirin_extend_src_uri_handler_init));
// Primary: the only handler of kirin:// URIs, so playbin and uridecodebin pick it.
GST_ELEMENT_REGISTER_DEFINE_WITH_CODE(kirinextendsrc, "kirinextendsrc", GST_RANK_PRIMARY,
                                      GST_TYPE_KIRIN_EXTEND_SRC,
                                      GST_DEBUG_CATEGORY_INIT(kirin_extend_src_debug,
                                                              "kirinextendsrc", 0,
                                                              "Kirin video extension source");
                                      register_tags());

static GstStaticPadTemplate src_template =
    GST_STATIC_PAD_TEMPLATE("src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS_ANY);

namespace {

// What the client thread's callbacks hold: a weak reference, so a job never keeps the
// element alive, and the run it belongs to.
struct ElementLink {
  mutable GWeakRef ref;
  guint generation;

  bool refresh; // the run only polls for a fresh URL of a result already streaming

  ElementLink(GstKirinExtendSrc *self, guint gen, bool refresh_run)
      : generation(gen), refresh(refresh_run) {
    g_weak_ref_init(&ref, self);
  }
  ~ElementLink() { g_weak_ref_clear(&ref); }

  // A strong reference while the element exists and this run is current, else null.
  GstKirinExtendSrc *lock_current() const {
    auto *self = static_cast<GstKirinExtendSrc *>(g_weak_ref_get(&ref));
    if (!self)
      return nullptr;
    bool current;
    {
      std::lock_guard<std::mutex> guard(self->priv->lock);
      current = !self->priv->flushing && self->priv->generation == generation;
    }
    if (!current) {
      gst_object_unref(self);
      return nullptr;
    }
    return self;
  }
};

void post_error(GstKirinExtendSrc *self, GQuark domain, gint code, const std::string &text,
                const std::string &debug, guint http_status, const std::string &error_code,
                const std::string &task_id) {
  GstStructure *details = gst_structure_new(
      "details", "kirin-error-code", G_TYPE_STRING, error_code.c_str(), "http-status", G_TYPE_UINT,
      http_status, "task-id", G_TYPE_STRING, task_id.c_str(), nullptr);
  gst_element_message_full_with_details(GST_ELEMENT(self), GST_MESSAGE_ERROR, domain, code,
                                        g_strdup(text.c_str()), g_strdup(debug.c_str()), __FILE__,
                                        GST_FUNCTION, __LINE__, details);
}

void post_settings_error(GstKirinExtendSrc *self, const std::string &text) {
  post_error(self, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS, text, {}, 0, {}, {});
}

// GST_MESSAGE_PROGRESS, which gst-launch prints and applications can show as a progress
// bar. `closes` ends the sequence that `start` opened; it is posted at most once.
void post_progress(GstKirinExtendSrc *self, GstProgressType type, const std::string &text,
                   double fraction = -1) {
  {
    std::lock_guard<std::mutex> guard(self->priv->lock);
    bool closes = type == GST_PROGRESS_TYPE_COMPLETE || type == GST_PROGRESS_TYPE_ERROR ||
                  type == GST_PROGRESS_TYPE_CANCELED;
    if (type == GST_PROGRESS_TYPE_START)
      self->priv->progress_open = true;
    else if (!self->priv->progress_open)
      return;
    else if (closes)
      self->priv->progress_open = false;
  }
  GstMessage *message =
      gst_message_new_progress(GST_OBJECT(self), type, "kirin-task", text.c_str());
  if (fraction >= 0)
    gst_structure_set(gst_message_writable_structure(message), "percent", G_TYPE_INT,
                      (int)(fraction * 100 + 0.5), nullptr);
  gst_element_post_message(GST_ELEMENT(self), message);
}

// Every status change of the task, as a `kirin-task` element message. `cached`: the task
// ended in an earlier run and comes from the cache-dir journal.
void post_task_message(GstKirinExtendSrc *self, const kirin::Task &task,
                       const std::string &external_task_id, guint step, bool cached = false) {
  GstStructure *s =
      gst_structure_new("kirin-task", "task-id", G_TYPE_STRING, task.id.c_str(), "external-task-id",
                        G_TYPE_STRING, external_task_id.c_str(), "status", G_TYPE_STRING,
                        kirin::task_status_name(task.status), "step", G_TYPE_UINT, step, nullptr);
  if (task.progress >= 0)
    gst_structure_set(s, "progress", G_TYPE_DOUBLE, task.progress, nullptr);
  if (task.status == kirin::TaskStatus::Completed) {
    gst_structure_set(s, "url", G_TYPE_STRING, task.video_url.c_str(), "video-id", G_TYPE_STRING,
                      task.video_id.c_str(), "duration", G_TYPE_DOUBLE, task.duration, "cost",
                      G_TYPE_STRING, task.cost.c_str(), nullptr);
  }
  if (cached)
    gst_structure_set(s, "cached", G_TYPE_BOOLEAN, TRUE, nullptr);
  gst_element_post_message(GST_ELEMENT(self), gst_message_new_element(GST_OBJECT(self), s));
}

// Records the entry in the cache-dir journal. A failure costs only the cache, so it is a
// warning that names the property.
void journal_save(GstKirinExtendSrc *self, const std::string &dir,
                  const kirin::JournalEntry &entry) {
  std::string error;
  if (!kirin::journal_write(dir, entry, error))
    GST_ELEMENT_WARNING(self, RESOURCE, WRITE,
                        ("Property 'cache-dir' (%s): cannot record task %s: %s", dir.c_str(),
                         entry.task_id.c_str(), error.c_str()),
                        (nullptr));
}

void on_task_id(const std::shared_ptr<ElementLink> &link, const std::string &task_id) {
  GstKirinExtendSrc *self = link->lock_current();
  if (!self)
    return;
  std::string cache_dir;
  kirin::JournalEntry journal;
  {
    std::lock_guard<std::mutex> guard(self->priv->lock);
    self->priv->task_id = task_id;
    cache_dir = self->priv->cache_dir;
    if (!cache_dir.empty() && self->priv->journal.task_id.empty()) {
      self->priv->journal.task_id = task_id;
      self->priv->journal.external_task_id = self->priv->external_task_id;
      journal = self->priv->journal;
    } else {
      cache_dir.clear();
    }
  }
  GST_INFO_OBJECT(self, "task %s created", task_id.c_str());
  // Recorded before anything else can go wrong: a run that dies now attaches to it next time.
  if (!cache_dir.empty())
    journal_save(self, cache_dir, journal);
  g_object_notify(G_OBJECT(self), "task-id");
  gst_object_unref(self);
}

void on_task_update(const std::shared_ptr<ElementLink> &link, const kirin::Task &task) {
  GstKirinExtendSrc *self = link->lock_current();
  if (!self)
    return;
  GstKirinExtendSrcPrivate *priv = self->priv;
  bool changed;
  guint step;
  std::string external_task_id;
  {
    std::lock_guard<std::mutex> guard(priv->lock);
    // An unknown status is reported as processing: it only matters when it changes.
    changed = task.status != priv->last_status || task.progress != priv->last_progress;
    priv->last_status = task.status;
    priv->last_progress = task.progress;
    external_task_id = priv->external_task_id;
    step = priv->step;
    if (task.status == kirin::TaskStatus::Completed) {
      priv->result_url = task.video_url;
      priv->result_video_id = task.video_id;
      priv->result_duration = task.duration;
    }
  }
  GST_DEBUG_OBJECT(self, "task %s: %s (%s), progress %.2f", task.id.c_str(),
                   kirin::task_status_name(task.status), task.status_raw.c_str(), task.progress);
  if (changed) {
    post_task_message(self, task, external_task_id, step);
    std::string text = "Task " + task.id + ": " + kirin::task_status_name(task.status);
    if (task.progress >= 0)
      text += " " + std::to_string((int)(task.progress * 100 + 0.5)) + "%";
    post_progress(self,
                  task.status == kirin::TaskStatus::Completed ? GST_PROGRESS_TYPE_COMPLETE
                  : task.status == kirin::TaskStatus::Failed  ? GST_PROGRESS_TYPE_ERROR
                                                              : GST_PROGRESS_TYPE_CONTINUE,
                  text, task.progress);
  }
  gst_object_unref(self);
}

void expose_next(GstElement *element, gpointer user_data);

// Which result URLs may be fetched: http(s) only, and no downgrade from an https API to a
// plain-http download unless the user opted in. Returns the reason to refuse, or "".
std::string result_url_problem(GstKirinExtendSrc *self, const std::string &url) {
  const char *scheme = g_uri_peek_scheme(url.c_str());
  if (!scheme || (g_strcmp0(scheme, "http") != 0 && g_strcmp0(scheme, "https") != 0))
    return "its result URL '" + url + "' is not http or https, so it is refused.";
  std::lock_guard<std::mutex> guard(self->priv->lock);
  const Settings &s = self->priv->settings;
  const char *api_scheme = g_uri_peek_scheme(s.api_url.c_str());
  if (g_strcmp0(scheme, "http") == 0 && g_strcmp0(api_scheme, "https") == 0 && !s.allow_http_result)
    return "its result URL '" + url +
           "' is plain http while api-url is https, so it is refused (set "
           "allow-http-result=true to accept it).";
  return {};
}

bool start(GstKirinExtendSrc *self, const std::string &refresh_task_id = {});

// With `extensions` > 1, whether a next step may follow the one that made `task`: not when
// that would pass the provider's 3-minute limit (then it stops before paying and says so).
bool chain_continues(GstKirinExtendSrc *self, const kirin::Task &task) {
  guint step, steps;
  {
    std::lock_guard<std::mutex> guard(self->priv->lock);
    step = self->priv->step;
    steps = self->priv->settings.extensions;
  }
  if (step >= steps)
    return false;
  std::string why_not;
  if (task.duration > 0 && task.duration + kExtensionSeconds > kMaxVideoSeconds + 0.001)
    why_not = "the video is already " + std::to_string((int)(task.duration + 0.5)) +
              " s, and another extension would pass the provider's 3-minute limit";
  else if (task.video_id.empty())
    why_not = "the provider did not say which video the result is, so it cannot be extended";
  if (why_not.empty())
    return true;
  std::string text = "Stopped after step " + std::to_string(step) + " of " + std::to_string(steps) +
                     ": " + why_not + ". Streaming the result of task " + task.id + ".";
  GST_ELEMENT_WARNING(self, RESOURCE, SETTINGS, ("%s", text.c_str()), (nullptr));
  return false;
}

// Starts the next step of a chain on the video the last one made.
bool start_next_step(GstKirinExtendSrc *self, const kirin::Task &task) {
  guint step;
  {
    std::lock_guard<std::mutex> guard(self->priv->lock);
    step = ++self->priv->step;
    self->priv->chain_video_id = task.video_id;
    self->priv->last_status = kirin::TaskStatus::Unknown;
    self->priv->last_progress = -1;
  }
  GST_INFO_OBJECT(self, "step %u done (video %s); starting step %u", step - 1,
                  task.video_id.c_str(), step);
  return start(self);
}

// A step's task completed (now, or in an earlier run recorded in the cache journal). Its
// result is queued for streaming when it is the last one or every step is streamed, and the
// next step, if any, starts at once. `media` is the cached copy of the result, if any.
void step_completed(GstKirinExtendSrc *self, const kirin::Task &task, const std::string &media,
                    bool refresh) {
  GstKirinExtendSrcPrivate *priv = self->priv;
  // A fresh URL for a result that is streaming already: only that result is redone.
  bool last = refresh || !chain_continues(self, task);
  bool stream;
  {
    std::lock_guard<std::mutex> guard(priv->lock);
    stream = last || priv->settings.stream_intermediate;
    if (stream) {
      Exposure exposure;
      exposure.task_id = task.id;
      exposure.video_id = task.video_id;
      exposure.duration = task.duration;
      exposure.step = priv->step;
      exposure.final = last;
      if (!media.empty()) {
        g_autofree char *uri = g_filename_to_uri(media.c_str(), nullptr, nullptr);
        exposure.url = uri ? uri : "";
        exposure.from_cache = true;
      } else {
        exposure.url = task.video_url;
        // The download is kept in the cache when the entry is this step's task.
        if (!priv->cache_dir.empty() && priv->journal.task_id == task.id) {
          exposure.cache_dir = priv->cache_dir;
          exposure.journal = priv->journal;
        }
      }
      // A refreshed URL replaces the result whose old URL expired.
      if (refresh)
        priv->exposures.clear();
      priv->exposures.push_back(std::move(exposure));
    }
  }
  if (last)
    g_object_notify(G_OBJECT(self), "result-url");
  if (stream)
    gst_element_call_async(GST_ELEMENT(self), expose_next, nullptr, nullptr);
  if (!last)
    start_next_step(self, task);
}

void on_job_finished(const std::shared_ptr<ElementLink> &link, const kirin::JobOutcome &outcome) {
  GstKirinExtendSrc *self = link->lock_current();
  if (!self)
    return;
  std::string debug = std::string("error kind: ") + kirin::job_error_name(outcome.error);
  if (outcome.error != kirin::JobError::None)
    post_progress(self, GST_PROGRESS_TYPE_ERROR, outcome.message);
  // With cache-dir, the journal learns how this step's task ended.
  std::string cache_dir;
  kirin::JournalEntry journal;
  {
    std::lock_guard<std::mutex> guard(self->priv->lock);
    if (!self->priv->cache_dir.empty() && self->priv->journal.task_id == outcome.task_id) {
      cache_dir = self->priv->cache_dir;
      kirin::JournalEntry &entry = self->priv->journal;
      if (outcome.error == kirin::JobError::None) {
        entry.completed = true;
        entry.result_url = outcome.task.video_url;
        entry.result_video_id = outcome.task.video_id;
        entry.duration = outcome.task.duration;
        entry.cost = outcome.task.cost;
      }
      journal = entry;
    }
  }
  if (!cache_dir.empty()) {
    if (outcome.error == kirin::JobError::None)
      journal_save(self, cache_dir, journal);
    else if (outcome.error == kirin::JobError::TaskFailed ||
             outcome.error == kirin::JobError::NotFound)
      kirin::journal_remove(cache_dir, journal.request); // nothing left to attach to
  }
  switch (outcome.error) {
  case kirin::JobError::None: {
    std::string problem = result_url_problem(self, outcome.task.video_url);
    if (!problem.empty()) {
      post_error(self, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_FAILED,
                 "Task " + outcome.task_id + " completed, but " + problem +
                     " Resume with task-id=" + outcome.task_id + " once that is resolved.",
                 debug, 0, {}, outcome.task_id);
      break;
    }
    step_completed(self, outcome.task, {}, link->refresh);
    break;
  }
  case kirin::JobError::Unauthorized:
  case kirin::JobError::Forbidden:
    post_error(self, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_NOT_AUTHORIZED, outcome.message, debug,
               outcome.http_status, outcome.error_code, outcome.task_id);
    break;
  case kirin::JobError::NotFound:
    post_error(self, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_NOT_FOUND, outcome.message, debug,
               outcome.http_status, outcome.error_code, outcome.task_id);
    break;
  case kirin::JobError::Network:
    post_error(self, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_OPEN_READ, outcome.message, debug,
               outcome.http_status, outcome.error_code, outcome.task_id);
    break;
  default:
    post_error(self, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_FAILED, outcome.message, debug,
               outcome.http_status, outcome.error_code, outcome.task_id);
    break;
  }
  gst_object_unref(self);
}

// Stops and drops the child source, if any. Its streaming thread is joined before the
// ghost pad lets go of it, so nothing it still pushes can reach a pad without a target.
void remove_source(GstKirinExtendSrc *self) {
  GstElement *source;
  {
    std::lock_guard<std::mutex> guard(self->priv->lock);
    source = self->priv->source;
    self->priv->source = nullptr;
  }
  if (!source)
    return;
  gst_element_set_state(source, GST_STATE_NULL);
  gst_ghost_pad_set_target(GST_GHOST_PAD(self->srcpad), nullptr);
  gst_bin_remove(GST_BIN(self), source);
  std::lock_guard<std::mutex> guard(self->priv->lock);
  if (self->priv->failed_source == source)
    self->priv->failed_source = nullptr;
}

// Duration, prompt, task and video IDs and the model, for the stream's tags.
GstTagList *result_tags(GstKirinExtendSrc *self, const Exposure &exposure) {
  GstTagList *tags = gst_tag_list_new_empty();
  if (exposure.duration > 0)
    gst_tag_list_add(tags, GST_TAG_MERGE_REPLACE, GST_TAG_DURATION,
                     (guint64)(exposure.duration * GST_SECOND), nullptr);
  if (!exposure.task_id.empty())
    gst_tag_list_add(tags, GST_TAG_MERGE_REPLACE, KIRIN_TAG_TASK_ID, exposure.task_id.c_str(),
                     nullptr);
  if (!exposure.video_id.empty())
    gst_tag_list_add(tags, GST_TAG_MERGE_REPLACE, KIRIN_TAG_VIDEO_ID, exposure.video_id.c_str(),
                     nullptr);
  std::lock_guard<std::mutex> guard(self->priv->lock);
  if (!self->priv->settings.prompt.empty())
    gst_tag_list_add(tags, GST_TAG_MERGE_REPLACE, GST_TAG_COMMENT,
                     self->priv->settings.prompt.c_str(), nullptr);
  gst_tag_list_add(tags, GST_TAG_MERGE_REPLACE, KIRIN_TAG_MODEL, self->priv->settings.model.c_str(),
                   nullptr);
  return tags;
}

// ca-file also applies to the download when the result is served by the API's own host.
std::string same_host_ca_file(GstKirinExtendSrc *self, const std::string &url) {
  std::lock_guard<std::mutex> guard(self->priv->lock);
  const Settings &s = self->priv->settings;
  if (s.ca_file.empty())
    return {};
  GUri *result = g_uri_parse(url.c_str(), G_URI_FLAGS_NONE, nullptr);
  GUri *api = g_uri_parse(s.api_url.c_str(), G_URI_FLAGS_NONE, nullptr);
  bool same = result && api && g_strcmp0(g_uri_get_host(result), g_uri_get_host(api)) == 0;
  if (result)
    g_uri_unref(result);
  if (api)
    g_uri_unref(api);
  return same ? s.ca_file : std::string();
}

// Watches what one child source pushes: tags before its first buffer, a copy of every byte
// for the cache, and its end, which for an intermediate result only hands over to the next.
struct ChildWatch {
  GstKirinExtendSrc *self; // the bin outlives its children's pads
  GstTagList *tags;
  bool first_buffer = true;
  bool final = true;
  guint64 position = 0; // byte offset of the next buffer without one of its own
  std::unique_ptr<kirin::MediaWriter> writer;
  std::string cache_dir;
  kirin::JournalEntry journal;

  ChildWatch(GstKirinExtendSrc *element, GstTagList *stream_tags)
      : self(element), tags(stream_tags) {}
  ~ChildWatch() { gst_tag_list_unref(tags); }

  void keep(GstBuffer *buffer) {
    guint64 offset = GST_BUFFER_OFFSET_IS_VALID(buffer) ? GST_BUFFER_OFFSET(buffer) : position;
    GstMapInfo map;
    if (gst_buffer_map(buffer, &map, GST_MAP_READ)) {
      writer->write(offset, map.data, map.size);
      gst_buffer_unmap(buffer, &map);
    }
    position = offset + gst_buffer_get_size(buffer);
  }

  // At the end of the download: the copy becomes the cached media when it is whole.
  void commit(GstPad *pad) {
    gint64 total = -1;
    gst_pad_query_duration(pad, GST_FORMAT_BYTES, &total);
    std::string error;
    std::string name = writer->commit(total > 0 ? (guint64)total : 0, error);
    writer.reset();
    if (name.empty()) {
      GST_INFO_OBJECT(self, "result of task %s not cached: %s", journal.task_id.c_str(),
                      error.c_str());
      return;
    }
    journal.media_file = name;
    journal.media_size = (guint64)total;
    journal_save(self, cache_dir, journal);
  }

  static GstPadProbeReturn probe(GstPad *pad, GstPadProbeInfo *info, gpointer data) {
    auto *watch = static_cast<ChildWatch *>(data);
    if (info->type & (GST_PAD_PROBE_TYPE_BUFFER | GST_PAD_PROBE_TYPE_BUFFER_LIST)) {
      if (watch->first_buffer) {
        // After stream-start, caps and segment, which are sent first.
        watch->first_buffer = false;
        watch->self->priv->data_flowed = true;
        gst_pad_push_event(pad, gst_event_new_tag(gst_tag_list_ref(watch->tags)));
      }
      if (watch->writer) {
        if (info->type & GST_PAD_PROBE_TYPE_BUFFER) {
          watch->keep(GST_PAD_PROBE_INFO_BUFFER(info));
        } else {
          GstBufferList *list = GST_PAD_PROBE_INFO_BUFFER_LIST(info);
          for (guint i = 0; i < gst_buffer_list_length(list); i++)
            watch->keep(gst_buffer_list_get(list, i));
        }
      }
      // With nothing to keep and no next result to hand over to, the data path is left
      // exactly as the source made it.
      return watch->writer || !watch->final ? GST_PAD_PROBE_OK : GST_PAD_PROBE_REMOVE;
    }
    GstEvent *event = GST_PAD_PROBE_INFO_EVENT(info);
    if (GST_EVENT_TYPE(event) == GST_EVENT_SEGMENT) {
      const GstSegment *segment;
      gst_event_parse_segment(event, &segment);
      if (segment->format == GST_FORMAT_BYTES)
        watch->position = segment->start;
    } else if (GST_EVENT_TYPE(event) == GST_EVENT_EOS) {
      if (watch->writer)
        watch->commit(pad);
      if (!watch->final) {
        // The next result follows in the same stream, with its own stream-start.
        {
          std::lock_guard<std::mutex> guard(watch->self->priv->lock);
          watch->self->priv->child_streaming = false;
        }
        gst_element_call_async(GST_ELEMENT(watch->self), expose_next, nullptr, nullptr);
        return GST_PAD_PROBE_DROP;
      }
    }
    return GST_PAD_PROBE_OK;
  }
};

// Runs on a GStreamer thread (gst_element_call_async), never on the client thread: adding
// children and changing states belongs here. The state lock orders it against state
// changes, so a stop either happens entirely before (and the queue is empty) or after.
// Streams the oldest queued result, once the child before it (if any) has finished.
void expose_next(GstElement *element, gpointer) {
  auto *self = GST_KIRIN_EXTEND_SRC(element);
  GstKirinExtendSrcPrivate *priv = self->priv;

  GST_STATE_LOCK(element);
  Exposure exposure;
  {
    std::lock_guard<std::mutex> guard(priv->lock);
    bool replacing = priv->source && priv->failed_source == priv->source;
    if (priv->flushing || priv->exposures.empty() || (priv->child_streaming && !replacing)) {
      GST_STATE_UNLOCK(element);
      return;
    }
    exposure = std::move(priv->exposures.front());
    priv->exposures.pop_front();
    priv->child_streaming = true;
    priv->streaming_final = exposure.final;
    priv->data_flowed = false;
  }
  const std::string &url = exposure.url;
  const std::string &task_id = exposure.task_id;
  GError *error = nullptr;
  GstElement *source = gst_element_make_from_uri(GST_URI_SRC, url.c_str(), "source", &error);
  if (!source) {
    GST_STATE_UNLOCK(element);
    post_error(self, GST_CORE_ERROR, GST_CORE_ERROR_MISSING_PLUGIN,
               "No element can download the result of task " + task_id + " (" + url +
                   "): install souphttpsrc (gst-plugins-good).",
               error ? error->message : "", 0, {}, task_id);
    g_clear_error(&error);
    return;
  }
  // The API key is never handed to the result host: the child gets only the URL.
  if (g_object_class_find_property(G_OBJECT_GET_CLASS(source), "user-agent"))
    g_object_set(source, "user-agent", "gst-kirin/" VERSION, nullptr);
  std::string ca_file = exposure.from_cache ? std::string() : same_host_ca_file(self, url);
  // souphttpsrc's ssl-ca-file is not applied with libsoup 3; a TLS database is.
  if (!ca_file.empty() &&
      g_object_class_find_property(G_OBJECT_GET_CLASS(source), "tls-database")) {
    std::string ignored; // the same file passed validate() when the run started
    GObject *database = kirin::tls_file_database_new(ca_file, ignored);
    if (database) {
      g_object_set(source, "tls-database", database, nullptr);
      g_object_unref(database);
    }
  }
  g_signal_emit(self, signals[SIGNAL_SOURCE_SETUP], 0, source);

  // The previous result's source (finished, or with an expired URL) makes room.
  remove_source(self);
  gst_bin_add(GST_BIN(self), source);
  GstPad *pad = gst_element_get_static_pad(source, "src");
  auto *watch = new ChildWatch(self, result_tags(self, exposure));
  watch->final = exposure.final;
  if (!exposure.cache_dir.empty()) {
    std::string key = kirin::cache_key(exposure.journal.request);
    watch->writer = std::make_unique<kirin::MediaWriter>(exposure.cache_dir, key);
    if (watch->writer->ok()) {
      watch->cache_dir = exposure.cache_dir;
      watch->journal = exposure.journal;
    } else {
      GST_WARNING_OBJECT(self, "cannot write to %s: the result is not cached",
                         exposure.cache_dir.c_str());
      watch->writer.reset();
    }
  }
  gst_pad_add_probe(pad,
                    (GstPadProbeType)(GST_PAD_PROBE_TYPE_BUFFER | GST_PAD_PROBE_TYPE_BUFFER_LIST |
                                      GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM),
                    ChildWatch::probe, watch,
                    [](gpointer data) { delete static_cast<ChildWatch *>(data); });
  gst_ghost_pad_set_target(GST_GHOST_PAD(self->srcpad), pad);
  gst_object_unref(pad);
  {
    std::lock_guard<std::mutex> guard(priv->lock);
    priv->source = source;
  }
  GST_INFO_OBJECT(self, "streaming the result of task %s (step %u) from %s", task_id.c_str(),
                  exposure.step, exposure.from_cache ? "the cache" : url.c_str());
  gst_element_sync_state_with_parent(source);
  GST_STATE_UNLOCK(element);
}

bool is_http_url(const std::string &url) {
  GUri *uri = g_uri_parse(url.c_str(), G_URI_FLAGS_NONE, nullptr);
  if (!uri)
    return false;
  const char *scheme = g_uri_get_scheme(uri);
  bool ok = (g_strcmp0(scheme, "http") == 0 || g_strcmp0(scheme, "https") == 0) &&
            g_uri_get_host(uri) && *g_uri_get_host(uri);
  g_uri_unref(uri);
  return ok;
}

std::string effective_api_key(const Settings &settings) {
  if (!settings.api_key.empty())
    return settings.api_key;
  const char *env = g_getenv("VTRIX_API_KEY");
  return env ? env : "";
}

// Checks the settings before any network call. Returns the problem, or "" when fine.
std::string validate(const Settings &settings) {
  if (settings.video_id.empty() && settings.task_id.empty())
    return "Property 'video-id' is not set: name the video to extend (or set 'task-id' to "
           "resume an existing task).";
  if (effective_api_key(settings).empty())
    return "No API key: set the 'api-key' property or the VTRIX_API_KEY environment variable.";
  if (!is_http_url(settings.api_url))
    return "Property 'api-url' must be an http:// or https:// URL, not '" + settings.api_url + "'.";
  const std::pair<const char *, const std::string *> texts[] = {
      {"prompt", &settings.prompt}, {"negative-prompt", &settings.negative_prompt}};
  for (const auto &[name, text] : texts) {
    if (!g_utf8_validate(text->c_str(), text->size(), nullptr))
      return std::string("Property '") + name + "' is not valid UTF-8.";
    glong chars = g_utf8_strlen(text->c_str(), text->size());
    if (chars > (glong)kMaxPromptChars)
      return std::string("Property '") + name + "' has " + std::to_string(chars) +
             " characters; the provider accepts at most " + std::to_string(kMaxPromptChars) + ".";
  }
  if (!settings.callback_url.empty() && !is_http_url(settings.callback_url))
    return "Property 'callback-url' must be an http:// or https:// URL.";
  if (!settings.cache_dir.empty()) {
    std::string problem = kirin::cache_dir_problem(settings.cache_dir);
    if (!problem.empty())
      return "Property 'cache-dir' (" + settings.cache_dir + ") " + problem + ".";
  }
  if (!settings.ca_file.empty()) {
    std::string error;
    GObject *database = kirin::tls_file_database_new(settings.ca_file, error);
    if (!database)
      return "Property 'ca-file' (" + settings.ca_file +
             ") is not a readable PEM file of certificates: " + error;
    g_object_unref(database);
  }
  return {};
}

// Turns the settings into a job for a new run. Returns the problem when they are unusable.
// With `refresh_task_id`, the run only polls that task again for a fresh result URL.
// With cache-dir, `cache_dir` and `journal` are the journal entry of this step: with a task
// ID when an earlier run created the task (then the run attaches to it).
std::string prepare_run(GstKirinExtendSrc *self, const std::string &refresh_task_id,
                        guint callback_port, const std::string &cache_dir,
                        const kirin::JournalEntry &journal, kirin::JobConfig &config,
                        std::shared_ptr<ElementLink> &link) {
  GstKirinExtendSrcPrivate *priv = self->priv;
  std::lock_guard<std::mutex> guard(priv->lock);
  const Settings &s = priv->settings;
  std::string problem = validate(s);
  if (!problem.empty())
    return problem;
  config.api_url = s.api_url;
  config.api_key = effective_api_key(s);
  config.user_agent = "gst-kirin/" VERSION " GStreamer/" + std::to_string(GST_VERSION_MAJOR) + "." +
                      std::to_string(GST_VERSION_MINOR);
  config.poll_interval_ms = MAX(s.poll_interval_ms, 1u);
  config.timeout_s = s.timeout_s;
  config.request_timeout_s = s.request_timeout_s;
  config.ca_file = s.ca_file;
  config.create.model = s.model;
  config.create.video_id = s.video_id;
  config.create.prompt = s.prompt;
  config.create.negative_prompt = s.negative_prompt;
  if (s.cfg_scale_set)
    config.create.cfg_scale = s.cfg_scale;
  config.create.callback_url = s.callback_url;
  if (callback_port) {
    // The provider notifies our own receiver; its notifications only trigger polls.
    config.use_callbacks = true;
    if (!s.callback_public_url.empty()) {
      config.create.callback_url = s.callback_public_url;
    } else {
      std::string host = s.callback_listen.substr(0, s.callback_listen.rfind(':'));
      if (host == "0.0.0.0" || host == "::" || host.empty())
        return "Property 'callback-public-url' is not set: with callback-listen=" +
               s.callback_listen + ", say at which URL the provider can reach this machine.";
      if (host.find(':') != std::string::npos)
        host = "[" + host + "]";
      config.create.callback_url = "http://" + host + ":" + std::to_string(callback_port) + "/";
    }
  }
  const bool chained = refresh_task_id.empty() && priv->step > 1;
  if (chained)
    config.create.video_id = priv->chain_video_id;

  if (!refresh_task_id.empty()) {
    config.existing_task_id = refresh_task_id;
  } else if (!journal.task_id.empty()) {
    // Created by an earlier run that did not see it finish: attach, do not pay again.
    config.existing_task_id = journal.task_id;
    priv->external_task_id = journal.external_task_id;
  } else if (chained) {
    // Each step is its own task, findable by its own external ID.
    g_autofree char *uuid = g_uuid_string_random();
    priv->external_task_id = s.external_task_id.empty()
                                 ? std::string("gst-kirin-") + uuid
                                 : s.external_task_id + "-step" + std::to_string(priv->step);
  } else if (!s.task_id.empty()) {
    config.existing_task_id = s.task_id;
  } else if (!priv->created_task_id.empty() && same_request(priv->created_request, config.create)) {
    // Started again with the same request: the paid task is still ours.
    config.existing_task_id = priv->created_task_id;
  } else {
    if (s.external_task_id.empty()) {
      g_autofree char *uuid = g_uuid_string_random();
      priv->external_task_id = std::string("gst-kirin-") + uuid;
    } else {
      priv->external_task_id = s.external_task_id;
    }
    priv->created_task_id.clear();
  }
  config.create.external_task_id = priv->external_task_id;
  priv->task_id = config.existing_task_id;
  if (refresh_task_id.empty()) {
    priv->cache_dir = cache_dir;
    priv->journal = journal;
  }
  if (refresh_task_id.empty()) {
    priv->last_status = kirin::TaskStatus::Unknown;
    priv->last_progress = -1;
    priv->url_refreshed = false;
    priv->data_flowed = false;
  }
  priv->result_url.clear();
  priv->result_video_id.clear();
  priv->result_duration = -1;
  priv->generation++;
  priv->flushing = false;
  link = std::make_shared<ElementLink>(self, priv->generation, !refresh_task_id.empty());
  return {};
}

// What identifies the current step's task in the cache-dir journal.
kirin::CacheRequest cache_request(GstKirinExtendSrcPrivate *priv) {
  const Settings &s = priv->settings;
  kirin::CacheRequest r;
  r.request.model = s.model;
  r.request.video_id = priv->step > 1 ? priv->chain_video_id : s.video_id;
  r.request.prompt = s.prompt;
  r.request.negative_prompt = s.negative_prompt;
  if (s.cfg_scale_set)
    r.request.cfg_scale = s.cfg_scale;
  r.request.external_task_id = s.external_task_id;
  r.step = priv->step;
  return r;
}

// A step whose task completed in an earlier run: its messages come from the journal, and
// its result from the cached copy (or the recorded URL, refreshed by a poll if it expired).
void replay_step(GstKirinExtendSrc *self, const std::string &cache_dir,
                 const kirin::JournalEntry &entry) {
  GstKirinExtendSrcPrivate *priv = self->priv;
  kirin::Task task;
  task.id = entry.task_id;
  task.status = kirin::TaskStatus::Completed;
  task.progress = 1;
  task.has_video = true;
  task.video_url = entry.result_url;
  task.video_id = entry.result_video_id;
  task.duration = entry.duration;
  task.cost = entry.cost;
  guint step, steps;
  {
    std::lock_guard<std::mutex> guard(priv->lock);
    priv->generation++;
    priv->flushing = false;
    priv->cache_dir = cache_dir;
    priv->journal = entry;
    priv->task_id = entry.task_id;
    priv->external_task_id = entry.external_task_id;
    priv->last_status = task.status;
    priv->last_progress = task.progress;
    priv->result_url = entry.result_url;
    priv->result_video_id = entry.result_video_id;
    priv->result_duration = entry.duration;
    priv->url_refreshed = false;
    step = priv->step;
    steps = priv->settings.extensions;
  }
  GST_INFO_OBJECT(self, "task %s completed in an earlier run (%s)", entry.task_id.c_str(),
                  cache_dir.c_str());
  std::string what = "Task " + entry.task_id + " completed in an earlier run";
  if (steps > 1)
    what += " (step " + std::to_string(step) + " of " + std::to_string(steps) + ")";
  post_progress(self, GST_PROGRESS_TYPE_START, what);
  post_task_message(self, task, entry.external_task_id, step, true);
  post_progress(self, GST_PROGRESS_TYPE_COMPLETE,
                "Task " + entry.task_id + ": completed 100% (from the cache)", 1);
  g_object_notify(G_OBJECT(self), "task-id");
  step_completed(self, task, kirin::cached_media_path(cache_dir, entry), false);
}

bool start(GstKirinExtendSrc *self, const std::string &refresh_task_id) {
  GstKirinExtendSrcPrivate *priv = self->priv;
  // The client is a module loaded on first use (client.h); without it nothing can run.
  std::string load_error;
  if (!kirin::client_load(load_error)) {
    post_error(self, GST_CORE_ERROR, GST_CORE_ERROR_MISSING_PLUGIN,
               "The kirin plugin is incomplete: " + load_error, {}, 0, {}, {});
    return false;
  }
  kirin::JobConfig config;
  std::shared_ptr<ElementLink> link;
  // The shared receiver is started outside the element's lock: the client thread's
  // callbacks take that lock.
  std::string listen;
  {
    std::lock_guard<std::mutex> guard(priv->lock);
    listen = priv->settings.callback_listen;
  }
  guint callback_port = 0;
  if (!listen.empty()) {
    std::string listen_error;
    callback_port = kirin::callback_listener_start(listen, listen_error);
    if (!callback_port) {
      post_settings_error(self, "Property 'callback-listen' (" + listen +
                                    "): cannot receive callbacks there: " + listen_error);
      return false;
    }
  }
  // cache-dir: this step's journal entry. A completed one is replayed without the network.
  std::string cache_dir;
  kirin::JournalEntry journal;
  if (refresh_task_id.empty()) {
    {
      std::lock_guard<std::mutex> guard(priv->lock);
      if (!priv->settings.cache_dir.empty() && priv->settings.task_id.empty()) {
        cache_dir = priv->settings.cache_dir;
        journal.request = cache_request(priv);
      }
    }
    if (!cache_dir.empty()) {
      std::string error;
      kirin::JournalEntry recorded;
      if (kirin::journal_read(cache_dir, kirin::cache_key(journal.request), recorded, error)) {
        if (recorded.completed) {
          replay_step(self, cache_dir, recorded);
          return true;
        }
        journal = recorded;
      } else if (!error.empty()) {
        GST_WARNING_OBJECT(self, "ignoring a cache entry: %s", error.c_str());
      }
    }
  }
  std::string problem =
      prepare_run(self, refresh_task_id, callback_port, cache_dir, journal, config, link);
  if (!problem.empty()) {
    post_settings_error(self, problem);
    return false;
  }
  GST_INFO_OBJECT(self, "%s task for video '%s' at %s",
                  config.existing_task_id.empty() ? "creating a" : "attaching to the",
                  config.create.video_id.c_str(), config.api_url.c_str());

  kirin::CreateRequest request = config.create;
  kirin::JobCallbacks callbacks;
  callbacks.on_task_id = [link, request](const std::string &task_id) {
    if (GstKirinExtendSrc *owner = link->lock_current()) {
      // Running again unchanged attaches to the first step's task (see prepare_run).
      std::lock_guard<std::mutex> guard(owner->priv->lock);
      if (owner->priv->step == 1) {
        owner->priv->created_task_id = task_id;
        owner->priv->created_request = request;
      }
      gst_object_unref(owner);
    }
    on_task_id(link, task_id);
  };
  callbacks.on_update = [link](const kirin::Task &task) { on_task_update(link, task); };
  callbacks.on_finished = [link](const kirin::JobOutcome &outcome) {
    on_job_finished(link, outcome);
  };
  std::string what = !refresh_task_id.empty() ? std::string()
                     : config.existing_task_id.empty()
                         ? "Extending video " + config.create.video_id
                         : "Waiting for task " + config.existing_task_id;
  guint step, steps;
  {
    std::lock_guard<std::mutex> guard(priv->lock);
    step = priv->step;
    steps = priv->settings.extensions;
  }
  if (!what.empty() && steps > 1)
    what += " (step " + std::to_string(step) + " of " + std::to_string(steps) + ")";
  // Opened before the job exists, so no update of it can come first.
  if (!what.empty())
    post_progress(self, GST_PROGRESS_TYPE_START, what);
  kirin::JobHandle job = kirin::job_start(std::move(config), std::move(callbacks));
  {
    std::lock_guard<std::mutex> guard(priv->lock);
    priv->job = std::move(job);
  }
  return true;
}

// Stops the run without waiting on the network: the client thread drops it on its own.
void stop(GstKirinExtendSrc *self) {
  kirin::JobHandle job;
  {
    std::lock_guard<std::mutex> guard(self->priv->lock);
    self->priv->flushing = true;
    self->priv->generation++;
    self->priv->exposures.clear();
    self->priv->child_streaming = false;
    job = std::move(self->priv->job);
  }
  kirin::job_cancel(job);
  post_progress(self, GST_PROGRESS_TYPE_CANCELED, "Stopped before the task ended");
}

} // namespace

static GstStateChangeReturn gst_kirin_extend_src_change_state(GstElement *element,
                                                              GstStateChange transition) {
  auto *self = GST_KIRIN_EXTEND_SRC(element);
  switch (transition) {
  case GST_STATE_CHANGE_READY_TO_PAUSED: {
    std::lock_guard<std::mutex> guard(self->priv->lock);
    self->priv->step = 1;
    self->priv->chain_video_id.clear();
    self->priv->streaming_final = true;
  }
    if (!start(self))
      return GST_STATE_CHANGE_FAILURE;
    break;
  case GST_STATE_CHANGE_PAUSED_TO_READY:
    // Cancel before the children stop, so nothing new is added while they do.
    stop(self);
    break;
  default:
    break;
  }

  GstStateChangeReturn ret =
      GST_ELEMENT_CLASS(gst_kirin_extend_src_parent_class)->change_state(element, transition);

  switch (transition) {
  case GST_STATE_CHANGE_READY_TO_PAUSED:
    if (ret == GST_STATE_CHANGE_FAILURE)
      stop(self);
    break;
  case GST_STATE_CHANGE_PAUSED_TO_READY:
    remove_source(self);
    break;
  default:
    break;
  }
  return ret;
}

// Child messages may or may not end with a full stop; ours continue after them.
static std::string sentence(const char *text) {
  std::string out = text ? text : "";
  if (!out.empty() && out.back() != '.')
    out += '.';
  return out;
}

static GstPadProbeReturn drop_eos(GstPad *, GstPadProbeInfo *info, gpointer) {
  return GST_EVENT_TYPE(GST_PAD_PROBE_INFO_EVENT(info)) == GST_EVENT_EOS ? GST_PAD_PROBE_DROP
                                                                         : GST_PAD_PROBE_OK;
}

// Result URLs expire. When the CDN refuses one (403/404) before any byte came through,
// poll the task once more for a fresh URL instead of failing; the failing child's own error
// and the EOS it sends after it are dropped. Called from the child's streaming thread.
static bool refresh_expired_url(GstKirinExtendSrc *self, GstMessage *message, const GError *error) {
  GstKirinExtendSrcPrivate *priv = self->priv;
  bool expired =
      error->domain == GST_RESOURCE_ERROR && (error->code == GST_RESOURCE_ERROR_NOT_FOUND ||
                                              error->code == GST_RESOURCE_ERROR_NOT_AUTHORIZED);
  std::string task_id;
  GstElement *failed;
  {
    std::lock_guard<std::mutex> guard(priv->lock);
    // Only the last result: an intermediate one streams while the next step's job runs.
    if (!expired || priv->flushing || priv->url_refreshed || priv->data_flowed || !priv->source ||
        !priv->streaming_final || GST_MESSAGE_SRC(message) != GST_OBJECT(priv->source) ||
        priv->task_id.empty())
      return false;
    priv->url_refreshed = true;
    priv->failed_source = failed = priv->source;
    task_id = priv->task_id;
  }
  GST_WARNING_OBJECT(self, "the result URL of task %s was refused (%s); polling for a fresh one",
                     task_id.c_str(), error->message);
  GstPad *pad = gst_element_get_static_pad(failed, "src");
  gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM, drop_eos, nullptr, nullptr);
  gst_object_unref(pad);
  return start(self, task_id);
}

// Errors of the child source gain the task ID, so the paid result can be fetched again.
static void gst_kirin_extend_src_handle_message(GstBin *bin, GstMessage *message) {
  auto *self = GST_KIRIN_EXTEND_SRC(bin);
  if (GST_MESSAGE_TYPE(message) != GST_MESSAGE_ERROR ||
      GST_MESSAGE_SRC(message) == GST_OBJECT(bin)) {
    GST_BIN_CLASS(gst_kirin_extend_src_parent_class)->handle_message(bin, message);
    return;
  }
  GError *error = nullptr;
  char *debug = nullptr;
  gst_message_parse_error(message, &error, &debug);
  std::string task_id;
  bool from_replaced_source, refreshed;
  {
    std::lock_guard<std::mutex> guard(self->priv->lock);
    task_id = self->priv->task_id;
    from_replaced_source = self->priv->failed_source &&
                           GST_MESSAGE_SRC(message) == GST_OBJECT(self->priv->failed_source);
    refreshed = self->priv->url_refreshed;
  }
  if (!from_replaced_source && !refresh_expired_url(self, message, error)) {
    const GstStructure *child_details = nullptr;
    gst_message_parse_error_details(message, &child_details);
    guint http_status = 0;
    if (child_details)
      gst_structure_get_uint(child_details, "http-status-code", &http_status);
    post_error(self, error->domain, error->code,
               "Could not download the result of task " + task_id +
                   (refreshed ? " (even from a freshly polled URL)" : "") + ": " +
                   sentence(error->message) + " Resume with task-id=" + task_id + ".",
               debug ? debug : "", http_status, {}, task_id);
  }
  g_error_free(error);
  g_free(debug);
  gst_message_unref(message);
}

// The ghost pad's own query function, which forwards to the target.
static GstPadQueryFunction ghost_query_default;

// Before the result exists there is no child to ask: answer for it, so downstream
// elements that query scheduling at activation (typefind, decodebin) pick push mode.
static gboolean gst_kirin_extend_src_src_query(GstPad *pad, GstObject *parent, GstQuery *query) {
  if (GST_QUERY_TYPE(query) == GST_QUERY_SCHEDULING) {
    GstPad *target = gst_ghost_pad_get_target(GST_GHOST_PAD(pad));
    if (!target) {
      gst_query_set_scheduling(query, GST_SCHEDULING_FLAG_BANDWIDTH_LIMITED, 1, -1, 0);
      gst_query_add_scheduling_mode(query, GST_PAD_MODE_PUSH);
      return TRUE;
    }
    gst_object_unref(target);
  }
  return ghost_query_default(pad, parent, query);
}

static void set_string(std::string &field, const GValue *value) {
  const char *text = g_value_get_string(value);
  field = text ? text : "";
}

static void gst_kirin_extend_src_set_property(GObject *object, guint prop_id, const GValue *value,
                                              GParamSpec *pspec) {
  auto *self = GST_KIRIN_EXTEND_SRC(object);
  std::lock_guard<std::mutex> guard(self->priv->lock);
  Settings &s = self->priv->settings;
  switch (prop_id) {
  case PROP_API_URL: {
    const char *url = g_value_get_string(value);
    s.api_url = url ? url : kDefaultApiUrl;
    break;
  }
  case PROP_API_KEY:
    std::fill(s.api_key.begin(), s.api_key.end(), '\0');
    set_string(s.api_key, value);
    break;
  case PROP_MODEL: {
    const char *model = g_value_get_string(value);
    s.model = model ? model : kDefaultModel;
    break;
  }
  case PROP_VIDEO_ID:
    set_string(s.video_id, value);
    break;
  case PROP_PROMPT:
    set_string(s.prompt, value);
    break;
  case PROP_NEGATIVE_PROMPT:
    set_string(s.negative_prompt, value);
    break;
  case PROP_CFG_SCALE:
    s.cfg_scale = g_value_get_double(value);
    s.cfg_scale_set = true;
    break;
  case PROP_CALLBACK_URL:
    set_string(s.callback_url, value);
    break;
  case PROP_EXTERNAL_TASK_ID:
    set_string(s.external_task_id, value);
    break;
  case PROP_TASK_ID:
    set_string(s.task_id, value);
    break;
  case PROP_POLL_INTERVAL:
    s.poll_interval_ms = g_value_get_uint(value);
    break;
  case PROP_TIMEOUT:
    s.timeout_s = g_value_get_uint(value);
    break;
  case PROP_REQUEST_TIMEOUT:
    s.request_timeout_s = g_value_get_uint(value);
    break;
  case PROP_CA_FILE:
    set_string(s.ca_file, value);
    break;
  case PROP_ALLOW_HTTP_RESULT:
    s.allow_http_result = g_value_get_boolean(value);
    break;
  case PROP_EXTENSIONS:
    s.extensions = g_value_get_uint(value);
    break;
  case PROP_CALLBACK_LISTEN:
    set_string(s.callback_listen, value);
    break;
  case PROP_CALLBACK_PUBLIC_URL:
    set_string(s.callback_public_url, value);
    break;
  case PROP_CACHE_DIR:
    set_string(s.cache_dir, value);
    break;
  case PROP_STREAM_INTERMEDIATE:
    s.stream_intermediate = g_value_get_boolean(value);
    break;
  default:
    G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
    break;
  }
}

static void set_optional_string(GValue *value, const std::string &text) {
  g_value_set_string(value, text.empty() ? nullptr : text.c_str());
}

static void gst_kirin_extend_src_get_property(GObject *object, guint prop_id, GValue *value,
                                              GParamSpec *pspec) {
  auto *self = GST_KIRIN_EXTEND_SRC(object);
  GstKirinExtendSrcPrivate *priv = self->priv;
  std::lock_guard<std::mutex> guard(priv->lock);
  const Settings &s = priv->settings;
  switch (prop_id) {
  case PROP_API_URL:
    g_value_set_string(value, s.api_url.c_str());
    break;
  case PROP_API_KEY:
    // A secret: say whether one is set, never what it is.
    g_value_set_string(value, effective_api_key(s).empty() ? nullptr : kMaskedKey);
    break;
  case PROP_MODEL:
    g_value_set_string(value, s.model.c_str());
    break;
  case PROP_VIDEO_ID:
    set_optional_string(value, s.video_id);
    break;
  case PROP_PROMPT:
    set_optional_string(value, s.prompt);
    break;
  case PROP_NEGATIVE_PROMPT:
    set_optional_string(value, s.negative_prompt);
    break;
  case PROP_CFG_SCALE:
    g_value_set_double(value, s.cfg_scale);
    break;
  case PROP_CALLBACK_URL:
    set_optional_string(value, s.callback_url);
    break;
  case PROP_EXTERNAL_TASK_ID:
    set_optional_string(value,
                        s.external_task_id.empty() ? priv->external_task_id : s.external_task_id);
    break;
  case PROP_TASK_ID:
    set_optional_string(value, s.task_id.empty() ? priv->task_id : s.task_id);
    break;
  case PROP_POLL_INTERVAL:
    g_value_set_uint(value, s.poll_interval_ms);
    break;
  case PROP_TIMEOUT:
    g_value_set_uint(value, s.timeout_s);
    break;
  case PROP_REQUEST_TIMEOUT:
    g_value_set_uint(value, s.request_timeout_s);
    break;
  case PROP_CA_FILE:
    set_optional_string(value, s.ca_file);
    break;
  case PROP_ALLOW_HTTP_RESULT:
    g_value_set_boolean(value, s.allow_http_result);
    break;
  case PROP_EXTENSIONS:
    g_value_set_uint(value, s.extensions);
    break;
  case PROP_CALLBACK_LISTEN:
    set_optional_string(value, s.callback_listen);
    break;
  case PROP_CALLBACK_PUBLIC_URL:
    set_optional_string(value, s.callback_public_url);
    break;
  case PROP_CACHE_DIR:
    set_optional_string(value, s.cache_dir);
    break;
  case PROP_STREAM_INTERMEDIATE:
    g_value_set_boolean(value, s.stream_intermediate);
    break;
  case PROP_RESULT_URL:
    set_optional_string(value, priv->result_url);
    break;
  case PROP_RESULT_VIDEO_ID:
    set_optional_string(value, priv->result_video_id);
    break;
  case PROP_RESULT_DURATION:
    g_value_set_double(value, priv->result_duration);
    break;
  default:
    G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
    break;
  }
}

static void gst_kirin_extend_src_finalize(GObject *object) {
  auto *self = GST_KIRIN_EXTEND_SRC(object);
  kirin::job_cancel(self->priv->job);
  std::fill(self->priv->settings.api_key.begin(), self->priv->settings.api_key.end(), '\0');
  delete self->priv;
  G_OBJECT_CLASS(gst_kirin_extend_src_parent_class)->finalize(object);
}

static void gst_kirin_extend_src_init(GstKirinExtendSrc *self) {
  self->priv = new GstKirinExtendSrcPrivate();
  const char *env_url = g_getenv("VTRIX_API_URL");
  self->priv->settings.api_url = env_url && *env_url ? env_url : kDefaultApiUrl;

  GstPadTemplate *templ = gst_static_pad_template_get(&src_template);
  self->srcpad = gst_ghost_pad_new_no_target_from_template("src", templ);
  gst_object_unref(templ);
  ghost_query_default = GST_PAD_QUERYFUNC(self->srcpad);
  gst_pad_set_query_function(self->srcpad, gst_kirin_extend_src_src_query);
  gst_element_add_pad(GST_ELEMENT(self), self->srcpad);

  // This bin is a source whatever its child is, and never a sink.
  gst_bin_set_suppressed_flags(GST_BIN(self),
                               (GstElementFlags)(GST_ELEMENT_FLAG_SOURCE | GST_ELEMENT_FLAG_SINK));
  GST_OBJECT_FLAG_SET(self, GST_ELEMENT_FLAG_SOURCE);
}

// kirin://VIDEO_ID?prompt=...&cfg-scale=0.7&task-id=... The video ID is percent-decoded as
// is, never parsed as a host name (which could lower-case or reject it). Query keys are
// property names. The key, the API URL and the CA file are not accepted in a URI: a URI can
// come from a playlist or another program, and must not redirect the key or trust.
static const char *const kUriProperties[] = {
    "prompt",           "negative-prompt", "cfg-scale",  "task-id",
    "external-task-id", "callback-url",    "model",      "poll-interval",
    "timeout",          "request-timeout", "extensions", "stream-intermediate"};

static GstURIType gst_kirin_extend_src_uri_get_type(GType) {
  return GST_URI_SRC;
}

static const gchar *const *gst_kirin_extend_src_uri_get_protocols(GType) {
  static const gchar *protocols[] = {"kirin", nullptr};
  return protocols;
}

static gchar *gst_kirin_extend_src_uri_get_uri(GstURIHandler *handler) {
  auto *self = GST_KIRIN_EXTEND_SRC(handler);
  std::string video_id;
  {
    std::lock_guard<std::mutex> guard(self->priv->lock);
    video_id = self->priv->settings.video_id;
  }
  g_autofree char *escaped_id = g_uri_escape_string(video_id.c_str(), nullptr, FALSE);
  std::string uri = std::string("kirin://") + escaped_id;
  char separator = '?';
  for (const char *name : kUriProperties) {
    GParamSpec *pspec = g_object_class_find_property(G_OBJECT_GET_CLASS(self), name);
    GValue value = G_VALUE_INIT;
    g_value_init(&value, pspec->value_type);
    g_object_get_property(G_OBJECT(self), name, &value);
    bool is_default = g_param_value_defaults(pspec, &value);
    if (g_str_equal(name, "cfg-scale")) {
      std::lock_guard<std::mutex> guard(self->priv->lock);
      is_default = !self->priv->settings.cfg_scale_set;
    } else if (g_str_equal(name, "task-id") || g_str_equal(name, "external-task-id")) {
      // Only what the user set: generated IDs are results, not part of the request.
      std::lock_guard<std::mutex> guard(self->priv->lock);
      const Settings &s = self->priv->settings;
      is_default = g_str_equal(name, "task-id") ? s.task_id.empty() : s.external_task_id.empty();
    }
    if (!is_default) {
      g_autofree char *text = nullptr;
      if (G_VALUE_HOLDS_DOUBLE(&value)) {
        char buffer[G_ASCII_DTOSTR_BUF_SIZE];
        text = g_strdup(g_ascii_dtostr(buffer, sizeof buffer, g_value_get_double(&value)));
      } else if (G_VALUE_HOLDS_STRING(&value)) {
        text = g_value_dup_string(&value);
      } else {
        text = gst_value_serialize(&value);
      }
      g_autofree char *escaped = g_uri_escape_string(text ? text : "", nullptr, FALSE);
      uri += separator;
      uri += name;
      uri += '=';
      uri += escaped;
      separator = '&';
    }
    g_value_unset(&value);
  }
  return g_strdup(uri.c_str());
}

static gboolean gst_kirin_extend_src_uri_set_uri(GstURIHandler *handler, const gchar *uri,
                                                 GError **error) {
  auto *self = GST_KIRIN_EXTEND_SRC(handler);
  if (GST_STATE(self) > GST_STATE_READY) {
    g_set_error(error, GST_URI_ERROR, GST_URI_ERROR_BAD_STATE,
                "The URI can only be changed in the NULL or READY state");
    return FALSE;
  }
  const char *prefix = "kirin://";
  if (!uri || g_ascii_strncasecmp(uri, prefix, strlen(prefix)) != 0) {
    g_set_error(error, GST_URI_ERROR, GST_URI_ERROR_UNSUPPORTED_PROTOCOL, "Not a kirin:// URI: %s",
                uri ? uri : "(null)");
    return FALSE;
  }
  const char *rest = uri + strlen(prefix);
  const char *query = strchr(rest, '?');
  std::string id_part(rest, query ? (size_t)(query - rest) : strlen(rest));
  if (!id_part.empty() && id_part.back() == '/')
    id_part.pop_back();
  g_autofree char *video_id = g_uri_unescape_string(id_part.c_str(), nullptr);
  if (!video_id || id_part.find_first_of("#/") != std::string::npos) {
    g_set_error(error, GST_URI_ERROR, GST_URI_ERROR_BAD_URI,
                "Invalid video ID in %s: percent-encode it (a '/' is %%2F)", uri);
    return FALSE;
  }

  // Check every key and value first, so a bad URI changes nothing.
  GHashTable *params = nullptr;
  if (query && query[1]) {
    GError *parse_error = nullptr;
    params = g_uri_parse_params(query + 1, -1, "&", G_URI_PARAMS_NONE, &parse_error);
    if (!params) {
      g_set_error(error, GST_URI_ERROR, GST_URI_ERROR_BAD_URI, "Invalid query in the kirin URI: %s",
                  parse_error->message);
      g_error_free(parse_error);
      return FALSE;
    }
  }
  std::vector<std::pair<GParamSpec *, GValue>> values;
  bool ok = true;
  if (params) {
    GHashTableIter iter;
    gpointer key, text;
    g_hash_table_iter_init(&iter, params);
    while (ok && g_hash_table_iter_next(&iter, &key, &text)) {
      auto *name = static_cast<const char *>(key);
      bool known = false;
      for (const char *allowed : kUriProperties)
        known |= g_str_equal(name, allowed);
      GParamSpec *pspec =
          known ? g_object_class_find_property(G_OBJECT_GET_CLASS(self), name) : nullptr;
      if (!pspec) {
        g_set_error(error, GST_URI_ERROR, GST_URI_ERROR_BAD_URI,
                    "Unknown key '%s' in the kirin URI: it accepts prompt, negative-prompt, "
                    "cfg-scale, task-id, external-task-id, callback-url, model, "
                    "poll-interval, timeout, request-timeout, extensions and stream-intermediate "
                    "(the API key "
                    "and URL come from the environment)",
                    name);
        ok = false;
        break;
      }
      GValue value = G_VALUE_INIT;
      g_value_init(&value, pspec->value_type);
      bool parsed =
          G_VALUE_HOLDS_STRING(&value)
              ? (g_value_set_string(&value, static_cast<const char *>(text)), true)
              : gst_value_deserialize_with_pspec(&value, static_cast<const char *>(text), pspec);
      if (!parsed || g_param_value_validate(pspec, &value)) {
        g_set_error(error, GST_URI_ERROR, GST_URI_ERROR_BAD_URI,
                    "Invalid value '%s' for '%s' in the kirin URI", static_cast<const char *>(text),
                    name);
        g_value_unset(&value);
        ok = false;
        break;
      }
      values.emplace_back(pspec, value);
    }
    g_hash_table_unref(params);
  }
  if (ok) {
    // A URI says everything: what it does not set returns to the default.
    for (const char *name : kUriProperties) {
      GParamSpec *pspec = g_object_class_find_property(G_OBJECT_GET_CLASS(self), name);
      GValue value = G_VALUE_INIT;
      g_value_init(&value, pspec->value_type);
      g_param_value_set_default(pspec, &value);
      g_object_set_property(G_OBJECT(self), name, &value);
      g_value_unset(&value);
    }
    {
      std::lock_guard<std::mutex> guard(self->priv->lock);
      self->priv->settings.cfg_scale_set = false;
      self->priv->settings.video_id = video_id;
    }
    for (auto &[pspec, value] : values)
      g_object_set_property(G_OBJECT(self), pspec->name, &value);
  }
  for (auto &entry : values)
    g_value_unset(&entry.second);
  return ok;
}

static void gst_kirin_extend_src_uri_handler_init(gpointer iface, gpointer) {
  auto *handler = static_cast<GstURIHandlerInterface *>(iface);
  handler->get_type = gst_kirin_extend_src_uri_get_type;
  handler->get_protocols = gst_kirin_extend_src_uri_get_protocols;
  handler->get_uri = gst_kirin_extend_src_uri_get_uri;
  handler->set_uri = gst_kirin_extend_src_uri_set_uri;
}

static void gst_kirin_extend_src_class_init(GstKirinExtendSrcClass *klass) {
  auto *gobject_class = G_OBJECT_CLASS(klass);
  auto *element_class = GST_ELEMENT_CLASS(klass);
  auto *bin_class = GST_BIN_CLASS(klass);

  gobject_class->set_property = gst_kirin_extend_src_set_property;
  gobject_class->get_property = gst_kirin_extend_src_get_property;
  gobject_class->finalize = gst_kirin_extend_src_finalize;
  element_class->change_state = GST_DEBUG_FUNCPTR(gst_kirin_extend_src_change_state);
  bin_class->handle_message = GST_DEBUG_FUNCPTR(gst_kirin_extend_src_handle_message);

  const auto rw =
      (GParamFlags)(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY);
  const auto ro = (GParamFlags)(G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  g_object_class_install_property(
      gobject_class, PROP_API_URL,
      g_param_spec_string("api-url", "API URL",
                          "The provider's create endpoint; polls go to <api-url>/task/<id>. "
                          "When not set, the environment variable VTRIX_API_URL, else the "
                          "default",
                          kDefaultApiUrl, rw));
  g_object_class_install_property(
      gobject_class, PROP_API_KEY,
      g_param_spec_string("api-key", "API key",
                          "Bearer key for the API (when not set: the environment variable "
                          "VTRIX_API_KEY). Sent only to api-url; reads back masked",
                          nullptr, rw));
  g_object_class_install_property(
      gobject_class, PROP_MODEL,
      g_param_spec_string("model", "Model", "The provider's model ID", kDefaultModel, rw));
  g_object_class_install_property(
      gobject_class, PROP_VIDEO_ID,
      g_param_spec_string("video-id", "Video ID",
                          "ID of the provider-generated video to extend (required unless "
                          "task-id is set)",
                          nullptr, rw));
  g_object_class_install_property(
      gobject_class, PROP_PROMPT,
      g_param_spec_string("prompt", "Prompt",
                          "What the continuation should show; at most 2500 characters", nullptr,
                          rw));
  g_object_class_install_property(
      gobject_class, PROP_NEGATIVE_PROMPT,
      g_param_spec_string("negative-prompt", "Negative prompt",
                          "What the continuation should avoid; at most 2500 characters", nullptr,
                          rw));
  g_object_class_install_property(
      gobject_class, PROP_CFG_SCALE,
      g_param_spec_double("cfg-scale", "CFG scale",
                          "How strongly the prompt is followed (sent only when set)", 0.0, 1.0,
                          kDefaultCfgScale, rw));
  g_object_class_install_property(
      gobject_class, PROP_CALLBACK_URL,
      g_param_spec_string("callback-url", "Callback URL",
                          "URL the provider notifies on status changes (passed through)", nullptr,
                          rw));
  g_object_class_install_property(
      gobject_class, PROP_EXTERNAL_TASK_ID,
      g_param_spec_string("external-task-id", "External task ID",
                          "Your own ID for the task, passed through. When not set, a unique "
                          "one is generated per submission and can be read back here",
                          nullptr, rw));
  g_object_class_install_property(
      gobject_class, PROP_TASK_ID,
      g_param_spec_string("task-id", "Task ID",
                          "The provider's task ID once created. Set it to attach to an "
                          "existing task instead of creating (and paying for) a new one",
                          nullptr, rw));
  g_object_class_install_property(
      gobject_class, PROP_POLL_INTERVAL,
      g_param_spec_uint("poll-interval", "Poll interval",
                        "Milliseconds before the first poll; later waits grow by half each "
                        "poll up to 4x this, with +-10% jitter, and honour Retry-After",
                        1, G_MAXUINT, kDefaultPollIntervalMs, rw));
  g_object_class_install_property(
      gobject_class, PROP_TIMEOUT,
      g_param_spec_uint("timeout", "Timeout",
                        "Seconds to wait for the task to finish (0 = no limit). On timeout "
                        "the error names the task ID to resume with",
                        0, G_MAXUINT, kDefaultTimeoutS, rw));
  g_object_class_install_property(
      gobject_class, PROP_REQUEST_TIMEOUT,
      g_param_spec_uint("request-timeout", "Request timeout",
                        "Seconds to wait for one API answer before treating it as a network "
                        "failure (polls are then retried; a create is retried only if it was "
                        "never sent)",
                        1, 3600, kDefaultRequestTimeoutS, rw));
  g_object_class_install_property(
      gobject_class, PROP_CA_FILE,
      g_param_spec_string("ca-file", "CA file",
                          "PEM file of certificate authorities to trust, besides the system's, "
                          "for api-url and the result download. Certificates are always "
                          "verified",
                          nullptr, rw));
  g_object_class_install_property(
      gobject_class, PROP_ALLOW_HTTP_RESULT,
      g_param_spec_boolean("allow-http-result", "Allow plain-HTTP result",
                           "Accept a plain http:// result URL although api-url is https. Off "
                           "by default: the download could be read or altered on the way",
                           FALSE, rw));
  g_object_class_install_property(
      gobject_class, PROP_EXTENSIONS,
      g_param_spec_uint("extensions", "Extensions",
                        "How many extension tasks to run in sequence, each on the video the "
                        "previous one made (about 5 s each); only the final video is streamed "
                        "unless stream-intermediate is set. Stops, without paying, before a "
                        "step that would pass 3 minutes",
                        1, kMaxExtensions, 1, rw));
  g_object_class_install_property(
      gobject_class, PROP_CALLBACK_LISTEN,
      g_param_spec_string("callback-listen", "Callback listen address",
                          "IP:port of an HTTP receiver for the provider's callbacks (one per "
                          "process, shared by all elements; port 0 picks one). A callback makes "
                          "the element poll at once; polls continue 4x slower. Overrides "
                          "callback-url",
                          nullptr, rw));
  g_object_class_install_property(
      gobject_class, PROP_CALLBACK_PUBLIC_URL,
      g_param_spec_string("callback-public-url", "Callback public URL",
                          "The URL at which the provider reaches callback-listen (sent as "
                          "callback_url). Needed when listening on 0.0.0.0 or behind NAT",
                          nullptr, rw));
  g_object_class_install_property(
      gobject_class, PROP_CACHE_DIR,
      g_param_spec_string(
          "cache-dir", "Cache directory",
          "Directory of a journal of the tasks created (task ID, parameters, result video ID, "
          "URL, duration, cost) and of the downloaded results. Running the same parameters "
          "and external-task-id again attaches to the recorded task, or replays the cached "
          "file, instead of paying twice. Not used with task-id",
          nullptr, rw));
  g_object_class_install_property(
      gobject_class, PROP_STREAM_INTERMEDIATE,
      g_param_spec_boolean("stream-intermediate", "Stream intermediate results",
                           "With extensions > 1, stream every step's result in turn (each its "
                           "own stream, with a stream-start, for example into multifilesink "
                           "next-file=discont), not only the final one",
                           FALSE, rw));
  g_object_class_install_property(
      gobject_class, PROP_RESULT_URL,
      g_param_spec_string("result-url", "Result URL",
                          "URL of the extended video, once the task completed", nullptr, ro));
  g_object_class_install_property(
      gobject_class, PROP_RESULT_VIDEO_ID,
      g_param_spec_string("result-video-id", "Result video ID",
                          "ID of the extended video (can be extended again), once known", nullptr,
                          ro));
  g_object_class_install_property(
      gobject_class, PROP_RESULT_DURATION,
      g_param_spec_double("result-duration", "Result duration",
                          "Duration of the extended video in seconds (-1 = unknown)", -1,
                          G_MAXDOUBLE, -1, ro));

  /**
   * GstKirinExtendSrc::source-setup:
   * @src: the kirinextendsrc
   * @source: the source element that will download the result
   *
   * Emitted before the result's source is added, so applications can set properties
   * on it (proxy, extra headers, timeouts, TLS), like playbin's signal of this name.
   */
  signals[SIGNAL_SOURCE_SETUP] =
      g_signal_new("source-setup", G_TYPE_FROM_CLASS(klass), G_SIGNAL_RUN_LAST, 0, nullptr, nullptr,
                   nullptr, G_TYPE_NONE, 1, GST_TYPE_ELEMENT);

  gst_element_class_add_static_pad_template(element_class, &src_template);
  gst_element_class_set_static_metadata(
      element_class, "Kirin video extension source", "Source/Network",
      "Extends a video with the Vtrix kirin_duration_extension API and streams the result",
      "gst-kirin developers");
}
