// The download of a result over HTTP: kirinhttpsrc, a source element that reads the
// response on its own streaming thread with libsoup's blocking API (allowed from any thread
// since libsoup 3.2). Each buffer is one read where the buffer is wanted; souphttpsrc (1.22)
// hands every read to a session thread of its own and waits for it, which costs two thread
// switches per buffer (tests/bench/README.md: the fetch figure).
//
// It is built into the client module, which links libsoup; the plugin reaches it through
// client.h. It keeps souphttpsrc's names for what an application sets in source-setup
// (location, user-agent, proxy, extra-headers, timeout, retries, ssl-strict, tls-database,
// automatic-redirect), its error codes and its "http-status-code" error detail.
#pragma once

#include <gst/gst.h>

namespace kirin {
namespace module {

// A new kirinhttpsrc named "source" reading `url`; the element is registered (without a
// plugin, at rank none) the first time. Never null.
GstElement *download_source_new(const char *url);

} // namespace module
} // namespace kirin
