// The journal on a PostgreSQL server as a module of its own.
//
// ledger-pg.cpp and ledger-pg-claim.cpp are built into libgstkirin-ledger-pg.module, which
// alone links libpq (and through it OpenSSL, GSSAPI and LDAP): linked into the plugin, they
// made every load of it, by every process that only scans or inspects plugins, ten times as
// slow (tests/bench/README.md, start cost). The plugin loads the module from its own
// directory when a process first reads or opens a postgresql:// journal
// (ledger-pg-loader.cpp); the functions below forward to it there. The tests of the ledger
// link ledger-pg*.cpp directly instead, where they are the functions themselves.
#pragma once

#include "ledger.h"

#include <glib.h>

#include <memory>
#include <string>

namespace kirin {

// Connects to the server `uri` names and makes its schema on first use; nullptr with
// libpq's or the server's reason (which never holds the password). In the plugin, also
// nullptr when the module cannot be loaded, with the reason (naming the module's file).
std::unique_ptr<Ledger> open_pg_ledger(const std::string &uri, std::string &error);

// (journal_uri_readable, ledger.h, is the module's too.)

// The version of the table below and of every type that crosses it: Ledger (its virtual
// functions, in their order), LedgerRow, LedgerRequest, CreateRequest, Claim, ClaimHold,
// ClaimOutcome, ClaimAsk, ClaimStep and PushOutcome. Bump it whenever any of them changes,
// so that a plugin and a module of different builds refuse each other instead of misreading
// each other's memory. (They pass C++ library types too: both must be built with the same
// compiler and standard library.)
constexpr guint32 kLedgerServerAbiVersion = 5;

// What the module exports, as kirin_ledger_server_api() (extern "C"). The first two fields
// are a ModuleTableHead's (modules.h) in every version.
struct LedgerServerApi {
  guint32 abi_version; // kLedgerServerAbiVersion of the module's build
  guint32 size;        // sizeof(LedgerServerApi) of the module's build
  std::unique_ptr<Ledger> (*open)(const std::string &uri, std::string &error);
  bool (*uri_readable)(const std::string &uri);
};

// The exported symbol's name and type.
constexpr const char *kLedgerServerApiSymbol = "kirin_ledger_server_api";
using LedgerServerApiFunction = const LedgerServerApi *(*)();

} // namespace kirin
