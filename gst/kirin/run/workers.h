// The two workers a run hands its work to (docs/design.md, "Threads"):
// - the decider: every decision of every run of the process (create, attach, chain the
//   next step, refresh an expired URL, replay, expose a result) runs there, one at a time,
//   in the order it was handed over. It is the client's thread (client_post), where the
//   jobs' answers arrive, so no decision waits for a hand-over between threads. It never
//   runs application code (what it tells the application goes through the element's
//   outbox, outbox.h), never does file I/O and never waits on the network. Only after
//   client_load() succeeded.
// - the file worker: a file journal's reads and writes and the kept download's writes and
//   commit (fsync, rename); a server's journal has a serial worker of its own (journal.h). Its
//   work runs in order, never concurrently, on a thread ("kirin-files") that it starts when
//   work comes and that ends once it has been idle a few milliseconds. It never calls into an
//   element or an application, so waiting for it cannot deadlock.
#pragma once

#include "serial-worker.h" // the file worker: file_work, file_work_flush

#include <functional>

namespace kirin {

void decide(std::function<void()> work);
// `work` on the decider once `delay_ms` passed (a timer on its thread, not a sleep).
void decide_later(unsigned delay_ms, std::function<void()> work);

} // namespace kirin
