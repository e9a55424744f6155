#include "serial-worker.h"

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>

namespace kirin {
namespace {

using Work = std::function<void()>;

// How long an idle worker's thread waits for more work before it ends: long enough that a
// download kept as it streams (a write per buffer) keeps one thread, short enough that a
// process whose elements all wait holds no thread for a worker with nothing to do.
constexpr auto kIdleEnd = std::chrono::milliseconds(5);

SerialWorker *file_worker() {
  static SerialWorker *worker = serial_worker("kirin-files");
  return worker;
}

} // namespace

// One thread at a time takes the work, oldest first: it runs one piece after the other, in
// the order it was pushed. The thread is started by the push that finds none, and ends once
// the queue stayed empty for kIdleEnd. A worker lives as long as the process.
struct SerialWorker {
  std::string name;
  std::mutex lock;
  std::condition_variable pushed;
  std::deque<Work> queue;
  bool taking = false; // a thread takes the queue's work; the next push starts one if not

  void run() {
    std::unique_lock<std::mutex> guard(lock);
    for (;;) {
      if (queue.empty() && !pushed.wait_for(guard, kIdleEnd, [this] { return !queue.empty(); })) {
        taking = false; // under the lock: a later push starts the next thread
        return;
      }
      Work work = std::move(queue.front());
      queue.pop_front();
      guard.unlock();
      work();
      work = nullptr; // what it holds is let go here, on this worker
      guard.lock();
    }
  }
};

SerialWorker *serial_worker(const char *name) {
  auto *worker = new SerialWorker();
  worker->name = name;
  return worker;
}

void serial_push(SerialWorker *worker, Work work) {
  std::lock_guard<std::mutex> guard(worker->lock);
  worker->queue.push_back(std::move(work));
  if (worker->taking) {
    worker->pushed.notify_one();
    return;
  }
  worker->taking = true;
  GError *error = nullptr;
  GThread *thread = g_thread_try_new(
      worker->name.c_str(),
      [](gpointer data) -> gpointer {
        static_cast<SerialWorker *>(data)->run();
        return nullptr;
      },
      worker, &error);
  if (!thread)
    g_error("kirin: cannot start the %s thread: %s", worker->name.c_str(), error->message);
  g_thread_unref(thread); // it ends by itself
}

bool serial_flush(SerialWorker *worker, gint64 max_us) {
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

void file_work(Work work) {
  serial_push(file_worker(), std::move(work));
}

void file_work_flush() {
  serial_flush(file_worker(), -1);
}

} // namespace kirin
