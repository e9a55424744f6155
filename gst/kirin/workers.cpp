#include "workers.h"

#include "client.h"

#include <glib.h>

#include <condition_variable>
#include <mutex>

namespace kirin {
namespace {

using Work = std::function<void()>;

void run_work(gpointer data, gpointer) {
  auto *work = static_cast<Work *>(data);
  (*work)();
  delete work;
}

// At most one thread at a time takes work from the pool's queue, oldest first: the work
// runs one piece after the other, in the order it was pushed. The thread is one of GLib's
// shared pool threads, so an idle worker costs no thread of its own.
GThreadPool *serial_pool() {
  GError *error = nullptr;
  GThreadPool *pool = g_thread_pool_new(run_work, nullptr, 1, FALSE, &error);
  if (!pool)
    g_error("kirin: cannot make a worker: %s", error->message);
  return pool;
}

GThreadPool *file_pool() {
  static GThreadPool *pool = serial_pool();
  return pool;
}

} // namespace

void decide(Work work) {
  client_post(std::move(work));
}

void decide_later(unsigned delay_ms, Work work) {
  decide([delay_ms, work = std::move(work)]() mutable {
    GSource *timer = g_timeout_source_new(delay_ms);
    g_source_set_callback(
        timer,
        [](gpointer data) -> gboolean {
          (*static_cast<Work *>(data))();
          return G_SOURCE_REMOVE;
        },
        new Work(std::move(work)), [](gpointer data) { delete static_cast<Work *>(data); });
    // The decider's thread runs its own context, the thread-default one there.
    g_source_attach(timer, g_main_context_get_thread_default());
    g_source_unref(timer);
  });
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
