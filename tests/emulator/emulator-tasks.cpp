// A task's timeline (its status and progress by the clock), its JSON object, and what its
// changes cause: rendering the result and posting to the callback URL.
#include "emulator-internal.h"

#include <gst/gst.h>

#include <cmath>

namespace kirin_emu {
namespace {

constexpr int kAudioRate = 48000;
constexpr GstClockTime kRenderPollInterval = 100 * GST_MSECOND;
constexpr GstClockTime kRenderTimeout = 10 * 60 * GST_SECOND;

// The progress reported at `done` (0..1) of the processing time; < 0: none.
double shaped_progress(ProgressShape shape, double done) {
  switch (shape) {
  case ProgressShape::Linear:
    break;
  case ProgressShape::Steps: // 0, 0.25, 0.5, 0.75
    return std::floor(done * 4) / 4;
  case ProgressShape::None:
    return -1;
  case ProgressShape::Stall: // stays at 0.2 from a fifth of the time on, then completes
    return std::min(done, 0.2);
  case ProgressShape::Back: // 0.1 back during the seventh tenth of the time
    return done >= 0.6 && done < 0.7 ? done - 0.1 : std::min(0.99, done);
  }
  return std::min(0.99, done);
}

Phase timed_phase_of(const Task &task, gint64 now_us) {
  if (task.stuck && !task.forced)
    return {"pending", 0};
  if (!task.forced) {
    const gint64 elapsed_ms = (now_us - task.created_monotonic_us) / 1000;
    if (elapsed_ms < task.pending_ms)
      return {"pending", 0};
    const gint64 processing_ms = elapsed_ms - task.pending_ms;
    if (processing_ms < task.processing_ms)
      return {"processing",
              shaped_progress(task.shape, double(processing_ms) / task.processing_ms)};
  }
  if (task.error)
    return {"failed", 0};
  if (task.render == Render::Done || !task.url_override.empty())
    return {"completed", 1};
  // The time is up but the result is not rendered yet.
  return {"processing", shaped_progress(task.shape, 0.99)};
}

// Renders a gst-launch description whose last element is a filesink named "sink" into
// `path`, waiting on the bus in bounded steps so that `stop` can interrupt it.
bool render_file(const std::string &description, const std::string &path,
                 const std::atomic<bool> &stop, std::string &error) {
  GError *parse_error = nullptr;
  GstElement *parsed = gst_parse_launch(description.c_str(), &parse_error);
  g_autoptr(GError) owned_error = parse_error;
  if (!parsed) {
    error = owned_error->message;
    return false;
  }
  g_autoptr(GstElement) pipeline = GST_ELEMENT(gst_object_ref_sink(parsed));
  if (owned_error) {
    error = owned_error->message;
    return false;
  }
  g_autoptr(GstElement) sink = gst_bin_get_by_name(GST_BIN(pipeline), "sink");
  g_object_set(sink, "location", path.c_str(), nullptr);
  bool ok = false;
  if (gst_element_set_state(pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
    error = "the pipeline did not start";
  } else {
    g_autoptr(GstBus) bus = gst_element_get_bus(pipeline);
    for (GstClockTime waited = 0; !stop && waited < kRenderTimeout; waited += kRenderPollInterval) {
      g_autoptr(GstMessage) message = gst_bus_timed_pop_filtered(
          bus, kRenderPollInterval, GstMessageType(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
      if (!message)
        continue;
      if (GST_MESSAGE_TYPE(message) == GST_MESSAGE_EOS) {
        ok = true;
      } else {
        g_autoptr(GError) bus_error = nullptr;
        gst_message_parse_error(message, &bus_error, nullptr);
        error = bus_error->message;
      }
      break;
    }
    if (!ok && error.empty())
      error = stop ? "stopped" : "timed out";
  }
  gst_element_set_state(pipeline, GST_STATE_NULL);
  return ok;
}

} // namespace

TaskError task_error_for(const std::string &code) {
  if (code == "014002095")
    return {code, "Internal generation error", TaskError::Shape::CodeMessage};
  if (code == "014002096")
    return {code, "Result parsing exception", TaskError::Shape::CodeMessage};
  if (code == "014002097")
    return {code, "HTTP error response", TaskError::Shape::CodeErrorMessage};
  if (code == "014002099")
    return {code, "Sync generation exception", TaskError::Shape::CodeMessage};
  return {code, "Generation failed", TaskError::Shape::CodeMessage};
}

bool is_final(const std::string &status) {
  return status == "completed" || status == "failed";
}

Phase phase_of(const Task &task, gint64 now_us) {
  Phase phase = timed_phase_of(task, now_us);
  if (task.shape == ProgressShape::None)
    phase.progress = -1;
  return phase;
}

std::string task_json(const Task &task, const Phase &phase, const std::string &base_url) {
  g_autoptr(JsonBuilder) b = json_builder_new();
  json_builder_begin_object(b);
  set_string(b, "id", task.id);
  set_string(b, "status", phase.status);
  set_string(b, "model", kModel);
  json_builder_set_member_name(b, "created_at");
  json_builder_add_int_value(b, task.created_unix);
  if (phase.status != "failed" && phase.progress >= 0) {
    json_builder_set_member_name(b, "progress");
    json_builder_add_double_value(b, phase.progress);
  }
  json_builder_set_member_name(b, "metadata");
  json_builder_begin_object(b);
  if (!task.external_task_id.empty())
    set_string(b, "external_task_id", task.external_task_id);
  json_builder_end_object(b);
  if (phase.status == "completed") {
    json_builder_set_member_name(b, "output");
    json_builder_begin_array(b);
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "content");
    json_builder_begin_array(b);
    // The cover comes first, as the provider sends it: clients must look for the video.
    json_builder_begin_object(b);
    set_string(b, "type", "image");
    set_string(b, "url", base_url + kFilesPrefix + task.cover_name);
    json_builder_end_object(b);
    json_builder_begin_object(b);
    set_string(b, "type", "video");
    set_string(b, "url",
               task.url_override.empty() ? base_url + kFilesPrefix + task.video_name
                                         : task.url_override);
    json_builder_set_member_name(b, "duration");
    json_builder_add_double_value(b, task.result_seconds);
    set_string(b, "jobId", task.job_id);
    set_string(b, "id", task.video_id);
    json_builder_end_object(b);
    json_builder_end_array(b);
    json_builder_end_object(b);
    json_builder_end_array(b);
    json_builder_set_member_name(b, "usage");
    json_builder_begin_object(b);
    set_string(b, "cost", "0.28");
    json_builder_set_member_name(b, "discount");
    json_builder_add_int_value(b, 0);
    json_builder_end_object(b);
  }
  if (phase.status == "failed" && task.error) {
    const TaskError &error = *task.error;
    json_builder_set_member_name(b, "error");
    if (error.shape == TaskError::Shape::PlainString) {
      json_builder_add_string_value(b, error.message.c_str());
    } else {
      json_builder_begin_object(b);
      set_string(b, "code", error.code);
      set_string(b, error.shape == TaskError::Shape::CodeErrorMessage ? "error_message" : "message",
                 error.message);
      json_builder_end_object(b);
    }
  }
  json_builder_end_object(b);
  return to_json(b);
}

void Emulator::Impl::post_callback(const std::string &url, const std::string &body) {
  g_autoptr(SoupMessage) message = soup_message_new(SOUP_METHOD_POST, url.c_str());
  if (!message) {
    log("callback: not a usable URL: %s", url.c_str());
    return;
  }
  g_autoptr(GBytes) bytes = g_bytes_new(body.data(), body.size());
  soup_message_set_request_body_from_bytes(message, "application/json", bytes);
  if (certificate) // so that callback_url may be the emulator's own /callbacks over HTTPS
    g_signal_connect(message, "accept-certificate",
                     G_CALLBACK(+[](SoupMessage *, GTlsCertificate *peer, GTlsCertificateFlags,
                                    gpointer self) -> gboolean {
                       return g_tls_certificate_is_same(peer,
                                                        static_cast<Impl *>(self)->certificate);
                     }),
                     this);
  ++outstanding_io;
  soup_session_send_and_read_async(
      session, message, G_PRIORITY_DEFAULT, cancellable,
      [](GObject *source, GAsyncResult *result, gpointer self) {
        auto *impl = static_cast<Impl *>(self);
        g_autoptr(GError) error = nullptr;
        g_autoptr(GBytes) reply =
            soup_session_send_and_read_finish(SOUP_SESSION(source), result, &error);
        SoupMessage *sent = soup_session_get_async_result_message(SOUP_SESSION(source), result);
        g_autofree char *uri = g_uri_to_string(soup_message_get_uri(sent));
        if (error)
          impl->log("callback to %s failed: %s", uri, error->message);
        else
          impl->log("callback to %s -> %u", uri, soup_message_get_status(sent));
        --impl->outstanding_io;
      },
      this);
}

void Emulator::Impl::tick() {
  struct Callback {
    std::string url, body;
  };
  std::vector<Callback> callbacks;
  std::vector<std::string> renders;
  {
    std::lock_guard<std::mutex> lock(mutex);
    const gint64 now = g_get_monotonic_time();
    for (auto &[id, task] : tasks) {
      if (is_final(task.announced_status))
        continue;
      const Phase phase = phase_of(task, now);
      // Rendering happens while the task is processing, as the real service generates.
      if (task.render == Render::NotStarted && phase.status != "pending") {
        task.render = Render::Running;
        renders.push_back(id);
      }
      if (phase.status != task.announced_status) {
        task.announced_status = phase.status;
        if (!task.callback_url.empty())
          callbacks.push_back({task.callback_url, task_json(task, phase, base_url)});
      }
    }
  }
  for (const auto &id : renders)
    g_thread_pool_push(render_pool, new std::string(id), nullptr);
  for (const auto &callback : callbacks)
    post_callback(callback.url, callback.body);
}

void Emulator::Impl::render(const std::string &task_id) {
  double seconds = 0;
  std::string video_path, cover_path;
  {
    std::lock_guard<std::mutex> lock(mutex);
    const auto found = tasks.find(task_id);
    if (found == tasks.end())
      return;
    seconds = found->second.result_seconds;
    g_autofree char *video =
        g_build_filename(media_dir.c_str(), found->second.video_name.c_str(), nullptr);
    g_autofree char *cover =
        g_build_filename(media_dir.c_str(), found->second.cover_name.c_str(), nullptr);
    video_path = video;
    cover_path = cover;
  }
  // qtmux, not mp4mux: GStreamer 1.22's mp4mux does not take JPEG. Both write the same box
  // layout (ftyp, mdat, then moov at the end), which is what the client has to cope with.
  // The sound, when asked for, is a buffer of 48 kHz samples per video frame: both tracks
  // last exactly `seconds`.
  const long frames = std::lround(seconds * kFrameRate);
  g_autofree char *audio_branch =
      options.audio ? g_strdup_printf(" audiotestsrc num-buffers=%ld samplesperbuffer=%d"
                                      " ! audio/x-raw,format=S16LE,rate=%d,channels=2 ! mux.",
                                      frames, kAudioRate / kFrameRate, kAudioRate)
                    : g_strdup("");
  g_autofree char *video_pipeline = g_strdup_printf(
      "videotestsrc num-buffers=%ld pattern=smpte ! video/x-raw,width=%u,height=%u,framerate=%d/1"
      " ! jpegenc quality=%u ! qtmux name=mux ! filesink name=sink%s",
      frames, options.width, options.height, kFrameRate, options.jpeg_quality, audio_branch);
  const char *cover_pipeline = "videotestsrc num-buffers=1 pattern=smpte ! "
                               "video/x-raw,width=160,height=120 ! jpegenc ! filesink name=sink";
  std::string error;
  const bool rendered = render_file(video_pipeline, video_path, stopping, error) &&
                        render_file(cover_pipeline, cover_path, stopping, error);
  if (!rendered)
    log("render of %s failed: %s", task_id.c_str(), error.c_str());
  {
    std::lock_guard<std::mutex> lock(mutex);
    Task &task = tasks.at(task_id);
    if (rendered) {
      task.render = Render::Done;
      task.video_path = video_path;
      files[task.video_name] = video_path;
      files[task.cover_name] = cover_path;
      videos[task.video_id] = task.result_seconds; // can be extended again
    } else {
      task.render = Render::Failed;
      task.error = task_error_for("014002095");
    }
  }
  state_changed.notify_all();
}

} // namespace kirin_emu
