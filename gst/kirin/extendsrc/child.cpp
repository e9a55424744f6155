#include "child.h"

#include "cache.h"

#include "element.h"
#include "messages.h"
#include "run.h"
#include "workers.h"

#define GST_CAT_DEFAULT kirin_extend_src_debug

namespace kirin {

namespace {

// The copy of a download kept for cache-dir. Its file is touched only on the file worker,
// in the order the buffers came: the streaming thread only hands over references to them.
class KeptCopy : public std::enable_shared_from_this<KeptCopy> {
public:
  KeptCopy(const Exposure &exposure, std::weak_ptr<Run> run)
      : dir_(exposure.cache_dir), name_(exposure.media_name), task_id_(exposure.task_id),
        max_bytes_(exposure.cache_max_size), journal_(exposure.journal), ledger_(exposure.ledger),
        row_id_(exposure.row_id), run_(std::move(run)) {}

  void write(guint64 offset, GstBuffer *buffer) {
    file_work([self = shared_from_this(), offset, buffer] {
      if (!self->writer_) {
        remove_dead_parts(self->dir_);
        self->writer_ = std::make_unique<MediaWriter>(self->dir_, self->name_);
        if (!self->writer_->ok())
          GST_WARNING("cannot write to %s: the result is not kept", self->dir_.c_str());
      }
      GstMapInfo map;
      if (self->writer_->ok() && gst_buffer_map(buffer, &map, GST_MAP_READ)) {
        self->writer_->write(offset, map.data, map.size);
        gst_buffer_unmap(buffer, &map);
      }
      gst_buffer_unref(buffer);
    });
  }

  // At EOS: the copy is kept, and recorded in the journal, when every byte arrived.
  void commit(guint64 total_size) {
    file_work([self = shared_from_this(), total_size] {
      std::string error;
      std::string path = self->writer_ ? self->writer_->commit(total_size, error) : "";
      self->writer_.reset();
      if (path.empty()) {
        GST_INFO("result of task %s not kept: %s", self->task_id_.c_str(), error.c_str());
        return;
      }
      // Recorded on the journal's worker: on the file worker, now; a server's worker may
      // wait on the network, and the stop waits for the file worker alone.
      auto record = [self, path, total_size] {
        Run::journal_warning(
            self->run_, self->journal_,
            journal_kept(*self->ledger_, self->row_id_, path, total_size, self->max_bytes_));
      };
      if (journal_on_server(self->journal_))
        journal_work(self->journal_, record);
      else
        record();
    });
  }

private:
  const std::string dir_, name_, task_id_;
  const guint64 max_bytes_;
  const std::string journal_;
  const std::shared_ptr<Ledger> ledger_;
  const gint64 row_id_;
  const std::weak_ptr<Run> run_;
  std::unique_ptr<MediaWriter> writer_; // made at the first write
};

// Watches what one child source pushes. It holds the element and the run weakly: an
// application may keep the child (from source-setup) after both are gone.
struct ChildWatch {
  GWeakRef element;
  std::weak_ptr<Run> run;
  GstTagList *tags;
  bool first_buffer = true;
  bool final = true;
  guint64 position = 0;           // byte offset of the next buffer without one of its own
  std::shared_ptr<KeptCopy> copy; // with cache-dir

  ChildWatch(GstElement *owner, std::weak_ptr<Run> owner_run, GstTagList *stream_tags)
      : run(std::move(owner_run)), tags(stream_tags) {
    g_weak_ref_init(&element, owner);
  }
  ~ChildWatch() {
    g_weak_ref_clear(&element);
    gst_tag_list_unref(tags);
  }

  void keep(GstBuffer *buffer) {
    guint64 offset = GST_BUFFER_OFFSET_IS_VALID(buffer) ? GST_BUFFER_OFFSET(buffer) : position;
    copy->write(offset, gst_buffer_ref(buffer));
    position = offset + gst_buffer_get_size(buffer);
  }

  GstPadProbeReturn on_data(GstPad *pad, GstPadProbeInfo *info);
  GstPadProbeReturn on_event(GstPad *pad, GstEvent *event);

