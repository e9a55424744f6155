// The plugin's side of the journal on a PostgreSQL server (ledger-server.h): loads
// libgstkirin-ledger-pg.module from the plugin's own directory the first time a process
// reads or opens a postgresql:// journal, and forwards to it. Only the plugin has this
// file; the tests of the ledger link ledger-pg*.cpp instead.
#include "ledger-server.h"

#include "modules.h"

namespace kirin {
namespace {

LazyModule<LedgerServerApi> server_module({"libgstkirin-ledger-pg.module", kLedgerServerApiSymbol,
                                           kLedgerServerAbiVersion, sizeof(LedgerServerApi)});

const LedgerServerApi *api() {
  return server_module.get();
}

} // namespace

// Without the module, Ledger::open falls back to the in-memory ledger as for a server it
// cannot reach, and its warning (naming the journal) gives this reason.
std::unique_ptr<Ledger> open_pg_ledger(const std::string &uri, std::string &error) {
  if (api())
    return api()->open(uri, error);
  error = "the plugin's PostgreSQL support is missing: " + server_module.load_error();
  return nullptr;
}

// Without the module nothing can read the URI: it passes as readable, so that the element
// starts and Ledger::open's warning says what is missing, rather than refusing a URI that
// may well be right with a message that blames it.
bool journal_uri_readable(const std::string &uri) {
  return !api() || api()->uri_readable(uri);
}

} // namespace kirin
