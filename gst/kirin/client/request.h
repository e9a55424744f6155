// One HTTP exchange with the provider's API on the client thread, whatever happens to it:
// a bounded body, a time limit, whether the request may have been delivered. Part of
// libgstkirin-client.module.
#pragma once

#include <gio/gio.h>
#include <libsoup/soup.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>

namespace kirin {
namespace module {

// A task object is a few hundred bytes; anything past this is not one, and is refused
// rather than buffered.
constexpr gsize kMaxBodyBytes = 1024 * 1024;

// What one HTTP exchange produced, whatever happened.
struct Response {
  guint status = 0;    // HTTP status, 0 when no response arrived
  std::string reason;  // the reason phrase the server sent
  std::string body;    // at most kMaxBodyBytes
  bool failed = false; // transport failure (no response, or body cut off)
  bool sent = false;   // the request's headers were written: it may have been delivered
  bool too_large = false;
  bool cancelled = false;
  bool retryable_unsent = false; // failed before sending, in a way worth another try
  guint retry_after_ms = 0;
  std::string error_text;
};

// Whether a job's requests may still be handed to the session. Closing it (any thread) and
// handing a request over (client thread) take the same lock, so once close() returned no
// request of the job reaches libsoup: not one whose timer or turn is being dispatched at
// that moment, nor one still waiting for its turn.
class SendGate {
public:
  void close() {
    std::lock_guard<std::mutex> guard(lock_);
    closed_ = true;
  }
  // Runs `hand_over` under the lock unless the gate is closed; false when it is.
  template <typename HandOver> bool pass(HandOver hand_over) {
    std::lock_guard<std::mutex> guard(lock_);
    if (closed_)
      return false;
    hand_over();
    return true;
  }

private:
  std::mutex lock_;
  bool closed_ = false;
};

// The request's state lives on the heap, owned by its async chain: a late libsoup callback
// after a cancel still finds it alive. It frees itself once `done` returned.
//
// At most kMaxConnsPerHost requests to one host are handed to the session at once; the
// others wait, in the order sent, until one of those ends. libsoup walks its whole queue of
// messages at every change of every message and connection, so a thousand creates queued in
// it at once (a thousand elements started together) kept the client thread busy for seconds
// on that walk alone; queued here, they cost nothing until their turn. A request that waits
// here was not sent: its time limit runs from send(), and when it expires the request ends
// unsent (retryable_unsent), so a create is retried.
class Request {
public:
  using Done = std::function<void(Request &request, Response &response)>;

  // Sends `msg` (taking it) on the client thread's session, through `gate`; client thread
  // only. `done` runs there exactly once, when the exchange is over: also after cancel() and
  // when the gate was closed before its turn (with response.cancelled), and when no complete
  // answer came within `timeout_s` (at least 1 s). When the system's CAs reject the server,
  // its chain is verified against `extra_cas`, if given, instead.
  static Request *send(SoupMessage *msg, std::shared_ptr<SendGate> gate, guint timeout_s,
                       GTlsDatabase *extra_cas, Done done);

  // Client thread only. `done` runs later, never from inside this call.
  void cancel();

private:
  Request(SoupMessage *msg, std::shared_ptr<SendGate> gate, guint timeout_s, Done done);
  ~Request();

  // False when the gate was closed: the request then ends unsent, out of any queue.
  bool hand_over();
  void end_unsent();
  void end_cancelled_later();
  static void end_turn(const std::string &origin);
  void complete(GError *error);
  static gboolean accept_certificate(SoupMessage *msg, GTlsCertificate *certificate,
                                     GTlsCertificateFlags errors, gpointer data);
  static void on_sent(GObject *source, GAsyncResult *result, gpointer data);
  static void on_body(GObject *source, GAsyncResult *result, gpointer data);

  SoupMessage *msg_;
  std::shared_ptr<SendGate> gate_;
  guint timeout_s_;
  Done done_;
  GCancellable *cancellable_ = g_cancellable_new();
  GSource *timeout_ = nullptr; // cancels a request that gets no complete answer in time
  bool timed_out_ = false;
  GOutputStream *sink_ = nullptr;
  gulong wrote_headers_handler_ = 0;
  Response response_;
  std::string origin_; // scheme, host and port: requests to it are admitted in turn
  enum class Stage {
    Waiting,    // in its origin's queue, for its turn
    HandedOver, // to the session
    Ending,     // cancelled while waiting, or its gate closed: its completion is on its way
  };
  Stage stage_ = Stage::Waiting;
};

// "HTTP <status> <reason>", with what the error body says, if anything. `code` receives the
// provider's error code when it sent one.
std::string http_error_text(const Response &response, std::string *code);

// Whether the provider answered lately: since when every exchange got no answer at all.
class Reachability {
public:
  // Any answer, an error status too, says the provider could be reached; none (no
  // connection, none in time), that it could not.
  void note(const Response &response);
  // " The provider could not be reached for the last N s (why).", or "" when the last
  // exchange was answered.
  std::string text() const;

private:
  gint64 since_us_ = 0; // monotonic; 0 when the last exchange was answered
  std::string why_;     // the last failure's
};

// A URL for messages and logs: without user info, query or fragment, any of which may hold
// a secret. An unparsable URL is returned as it is.
std::string shown_url(const std::string &url);

} // namespace module
} // namespace kirin
