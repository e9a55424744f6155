#include "client-thread.h"

#include "proxy-cache.h"

GST_DEBUG_CATEGORY(kirin_client_debug);

namespace kirin {
namespace module {

ClientThread &ClientThread::get() {
  static ClientThread *instance = new ClientThread();
  return *instance;
}

ClientThread::ClientThread() {
  GST_DEBUG_CATEGORY_INIT(kirin_client_debug, "kirinclient", 0, "Kirin API client");
  context_ = g_main_context_new();
  g_thread_unref(g_thread_new("kirin-client", &ClientThread::run, this));
  std::unique_lock<std::mutex> lock(mutex_);
  ready_cond_.wait(lock, [this] { return session_ != nullptr; });
}

gpointer ClientThread::run(gpointer data) {
  auto *self = static_cast<ClientThread *>(data);
  g_main_context_push_thread_default(self->context_);
  // Polls are short and many elements may wait at once: allow more parallel connections
  // than libsoup's default of two per host, so one hung request cannot starve the rest.
  // Proxy lookups go through the proxy cache (proxy-cache.h), so a burst of new connections
  // costs one system lookup, not one pooled thread each.
  GProxyResolver *proxies = proxy_cache_new(kConnectionIdleSeconds);
  SoupSession *session = soup_session_new_with_options(
      "idle-timeout", kConnectionIdleSeconds, "max-conns", 128, "max-conns-per-host",
      kMaxConnsPerHost, "proxy-resolver", proxies, nullptr);
  g_object_unref(proxies);
  GMainLoop *loop = g_main_loop_new(self->context_, FALSE);
  {
    std::lock_guard<std::mutex> lock(self->mutex_);
    self->session_ = session;
  }
  self->ready_cond_.notify_all();
  g_main_loop_run(loop);
  return nullptr;
}

void ClientThread::run_and_wait(const std::function<void()> &work) {
  struct Call {
    explicit Call(const std::function<void()> &to_run) : work(to_run) {}
    const std::function<void()> &work;
    bool done = false;
    std::mutex lock;
    std::condition_variable cond;
  } call(work);
  g_main_context_invoke(
      context_,
      [](gpointer data) -> gboolean {
        auto *call = static_cast<Call *>(data);
        call->work();
        std::lock_guard<std::mutex> guard(call->lock);
        call->done = true;
        call->cond.notify_all();
        return G_SOURCE_REMOVE;
      },
      &call);
  std::unique_lock<std::mutex> guard(call.lock);
  call.cond.wait(guard, [&] { return call.done; });
}

} // namespace module
} // namespace kirin
