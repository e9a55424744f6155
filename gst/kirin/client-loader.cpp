// The plugin's side of the client (see client.h): loads libgstkirin-client.module from the
// plugin's own directory when an element first needs it, and forwards every call to it.
#include "client.h"

#include <dlfcn.h>
#include <gmodule.h>

#include <mutex>

namespace kirin {
namespace {

constexpr const char *kModuleFile = "libgstkirin-client.module";
constexpr guint32 kUnversionedAbove = 4096;

std::once_flag load_once;
const ClientApi *client_api = nullptr;
std::string client_load_error;

// Why the module found in `dir` cannot be used, and what to do.
std::string refusal(const char *dir, const std::string &why) {
  return std::string(kModuleFile) + " at " + dir + " " + why + ": install matching files";
}

// The table's version and size are read before anything else in it: a module of another
// build may lay the rest out differently. "" when the table is the plugin's own kind.
std::string check_table(const ClientApi *table, const char *dir) {
  if (!table)
    return refusal(dir, std::string("returned no table from ") + kClientApiSymbol);
  const std::string needed = ", the plugin needs version " + std::to_string(kClientAbiVersion);
  if (table->abi_version != kClientAbiVersion) {
    // Version 1 had no version field: there, the first field is half a function pointer,
    // which is never a small number.
    std::string version = table->abi_version < kUnversionedAbove
                              ? std::to_string(table->abi_version)
                              : "1 (from before the version was recorded)";
    return refusal(dir, "is version " + version + needed);
  }
  if (table->size != sizeof(ClientApi))
    return refusal(dir, "is version " + std::to_string(table->abi_version) + " with a table of " +
                            std::to_string(table->size) + " bytes, the plugin needs " +
                            std::to_string(sizeof(ClientApi)));
  return {};
}

// Next to the plugin file, wherever it was installed or built: the module is not a
// plugin, and its suffix keeps GStreamer's registry scan from trying to load it.
void load_module() {
  Dl_info self = {};
  if (!dladdr(reinterpret_cast<void *>(&load_module), &self) || !self.dli_fname) {
    client_load_error = "cannot tell where the plugin file is";
    return;
  }
  gchar *dir = g_path_get_dirname(self.dli_fname);
  gchar *path = g_build_filename(dir, kModuleFile, nullptr);
  // Local binding keeps its libraries' symbols to itself.
  GModule *module = g_module_open(path, G_MODULE_BIND_LOCAL);
  gpointer symbol = nullptr;
  if (!module) {
    client_load_error = std::string("cannot load ") + path + ": " + g_module_error();
  } else if (!g_module_symbol(module, kClientApiSymbol, &symbol)) {
    client_load_error = refusal(dir, std::string("has no ") + kClientApiSymbol);
    g_module_close(module);
  } else {
    // Never unloaded, also when it is refused below: the client thread it starts lives
    // until the process exits, and a refused module's code has run.
    g_module_make_resident(module);
    const ClientApi *table = reinterpret_cast<ClientApiFunction>(symbol)();
    client_load_error = check_table(table, dir);
    if (client_load_error.empty())
      client_api = table;
  }
  g_free(path);
  g_free(dir);
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

// Called only after client_load succeeded (a run exists).
void client_post(std::function<void()> work) {
  api()->post(std::move(work));
}

const char *job_error_name(JobError error) {
  return api() ? api()->job_error_name(error) : "unknown";
}

GObject *tls_file_database_new(const std::string &path, std::string &error) {
  return client_load(error) ? api()->tls_file_database_new(path, error) : nullptr;
}

} // namespace kirin
