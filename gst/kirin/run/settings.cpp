#include "settings.h"

#include "cache.h"
#include "ledger.h"

#include <gst/gst.h>

#include <algorithm>
#include <utility>

namespace kirin {

namespace {

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

std::string text_problem(const char *name, const std::string &text) {
  if (!g_utf8_validate(text.c_str(), text.size(), nullptr))
    return std::string("Property '") + name + "' is not valid UTF-8.";
  glong chars = g_utf8_strlen(text.c_str(), text.size());
  if (chars > (glong)kMaxPromptChars)
    return std::string("Property '") + name + "' has " + std::to_string(chars) +
           " characters; the provider accepts at most " + std::to_string(kMaxPromptChars) + ".";
  return {};
}

constexpr const char *kServerUriForm =
    "postgresql://[user[:password]@][host][:port][/dbname][?param=value&...]";

// A server's journal is a URI libpq reads; a keyword string would be taken for a file name.
std::string journal_problem(const std::string &journal) {
  if (journal_is_keyword_string(journal))
    return "Property 'journal' (" + journal_display_name(journal) +
           ") is a libpq keyword=value string, which it does not take: give the server as a "
           "URI, " +
           kServerUriForm + " (e.g. postgresql://kirin@127.0.0.1:5432/media), or a file's path.";
  if (journal_on_server(journal) && !journal_uri_readable(journal))
    return "Property 'journal' (" + journal_display_name(journal) +
           ") is not a PostgreSQL connection URI that libpq can read: " + kServerUriForm + ".";
  return {};
}

} // namespace

void Settings::forget_key() {
  std::fill(api_key.begin(), api_key.end(), '\0');
  api_key.clear();
}

void Settings::forget_secrets() {
  forget_key();
  std::fill(journal.begin(), journal.end(), '\0');
  journal.clear();
}

std::string journal_path(const Settings &settings) {
  if (settings.journal == kJournalOff)
    return "";
  if (!settings.journal.empty())
    return settings.journal;
  // g_get_user_cache_dir() keeps the first value it saw; the environment is read anew.
  const char *xdg = g_getenv("XDG_CACHE_HOME");
  std::string base = xdg && g_path_is_absolute(xdg) ? xdg : g_get_user_cache_dir();
  return base + "/gst-kirin/journal.db";
}

std::string effective_api_key(const Settings &settings) {
  if (!settings.api_key.empty())
    return settings.api_key;
  const char *env = g_getenv("VTRIX_API_KEY");
  return env ? env : "";
}

std::string validate(const Settings &settings) {
  if (settings.video_id.empty() && settings.task_id.empty())
    return "Property 'video-id' is not set: name the video to extend (or set 'task-id' to "
           "resume an existing task).";
  if (effective_api_key(settings).empty())
    return "No API key: set the 'api-key' property or the VTRIX_API_KEY environment variable.";
  if (!is_http_url(settings.api_url))
    return "Property 'api-url' must be an http:// or https:// URL, not '" + settings.api_url + "'.";
  for (const auto &[name, text] :
       {std::pair<const char *, const std::string &>{"prompt", settings.prompt},
        {"negative-prompt", settings.negative_prompt}}) {
    std::string problem = text_problem(name, text);
    if (!problem.empty())
      return problem;
  }
  if (!settings.callback_url.empty() && !is_http_url(settings.callback_url))
    return "Property 'callback-url' must be an http:// or https:// URL.";
  if (!settings.cache_dir.empty() && settings.journal == kJournalOff)
    return "Property 'cache-dir' needs the journal, which records which task made which kept "
           "copy: unset journal='none', or unset cache-dir.";
  std::string problem = journal_problem(settings.journal);
  if (!problem.empty())
    return problem;
  if (!settings.cache_dir.empty()) {
    std::string problem = cache_dir_problem(settings.cache_dir);
    if (!problem.empty())
      return "Property 'cache-dir' (" + settings.cache_dir + ") " + problem + ".";
  }
  return {};
}

GObject *load_ca_file(const Settings &settings, std::string &problem) {
  problem.clear();
  if (settings.ca_file.empty())
    return nullptr;
  std::string error;
  GObject *database = tls_file_database_new(settings.ca_file, error);
  if (!database)
    problem = "Property 'ca-file' (" + settings.ca_file +
              ") is not a readable PEM file of certificates: " + error;
  return database;
}

std::string callback_url_for(const Settings &settings, guint callback_port, std::string &problem) {
  problem.clear();
  if (!callback_port)
    return settings.callback_url;
  // The provider notifies our own receiver; its notifications only trigger polls.
  if (!settings.callback_public_url.empty())
    return settings.callback_public_url;
  const std::string &listen = settings.callback_listen;
  std::string host = listen.substr(0, listen.rfind(':'));
  if (host == "0.0.0.0" || host == "::" || host.empty()) {
    problem = "Property 'callback-public-url' is not set: with callback-listen=" + listen +
              ", say at which URL the provider can reach this machine.";
    return {};
  }
  if (host.find(':') != std::string::npos)
    host = "[" + host + "]";
  return "http://" + host + ":" + std::to_string(callback_port) + "/";
}

JobConfig job_config(const Settings &settings, const std::string &callback_url,
                     bool use_callbacks) {
  JobConfig config;
  config.api_url = settings.api_url;
  config.api_key = effective_api_key(settings);
  config.user_agent = "gst-kirin/" VERSION " GStreamer/" + std::to_string(GST_VERSION_MAJOR) + "." +
                      std::to_string(GST_VERSION_MINOR);
  config.poll_interval_ms = MAX(settings.poll_interval_ms, 1u);
  config.timeout_s = settings.timeout_s;
  config.request_timeout_s = settings.request_timeout_s;
  config.ca_file = settings.ca_file;
  config.use_callbacks = use_callbacks;
  config.create.model = settings.model;
  config.create.video_id = settings.video_id;
  config.create.prompt = settings.prompt;
  config.create.negative_prompt = settings.negative_prompt;
  if (settings.cfg_scale_set)
    config.create.cfg_scale = settings.cfg_scale;
  config.create.callback_url = callback_url;
  return config;
}

std::string result_url_problem(const Settings &settings, const std::string &url) {
  const char *scheme = g_uri_peek_scheme(url.c_str());
  if (!scheme || (g_strcmp0(scheme, "http") != 0 && g_strcmp0(scheme, "https") != 0))
    return "its result URL '" + url + "' is not http or https, so it is refused.";
  const char *api_scheme = g_uri_peek_scheme(settings.api_url.c_str());
  if (g_strcmp0(scheme, "http") == 0 && g_strcmp0(api_scheme, "https") == 0 &&
      !settings.allow_http_result)
    return "its result URL '" + url +
           "' is plain http while api-url is https, so it is refused (set "
           "allow-http-result=true to accept it).";
  return {};
}

bool result_shares_api_host(const Settings &settings, const std::string &url) {
  GUri *result = g_uri_parse(url.c_str(), G_URI_FLAGS_NONE, nullptr);
  GUri *api = g_uri_parse(settings.api_url.c_str(), G_URI_FLAGS_NONE, nullptr);
  bool same = result && api && g_strcmp0(g_uri_get_host(result), g_uri_get_host(api)) == 0;
  if (result)
    g_uri_unref(result);
  if (api)
    g_uri_unref(api);
  return same;
}

} // namespace kirin
