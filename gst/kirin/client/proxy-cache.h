// Proxy lookups, once per host, for the module's SoupSession. Part of
// libgstkirin-client.module.
//
// libsoup asks the session's GProxyResolver before every new connection, and the system's
// resolvers (glib-networking's GNOME and libproxy modules) answer each lookup on a thread of
// GLib's shared pool. A thousand elements creating their tasks at once open up to
// max-conns-per-host connections together, so the pool grew by ten threads that then idled
// while every element waited (the scale benchmark in tests/bench/). This resolver keeps the
// system resolver's answer per scheme, host and port for as long as an idle connection lives
// (the session's idle-timeout, so a proxy change is seen no later than with pooled
// connections), and lookups of a key that is being looked up wait for that one: one lookup,
// one pooled thread, per API host and minute. Failures are not kept.
#pragma once

#include <gio/gio.h>

namespace kirin {
namespace module {

// A resolver that asks the system's default one and keeps each answer `keep_seconds`.
GProxyResolver *proxy_cache_new(guint keep_seconds);

} // namespace module
} // namespace kirin
