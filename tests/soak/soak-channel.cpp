#include "soak-channel.h"

#include <gst/gst.h>
#include <libsoup/soup.h>

#include <condition_variable>
#include <cstdio>
#include <memory>

namespace soak {

namespace {

constexpr int kSingles = 8, kChains = 4;
constexpr gint64 kRunBoundUs = 60 * G_USEC_PER_SEC; // a run that takes longer is stuck
constexpr gint64 kBlockUs = 5 * G_USEC_PER_SEC;     // the blocked channel's handler

enum class End { Play, StopNull, StopReady, Seek, SendEos };

// The IDs a channel's application saw, one a line; shared by its runs, whose elements may
// still post while the next run plays.
struct SeenFile {
  std::mutex lock;
  FILE *file;
  explicit SeenFile(const std::string &path) : file(std::fopen(path.c_str(), "a")) {}
  ~SeenFile() { std::fclose(file); }
};

// One run of a channel: its pipeline and what its threads saw.
struct RunState {
  int channel = 0;
  std::shared_ptr<SeenFile> seen;
  std::mutex lock;
  std::condition_variable changed;
  gint64 completed_us = 0, first_buffer_us = 0;
  gint64 source_made_us = 0; // source-setup: the element handed the result to its download
  bool blocked_once = false;
  // The download source whose request awaits its answer: made, and neither its answer's
  // headers ("http-headers") nor an error of its own posted yet. Compared, never used.
  const void *awaiting_answer = nullptr;
  bool was_held = false; // the stop or EOS drawn was held for the answer

