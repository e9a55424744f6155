// The element's outbox (gst/kirin/run/outbox.h) on its own: what a run tells the application is
// delivered in order from a call-async thread, and a stop delivers what is left before it
// returns, after the message a call-async thread has under way, since a message taken from
// the queue but not yet posted would otherwise reach a bus the stop is about to flush.
#include "outbox.h"

#include <gst/check/gstcheck.h>

#include <mutex>
#include <string>
#include <thread>
#include <vector>

using kirin::Outbox;

namespace {

// What the deliveries did, in order, from any thread.
struct Record {
  std::mutex lock;
  std::vector<std::string> events;
  void add(const std::string &event) {
    std::lock_guard<std::mutex> guard(lock);
    events.push_back(event);
  }
  std::string joined() {
    std::lock_guard<std::mutex> guard(lock);
    std::string all;
    for (const std::string &event : events)
      all += (all.empty() ? "" : " ") + event;
    return all;
  }
};

// Shut until the test opens it (or 10 s pass, so that a failed test ends).
struct Gate {
  GMutex lock;
  GCond cond;
  bool open = false;
  Gate() {
    g_mutex_init(&lock);
    g_cond_init(&cond);
  }
  ~Gate() {
    g_mutex_clear(&lock);
    g_cond_clear(&cond);
  }
  void wait() {
    const gint64 deadline = g_get_monotonic_time() + 10 * G_TIME_SPAN_SECOND;
    g_mutex_lock(&lock);
    while (!open && g_cond_wait_until(&cond, &lock, deadline)) {
    }
    g_mutex_unlock(&lock);
  }
  void release() {
    g_mutex_lock(&lock);
    open = true;
    g_cond_broadcast(&cond);
    g_mutex_unlock(&lock);
  }
};

// An element for the call-async threads, and the outbox's first delivery under way on one:
// it records "1 started", waits for `gate`, then records "1 ended".
struct Fixture {
  GstElement *element = gst_pipeline_new(nullptr);
  Outbox outbox;
  Record record;
  Gate gate;
  GAsyncQueue *started = g_async_queue_new();

  explicit Fixture(Outbox::Kind first_kind = Outbox::Kind::Message) {
    outbox.deliver(
        element,
        [this](GstElement *) {
          record.add("1 started");
          g_async_queue_push(started, GINT_TO_POINTER(1));
          gate.wait();
          record.add("1 ended");
        },
        first_kind);
    fail_unless(g_async_queue_timeout_pop(started, 10 * G_TIME_SPAN_SECOND) != nullptr);
  }
  ~Fixture() {
    gate.release();
    // The call-async thread lets go of the element once its deliveries are done.
    outbox.deliver(element, [this](GstElement *) { g_async_queue_push(started, this); });
    fail_unless(g_async_queue_timeout_pop(started, 10 * G_TIME_SPAN_SECOND) == this);
    gst_object_unref(element);
    g_async_queue_unref(started);
  }
  void deliver_second() {
    outbox.deliver(element, [this](GstElement *) { record.add("2"); });
  }
};

void expect_events(Record &record, const char *expected) {
  const std::string events = record.joined();
  fail_unless_equals_string(events.c_str(), expected);
}

} // namespace

GST_START_TEST(test_deliveries_keep_their_order) {
  Fixture f;
  f.deliver_second();
  f.gate.release();
  f.outbox.deliver(f.element, [&](GstElement *) { g_async_queue_push(f.started, &f); });
  fail_unless(g_async_queue_timeout_pop(f.started, 10 * G_TIME_SPAN_SECOND) == &f);
  expect_events(f.record, "1 started 1 ended 2");
}
GST_END_TEST;

// The stop comes while a call-async thread delivers the first message (the application's
// handler takes a while): the stop delivers the second after it, and returns after both.
GST_START_TEST(test_a_stop_finishes_the_message_under_way) {
  Fixture f;
  f.deliver_second();
  std::thread opener([&] {
    // Opened only once the stop has taken what was queued: the stop waits for the first.
    while (f.outbox.pending() != 0)
      g_thread_yield();
    f.gate.release();
  });
  fail_unless(f.outbox.deliver_pending_now(f.element));
  opener.join();
  expect_events(f.record, "1 started 1 ended 2");
}
GST_END_TEST;

// A handler that blocks for good holds the stop up for the stop's wait only; what is queued
// is still delivered before the stop returns.
GST_START_TEST(test_a_blocked_handler_holds_the_stop_for_its_wait_only) {
  Fixture f;
  f.deliver_second();
  const gint64 start = g_get_monotonic_time();
  fail_if(f.outbox.deliver_pending_now(f.element, std::chrono::milliseconds(100)));
  const gint64 took_ms = (g_get_monotonic_time() - start) / 1000;
  fail_unless(took_ms >= 100, "the stop returned after %lld ms", (long long)took_ms);
  expect_events(f.record, "1 started 2");
}
GST_END_TEST;

// Work (an exposure, a run's next step) has nothing to do after a stop: not waited for.
GST_START_TEST(test_a_stop_does_not_wait_for_work) {
  Fixture f(Outbox::Kind::Work);
  f.deliver_second();
  fail_unless(f.outbox.deliver_pending_now(f.element));
  expect_events(f.record, "1 started 2");
}
GST_END_TEST;

// The application stops its pipeline from inside the handler of a message: the stop, on the
// call-async thread, delivers what is queued there and then, without waiting for itself.
GST_START_TEST(test_a_stop_from_inside_a_handler) {
  GstElement *element = gst_pipeline_new(nullptr);
  Outbox outbox;
  Record record;
  GAsyncQueue *done = g_async_queue_new();
  outbox.deliver(element, [&](GstElement *e) {
    record.add("1 started");
    g_async_queue_push(done, GINT_TO_POINTER(outbox.deliver_pending_now(e) ? 1 : 2));
    record.add("1 ended");
  });
  outbox.deliver(element, [&](GstElement *) { record.add("2"); });
  fail_unless_equals_int(GPOINTER_TO_INT(g_async_queue_timeout_pop(done, 10 * G_TIME_SPAN_SECOND)),
                         1);
  outbox.deliver(element, [&](GstElement *) { g_async_queue_push(done, GINT_TO_POINTER(3)); });
  fail_unless_equals_int(GPOINTER_TO_INT(g_async_queue_timeout_pop(done, 10 * G_TIME_SPAN_SECOND)),
                         3);
  expect_events(record, "1 started 2 1 ended");
  gst_object_unref(element);
  g_async_queue_unref(done);
}
GST_END_TEST;

static Suite *outbox_suite() {
  Suite *s = suite_create("outbox");
  TCase *tc = tcase_create("general");
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_deliveries_keep_their_order);
  tcase_add_test(tc, test_a_stop_finishes_the_message_under_way);
  tcase_add_test(tc, test_a_blocked_handler_holds_the_stop_for_its_wait_only);
  tcase_add_test(tc, test_a_stop_does_not_wait_for_work);
  tcase_add_test(tc, test_a_stop_from_inside_a_handler);
  return s;
}

GST_CHECK_MAIN(outbox);