  static GstPadProbeReturn probe(GstPad *pad, GstPadProbeInfo *info, gpointer data) {
    auto *watch = static_cast<ChildWatch *>(data);
    if (info->type & (GST_PAD_PROBE_TYPE_BUFFER | GST_PAD_PROBE_TYPE_BUFFER_LIST))
      return watch->on_data(pad, info);
    return watch->on_event(pad, GST_PAD_PROBE_INFO_EVENT(info));
  }
};

GstPadProbeReturn ChildWatch::on_data(GstPad *pad, GstPadProbeInfo *info) {
  if (first_buffer) {
    // After stream-start, caps and segment, which are sent first.
    first_buffer = false;
    if (std::shared_ptr<Run> owner = run.lock())
      owner->data_flowed();
    gst_pad_push_event(pad, gst_event_new_tag(gst_tag_list_ref(tags)));
  }
  if (copy) {
    if (info->type & GST_PAD_PROBE_TYPE_BUFFER) {
      keep(GST_PAD_PROBE_INFO_BUFFER(info));
    } else {
      GstBufferList *list = GST_PAD_PROBE_INFO_BUFFER_LIST(info);
      for (guint i = 0; i < gst_buffer_list_length(list); i++)
        keep(gst_buffer_list_get(list, i));
    }
  }
  // With nothing to keep and no next result to hand over to, the data path is left
  // exactly as the source made it.
  return copy || !final ? GST_PAD_PROBE_OK : GST_PAD_PROBE_REMOVE;
}

GstPadProbeReturn ChildWatch::on_event(GstPad *pad, GstEvent *event) {
  if (GST_EVENT_TYPE(event) == GST_EVENT_SEGMENT) {
    const GstSegment *segment;
    gst_event_parse_segment(event, &segment);
    if (segment->format == GST_FORMAT_BYTES)
      position = segment->start;
    return GST_PAD_PROBE_OK;
  }
  if (GST_EVENT_TYPE(event) != GST_EVENT_EOS)
    return GST_PAD_PROBE_OK;
  std::shared_ptr<Run> owner = run.lock();
  if (copy) {
    // Committed on the file worker, so EOS passes at once.
    gint64 total = -1;
    gst_pad_query_duration(pad, GST_FORMAT_BYTES, &total);
    copy->commit(total > 0 ? (guint64)total : 0);
    copy.reset();
  }
  if (final)
    return GST_PAD_PROBE_OK;
  // The next result follows in the same stream, with its own stream-start.
  if (owner)
    owner->intermediate_finished();
  if (auto *owner_element = static_cast<GstElement *>(g_weak_ref_get(&element))) {
    gst_element_call_async(owner_element, expose_next, nullptr, nullptr);
    gst_object_unref(owner_element);
  }
  return GST_PAD_PROBE_DROP;
}

// The stream's ID: the same for every run of the same request, whatever URL its result
// came from (a new task, a refreshed URL, the kept copy). A source names its stream after
// its URI, which changes with each of those; applications that find a stream again by its ID
// in a later run (GStreamer Editing Services matches the clip's discovered streams when it
// renders) would otherwise find nothing.
std::string stream_id_of(const Settings &s, guint step) {
  std::string request = s.task_id.empty() ? ledger_key(journal_request(s, 1, ""))
                                          : "task " + s.api_url + " " + s.task_id;
  std::string text = "kirin " + request + " step " + std::to_string(step);
  g_autofree char *digest = g_compute_checksum_for_string(G_CHECKSUM_SHA256, text.c_str(), -1);
  return digest;
}

// Renames each stream-start the child sends (also when it sends it again after a flush).
GstPadProbeReturn name_stream(GstPad *, GstPadProbeInfo *info, gpointer data) {
  GstEvent *event = GST_PAD_PROBE_INFO_EVENT(info);
  if (GST_EVENT_TYPE(event) != GST_EVENT_STREAM_START)
    return GST_PAD_PROBE_OK;
  const auto *stream_id = static_cast<const std::string *>(data);
  const gchar *current = nullptr;
  gst_event_parse_stream_start(event, &current);
  if (*stream_id == (current ? current : ""))
    return GST_PAD_PROBE_OK;
  GstEvent *named = gst_event_new_stream_start(stream_id->c_str());
  guint group_id;
  if (gst_event_parse_group_id(event, &group_id))
    gst_event_set_group_id(named, group_id);
  GstStreamFlags flags = GST_STREAM_FLAG_NONE;
  gst_event_parse_stream_flags(event, &flags);
  gst_event_set_stream_flags(named, flags);
  gst_event_set_seqnum(named, gst_event_get_seqnum(event));
  gst_event_unref(event);
  GST_PAD_PROBE_INFO_DATA(info) = named;
  return GST_PAD_PROBE_OK;
}

// Whether source-setup set `ssl-ca-file` on a source that then dropped it: souphttpsrc 1.22
// keeps that property only on libsoup 2 (it is deprecated for `tls-database`), so a handler
// written for an older stack would trust nothing more, silently.
struct CaFileWatch {
  bool set = false;
  static void on_notify(GObject *, GParamSpec *, gpointer data) {
    static_cast<CaFileWatch *>(data)->set = true;
  }
};

bool ssl_ca_file_dropped(GstElement *source, const CaFileWatch &watch) {
  if (!watch.set)
    return false;
  g_autofree char *ca_file = nullptr;
  g_object_get(source, "ssl-ca-file", &ca_file, nullptr);
  return !ca_file || !*ca_file;
}

// The source of one result, made from its URL through the registry as urisourcebin does
// (souphttpsrc on a stock install, or the http source the user's ranks prefer; filesrc for a
// kept copy), configured and announced with source-setup. Null, with `error` set, when no
// element handles the URL.
GstElement *make_source(GstKirinExtendSrc *self, const Run &run, const Exposure &exposure,
                        GError **error) {
  GstElement *source =
      gst_element_make_from_uri(GST_URI_SRC, exposure.url.c_str(), "source", error);
  if (!source)
    return nullptr;
  // The API key is never handed to the result host: the child gets only the URL.
  GObjectClass *klass = G_OBJECT_GET_CLASS(source);
  if (g_object_class_find_property(klass, "user-agent"))
    g_object_set(source, "user-agent", "gst-kirin/" VERSION, nullptr);
  if (!exposure.from_cache && run.tls_database() &&
      result_shares_api_host(run.settings(), exposure.url) &&
      g_object_class_find_property(klass, "tls-database"))
    g_object_set(source, "tls-database", run.tls_database(), nullptr);
  // Held across the emission: a handler (PyGObject's among them) may sink and drop the
  // floating reference it was given.
  gst_object_ref_sink(source);
  CaFileWatch ca_file;
  gulong watching = 0;
  if (g_object_class_find_property(klass, "ssl-ca-file"))
    watching = g_signal_connect(source, "notify::ssl-ca-file", G_CALLBACK(CaFileWatch::on_notify),
                                &ca_file);
  g_signal_emit(self, kirin_extend_src_signals[SIGNAL_SOURCE_SETUP], 0, source);
  if (watching)
    g_signal_handler_disconnect(source, watching);
  if (ssl_ca_file_dropped(source, ca_file))
    GST_ELEMENT_WARNING(self, RESOURCE, SETTINGS,
                        ("source-setup set ssl-ca-file on %s, which ignores it with libsoup 3 "
                         "(the property is deprecated there): set tls-database instead, to "
                         "g_tls_file_database_new(PATH) in C or Gio.TlsFileDatabase.new(PATH) "
                         "in Python.",
                         GST_OBJECT_NAME(gst_element_get_factory(source))),
                        (nullptr));
  return source;
}

ChildWatch *watch_for(GstKirinExtendSrc *self, const std::shared_ptr<Run> &run,
                      const Exposure &exposure) {
  const Settings &s = run->settings();
  auto *watch = new ChildWatch(
      GST_ELEMENT(self), run,
      result_tags(exposure.duration, exposure.task_id, exposure.video_id, s.prompt, s.model));
  watch->final = exposure.final;
  if (!exposure.cache_dir.empty())
    watch->copy = std::make_shared<KeptCopy>(exposure, run);
  return watch;
}

void attach_source(GstKirinExtendSrc *self, const std::shared_ptr<Run> &run,
                   const Exposure &exposure, GstElement *source) {
  // The previous result's source (finished, or with an expired URL) makes room.
  remove_source(self);
  gst_bin_add(GST_BIN(self), source);
  GstPad *pad = gst_element_get_static_pad(source, "src");
  gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM, name_stream,
                    new std::string(stream_id_of(run->settings(), exposure.step)),
                    [](gpointer data) { delete static_cast<std::string *>(data); });
  gst_pad_add_probe(pad,
                    (GstPadProbeType)(GST_PAD_PROBE_TYPE_BUFFER | GST_PAD_PROBE_TYPE_BUFFER_LIST |
                                      GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM),
                    ChildWatch::probe, watch_for(self, run, exposure),
                    [](gpointer data) { delete static_cast<ChildWatch *>(data); });
  gst_ghost_pad_set_target(GST_GHOST_PAD(self->srcpad), pad);
  gst_object_unref(pad);
  {
    std::lock_guard<std::mutex> guard(self->priv->lock);
    self->priv->source = source;
  }
  GST_INFO_OBJECT(self, "streaming the result of task %s (step %u) from %s",
                  exposure.task_id.c_str(), exposure.step,
                  exposure.from_cache ? "the cache" : exposure.url.c_str());
  gst_element_sync_state_with_parent(source);
}

// No element reads the URL: souphttpsrc is in gst-plugins-good, filesrc in the core.
void post_source_failure(GstElement *element, const Exposure &exposure, const GError *error) {
  std::string missing = exposure.from_cache
                            ? "is GStreamer's coreelements plugin (filesrc) installed?"
                            : "install an HTTP source, such as souphttpsrc (gst-plugins-good).";
  post_error(element, GST_CORE_ERROR, GST_CORE_ERROR_MISSING_PLUGIN,
             "No element can read the result of task " + exposure.task_id + " (" + exposure.url +
                 "): " + missing,
             {error ? error->message : "", 0, {}, exposure.task_id, ""});
}

} // namespace

void expose_next(GstElement *element, gpointer) {
  auto *self = GST_KIRIN_EXTEND_SRC(element);
  GST_STATE_LOCK(element);
  std::shared_ptr<Run> run;
  bool replacing;
  {
    std::lock_guard<std::mutex> guard(self->priv->lock);
    run = self->priv->run;
    replacing = self->priv->source && self->priv->failed_source == self->priv->source;
  }
  Exposure exposure;
  GError *error = nullptr;
  bool failed = false;
  if (run && run->take_exposure(replacing, exposure)) {
    GstElement *source = make_source(self, *run, exposure, &error);
    failed = !source;
    if (source) {
      attach_source(self, run, exposure, source);
      gst_object_unref(source);
    }
  }
  GST_STATE_UNLOCK(element);
  if (failed)
    post_source_failure(element, exposure, error);
  g_clear_error(&error);
}

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

} // namespace kirin
