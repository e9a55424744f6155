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

#include "child.h"
#include "element.h"
#include "messages.h"
#include "run.h"
#include "workers.h"

using kirin::Settings;
using namespace kirin; // the constants of settings.h

GST_DEBUG_CATEGORY(kirin_extend_src_debug);
#define GST_CAT_DEFAULT kirin_extend_src_debug

guint kirin_extend_src_signals[N_SIGNALS];

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
  PROP_RESULT_URL,
  PROP_RESULT_VIDEO_ID,
  PROP_RESULT_DURATION,
};

GstStaticPadTemplate src_template =
    GST_STATIC_PAD_TEMPLATE("src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS_ANY);

} // namespace

G_DEFINE_TYPE_WITH_CODE(GstKirinExtendSrc, gst_kirin_extend_src, GST_TYPE_BIN,
                        G_IMPLEMENT_INTERFACE(GST_TYPE_URI_HANDLER,
                                              gst_kirin_extend_src_uri_handler_init));
// Primary: the only handler of kirin:// URIs, so playbin and uridecodebin pick it.
GST_ELEMENT_REGISTER_DEFINE_WITH_CODE(kirinextendsrc, "kirinextendsrc", GST_RANK_PRIMARY,
                                      GST_TYPE_KIRIN_EXTEND_SRC,
                                      GST_DEBUG_CATEGORY_INIT(kirin_extend_src_debug,
                                                              "kirinextendsrc", 0,
                                                              "Kirin video extension source");
                                      kirin::register_tags());

namespace {

// What a run needs that only the application thread may do (files, the shared callback
// receiver), before the run exists. Returns the problem, naming the property, or "".
std::string prepare_run(const Settings &settings, JobConfig &config, GObject **tls_database) {
  std::string problem = validate(settings);
  if (!problem.empty())
    return problem;
  *tls_database = load_ca_file(settings, problem);
  if (!problem.empty())
    return problem;
  guint port = 0;
  if (!settings.callback_listen.empty()) {
    std::string error;
    port = callback_listener_start(settings.callback_listen, error);
    if (!port)
      return "Property 'callback-listen' (" + settings.callback_listen +
             "): cannot receive callbacks there: " + error;
  }
  std::string callback_url = callback_url_for(settings, port, problem);
  config = job_config(settings, callback_url, port != 0);
  return problem;
}

// READY→PAUSED, the only place a run starts.
bool start_run(GstKirinExtendSrc *self) {
  GstKirinExtendSrcPrivate *priv = self->priv;
  // The client is a module loaded on first use (client.h); without it nothing can run.
  std::string load_error;
  if (!client_load(load_error)) {
    post_error(GST_ELEMENT(self), GST_CORE_ERROR, GST_CORE_ERROR_MISSING_PLUGIN,
               "The kirin plugin is incomplete: " + load_error);
    return false;
  }
  Settings settings;
  PaidTask paid;
  {
    std::lock_guard<std::mutex> guard(priv->lock);
    settings = priv->settings;
    paid = priv->paid;
  }
  JobConfig config;
  GObject *tls_database = nullptr;
  std::string problem = prepare_run(settings, config, &tls_database);
  auto run = problem.empty()
                 ? std::make_shared<Run>(GST_ELEMENT(self), settings, config, paid, tls_database)
                 : nullptr;
  settings.forget_key();
  if (tls_database)
    g_object_unref(tls_database);
  if (!run) {
    post_settings_error(GST_ELEMENT(self), problem);
    return false;
  }
  {
    std::lock_guard<std::mutex> guard(priv->lock);
    priv->run = run;
    priv->published = Published{};
  }
  run->begin();
  return true;
}

// PAUSED→READY (or a failed start), the only place a run ends. Never waits on the
// network. Returns the run, for stop_finished().
std::shared_ptr<Run> stop_run(GstKirinExtendSrc *self) {
  std::shared_ptr<Run> run;
  {
    std::lock_guard<std::mutex> guard(self->priv->lock);
    run = std::move(self->priv->run);
  }
  if (run)
    run->stop();
  return run;
}

// Once the child stopped: what the run kept on disk is complete before READY is reached
// (gst-launch exits right after). The file worker never calls out, so this cannot deadlock.
void stop_finished(const std::shared_ptr<Run> &run) {
  if (run && run->uses_journal())
    file_work_flush();
}

} // namespace

