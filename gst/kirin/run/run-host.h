// What a run may touch of the element that runs it: the element gives a RunHost (it lives in
// the element's private part) to each run it makes. A run uses it only while it holds the
// element (ElementRef), so the host outlives every use; nothing of the run's layer knows the
// element's own types.
#pragma once

#include "outbox.h"
#include "plan.h"

#include <functional>
#include <string>

namespace kirin {

class Run;

// What a run found out, for the element's read-only properties and task-id /
// external-task-id.
struct Published {
  std::string task_id;
  std::string external_task_id; // the one sent (the user's or a generated one)
  std::string result_url;
  std::string result_video_id;
  double result_duration = -1;
};

class RunHost {
public:
  // Under the element's lock, and only while `run` is the element's run: a stopped run's
  // findings are not the element's any more.
  virtual void publish(const Run &run, const std::function<void(Published &)> &change) = 0;
  // Step 1's paid task: running the element again unchanged attaches to it (plan_step).
  virtual void remember_paid(const Run &run, const PaidTask &paid) = 0;
  // Where the run's decisions go to reach the application, in order (outbox.h).
  virtual Outbox &outbox() = 0;

protected:
  ~RunHost() = default;
};

} // namespace kirin
