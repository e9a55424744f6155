// A serial worker: work runs in the order it was handed over, one piece at a time, on a
// thread the worker starts when work comes and that ends once the worker has been idle a few
// milliseconds, so an idle worker holds no thread. The file worker (workers.h) is one, and
// so is each server journal's (journal.h).
#pragma once

#include <glib.h>

#include <functional>

namespace kirin {

struct SerialWorker;
// A worker whose thread is named `name`. It lives as long as the process.
SerialWorker *serial_worker(const char *name);
void serial_push(SerialWorker *worker, std::function<void()> work);
// Waits until everything handed to `worker` before this call is done, or `max_us` passed
// (-1: no limit); true when it was done.
bool serial_flush(SerialWorker *worker, gint64 max_us);

// The file worker's (workers.h).
void file_work(std::function<void()> work);
// Waits until everything handed to the file worker before this call is done.
void file_work_flush();

} // namespace kirin
