// An API answer written by hand on a connection stolen from SoupServer, for the `endless`
// and `huge:<bytes>` faults: the body is made piece by piece as the socket takes it, so a
// body of any size costs no memory, and the bytes the client took are counted.
#pragma once

#include <gio/gio.h>

#include <functional>

namespace kirin_emu {

// The body bytes the socket accepted so far; `over` once writing stopped for good (all
// written, the client hung up, or `cancellable` fired).
using StreamProgress = std::function<void(guint64 body_bytes, bool over)>;

// Takes `stream`, a connection stolen from SoupServer, and answers 200 with a JSON object
// that starts like a task (`{"id":"task-big","status":"pending","pad":"xxx…`). With
// `body_bytes` >= 0 the answer has that Content-Length and the object is complete; with
// `body_bytes` < 0 it has no length and never ends. Runs on the thread-default context;
// `progress` is called there after each write, and last with over = true.
void stream_answer(GIOStream *stream, gint64 body_bytes, GCancellable *cancellable,
                   StreamProgress progress);

} // namespace kirin_emu
