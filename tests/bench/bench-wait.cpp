// kirin-bench wait: what an element costs (CPU, wake-ups, polls, threads) while its task
// stays pending.
#include "bench-common.h"

namespace kirin_bench {

int run_wait(const Args &args) {
  ClientLog::get().install();
  const long seconds = args.number("seconds", 60);
  GstElement *src = make_extend_src(args.get("api-url"), args.get("api-key", "test-key"));
  GstElement *pipeline = make_pipeline(src);
  gst_element_set_state(pipeline, GST_STATE_PLAYING);
  std::string task = ClientLog::get().wait_first_task(10000);
  if (task.empty()) {
    g_printerr("kirin-bench: no task was created\n");
    return 1;
  }
  // From here on the element only waits: nothing else in the process has work to do.
  const auto threads_before = threads();
  const Usage before = usage();
  const gint64 start = now_us();
  g_usleep(seconds * G_USEC_PER_SEC);
  const gint64 end = now_us();
  const Usage after = usage();
  const auto threads_after = threads();

  std::vector<std::string> per_thread;
  for (const auto &[tid, info] : threads_after) {
    auto old = threads_before.find(tid);
    long switches = info.switches - (old == threads_before.end() ? 0 : old->second.switches);
    double cpu = info.cpu_ms - (old == threads_before.end() ? 0 : old->second.cpu_ms);
    Json item;
    item.str("name", info.name).integer("switches", switches).num("cpu_ms", cpu);
    per_thread.push_back(item.text());
  }
  GstState state = GST_STATE_VOID_PENDING;
  gst_element_get_state(pipeline, &state, nullptr, 0);
  gchar *task_after = nullptr;
  g_object_get(src, "task-id", &task_after, nullptr);
  Json out;
  out.num("seconds", (end - start) / 1e6).num("cpu_ms", after.cpu_ms - before.cpu_ms);
  out.integer("wakeups", after.switches - before.switches);
  out.integer("polls", ClientLog::get().poll_count_between(start, end));
  out.integer("threads", threads_after.size()).raw("per_thread", json_array(per_thread));
  out.str("task", task).boolean("still_waiting", task_after && task == task_after);
  out.str("plugin", plugin_file());
  out.print();
  g_free(task_after);
  gst_element_set_state(pipeline, GST_STATE_NULL);
  gst_object_unref(pipeline);
  return 0;
}

} // namespace kirin_bench
