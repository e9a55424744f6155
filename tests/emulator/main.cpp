// kirin-emulator: the provider's API on loopback as a stand-alone program, for scripts,
// examples and trying the element by hand. Prints one line with the URL, then serves until
// SIGINT or SIGTERM.
#include "emulator.h"

#include <glib-unix.h>
#include <gst/gst.h>

#include <csignal>
#include <cstdio>
#include <string>

namespace {

bool parse_route(const std::string &name, kirin_emu::Route &route) {
  if (name == "create")
    route = kirin_emu::Route::Create;
  else if (name == "poll")
    route = kirin_emu::Route::Poll;
  else if (name == "download")
    route = kirin_emu::Route::Download;
  else if (name == "task")
    route = kirin_emu::Route::Task;
  else
    return false;
  return true;
}

bool parse_size(const char *text, guint &width, guint &height) {
  unsigned w = 0, h = 0;
  char rest = 0;
  if (std::sscanf(text, "%ux%u%c", &w, &h, &rest) != 2 || w < 16 || h < 16 || w > 7680 || h > 4320)
    return false;
  width = w;
  height = h;
  return true;
}

gboolean quit_on_signal(gpointer loop) {
  g_main_loop_quit(static_cast<GMainLoop *>(loop));
  return G_SOURCE_CONTINUE;
}

int usage_error(const char *format, const char *value) {
  g_printerr("kirin-emulator: ");
  g_printerr(format, value);
  g_printerr("\n");
  return 2;
}

// The command line as given, before it is checked.
struct CommandLine {
  gint port = 0, pending_ms = 0, processing_ms = 0, processing_max_ms = 0, jpeg_quality = 0;
  char *host = nullptr, *api_key = nullptr, *no_balance_key = nullptr;
  char *media_dir = nullptr, *video_size = nullptr;
  char *tls_cert = nullptr, *tls_key = nullptr;
  char **faults = nullptr, **other_keys = nullptr;
  gboolean quiet = FALSE, audio = FALSE;

  CommandLine() = default;
  CommandLine(const CommandLine &) = delete;
  CommandLine &operator=(const CommandLine &) = delete;
  ~CommandLine() {
    for (char *text : {host, api_key, no_balance_key, media_dir, video_size, tls_cert, tls_key})
      g_free(text);
    g_strfreev(faults);
    g_strfreev(other_keys);
  }

