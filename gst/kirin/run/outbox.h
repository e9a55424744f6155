// The element's outbox: what a run's decisions tell the application (bus messages, property
// notifications) and hand to the child's side (an exposure), in the order decided, delivered
// from GStreamer's call-async threads rather than from the decider. The decider is the client
// thread every element shares: a sync bus handler or a notify handler that blocks there would
// hold up every element's requests. From the outbox, it holds up only its own element, whose
// deliveries wait behind it in order.
#pragma once

#include <gst/gst.h>

#include <deque>
#include <functional>
#include <mutex>

namespace kirin {

class Outbox {
public:
  using Delivery = std::function<void(GstElement *element)>;

  // Any thread: `delivery` runs after every delivery handed over before it, on a call-async
  // thread of `element` (which holds the element alive until then).
  void deliver(GstElement *element, Delivery delivery);
  // Runs on the calling thread whatever waits to be delivered, in order: a stop, so that
  // what was decided before it reaches the bus before the bus is flushed. (A delivery a
  // call-async thread has taken already is that thread's: it may still be on its way.)
  void deliver_pending_now(GstElement *element);

private:
  static void drain(GstElement *element, gpointer outbox);
  bool take(Delivery &next);

  std::mutex lock_;
  std::deque<Delivery> queue_;
  bool draining_ = false; // a call-async thread delivers: the next ones wait in the queue
};

} // namespace kirin
