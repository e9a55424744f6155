// The module's one thread for HTTP (see client.h): it owns a GMainContext and the only
// SoupSession, and runs every job's requests, timers and deadlines as sources on that
// context. Part of libgstkirin-client.module.
#pragma once

#include <gst/gst.h>
#include <libsoup/soup.h>

#include <condition_variable>
#include <functional>
#include <mutex>

// The module's debug category, "kirinclient"; set up with the thread.
GST_DEBUG_CATEGORY_EXTERN(kirin_client_debug);

namespace kirin {
namespace module {

// How long an idle connection stays open; the proxy cache keeps its answers as long.
constexpr guint kConnectionIdleSeconds = 60;
// Connections to one host at once; also how many requests to one host are handed to the
// session at once (request.h).
constexpr guint kMaxConnsPerHost = 64;

// Started on first use, it lives for the rest of the process, like GStreamer's own task
// pools.
class ClientThread {
public:
  static ClientThread &get();

  GMainContext *context() const { return context_; }
  SoupSession *session() const { return session_; } // client thread only

  // Runs `work` on the client thread (at once when called there) and returns when it ran.
  void run_and_wait(const std::function<void()> &work);

private:
  ClientThread();
  static gpointer run(gpointer data);

  GMainContext *context_ = nullptr;
  SoupSession *session_ = nullptr;
  std::mutex mutex_;
  std::condition_variable ready_cond_;
};

} // namespace module
} // namespace kirin
