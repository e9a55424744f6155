// The HTTP receiver for the provider's callbacks: one SoupServer per listen address on the
// client thread, shared by all jobs of the process. Part of libgstkirin-client.module.
#pragma once

#include <glib.h>

#include <string>

namespace kirin {
namespace module {

// The module's implementation of client.h's callback_listener_start.
guint callback_listener_start(const std::string &listen, std::string &error);

} // namespace module
} // namespace kirin
