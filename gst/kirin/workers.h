// The two threads a run hands its work to (docs/design.md, "Threads"):
// - the decider: every decision of every run of the process (create, attach, chain the
//   next step, refresh an expired URL, replay, expose a result) runs there, one at a time,
//   in the order it was handed over. It posts bus messages, so an application's sync
//   handler may run on it; it never does file I/O and never waits on the network.
// - the file worker: the journal's reads and writes and the kept download's commit (fsync,
//   rename). It never calls into an element or an application, so waiting for it cannot
//   deadlock.
// Both are one-thread GThreadPools, started on first use and kept until the process exits.
#pragma once

#include <functional>

namespace kirin {

void decide(std::function<void()> work);
bool on_decider_thread();

void file_work(std::function<void()> work);
// Waits until everything handed to the file worker before this call is done.
void file_work_flush();

} // namespace kirin
