// The element's outbox: what a run's decisions tell the application (bus messages, property
// notifications) and hand to the child's side (an exposure), in the order decided, delivered
// from GStreamer's call-async threads rather than from the decider. The decider is the client
// thread every element shares: a sync bus handler or a notify handler that blocks there would
// hold up every element's requests. From the outbox, it holds up only its own element, whose
// deliveries wait behind it in order.
#pragma once

#include <gst/gst.h>

#include <chrono>
#include <deque>
#include <functional>
#include <mutex>

namespace kirin {

class Outbox {
public:
  using Delivery = std::function<void(GstElement *element)>;
  // What a delivery is, for a stop: a message (or notification) reaches the application even
  // when the stop comes while it is under way; work (an exposure, the run's next step) has
  // nothing left to do once the run is stopped.
  enum class Kind { Message, Work };

  // How long a stop waits for a message that a call-async thread is delivering (the
  // application's sync or notify handler runs inside it) before it delivers the rest.
  static constexpr std::chrono::milliseconds kStopWait{1000};

  // Any thread: `delivery` runs after every delivery handed over before it, on a call-async
  // thread of `element` (which holds the element alive until then).
  void deliver(GstElement *element, Delivery delivery, Kind kind = Kind::Message);
  // Runs on the calling thread whatever waits to be delivered, in order: a stop, so that
  // what was decided before it reaches the bus before the bus is flushed. A message that a
  // call-async thread has taken is finished first (for at most `wait`): taken but not yet
  // posted, it would otherwise reach a flushed bus. Returns false when the wait ran out.
  bool deliver_pending_now(GstElement *element, std::chrono::milliseconds wait = kStopWait);
  // Deliveries handed over and not yet taken (for tests).
  size_t pending();

private:
  struct Item {
    Delivery delivery;
    Kind kind;
  };
  static void drain(GstElement *element, gpointer outbox);
  bool take(Item &next);

  std::mutex lock_;
  std::deque<Item> queue_;
  bool draining_ = false; // a call-async thread delivers: the next ones wait in the queue
  // Held from taking a message to its end, so that a stop delivers after it, not beside it.
  // Recursive: the application may stop its pipeline from inside the handler it runs.
  std::recursive_timed_mutex delivering_;
};

} // namespace kirin
