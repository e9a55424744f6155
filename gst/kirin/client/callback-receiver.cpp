#include "callback-receiver.h"

#include "client-thread.h"
#include "job.h"
#include "request.h"
#include "task.h"

#include <map>

#define GST_CAT_DEFAULT kirin_client_debug

namespace kirin {
namespace module {
namespace {

// A notification names its task; the body is parsed only for that ID. Whatever else it
// says (status, URL) is ignored: the poll it triggers asks the provider itself.
void on_callback(SoupServer *, SoupServerMessage *msg, const char *, GHashTable *, gpointer) {
  if (g_strcmp0(soup_server_message_get_method(msg), "POST") != 0) {
    soup_server_message_set_status(msg, SOUP_STATUS_METHOD_NOT_ALLOWED, nullptr);
    return;
  }
  SoupMessageBody *body = soup_server_message_get_request_body(msg);
  Task task;
  std::string error;
  if ((gsize)body->length > kMaxBodyBytes || !parse_task(body->data, body->length, task, error) ||
      task.id.empty()) {
    soup_server_message_set_status(msg, SOUP_STATUS_BAD_REQUEST, nullptr);
    return;
  }
  poll_task_now(task.id);
  soup_server_message_set_status(msg, SOUP_STATUS_NO_CONTENT, nullptr);
}

// Listens on `address`:`port` with a new server; its port, or 0 with `error` set.
guint listen_on(GInetAddress *address, guint16 port, const std::string &listen,
                std::string &error) {
  SoupServer *server = soup_server_new(nullptr, nullptr);
  soup_server_add_handler(server, nullptr, on_callback, nullptr, nullptr);
  GSocketAddress *socket_address = g_inet_socket_address_new(address, port);
  GError *listen_error = nullptr;
  guint bound = 0;
  if (soup_server_listen(server, socket_address, SoupServerListenOptions(0), &listen_error)) {
    GSList *sockets = soup_server_get_listeners(server);
    GSocketAddress *local = g_socket_get_local_address(G_SOCKET(sockets->data), nullptr);
    bound = g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(local));
    g_object_unref(local);
    g_slist_free(sockets);
    // The server lives as long as the process.
    GST_INFO("listening for callbacks on %s (port %u)", listen.c_str(), bound);
  } else {
    error = listen_error->message;
    g_error_free(listen_error);
    g_object_unref(server);
  }
  g_object_unref(socket_address);
  return bound;
}

// On the client thread: the port listened on at `listen`, starting a server the first time.
guint listener_for(const std::string &listen, std::string &error) {
  static auto *listeners = new std::map<std::string, guint>(); // address -> port
  auto known = listeners->find(listen);
  if (known != listeners->end())
    return known->second;
  size_t colon = listen.rfind(':');
  std::string host = colon == std::string::npos ? "" : listen.substr(0, colon);
  guint64 wanted = 0;
  GInetAddress *address = g_inet_address_new_from_string(host.c_str());
  guint port = 0;
  if (!address || colon == std::string::npos ||
      !g_ascii_string_to_unsigned(listen.c_str() + colon + 1, 10, 0, 65535, &wanted, nullptr)) {
    error = "'" + listen + "' is not an IP address and port (e.g. 0.0.0.0:8099)";
  } else {
    port = listen_on(address, (guint16)wanted, listen, error);
    if (port)
      (*listeners)[listen] = port;
  }
  g_clear_object(&address);
  return port;
}

} // namespace

guint callback_listener_start(const std::string &listen, std::string &error) {
  guint port = 0;
  std::string attempt_error;
  ClientThread::get().run_and_wait([&] { port = listener_for(listen, attempt_error); });
  error = attempt_error;
  return port;
}

} // namespace module
} // namespace kirin
