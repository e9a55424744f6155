// The element's outbox (gst/kirin/run/outbox.h) on its own: what a run tells the application
// is delivered in order from a call-async thread, and a stop delivers what is still queued on
// its own thread before it returns, behind the delivery a call-async thread has under way.
#include "outbox.h"

#include <gst/check/gstcheck.h>

#include <mutex>
#include <string>
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

// Pushes onto `queue` from a delivery, holding a reference of its own: the waiter may drop
// the queue as soon as it has the item.
void push_from_delivery(GAsyncQueue *queue) {
  g_async_queue_ref(queue);
  g_async_queue_push(queue, GINT_TO_POINTER(1));
  g_async_queue_unref(queue);
}

void expect_events(Record &record, const char *expected) {
  const std::string events = record.joined();
  fail_unless_equals_string(events.c_str(), expected);
}

// An element for the call-async threads, and an outbox whose first delivery blocks its
// call-async thread (an application's handler that takes its time) until released. The
// outbox lives as long as the element, as in kirinextendsrc (its private part): the
// call-async thread holds the element until it has looked at the outbox for the last time.
struct Fixture {
  GstElement *element = gst_pipeline_new(nullptr);
  Outbox &outbox = *new Outbox();
  Record record;
  GAsyncQueue *started = g_async_queue_new();
  GAsyncQueue *release = g_async_queue_new();
  GAsyncQueue *ended = g_async_queue_new();

  Fixture() {
    g_object_set_data_full(G_OBJECT(element), "outbox", &outbox,
                           [](gpointer outbox) { delete static_cast<Outbox *>(outbox); });
    outbox.deliver(element, [this](GstElement *) {
      record.add("1 started");
      push_from_delivery(started);
      g_async_queue_timeout_pop(release, 10 * G_TIME_SPAN_SECOND);
      record.add("1 ended");
      push_from_delivery(ended);
    });
    fail_unless(g_async_queue_timeout_pop(started, 10 * G_TIME_SPAN_SECOND) != nullptr);
  }
  ~Fixture() {
    g_async_queue_push(release, GINT_TO_POINTER(1));
    fail_unless(g_async_queue_timeout_pop(ended, 10 * G_TIME_SPAN_SECOND) != nullptr);
    gst_object_unref(element); // the outbox goes with the call-async thread's reference
    g_async_queue_unref(started);
    g_async_queue_unref(release);
    g_async_queue_unref(ended);
  }
};

} // namespace

GST_START_TEST(test_deliveries_keep_their_order) {
  Fixture f;
  f.outbox.deliver(f.element, [&](GstElement *) { f.record.add("2"); });
  f.outbox.deliver(f.element, [&](GstElement *) { f.record.add("3"); });
  GAsyncQueue *done = g_async_queue_new();
  f.outbox.deliver(f.element, [done](GstElement *) { push_from_delivery(done); });
  g_async_queue_push(f.release, GINT_TO_POINTER(1));
  fail_unless(g_async_queue_timeout_pop(done, 10 * G_TIME_SPAN_SECOND) != nullptr);
  g_async_queue_unref(done);
  expect_events(f.record, "1 started 1 ended 2 3");
}
GST_END_TEST;

// A stop while a handler holds the call-async thread: what is queued is delivered on the
// stopping thread, in order, before the stop returns, without waiting for that handler.
GST_START_TEST(test_a_stop_delivers_what_is_queued_at_once) {
  Fixture f;
  GThread *stopping = g_thread_self();
  f.outbox.deliver(f.element, [&](GstElement *) {
    f.record.add(g_thread_self() == stopping ? "2 here" : "2 elsewhere");
  });
  f.outbox.deliver(f.element, [&](GstElement *) { f.record.add("3"); });
  f.outbox.deliver_pending_now(f.element);
  expect_events(f.record, "1 started 2 here 3");
}
GST_END_TEST;

static Suite *outbox_suite() {
  Suite *s = suite_create("outbox");
  TCase *tc = tcase_create("general");
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_deliveries_keep_their_order);
  tcase_add_test(tc, test_a_stop_delivers_what_is_queued_at_once);
  return s;
}

GST_CHECK_MAIN(outbox);
