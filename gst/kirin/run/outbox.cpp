#include "outbox.h"

namespace kirin {

void Outbox::deliver(GstElement *element, Delivery delivery, Kind kind) {
  {
    std::lock_guard<std::mutex> guard(lock_);
    queue_.push_back({std::move(delivery), kind});
    if (draining_)
      return;
    draining_ = true;
  }
  // The outbox lives in the element's private part, which the call's reference keeps.
  gst_element_call_async(element, drain, this, nullptr);
}

bool Outbox::take(Item &next) {
  std::lock_guard<std::mutex> guard(lock_);
  if (queue_.empty()) {
    draining_ = false;
    return false;
  }
  next = std::move(queue_.front());
  queue_.pop_front();
  return true;
}

size_t Outbox::pending() {
  std::lock_guard<std::mutex> guard(lock_);
  return queue_.size();
}

void Outbox::drain(GstElement *element, gpointer outbox) {
  auto *self = static_cast<Outbox *>(outbox);
  for (;;) {
    // Taken under `delivering_`: a stop finds each message either still queued or being
    // delivered, never between the two.
    std::unique_lock<std::recursive_timed_mutex> delivering(self->delivering_);
    Item next;
    if (!self->take(next))
      return;
    if (next.kind == Kind::Work)
      delivering.unlock(); // a stop need not wait for it (it may wait for the stop's locks)
    next.delivery(element);
  }
}

bool Outbox::deliver_pending_now(GstElement *element, std::chrono::milliseconds wait) {
  std::deque<Item> pending;
  {
    std::lock_guard<std::mutex> guard(lock_);
    pending.swap(queue_);
  }
  // What the stop took comes after the message under way, if any: wait for its end.
  std::unique_lock<std::recursive_timed_mutex> delivering(delivering_, std::defer_lock);
  const bool in_order = delivering.try_lock_for(wait);
  for (Item &item : pending)
    item.delivery(element);
  return in_order;
}

} // namespace kirin