  // Parses argv; false with the reason in `error`.
  bool parse(int &argc, char **&argv, GError **error);
};

bool CommandLine::parse(int &argc, char **&argv, GError **error) {
  const GOptionEntry entries[] = {
      {"port", 0, 0, G_OPTION_ARG_INT, &port, "Port to listen on (0 = pick a free one)", "N"},
      {"host", 0, 0, G_OPTION_ARG_STRING, &host, "Address to listen on (default 127.0.0.1)", "IP"},
      {"api-key", 0, 0, G_OPTION_ARG_STRING, &api_key,
       "The accepted API key (default: $VTRIX_API_KEY, else test-key)", "KEY"},
      {"other-api-key", 0, 0, G_OPTION_ARG_STRING_ARRAY, &other_keys,
       "Also accept this key: another account's (repeatable)", "KEY"},
      {"no-balance-key", 0, 0, G_OPTION_ARG_STRING, &no_balance_key,
       "A key answered with 403 Insufficient balance (default broke-key)", "KEY"},
      {"pending-ms", 0, 0, G_OPTION_ARG_INT, &pending_ms, "Time a task stays pending (500)", "MS"},
      {"processing-ms", 0, 0, G_OPTION_ARG_INT, &processing_ms,
       "Time a task stays processing (2000)", "MS"},
      {"processing-max-ms", 0, 0, G_OPTION_ARG_INT, &processing_max_ms,
       "Draw each task's processing time from --processing-ms to this (default: no range)", "MS"},
      {"media-dir", 0, 0, G_OPTION_ARG_FILENAME, &media_dir,
       "Where results are written (default: a temporary directory, removed on exit)", "DIR"},
      {"video-size", 0, 0, G_OPTION_ARG_STRING, &video_size,
       "Size of rendered results (default 320x240)", "WxH"},
      {"jpeg-quality", 0, 0, G_OPTION_ARG_INT, &jpeg_quality,
       "JPEG quality of rendered results, 1-100 (default 85)", "Q"},
      {"audio", 0, 0, G_OPTION_ARG_NONE, &audio,
       "Rendered results also carry a sound track (a tone, 16-bit PCM)", nullptr},
      {"fault", 0, 0, G_OPTION_ARG_STRING_ARRAY, &faults,
       "Queue a one-shot fault, e.g. poll=http429:1 or task=fail:014002095 (repeatable)",
       "ROUTE=SPEC"},
      {"tls-cert", 0, 0, G_OPTION_ARG_FILENAME, &tls_cert,
       "Serve HTTPS with this PEM certificate (needs --tls-key)", "FILE"},
      {"tls-key", 0, 0, G_OPTION_ARG_FILENAME, &tls_key, "The PEM private key of --tls-cert",
       "FILE"},
      {"quiet", 'q', 0, G_OPTION_ARG_NONE, &quiet, "Do not log requests to stderr", nullptr},
      {nullptr, 0, 0, G_OPTION_ARG_NONE, nullptr, nullptr, nullptr}};
  g_autoptr(GOptionContext) context = g_option_context_new("- the Kirin API on loopback");
  g_option_context_set_summary(
      context, "Serves the provider's kirin_duration_extension API for tests. It runs no "
               "generative model: results are synthetic test-pattern videos.");
  g_option_context_add_main_entries(context, entries, nullptr);
  g_option_context_add_group(context, gst_init_get_option_group());
  return g_option_context_parse(context, &argc, &argv, error);
}

// The emulator's options from a parsed command line; 0, or the exit status of a usage error.
int to_options(const CommandLine &line, kirin_emu::Options &options) {
  if (line.port < 0 || line.port > 65535)
    return usage_error("--port out of range: %s", std::to_string(line.port).c_str());
  if (line.pending_ms < 0 || line.processing_ms < 0 || line.processing_max_ms < 0)
    return usage_error("%s", "--pending-ms and --processing-(max-)ms cannot be negative");
  if (line.jpeg_quality < 1 || line.jpeg_quality > 100)
    return usage_error("--jpeg-quality out of range: %s",
                       std::to_string(line.jpeg_quality).c_str());
  if (!line.tls_cert != !line.tls_key)
    return usage_error("%s", "--tls-cert and --tls-key go together");
  if (line.video_size && !parse_size(line.video_size, options.width, options.height))
    return usage_error("--video-size must look like 640x480, not %s", line.video_size);
  options.port = guint(line.port);
  options.pending_ms = guint(line.pending_ms);
  options.processing_ms = guint(line.processing_ms);
  options.processing_max_ms = guint(line.processing_max_ms);
  options.jpeg_quality = guint(line.jpeg_quality);
  options.quiet = line.quiet;
  options.audio = line.audio;
  if (line.host)
    options.host = line.host;
  if (line.api_key)
    options.api_key = line.api_key;
  else if (const char *from_env = g_getenv("VTRIX_API_KEY"); from_env && *from_env)
    options.api_key = from_env;
  for (char **key = line.other_keys; key && *key; key++)
    options.other_api_keys.push_back(*key);
  if (line.no_balance_key)
    options.no_balance_key = line.no_balance_key;
  if (line.media_dir)
    options.media_dir = line.media_dir;
  if (line.tls_cert) {
    options.tls_cert_file = line.tls_cert;
    options.tls_key_file = line.tls_key;
  }
  return 0;
}

// Queues the command line's --fault entries; 0, or the exit status of a usage error.
int queue_faults(kirin_emu::Emulator &emulator, char **faults) {
  for (char **fault = faults; fault && *fault; ++fault) {
    const std::string spec = *fault;
    const auto equals = spec.find('=');
    kirin_emu::Route route;
    if (equals == std::string::npos || !parse_route(spec.substr(0, equals), route) ||
        !emulator.push_fault(route, spec.substr(equals + 1)))
      return usage_error("not a usable --fault (want ROUTE=SPEC, see README): %s", *fault);
  }
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  // First of all, so that a SIGTERM during start-up (GStreamer may rebuild its registry)
  // still ends in a clean exit that removes the media directory.
  g_autoptr(GMainLoop) loop = g_main_loop_new(nullptr, FALSE);
  const guint sigint = g_unix_signal_add(SIGINT, quit_on_signal, loop);
  const guint sigterm = g_unix_signal_add(SIGTERM, quit_on_signal, loop);
  kirin_emu::Options options;
  options.quiet = false;
  CommandLine line;
  line.pending_ms = gint(options.pending_ms);
  line.processing_ms = gint(options.processing_ms);
  line.jpeg_quality = gint(options.jpeg_quality);
  g_autoptr(GError) error = nullptr;
  if (!line.parse(argc, argv, &error))
    return usage_error("%s", error->message);
  if (int status = to_options(line, options))
    return status;

  kirin_emu::Emulator emulator(options);
  if (int status = queue_faults(emulator, line.faults))
    return status;
  if (!emulator.start(&error)) {
    g_printerr("kirin-emulator: cannot start: %s\n", error->message);
    return 1;
  }
  // Scripts read the port from this line.
  std::printf("kirin-emulator listening on %s\n", emulator.base_url().c_str());
  std::fflush(stdout);

  g_main_loop_run(loop);
  g_source_remove(sigint);
  g_source_remove(sigterm);
  return 0;
}
