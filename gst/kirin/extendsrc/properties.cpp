// The properties of kirinextendsrc: their specs (what gst-inspect-1.0 shows), and their
// reads and writes, under the element's lock.
#include "properties.h"

#include "element.h"

using kirin::Settings;
using namespace kirin; // the constants of settings.h

namespace {

constexpr const char *kMaskedKey = "********";

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
  PROP_JOURNAL,
  PROP_FRESH,
  PROP_JOURNAL_OUTAGE_WAIT,
  PROP_CACHE_MAX_SIZE,
  PROP_RESULT_URL,
  PROP_RESULT_VIDEO_ID,
  PROP_RESULT_DURATION,
};

void set_string(std::string &field, const GValue *value) {
  const char *text = g_value_get_string(value);
  field = text ? text : "";
}

void set_property(GObject *object, guint prop_id, const GValue *value, GParamSpec *pspec) {
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
    s.forget_key();
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
  case PROP_JOURNAL:
    std::fill(s.journal.begin(), s.journal.end(), '\0'); // may hold a password
    set_string(s.journal, value);
    break;
  case PROP_FRESH:
    s.fresh = g_value_get_boolean(value);
    break;
  case PROP_JOURNAL_OUTAGE_WAIT:
    s.journal_outage_wait_s = g_value_get_int(value);
    break;
  case PROP_CACHE_MAX_SIZE:
    s.cache_max_size = g_value_get_uint64(value);
    break;
  default:
    G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
    break;
  }
}

void set_optional_string(GValue *value, const std::string &text) {
  g_value_set_string(value, text.empty() ? nullptr : text.c_str());
}

void get_property(GObject *object, guint prop_id, GValue *value, GParamSpec *pspec) {
  auto *self = GST_KIRIN_EXTEND_SRC(object);
  GstKirinExtendSrcPrivate *priv = self->priv;
  std::lock_guard<std::mutex> guard(priv->lock);
  const Settings &s = priv->settings;
  const kirin::Published &found = priv->published;
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
                        s.external_task_id.empty() ? found.external_task_id : s.external_task_id);
    break;
  case PROP_TASK_ID:
    set_optional_string(value, s.task_id.empty() ? found.task_id : s.task_id);
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
  case PROP_JOURNAL:
    // A server's URI may hold a password: read back without it, as api-key is.
    set_optional_string(value, journal_display_name(s.journal));
    break;
  case PROP_FRESH:
    g_value_set_boolean(value, s.fresh);
    break;
  case PROP_JOURNAL_OUTAGE_WAIT:
    g_value_set_int(value, s.journal_outage_wait_s);
    break;
  case PROP_CACHE_MAX_SIZE:
    g_value_set_uint64(value, s.cache_max_size);
    break;
  case PROP_RESULT_URL:
    set_optional_string(value, found.result_url);
    break;
  case PROP_RESULT_VIDEO_ID:
    set_optional_string(value, found.result_video_id);
    break;
  case PROP_RESULT_DURATION:
    g_value_set_double(value, found.result_duration);
    break;
  default:
    G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
    break;
  }
}

} // namespace

namespace kirin {

void install_properties(GObjectClass *gobject_class) {
  gobject_class->set_property = set_property;
  gobject_class->get_property = get_property;
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
                        "poll up to 4x this, with +-10% jitter, and honour Retry-After. While "
                        "the task's progress rises at a steady pace, the poll comes instead "
                        "just after the completion it predicts when that is before the poll "
                        "after next, but never sooner than a quarter of this after the last "
                        "answer",
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
          "Directory where downloaded results are kept (opt-in): the same request again "
          "replays the kept file without any request. The journal records which task made "
          "which file; see cache-max-size",
          nullptr, rw));
  g_object_class_install_property(
      gobject_class, PROP_JOURNAL,
      g_param_spec_string(
          "journal", "Journal",
          "Records every task this user paid for (ID, external ID, parameters, status, "
          "result, cost): a SQLite file, or a postgresql:// URI (libpq's; its keyword=value "
          "form is refused) for a database a "
          "fleet of machines shares. The same request again (from any element, URI, process "
          "or machine sharing it) attaches to its task or replays its result instead of "
          "paying twice; several asking at once pay once. Unset: "
          "$XDG_CACHE_HOME/gst-kirin/journal.db. 'none': no journal (every run pays, unless "
          "task-id is set). Read back without its password",
          nullptr, rw));
  g_object_class_install_property(
      gobject_class, PROP_JOURNAL_OUTAGE_WAIT,
      g_param_spec_int(
          "journal-outage-wait", "Journal outage wait",
          "Seconds a run that must pay for a task waits for a postgresql:// journal that does "
          "not answer before it creates the task on this process's journal alone (which the "
          "fleet learns of once the server answers again; meanwhile another machine may pay "
          "for the same request). 0: create at once; -1: never create without the server "
          "(the run fails with an error instead). Replays and attaches this process knows of "
          "never wait",
          kJournalNeverAlone, 3600, kDefaultJournalOutageWaitS, rw));
  g_object_class_install_property(
      gobject_class, PROP_FRESH,
      g_param_spec_boolean("fresh", "Fresh take",
                           "Pay for a new task even when the journal holds one for the same "
                           "request (a new take; the old ones stay recorded)",
                           FALSE, rw));
  g_object_class_install_property(
      gobject_class, PROP_CACHE_MAX_SIZE,
      g_param_spec_uint64("cache-max-size", "Cache size limit",
                          "Bytes of kept results in cache-dir; keeping a new one evicts the "
                          "least recently used copies beyond it (their journal rows stay, and "
                          "they replay from their URL). 0: no limit",
                          0, G_MAXUINT64, 0, rw));
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
}

} // namespace kirin
