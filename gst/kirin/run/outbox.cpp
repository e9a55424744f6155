#include "outbox.h"

namespace kirin {

void Outbox::deliver(GstElement *element, Delivery delivery) {
  {
    std::lock_guard<std::mutex> guard(lock_);
    queue_.push_back(std::move(delivery));
    if (draining_)
      return;
    draining_ = true;
  }
  // The outbox lives in the element's private part, which the call's reference keeps.
  gst_element_call_async(element, drain, this, nullptr);
}

bool Outbox::take(Delivery &next) {
  std::lock_guard<std::mutex> guard(lock_);
  if (queue_.empty()) {
    draining_ = false;
    return false;
  }
  next = std::move(queue_.front());
  queue_.pop_front();
  return true;
}

void Outbox::drain(GstElement *element, gpointer outbox) {
  auto *self = static_cast<Outbox *>(outbox);
  Delivery next;
  while (self->take(next))
    next(element);
}

void Outbox::deliver_pending_now(GstElement *element) {
  std::deque<Delivery> pending;
  {
    std::lock_guard<std::mutex> guard(lock_);
    pending.swap(queue_);
  }
  for (Delivery &delivery : pending)
    delivery(element);
}

} // namespace kirin
