// A job: creates a task (or attaches to one) and polls it until it ends, with retries,
// back-off and deadlines, reporting every change through its callbacks (see client.h).
// Part of libgstkirin-client.module.
#pragma once

#include "client.h"

namespace kirin {
namespace module {

// The module's implementations of client.h's functions of the same names.
JobHandle job_start(JobConfig config, JobCallbacks callbacks);
void job_cancel(const JobHandle &job);
const char *job_error_name(JobError error);

// A provider callback said `task_id` changed: its job, if one that uses callbacks waits for
// it, polls now instead of at its next timer. Client thread only.
void poll_task_now(const std::string &task_id);

} // namespace module
} // namespace kirin
