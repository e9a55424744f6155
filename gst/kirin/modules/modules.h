// The plugin's modules: files installed next to libgstkirin.so that it loads on first use
// (the client, client.h; the PostgreSQL journal, ledger-server.h), so that processes that
// only scan or inspect plugins never load the libraries those modules link. Each module
// exports one function that returns a table of function pointers; every table starts with
// the two fields of ModuleTableHead.
#pragma once

#include <glib.h>

#include <cstddef>
#include <mutex>
#include <string>

namespace kirin {

// The first fields of every module's table, in every version of it: the loader reads them,
// and nothing else, before it knows the table is its own kind.
struct ModuleTableHead {
  guint32 abi_version; // the table's version in the module's build
  guint32 size;        // sizeof the table in the module's build
};

// What a loader expects of one module.
struct ModuleSpec {
  const char *file;    // its file name, next to the plugin file
  const char *symbol;  // the exported function that returns its table (extern "C")
  guint32 abi_version; // the version the plugin was built with
  guint32 size;        // the size of the table the plugin was built with
  // The module's version 1 table had no version field (the client's did not): a first
  // field that is not a small number is then reported as version 1.
  bool unversioned_v1 = false;
};

// Loads `spec.file` from the plugin's own directory with local binding (its libraries'
// symbols stay its own), makes it resident and returns its table when it is of the
// plugin's version and size; nullptr with `error` set (naming the file, its directory and
// what is wrong) otherwise. Call it once per module per process.
const ModuleTableHead *load_sibling_module(const ModuleSpec &spec, std::string &error);

// One module's table of type `Table`, loaded on first use, once per process, from any
// thread.
template <typename Table> class LazyModule {
  // The loader reads the table's head as a ModuleTableHead.
  static_assert(offsetof(Table, abi_version) == offsetof(ModuleTableHead, abi_version) &&
                    offsetof(Table, size) == offsetof(ModuleTableHead, size),
                "a module's table must start with a ModuleTableHead's fields");

public:
  explicit LazyModule(const ModuleSpec &spec) : spec_(spec) {}

  // The table, or nullptr when the module cannot be used (load_error() says why).
  const Table *get() {
    std::call_once(once_, [this] {
      table_ = reinterpret_cast<const Table *>(load_sibling_module(spec_, error_));
    });
    return table_;
  }
  const std::string &load_error() {
    get();
    return error_;
  }

private:
  const ModuleSpec spec_;
  std::once_flag once_;
  const Table *table_ = nullptr;
  std::string error_;
};

} // namespace kirin
