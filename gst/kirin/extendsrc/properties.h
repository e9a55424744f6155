// The element's properties: install_properties() from class_init installs their specs and
// the set/get functions (properties.cpp).
#pragma once

#include <glib-object.h>

namespace kirin {

void install_properties(GObjectClass *gobject_class);

} // namespace kirin
