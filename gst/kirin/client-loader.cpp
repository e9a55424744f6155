// The plugin's side of the client (see client.h): loads libgstkirin-client.module from the
// plugin's own directory when an element first needs it, and forwards every call to it.
#include "client.h"

#include <dlfcn.h>
#include <gmodule.h>

#include <mutex>

namespace kirin {
namespace {

constexpr const char *kModuleFile = "libgstkirin-client.module";

std::once_flag load_once;
const ClientApi *client_api = nullptr;
std::string client_load_error;

void load_module() {
  // Next to the plugin file, wherever it was installed or built: the module is not a
  // plugin, and its suffix keeps GStreamer's registry scan from trying to load it.
  Dl_info self = {};
  if (!dladdr(reinterpret_cast<void *>(&load_module), &self) || !self.dli_fname) {
    client_load_error = "cannot tell where the plugin file is";
    return;
  }
  gchar *dir = g_path_get_dirname(self.dli_fname);
  gchar *path = g_build_filename(dir, kModuleFile, nullptr);
  g_free(dir);
  // Local binding keeps its libraries' symbols to itself.
  GModule *module = g_module_open(path, G_MODULE_BIND_LOCAL);
  gpointer symbol = nullptr;
  if (!module) {
    client_load_error = std::string("cannot load ") + path + ": " + g_module_error();
  } else if (!g_module_symbol(module, "kirin_client_api", &symbol)) {
    client_load_error = std::string(path) + " has no kirin_client_api: " + g_module_error();
    g_module_close(module);
  } else {
    // Never unloaded: the client thread it starts lives until the process exits.
    g_module_make_resident(module);
    client_api = reinterpret_cast<const ClientApi *(*)()>(symbol)();
  }
  g_free(path);
}

const ClientApi *api() {
  std::call_once(load_once, load_module);
  return client_api;
}

} // namespace

bool client_load(std::string &error) {
  if (api())
    return true;
  error = client_load_error;
  return false;
}

// Called only after client_load succeeded (the element's start()).
JobHandle job_start(JobConfig config, JobCallbacks callbacks) {
  return api()->job_start(std::move(config), std::move(callbacks));
}

void job_cancel(const JobHandle &job) {
  if (job) // a job exists only if the module was loaded
    api()->job_cancel(job);
}

guint callback_listener_start(const std::string &listen, std::string &error) {
  return client_load(error) ? api()->callback_listener_start(listen, error) : 0;
}

const char *job_error_name(JobError error) {
  return api() ? api()->job_error_name(error) : "unknown";
}

const char *task_status_name(TaskStatus status) {
  return api() ? api()->task_status_name(status) : "unknown";
}

GObject *tls_file_database_new(const std::string &path, std::string &error) {
  return client_load(error) ? api()->tls_file_database_new(path, error) : nullptr;
}

} // namespace kirin
