#include "workers.h"

#include <glib.h>

#include <condition_variable>
#include <mutex>

namespace kirin {
namespace {

using Work = std::function<void()>;

thread_local bool is_decider = false;

void run_work(gpointer data, gpointer is_decider_pool) {
  is_decider = is_decider_pool != nullptr;
  auto *work = static_cast<Work *>(data);
  (*work)();
  delete work;
}

// One thread, exclusive to the pool: the work runs in the order it was pushed.
GThreadPool *one_thread_pool(bool decider) {
  GError *error = nullptr;
  GThreadPool *pool =
      g_thread_pool_new(run_work, decider ? GINT_TO_POINTER(1) : nullptr, 1, TRUE, &error);
  if (!pool)
    g_error("kirin: cannot start a worker thread: %s", error->message);
  return pool;
}

GThreadPool *decider_pool() {
  static GThreadPool *pool = one_thread_pool(true);
  return pool;
}

GThreadPool *file_pool() {
  static GThreadPool *pool = one_thread_pool(false);
  return pool;
}

} // namespace

void decide(Work work) {
  g_thread_pool_push(decider_pool(), new Work(std::move(work)), nullptr);
}

bool on_decider_thread() {
  return is_decider;
}

void file_work(Work work) {
  g_thread_pool_push(file_pool(), new Work(std::move(work)), nullptr);
}

void file_work_flush() {
  std::mutex lock;
  std::condition_variable done_cond;
  bool done = false;
  file_work([&] {
    std::lock_guard<std::mutex> guard(lock);
    done = true;
    done_cond.notify_one();
  });
  std::unique_lock<std::mutex> guard(lock);
  done_cond.wait(guard, [&] { return done; });
}

} // namespace kirin
