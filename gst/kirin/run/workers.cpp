#include "workers.h"

#include "client.h"

#include <glib.h>

namespace kirin {

namespace {
using Work = std::function<void()>;
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

} // namespace kirin
