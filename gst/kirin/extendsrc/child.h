// The child source that downloads a result (souphttpsrc, or filesrc for a kept copy) and the probe
// on its pad: tags before the first buffer, a copy of every byte for the cache, and the end of an
// intermediate result, which only hands over to the next.
#pragma once

#include "gstkirinextendsrc.h"

namespace kirin {

// Streams the current run's oldest queued result once the child before it is done.
// Runs on a gst_element_call_async thread: it takes the state lock, so a concurrent stop
// happens wholly before (the run is stopped and nothing is added) or wholly after.
void expose_next(GstElement *element, gpointer unused);

// Stops and drops the child source, if any. Its streaming thread is joined before the
// ghost pad lets go of it, so nothing it still pushes can reach a pad without a target.
void remove_source(GstKirinExtendSrc *self);

} // namespace kirin