static GstStateChangeReturn gst_kirin_extend_src_change_state(GstElement *element,
                                                              GstStateChange transition) {
  auto *self = GST_KIRIN_EXTEND_SRC(element);
  std::shared_ptr<Run> stopped;
  if (transition == GST_STATE_CHANGE_READY_TO_PAUSED && !start_run(self))
    return GST_STATE_CHANGE_FAILURE;
  // Cancel before the children stop, so nothing new is added while they do.
  if (transition == GST_STATE_CHANGE_PAUSED_TO_READY)
    stopped = stop_run(self);

  GstStateChangeReturn ret =
      GST_ELEMENT_CLASS(gst_kirin_extend_src_parent_class)->change_state(element, transition);

  if (transition == GST_STATE_CHANGE_READY_TO_PAUSED && ret == GST_STATE_CHANGE_FAILURE)
    stop_finished(stop_run(self));
  if (transition == GST_STATE_CHANGE_PAUSED_TO_READY) {
    remove_source(self);
    stop_finished(stopped);
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
// the run polls the task once more for a fresh URL instead of failing; the failing child's
// own error and the EOS it sends after it are dropped. On the child's streaming thread.
static bool refresh_expired_url(GstKirinExtendSrc *self, GstMessage *message, const GError *error,
                                const std::string &task_id) {
  bool expired =
      error->domain == GST_RESOURCE_ERROR && (error->code == GST_RESOURCE_ERROR_NOT_FOUND ||
                                              error->code == GST_RESOURCE_ERROR_NOT_AUTHORIZED);
  GstElement *failed = nullptr;
  std::shared_ptr<Run> run;
  {
    std::lock_guard<std::mutex> guard(self->priv->lock);
    if (self->priv->source && GST_MESSAGE_SRC(message) == GST_OBJECT(self->priv->source))
      failed = self->priv->source;
    run = self->priv->run;
  }
  if (!expired || !failed || !run || task_id.empty() || !run->claim_refresh())
    return false;
  {
    std::lock_guard<std::mutex> guard(self->priv->lock);
    self->priv->failed_source = failed;
  }
  GST_WARNING_OBJECT(self, "the result URL of task %s was refused (%s); polling for a fresh one",
                     task_id.c_str(), error->message);
  GstPad *pad = gst_element_get_static_pad(failed, "src");
  gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM, drop_eos, nullptr, nullptr);
  gst_object_unref(pad);
  run->refresh(task_id);
  return true;
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
  bool from_replaced_source;
  std::shared_ptr<Run> run;
  {
    std::lock_guard<std::mutex> guard(self->priv->lock);
    task_id = self->priv->published.task_id;
    from_replaced_source = self->priv->failed_source &&
                           GST_MESSAGE_SRC(message) == GST_OBJECT(self->priv->failed_source);
    run = self->priv->run;
  }
  bool refreshed = run && run->url_refreshed();
  if (!from_replaced_source && !refresh_expired_url(self, message, error, task_id)) {
    const GstStructure *child_details = nullptr;
    gst_message_parse_error_details(message, &child_details);
    guint http_status = 0;
    if (child_details)
      gst_structure_get_uint(child_details, "http-status-code", &http_status);
    post_error(GST_ELEMENT(self), error->domain, error->code,
               "Could not download the result of task " + task_id +
                   (refreshed ? " (even from a freshly polled URL)" : "") + ": " +
                   sentence(error->message) + " Resume with task-id=" + task_id + ".",
               {debug ? debug : "", http_status, {}, task_id});
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

static void gst_kirin_extend_src_finalize(GObject *object) {
  auto *self = GST_KIRIN_EXTEND_SRC(object);
  if (self->priv->run) // dropped without going back to READY
    self->priv->run->stop();
  self->priv->settings.forget_key();
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
  kirin_extend_src_signals[SIGNAL_SOURCE_SETUP] =
      g_signal_new("source-setup", G_TYPE_FROM_CLASS(klass), G_SIGNAL_RUN_LAST, 0, nullptr, nullptr,
                   nullptr, G_TYPE_NONE, 1, GST_TYPE_ELEMENT);

  gst_element_class_add_static_pad_template(element_class, &src_template);
  gst_element_class_set_static_metadata(
      element_class, "Kirin video extension source", "Source/Network",
      "Extends a video with the Vtrix kirin_duration_extension API and streams the result",
      "gst-kirin developers");
}