  // Task and external IDs in `text`, for the check that every paid task reached the
  // application.
  void note_ids(const char *text) {
    if (!text)
      return;
    std::lock_guard<std::mutex> guard(seen->lock);
    for (const char *p = text; *p; p++) {
      if (!g_str_has_prefix(p, "task-") && !g_str_has_prefix(p, "gst-kirin-"))
        continue;
      const char *end = p;
      while (g_ascii_isalnum(*end) || *end == '-')
        end++;
      std::fprintf(seen->file, "%.*s\n", int(end - p), p);
      p = end - 1;
    }
    std::fflush(seen->file);
  }
};

void note_message(RunState &run, GstMessage *message) {
  GError *error = nullptr;
  gchar *debug = nullptr;
  const GstStructure *details = nullptr;
  switch (GST_MESSAGE_TYPE(message)) {
  case GST_MESSAGE_ERROR:
  case GST_MESSAGE_WARNING:
  case GST_MESSAGE_INFO:
    if (GST_MESSAGE_TYPE(message) == GST_MESSAGE_ERROR) {
      gst_message_parse_error(message, &error, &debug);
      gst_message_parse_error_details(message, &details);
    } else if (GST_MESSAGE_TYPE(message) == GST_MESSAGE_WARNING) {
      gst_message_parse_warning(message, &error, &debug);
    } else {
      gst_message_parse_info(message, &error, &debug);
    }
    run.note_ids(error->message);
    run.note_ids(debug);
    if (details) {
      g_autofree char *text = gst_structure_to_string(details);
      run.note_ids(text);
    }
    g_clear_error(&error);
    g_free(debug);
    return;
  case GST_MESSAGE_PROGRESS: {
    g_autofree char *text = nullptr;
    gst_message_parse_progress(message, nullptr, nullptr, &text);
    run.note_ids(text);
    return;
  }
  case GST_MESSAGE_ELEMENT:
    if (const GstStructure *s = gst_message_get_structure(message)) {
      g_autofree char *text = gst_structure_to_string(s);
      run.note_ids(text);
    }
    return;
  default:
    return;
  }
}

// Each handler holds the run's state (a shared_ptr of its own): a message or buffer may
// still come from an element's thread while the channel moves on to its next run.
using RunRef = std::shared_ptr<RunState>;

void drop_run_ref(gpointer data) {
  delete static_cast<RunRef *>(data);
}

// The awaited download's answer came (its headers, or its error): a stop may cancel it now.
void note_answer(RunState &run, GstMessage *message, const GstStructure *s) {
  bool answer = GST_MESSAGE_TYPE(message) == GST_MESSAGE_ERROR ||
                (GST_MESSAGE_TYPE(message) == GST_MESSAGE_ELEMENT && s &&
                 gst_structure_has_name(s, "http-headers"));
  if (!answer)
    return;
  std::lock_guard<std::mutex> guard(run.lock);
  if (run.awaiting_answer == GST_MESSAGE_SRC(message))
    run.awaiting_answer = nullptr;
}

GstBusSyncReply on_message(GstBus *, GstMessage *message, gpointer data) {
  auto &run = **static_cast<RunRef *>(data);
  note_message(run, message);
  const GstStructure *s = gst_message_get_structure(message);
  note_answer(run, message, s);
  if (GST_MESSAGE_TYPE(message) != GST_MESSAGE_ELEMENT || !s ||
      !gst_structure_has_name(s, "kirin-task"))
    return GST_BUS_PASS;
  bool block = false;
  {
    std::lock_guard<std::mutex> guard(run.lock);
    // The last step's completion (a chain completes twice) before the download was made.
    if (!run.source_made_us && g_strcmp0(gst_structure_get_string(s, "status"), "completed") == 0)
      run.completed_us = g_get_monotonic_time();
    block = run.channel == 0 && !run.blocked_once;
    run.blocked_once = true;
  }
  if (block) // the application of channel 0 does slow work here, as some do
    g_usleep(kBlockUs);
  return GST_BUS_PASS;
}

GstPadProbeReturn on_buffer(GstPad *, GstPadProbeInfo *, gpointer data) {
  auto &run = **static_cast<RunRef *>(data);
  std::lock_guard<std::mutex> guard(run.lock);
  run.first_buffer_us = g_get_monotonic_time();
  run.changed.notify_all();
  return GST_PAD_PROBE_REMOVE;
}

// libsoup before 3.6.6 can crash when a request is cancelled just as its answer's headers
// arrive (docs/design.md, "A limit that is not the element's"), and souphttpsrc cancels on a
// stop or an EOS. On such a libsoup the soak holds a stop or EOS drawn for that moment until
// the answer or an error came, so that it runs every other moment without this known crash.
bool awaits_answer_unsafely(GstElement *source) {
  static const bool fixed = soup_check_version(3, 6, 6);
  GstElementFactory *factory = gst_element_get_factory(source);
  return !fixed && factory &&
         g_strcmp0(gst_plugin_feature_get_name(GST_PLUGIN_FEATURE(factory)), "souphttpsrc") == 0;
}

void on_source_setup(GstElement *, GstElement *source, gpointer data) {
  auto &run = **static_cast<RunRef *>(data);
  {
    std::lock_guard<std::mutex> guard(run.lock);
    if (!run.source_made_us)
      run.source_made_us = g_get_monotonic_time();
    if (awaits_answer_unsafely(source))
      run.awaiting_answer = source;
  }
  // What a broadcast application sets: a short silence before a connection counts as broken.
  if (g_object_class_find_property(G_OBJECT_GET_CLASS(source), "timeout"))
    g_object_set(source, "timeout", 3u, nullptr);
}

End draw_end(GRand *rand) {
  int roll = g_rand_int_range(rand, 0, 100);
  return roll < 55   ? End::Play
         : roll < 70 ? End::StopNull
         : roll < 80 ? End::StopReady
         : roll < 90 ? End::Seek
                     : End::SendEos;
}

GstElement *make_pipeline(Shared &shared, int channel, GRand *rand, const RunRef &run) {
  bool chain = g_rand_int_range(rand, 0, 10) == 0;
  const bool server = channel % 2 == 1 && !shared.server_journal.empty();
  std::string video = std::string(server ? "pg-" : "") +
                      (chain ? "soak-chain-" + std::to_string(g_rand_int_range(rand, 0, kChains))
                             : "soak-" + std::to_string(g_rand_int_range(rand, 0, kSingles)));
  bool fresh = g_rand_int_range(rand, 0, 12) == 0;
  if (fresh)
    shared.add_fresh_take(video);
  GstElement *pipeline = gst_pipeline_new(nullptr);
  GstElement *src = gst_element_factory_make("kirinextendsrc", nullptr);
  GstElement *sink = gst_element_factory_make("fakesink", nullptr);
  g_object_set(src, "api-url", shared.api_url.c_str(), "api-key", "soak-key", "video-id",
               video.c_str(), "fresh", fresh, "extensions", chain ? 2u : 1u, "poll-interval", 50u,
               "timeout", 20u, "request-timeout", 3u, nullptr);
  if (server)
    g_object_set(src, "journal", shared.server_journal.c_str(), nullptr);
  if (channel % 4 == 1) {
    std::string cache = shared.dir + "/cache-" + std::to_string(channel);
    g_object_set(src, "cache-dir", cache.c_str(), "cache-max-size", guint64(8) << 20, nullptr);
  }
  g_signal_connect_data(
      src, "source-setup", G_CALLBACK(on_source_setup), new RunRef(run),
      [](gpointer data, GClosure *) { drop_run_ref(data); }, GConnectFlags(0));
  g_object_set(sink, "sync", FALSE, nullptr);
  gst_bin_add_many(GST_BIN(pipeline), src, sink, nullptr);
  gst_element_link(src, sink);
  GstPad *pad = gst_element_get_static_pad(sink, "sink");
  gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER, on_buffer, new RunRef(run), drop_run_ref);
  gst_object_unref(pad);
  GstBus *bus = gst_element_get_bus(pipeline);
  gst_bus_set_sync_handler(bus, on_message, new RunRef(run), drop_run_ref);
  gst_object_unref(bus);
  return pipeline;
}

// Whether a stop or EOS due now waits for the download's answer (awaits_answer_unsafely).
bool held_for_answer(Shared &shared, RunState &run) {
  std::lock_guard<std::mutex> guard(run.lock);
  if (!run.awaiting_answer)
    return false;
  if (!run.was_held)
    shared.held_for_answer++;
  run.was_held = true;
  return true;
}

// Plays one run to its end: EOS, an error, or the stop, seek or EOS drawn for it.
void play(Shared &shared, GstElement *pipeline, End end, gint64 act_at_us, RunState &run) {
  GstBus *bus = gst_element_get_bus(pipeline);
  const gint64 bound_us = g_get_monotonic_time() + kRunBoundUs;
  gst_element_set_state(pipeline, GST_STATE_PLAYING);
  bool acted = end == End::Play, over = false;
  while (!over) {
    gint64 now = g_get_monotonic_time();
    if (now >= bound_us) {
      shared.stuck_runs++;
      break;
    }
    if (!acted && end != End::Seek && now >= act_at_us && !held_for_answer(shared, run)) {
      acted = true;
      if (end == End::SendEos) {
        shared.eos_sent++;
        gst_element_send_event(pipeline, gst_event_new_eos());
      } else {
        shared.stops++;
        gst_element_set_state(pipeline, end == End::StopNull ? GST_STATE_NULL : GST_STATE_READY);
        break;
      }
    }
    if (!acted && end == End::Seek) {
      std::lock_guard<std::mutex> guard(run.lock);
      if (run.first_buffer_us) {
        acted = true;
        shared.seeks++;
        gst_element_seek_simple(pipeline, GST_FORMAT_BYTES, GST_SEEK_FLAG_FLUSH, 1000);
      }
    }
    GstMessage *message = gst_bus_timed_pop_filtered(
        bus, 20 * GST_MSECOND, GstMessageType(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
    if (!message)
      continue;
    over = true;
    (GST_MESSAGE_TYPE(message) == GST_MESSAGE_EOS ? shared.completed : shared.errors)++;
    gst_message_unref(message);
  }
  gst_element_set_state(pipeline, GST_STATE_NULL);
  gst_object_unref(bus);
}

} // namespace

void Shared::add_fresh_take(const std::string &video) {
  std::lock_guard<std::mutex> guard(lock_);
  fresh_takes_[video]++;
}

std::map<std::string, int> Shared::fresh_takes_snapshot() {
  std::lock_guard<std::mutex> guard(lock_);
  std::map<std::string, int> takes;
  for (const std::string &video : all_videos())
    takes[video] = fresh_takes_.count(video) ? fresh_takes_.at(video) : 0;
  return takes;
}

void Shared::report(int checks, int failures) const {
  g_print("soak: %d runs: %d to EOS, %d errors, %d stopped, %d seeks, %d EOS sent, %d stuck; "
          "%d stops or EOS held for a download's answer; longest completion to download beside "
          "the blocked channel %.0f ms; %d of %d checks failed before these\n",
          runs.load(), completed.load(), errors.load(), stops.load(), seeks.load(), eos_sent.load(),
          stuck_runs.load(), held_for_answer.load(), neighbour_max_us.load() / 1000.0, failures,
          checks);
}

std::vector<std::string> all_videos() {
  std::vector<std::string> videos;
  for (const char *journal : {"", "pg-"}) {
    for (int i = 0; i < kSingles; i++)
      videos.push_back(journal + ("soak-" + std::to_string(i)));
    for (int i = 0; i < kChains; i++)
      videos.push_back(journal + ("soak-chain-" + std::to_string(i)));
  }
  return videos;
}

bool on_server(const std::string &video) {
  return g_str_has_prefix(video.c_str(), "pg-");
}

void run_channel(Shared &shared, int channel, guint32 seed) {
  GRand *rand = g_rand_new_with_seed(seed * 1000 + guint32(channel));
  auto seen = std::make_shared<SeenFile>(shared.dir + "/seen-" + std::to_string(channel));
  while (g_get_monotonic_time() < shared.deadline_us) {
    auto run = std::make_shared<RunState>();
    run->channel = channel;
    run->seen = seen;
    End end = draw_end(rand);
    gint64 act_at_us = g_get_monotonic_time() + g_rand_int_range(rand, 0, 2500) * 1000;
    GstElement *pipeline = make_pipeline(shared, channel, rand, run);
    shared.runs++;
    play(shared, pipeline, end, act_at_us, *run);
    gst_object_unref(pipeline);
    std::lock_guard<std::mutex> guard(run->lock);
    // From the completion's message to the download's source: the element's own hand-over,
    // which a neighbour's blocked handler must not delay (the download itself meets the
    // faults thrown at it).
    if (channel != 0 && run->completed_us && run->source_made_us > run->completed_us) {
      gint64 wait = run->source_made_us - run->completed_us;
      gint64 most = shared.neighbour_max_us.load();
      while (wait > most && !shared.neighbour_max_us.compare_exchange_weak(most, wait)) {
      }
    }
  }
  g_rand_free(rand);
  shared.channels_done++;
}

} // namespace soak
