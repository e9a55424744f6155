// Finding, loading and checking a module next to the plugin file (modules.h).
#include "modules.h"

#include <dlfcn.h>
#include <gmodule.h>

namespace kirin {
namespace {

// A version-1 client table starts with a function pointer, whose lower half is never this
// small.
constexpr guint32 kUnversionedAbove = 4096;

using TableFunction = const ModuleTableHead *(*)();

// Why the module found in `dir` cannot be used, and what to do.
std::string refusal(const ModuleSpec &spec, const char *dir, const std::string &why) {
  return std::string(spec.file) + " at " + dir + " " + why + ": install matching files";
}

// The table's version and size are read before anything else in it: a module of another
// build may lay the rest out differently. "" when the table is the plugin's own kind.
std::string check_table(const ModuleSpec &spec, const ModuleTableHead *table, const char *dir) {
  if (!table)
    return refusal(spec, dir, std::string("returned no table from ") + spec.symbol);
  const std::string needed = ", the plugin needs version " + std::to_string(spec.abi_version);
  if (table->abi_version != spec.abi_version) {
    std::string version = spec.unversioned_v1 && table->abi_version >= kUnversionedAbove
                              ? "1 (from before the version was recorded)"
                              : std::to_string(table->abi_version);
    return refusal(spec, dir, "is version " + version + needed);
  }
  if (table->size != spec.size)
    return refusal(spec, dir,
                   "is version " + std::to_string(table->abi_version) + " with a table of " +
                       std::to_string(table->size) + " bytes, the plugin needs " +
                       std::to_string(spec.size));
  return {};
}

// Opens the module at `path` (in `dir`) and checks its table.
const ModuleTableHead *open_module(const ModuleSpec &spec, const char *dir, const char *path,
                                   std::string &error) {
  // Local binding keeps its libraries' symbols to itself.
  GModule *module = g_module_open(path, G_MODULE_BIND_LOCAL);
  if (!module) {
    // dlopen's message names the file already, when it could not be opened.
    std::string why = g_module_error();
    error = "cannot load " + (why.find(path) == std::string::npos ? path + std::string(": ") : "") +
            why;
    return nullptr;
  }
  gpointer symbol = nullptr;
  if (!g_module_symbol(module, spec.symbol, &symbol)) {
    error = refusal(spec, dir, std::string("has no ") + spec.symbol);
    g_module_close(module);
    return nullptr;
  }
  // Never unloaded, also when it is refused below: a module's code has run once its table
  // function was called (the client's starts a thread that lives until the process exits;
  // libpq and OpenSSL register handlers at exit), so unloading it is never safe.
  g_module_make_resident(module);
  const ModuleTableHead *table = reinterpret_cast<TableFunction>(symbol)();
  error = check_table(spec, table, dir);
  return error.empty() ? table : nullptr;
}

} // namespace

// Next to the plugin file, wherever it was installed or built: a module is not a plugin,
// and its '.module' suffix keeps GStreamer's registry scan from trying to load it.
const ModuleTableHead *load_sibling_module(const ModuleSpec &spec, std::string &error) {
  Dl_info self = {};
  if (!dladdr(reinterpret_cast<void *>(&load_sibling_module), &self) || !self.dli_fname) {
    error = "cannot tell where the plugin file is";
    return nullptr;
  }
  gchar *dir = g_path_get_dirname(self.dli_fname);
  gchar *path = g_build_filename(dir, spec.file, nullptr);
  const ModuleTableHead *table = open_module(spec, dir, path, error);
  g_free(path);
  g_free(dir);
  return table;
}

} // namespace kirin
