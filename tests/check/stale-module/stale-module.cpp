// A client module of another build, for test-module: it exports kirin_client_api, but the
// table it returns is described by KIRIN_STALE_TABLE:
//   "<version>:<size>"  a table of that ABI version and size (only the two first fields);
//   "unversioned"        the table of modules from before the version: function pointers;
//   "none"               no table (nullptr).
// It knows nothing of client.h on purpose: it stands for a module built from other sources.
#include <gmodule.h>

namespace {

struct VersionedTable {
  guint32 abi_version;
  guint32 size;
};

void never_called() {
  g_error("the plugin called into a client module it should have refused");
}

// The layout of version 1: six function pointers, the first where the version now is.
using Function = void (*)();
const Function unversioned_table[] = {never_called, never_called, never_called,
                                      never_called, never_called, never_called};

} // namespace

extern "C" G_MODULE_EXPORT const void *kirin_client_api() {
  static VersionedTable table = {};
  const char *shape = g_getenv("KIRIN_STALE_TABLE");
  if (!shape || g_str_equal(shape, "none"))
    return nullptr;
  if (g_str_equal(shape, "unversioned"))
    return unversioned_table;
  char *end = nullptr;
  table.abi_version = (guint32)g_ascii_strtoull(shape, &end, 10);
  table.size = *end == ':' ? (guint32)g_ascii_strtoull(end + 1, nullptr, 10) : 0;
  return &table;
}
