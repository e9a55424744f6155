/**
 * SECTION:element-kirinextendsrc
 * @title: kirinextendsrc
 *
 * Extends a video with the Vtrix `kirin_duration_extension` model and streams the longer
 * video into the pipeline. On the way to PAUSED the element submits an extension task
 * (or attaches to an existing one with #GstKirinExtendSrc:task-id), waits for it on a
 * shared client thread, then downloads the result with the http source the registry makes
 * from its URL (souphttpsrc on a stock install), which supports byte seeking. The
 * #GstKirinExtendSrc::source-setup signal hands that source to the application.
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
#include "journal.h"
#include "messages.h"
#include "properties.h"
#include "run.h"
#include "workers.h"

using kirin::Settings;
using namespace kirin; // the constants of settings.h

#define GST_CAT_DEFAULT kirin_extend_src_debug // defined with the run (run.h)

guint kirin_extend_src_signals[N_SIGNALS];

namespace kirin {

void ElementRunHost::publish(const Run &run, const std::function<void(Published &)> &change) {
  std::lock_guard<std::mutex> guard(priv_->lock);
  if (priv_->run.get() == &run)
    change(priv_->published);
}

void ElementRunHost::remember_paid(const Run &run, const PaidTask &paid) {
  std::lock_guard<std::mutex> guard(priv_->lock);
  if (priv_->run.get() == &run)
    priv_->paid = paid;
}

Outbox &ElementRunHost::outbox() {
  return priv_->outbox;
}

} // namespace kirin

namespace {

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
  auto run = problem.empty() ? std::make_shared<Run>(GST_ELEMENT(self), priv->run_host, settings,
                                                     config, paid, tls_database, expose_next)
                             : nullptr;
  settings.forget_secrets();
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

// Once the child stopped: what the run kept on disk and wrote to its journal is complete
// before READY is reached (gst-launch exits right after). The workers never call out, so
// this cannot deadlock; a server's journal is waited for 2 s at most.
void stop_finished(const std::shared_ptr<Run> &run) {
  if (!run || !run->uses_journal())
    return;
  file_work_flush(); // the kept copy (which hands its record to a server's worker)
  journal_flush(run->journal());
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

// Downstream expects a stream to begin before it ends.
static void push_eos(GstElement *element, gpointer event) {
  GstPad *pad = GST_KIRIN_EXTEND_SRC(element)->srcpad;
  if (GstEvent *started = gst_pad_get_sticky_event(pad, GST_EVENT_STREAM_START, 0)) {
    gst_event_unref(started);
  } else {
    g_autofree char *stream_id = gst_pad_create_stream_id(pad, element, nullptr);
    gst_pad_push_event(pad, gst_event_new_stream_start(stream_id));
  }
  gst_pad_push_event(pad, gst_event_ref(GST_EVENT(event)));
}

// The EOS for the child streaming the result, or, when there is none any more, pushed here.
static void send_eos_to_child(GstElement *element, gpointer event) {
  auto *self = GST_KIRIN_EXTEND_SRC(element);
  GstElement *child;
  {
    std::lock_guard<std::mutex> guard(self->priv->lock);
    child = self->priv->source ? GST_ELEMENT(gst_object_ref(self->priv->source)) : nullptr;
  }
  if (!child) {
    push_eos(element, event);
    return;
  }
  gst_element_send_event(child, gst_event_ref(GST_EVENT(event)));
  gst_object_unref(child);
}

// An EOS sent to the element (gst-launch-1.0 -e on Ctrl-C, an application finishing a
// recording) while no result streams yet: nothing can come before the task ends, so the
// run stops, which says on the bus which task goes on and how to get its result, while the
// application still reads the bus, and the EOS goes downstream so the pipeline can finish
// instead of waiting for ever. With a child streaming, the EOS is handed to it.
//
// Either way from GStreamer's call-async thread, never from this call: the application
// holds the pipeline's state lock here, and while the sink prerolls (the pipeline not yet
// PLAYING) the child's streaming thread waits for PLAYING, which needs that lock, holding
// its stream lock, which a source takes for an EOS sent to it: sent from here, the EOS would
// wait for ever.
static gboolean gst_kirin_extend_src_send_event(GstElement *element, GstEvent *event) {
  auto *self = GST_KIRIN_EXTEND_SRC(element);
  if (GST_EVENT_TYPE(event) != GST_EVENT_EOS)
    return GST_ELEMENT_CLASS(gst_kirin_extend_src_parent_class)->send_event(element, event);
  std::shared_ptr<Run> run;
  // Under the state lock (recursive; gst_element_send_event holds it already), as
  // expose_next is: no child is exposed between the check and the stop.
  GST_STATE_LOCK(element);
  bool streaming;
  {
    std::lock_guard<std::mutex> guard(self->priv->lock);
    streaming = self->priv->source != nullptr;
    if (!streaming)
      run = self->priv->run;
  }
  if (run)
    run->stop();
  GST_STATE_UNLOCK(element);
  // Without a child, pushed from there too: a paused sink holds an EOS until PLAYING.
  gst_element_call_async(element, streaming ? send_eos_to_child : push_eos, event,
                         (GDestroyNotify)gst_event_unref);
  return TRUE;
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
// own error and the EOS it sends after it are dropped. On the thread that posted the error
// (souphttpsrc's session thread for an HTTP status). `http_status` is the error's.
static bool refresh_expired_url(GstKirinExtendSrc *self, GstMessage *message, const GError *error,
                                guint http_status, const std::string &task_id) {
  // 407 is the proxy's refusal, never the result host's: a fresh URL would not help.
  bool expired = error->domain == GST_RESOURCE_ERROR && http_status != 407 &&
                 (error->code == GST_RESOURCE_ERROR_NOT_FOUND ||
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
  const GstStructure *child_details = nullptr;
  gst_message_parse_error_details(message, &child_details);
  guint http_status = 0;
  gint flow = GST_FLOW_OK;
  if (child_details) {
    gst_structure_get_uint(child_details, "http-status-code", &http_status);
    gst_structure_get_int(child_details, "flow-return", &flow);
  }
  if (!from_replaced_source && !refresh_expired_url(self, message, error, http_status, task_id)) {
    // A flow error ("Internal data stream error") says that the stream stopped: not linked
    // or not negotiated is downstream's doing; a plain error is either downstream's (which
    // posts its own error) or the source's own, given without a reason (souphttpsrc 1.22
    // ends that way when the TLS handshake or the proxy fails).
    std::string what;
    if (flow == GST_FLOW_ERROR)
      what = "Could not stream the result of task " + task_id +
             ": the download stopped with an error. An element downstream may have said why; "
             "if none did, check the result host's TLS trust (tls-database) and the proxy. ";
    else if (flow != GST_FLOW_OK)
      what = "Streaming the result of task " + task_id + " stopped, downstream answered " +
             gst_flow_get_name(GstFlowReturn(flow)) + ": ";
    else
      what = "Could not download the result of task " + task_id +
             (refreshed ? " (even from a freshly polled URL)" : "") + ": ";
    post_error(GST_ELEMENT(self), error->domain, error->code,
               what + sentence(error->message) + " Resume with task-id=" + task_id + ".",
               {debug ? debug : "", http_status, {}, task_id, ""});
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

static void gst_kirin_extend_src_finalize(GObject *object) {
  auto *self = GST_KIRIN_EXTEND_SRC(object);
  if (self->priv->run) // dropped without going back to READY
    self->priv->run->stop();
  self->priv->settings.forget_secrets();
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

  gobject_class->finalize = gst_kirin_extend_src_finalize;
  element_class->change_state = GST_DEBUG_FUNCPTR(gst_kirin_extend_src_change_state);
  element_class->send_event = GST_DEBUG_FUNCPTR(gst_kirin_extend_src_send_event);
  bin_class->handle_message = GST_DEBUG_FUNCPTR(gst_kirin_extend_src_handle_message);

  kirin::install_properties(gobject_class);

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
