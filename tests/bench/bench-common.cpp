// kirin-bench's shared helpers (bench-common.h): JSON arrays, /proc readings, the client's
// log, the element and pipelines every figure measures, and the flow of bytes out of a pad.
#include "bench-common.h"

#include <unistd.h>

#include <sys/resource.h>

#include <cstring>
#include <fstream>
#include <sstream>

namespace kirin_bench {
namespace {

constexpr const char *kVideoId = "demo-5s"; // seeded in every emulator

} // namespace

std::string json_array(const std::vector<std::string> &items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); i++)
    out += (i ? ", " : "") + items[i];
  return out + "]";
}

// ---- what the process uses, from /proc and getrusage ----

std::string read_file(const std::string &path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

long status_field(const std::string &status, const char *name) {
  size_t at = status.find(name);
  return at == std::string::npos ? -1
                                 : std::strtol(status.c_str() + at + strlen(name), nullptr, 10);
}

long rss_kb() {
  return status_field(read_file("/proc/self/status"), "VmRSS:");
}

// Every thread of the process by TID.
std::map<long, ThreadInfo> threads() {
  std::map<long, ThreadInfo> out;
  GDir *dir = g_dir_open("/proc/self/task", 0, nullptr);
  if (!dir)
    return out;
  static const double ms_per_tick = 1000.0 / sysconf(_SC_CLK_TCK);
  while (const char *entry = g_dir_read_name(dir)) {
    std::string base = std::string("/proc/self/task/") + entry;
    ThreadInfo info;
    info.name = read_file(base + "/comm");
    if (!info.name.empty() && info.name.back() == '\n')
      info.name.pop_back();
    std::string status = read_file(base + "/status");
    info.switches = status_field(status, "voluntary_ctxt_switches:") +
                    status_field(status, "nonvoluntary_ctxt_switches:");
    // utime and stime are fields 14 and 15 of stat, after the parenthesised name.
    std::string stat = read_file(base + "/stat");
    size_t close = stat.rfind(')');
    if (close != std::string::npos) {
      std::istringstream fields(stat.substr(close + 2));
      std::string field;
      long utime = 0, stime = 0;
      for (int i = 3; fields >> field; i++) {
        if (i == 14)
          utime = std::strtol(field.c_str(), nullptr, 10);
        if (i == 15) {
          stime = std::strtol(field.c_str(), nullptr, 10);
          break;
        }
      }
      info.cpu_ms = (utime + stime) * ms_per_tick;
    }
    out[std::strtol(entry, nullptr, 10)] = info;
  }
  g_dir_close(dir);
  return out;
}

Usage usage() {
  struct rusage ru = {};
  getrusage(RUSAGE_SELF, &ru);
  Usage out;
  out.cpu_ms = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000.0 +
               (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000.0;
  out.switches = ru.ru_nvcsw + ru.ru_nivcsw;
  return out;
}

void ClientLog::on_log(GstDebugCategory *category, GstDebugLevel level, const gchar *,
                       const gchar *, gint, GObject *, GstDebugMessage *message, gpointer data) {
  const gint64 at = now_us();
  const char *text = gst_debug_message_get(message);
  if (level <= GST_LEVEL_WARNING) {
    g_printerr("%s: %s\n", gst_debug_category_get_name(category), text);
    return;
  }
  if (g_strcmp0(gst_debug_category_get_name(category), "kirinclient") != 0 || !text)
    return;
  auto *self = static_cast<ClientLog *>(data);
  std::lock_guard<std::mutex> guard(self->lock_);
  if (g_str_has_prefix(text, "polling task ")) {
    self->polls_[text + strlen("polling task ")].push_back(at);
  } else if (g_str_has_prefix(text, "callback for task ")) {
    std::string task = text + strlen("callback for task ");
    self->callbacks_[task.substr(0, task.find(':'))].push_back(at);
  } else if (g_str_has_prefix(text, "created task ")) {
    std::string task = text + strlen("created task ");
    self->created_[task] = at;
    if (self->first_task_.empty())
      self->first_task_ = task;
    self->changed_.notify_all();
  }
}

std::string journal_setting;

GstElement *make_extend_src(const std::string &api_url, const std::string &api_key) {
  GstElement *src = gst_element_factory_make("kirinextendsrc", nullptr);
  if (!src) {
    g_printerr("kirin-bench: no kirinextendsrc (is GST_PLUGIN_PATH set to build/gst/kirin?)\n");
    std::exit(1);
  }
  // Every element is a request of its own, a new task: the same request would be one task
  // for all (the journal's claim), or a replay of an earlier run's.
  static int made = 0;
  std::string external_id = "bench-" + std::to_string(getpid()) + "-" + std::to_string(made++);
  g_object_set(src, "api-url", api_url.c_str(), "api-key", api_key.c_str(), "video-id", kVideoId,
               "external-task-id", external_id.c_str(), nullptr);
  if (!journal_setting.empty())
    g_object_set(src, "journal", journal_setting.c_str(), nullptr);
  return src;
}

// `source ! fakesink sync=false`, the way a user would drain a source as fast as it goes.
GstElement *make_pipeline(GstElement *source, bool async_sink) {
  GstElement *pipeline = gst_pipeline_new(nullptr);
  GstElement *sink = gst_element_factory_make("fakesink", nullptr);
  g_object_set(sink, "sync", FALSE, "async", async_sink ? TRUE : FALSE, nullptr);
  gst_bin_add_many(GST_BIN(pipeline), source, sink, nullptr);
  if (!gst_element_link(source, sink)) {
    g_printerr("kirin-bench: cannot link the source to fakesink\n");
    std::exit(1);
  }
  return pipeline;
}

// Plays until EOS, an error or `max_seconds`; returns the error ("" on EOS).
std::string run_to_eos(GstElement *pipeline, double max_seconds) {
  GstBus *bus = gst_element_get_bus(pipeline);
  const gint64 deadline = now_us() + gint64(max_seconds * G_USEC_PER_SEC);
  gst_element_set_state(pipeline, GST_STATE_PLAYING);
  std::string error = "timed out";
  for (gint64 left = deadline - now_us(); left > 0; left = deadline - now_us()) {
    GstMessage *msg = gst_bus_timed_pop_filtered(
        bus, left * GST_USECOND, GstMessageType(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
    if (!msg)
      continue;
    if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR) {
      GError *gerror = nullptr;
      gst_message_parse_error(msg, &gerror, nullptr);
      error = gerror->message;
      g_error_free(gerror);
    } else {
      error.clear();
    }
    gst_message_unref(msg);
    break;
  }
  gst_element_set_state(pipeline, GST_STATE_NULL);
  gst_object_unref(bus);
  return error;
}

void Flow::take(GstBuffer *buffer) {
  if (checksum) {
    GstMapInfo map;
    if (gst_buffer_map(buffer, &map, GST_MAP_READ)) {
      g_checksum_update(checksum, map.data, map.size);
      gst_buffer_unmap(buffer, &map);
    }
  }
  bytes += gst_buffer_get_size(buffer);
  buffers++;
}

GstPadProbeReturn Flow::probe(GstPad *, GstPadProbeInfo *info, gpointer data) {
  auto *flow = static_cast<Flow *>(data);
  const gint64 at = now_us();
  if (info->type & GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM) {
    if (GST_EVENT_TYPE(GST_PAD_PROBE_INFO_EVENT(info)) == GST_EVENT_EOS) {
      flow->eos_us = at;
      if (flow->active && flow->first_us != 0)
        (*flow->active)--;
    }
    return GST_PAD_PROBE_OK;
  }
  if (info->type & GST_PAD_PROBE_TYPE_BUFFER) {
    flow->take(GST_PAD_PROBE_INFO_BUFFER(info));
  } else {
    GstBufferList *list = GST_PAD_PROBE_INFO_BUFFER_LIST(info);
    for (guint i = 0; i < gst_buffer_list_length(list); i++)
      flow->take(gst_buffer_list_get(list, i));
  }
  if (flow->first_us != 0 && flow->second_us == 0)
    flow->second_us = at;
  if (flow->first_us == 0) {
    if (flow->active) {
      int now_active = ++(*flow->active);
      int peak = *flow->peak_active;
      while (now_active > peak && !flow->peak_active->compare_exchange_weak(peak, now_active)) {
      }
    }
    std::lock_guard<std::mutex> guard(flow->lock);
    flow->first_us = at;
    flow->first_buffer.notify_all();
  }
  return GST_PAD_PROBE_OK;
}

void Flow::watch(GstElement *element) {
  GstPad *pad = gst_element_get_static_pad(element, "src");
  gst_pad_add_probe(pad,
                    GstPadProbeType(GST_PAD_PROBE_TYPE_BUFFER | GST_PAD_PROBE_TYPE_BUFFER_LIST |
                                    GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM),
                    &Flow::probe, this, nullptr);
  gst_object_unref(pad);
}

std::string plugin_file() {
  GstPlugin *plugin = gst_registry_find_plugin(gst_registry_get(), "kirin");
  std::string file =
      plugin && gst_plugin_get_filename(plugin) ? gst_plugin_get_filename(plugin) : "";
  if (plugin)
    gst_object_unref(plugin);
  return file;
}

} // namespace kirin_bench
