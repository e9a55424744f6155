// "What do we send, and does it cost money": the one decision of a step, as a pure
// function of the settings, the step, the journal's entry and what the element remembers.
// Everything that pays or attaches goes through plan_step(); it has a unit test per branch
// (tests/check/plan.cpp).
#pragma once

#include "ledger.h"
#include "settings.h"

#include <string>

namespace kirin {

enum class Action {
  Create,  // send a create request: a new task, a new charge
  Attach,  // poll a task that exists already (the user's, the journal's, or remembered)
  Replay,  // the journal says the task completed: no request at all
  Refresh, // poll a completed task once more for a fresh result URL
};

const char *action_name(Action action);

// What the element remembers of the last task it paid for at step 1, across runs: running
// again with the same request attaches to it instead of paying again.
struct PaidTask {
  std::string task_id;
  std::string external_task_id;
  CreateRequest request;
  std::string account; // ledger_account() of the key that paid: another account's is not ours
};

// A step's task as the journal recorded it.
struct JournalEntry {
  std::string task_id;
  std::string external_task_id;
  bool completed = false;
  // Known once completed.
  std::string result_url;
  std::string result_video_id;
  double duration = -1;
  std::string cost;
};

struct PlanInput {
  const Settings *settings = nullptr;
  CreateRequest request;                 // step 1's request from the settings (job_config().create)
  guint step = 1;                        // 1-based, of `extensions`
  std::string previous_video_id;         // the video the previous step made (step > 1)
  std::string refresh_task_id;           // set: poll this task again for a fresh URL
  bool journal_in_use = false;           // the journal is on (and task-id is not set)
  bool fresh = false;                    // pay for a new task, whatever was paid before
  const JournalEntry *journal = nullptr; // this step's recorded entry, when there is one
  PaidTask remembered;                   // from earlier runs of this element
  std::string account;                   // ledger_account() of this run's key
  std::string generated_external_id;     // sent when the user set no ID (the journal's claim)
};

struct Plan {
  Action action = Action::Create;
  CreateRequest request;        // what is sent (Create) or what the task was made from
  std::string task_id;          // Attach, Refresh, Replay: the task
  std::string external_task_id; // the ID the provider knows the task by
  bool journal = false;         // record this step's task (and its kept copy) in the journal
  const char *why = "";         // for the log

  bool costs_money() const { return action == Action::Create; }
};

// What identifies a step's task in the journal. Its external_task_id is the one a create
// of this step sends when the user set one ("" otherwise).
LedgerRequest journal_request(const Settings &settings, guint step,
                              const std::string &previous_video_id);

// The external task ID a create of `step` sends: the user's (per step in a chain), else
// `generated`.
std::string external_id_for(const Settings &settings, guint step, const std::string &generated);

Plan plan_step(const PlanInput &input);

// Whether two requests would make the same video (the callback URL aside it is the same
// request; here it counts, as it changes where the provider reports).
bool same_request(const CreateRequest &a, const CreateRequest &b);

} // namespace kirin
