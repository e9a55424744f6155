#include "plan.h"

namespace kirin {

const char *action_name(Action action) {
  switch (action) {
  case Action::Create:
    return "create";
  case Action::Attach:
    return "attach";
  case Action::Replay:
    return "replay";
  case Action::Refresh:
    return "refresh";
  }
  return "?";
}

bool same_request(const CreateRequest &a, const CreateRequest &b) {
  return a.model == b.model && a.video_id == b.video_id && a.prompt == b.prompt &&
         a.negative_prompt == b.negative_prompt && a.cfg_scale == b.cfg_scale &&
         a.callback_url == b.callback_url;
}

std::string external_id_for(const Settings &settings, guint step, const std::string &generated) {
  const std::string &user_id = settings.external_task_id;
  if (user_id.empty())
    return generated;
  return step > 1 ? user_id + "-step" + std::to_string(step) : user_id;
}

LedgerRequest journal_request(const Settings &settings, guint step,
                              const std::string &previous_video_id) {
  LedgerRequest r;
  r.api_url = settings.api_url;
  r.request.model = settings.model;
  r.request.video_id = step > 1 ? previous_video_id : settings.video_id;
  r.request.prompt = settings.prompt;
  r.request.negative_prompt = settings.negative_prompt;
  if (settings.cfg_scale_set)
    r.request.cfg_scale = settings.cfg_scale;
  r.request.external_task_id = external_id_for(settings, step, "");
  r.extensions = settings.extensions;
  r.step = step;
  return r;
}

namespace {

Plan attach(Plan plan, const std::string &task_id, const std::string &external_task_id,
            const char *why) {
  plan.action = Action::Attach;
  plan.task_id = task_id;
  plan.external_task_id = external_task_id;
  plan.why = why;
  return plan;
}

// A new task: the user's external ID (per step in a chain), else a generated one.
Plan create(Plan plan, const PlanInput &in) {
  plan.action = Action::Create;
  plan.external_task_id = external_id_for(*in.settings, in.step, in.generated_external_id);
  plan.why = in.step > 1 ? "the next step of the chain" : "a new request";
  return plan;
}

} // namespace

Plan plan_step(const PlanInput &in) {
  Plan plan;
  plan.request = in.request;
  if (in.step > 1)
    plan.request.video_id = in.previous_video_id;
  plan.journal = in.journal_in_use && in.refresh_task_id.empty();

  if (!in.refresh_task_id.empty()) {
    plan.action = Action::Refresh;
    plan.task_id = in.refresh_task_id;
    plan.why = "the result URL expired";
  } else if (in.journal && in.journal->completed) {
    plan.action = Action::Replay;
    plan.task_id = in.journal->task_id;
    plan.external_task_id = in.journal->external_task_id;
    plan.why = "the journal says the task completed";
  } else if (in.journal && !in.journal->task_id.empty()) {
    plan = attach(plan, in.journal->task_id, in.journal->external_task_id,
                  "the journal says an earlier run created the task");
  } else if (in.step > 1) {
    plan = create(plan, in);
  } else if (!in.settings->task_id.empty()) {
    plan = attach(plan, in.settings->task_id, in.settings->external_task_id, "task-id is set");
  } else if (!in.fresh && !in.remembered.task_id.empty() && in.remembered.account == in.account &&
             same_request(in.remembered.request, in.request)) {
    plan = attach(plan, in.remembered.task_id, in.remembered.external_task_id,
                  "this element paid for the same request before");
  } else {
    plan = create(plan, in);
  }
  plan.request.external_task_id = plan.external_task_id;
  return plan;
}

} // namespace kirin
