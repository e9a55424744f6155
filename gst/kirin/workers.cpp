#include "workers.h"

#include "client.h"

#include <glib.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>

namespace kirin {
namespace {

using Work = std::function<void()>;

void run_work(gpointer data, gpointer) {
  auto *work = static_cast<Work *>(data);
  (*work)();
  delete work;
}

GThreadPool *file_pool() {
  static GThreadPool *pool = serial_worker();
  return pool;
}

} // namespace

// At most one thread at a time takes work from the pool's queue, oldest first: the work
// runs one piece after the other, in the order it was pushed. The thread is one of GLib's
// shared pool threads, so an idle worker costs no thread of its own.
GThreadPool *serial_worker() {
  GError *error = nullptr;
  GThreadPool *pool = g_thread_pool_new(run_work, nullptr, 1, FALSE, &error);
  if (!pool)
    g_error("kirin: cannot make a worker: %s", error->message);
  return pool;
}

void serial_push(GThreadPool *worker, Work work) {
  g_thread_pool_push(worker, new Work(std::move(work)), nullptr);
}

bool serial_flush(GThreadPool *worker, gint64 max_us) {
  // Shared with the marker, which may run after this wait gave up.
  struct Marker {
    std::mutex lock;
    std::condition_variable cond;
    bool done = false;
  };
  auto marker = std::make_shared<Marker>();
  serial_push(worker, [marker] {
    std::lock_guard<std::mutex> guard(marker->lock);
    marker->done = true;
    marker->cond.notify_one();
  });
  std::unique_lock<std::mutex> guard(marker->lock);
  if (max_us < 0) {
    marker->cond.wait(guard, [&] { return marker->done; });
    return true;
  }
  return marker->cond.wait_for(guard, std::chrono::microseconds(max_us),
                               [&] { return marker->done; });
}

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
  serial_push(file_pool(), std::move(work));
}

void file_work_flush() {
  serial_flush(file_pool(), -1);
}

} // namespace kirin
