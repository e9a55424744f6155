// The module's one exported symbol: the table the plugin's loader calls through
// (ledger-server.h). Everything else of the module is hidden (built with hidden visibility),
// so its open_pg_ledger and the plugin's forwarder of that name never bind to each other.
#include "ledger-server.h"

#include <gmodule.h>

#include <type_traits>

extern "C" G_MODULE_EXPORT const kirin::LedgerServerApi *kirin_ledger_server_api() {
  static const kirin::LedgerServerApi api = {
      kirin::kLedgerServerAbiVersion,
      sizeof(kirin::LedgerServerApi),
      kirin::open_pg_ledger,
      kirin::journal_uri_readable,
  };
  return &api;
}

// The loader calls it by name with this type.
static_assert(
    std::is_same<decltype(&kirin_ledger_server_api), kirin::LedgerServerApiFunction>::value,
    "kirin_ledger_server_api must match LedgerServerApiFunction");
