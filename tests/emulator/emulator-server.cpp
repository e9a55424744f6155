// The server thread: starting, listening, going offline and shutting down, running work on
// the thread, the routes that are not the provider's, logging, and the answer helpers.
#include "emulator-internal.h"

#include <gst/gst.h>

#include <glib/gstdio.h>

#include <cerrno>
#include <cstdarg>

namespace kirin_emu {
namespace {

// How often status changes are noticed (to start renders and send callbacks). Polls compute
// the status from the clock themselves, so this only delays those side effects.
constexpr guint kTickMs = 50;

void remove_dir(const std::string &path) {
  if (GDir *dir = g_dir_open(path.c_str(), 0, nullptr)) {
    while (const char *name = g_dir_read_name(dir)) {
      g_autofree char *file = g_build_filename(path.c_str(), name, nullptr);
      g_remove(file);
    }
    g_dir_close(dir);
  }
  g_rmdir(path.c_str());
}

} // namespace

void set_string(JsonBuilder *builder, const char *name, const std::string &value) {
  json_builder_set_member_name(builder, name);
  json_builder_add_string_value(builder, value.c_str());
}

std::string to_json(JsonBuilder *builder) {
  g_autoptr(JsonNode) root = json_builder_get_root(builder);
  g_autoptr(JsonGenerator) generator = json_generator_new();
  json_generator_set_root(generator, root);
  gsize length = 0;
  g_autofree char *text = json_generator_to_data(generator, &length);
  return std::string(text, length);
}

std::string message_json(const std::string &message) {
  g_autoptr(JsonBuilder) builder = json_builder_new();
  json_builder_begin_object(builder);
  set_string(builder, "message", message);
  json_builder_end_object(builder);
  return to_json(builder);
}

std::string error_json(const char *code, const std::string &message) {
  g_autoptr(JsonBuilder) builder = json_builder_new();
  json_builder_begin_object(builder);
  json_builder_set_member_name(builder, "error");
  json_builder_begin_object(builder);
  set_string(builder, "code", code);
  set_string(builder, "message", message);
  json_builder_end_object(builder);
  json_builder_end_object(builder);
  return to_json(builder);
}

void respond(SoupServerMessage *msg, guint status, const char *content_type,
             const std::string &body) {
  soup_server_message_set_status(msg, status, nullptr);
  soup_server_message_set_response(msg, content_type, SOUP_MEMORY_COPY, body.data(), body.size());
}

void respond_json(SoupServerMessage *msg, guint status, const std::string &body) {
  respond(msg, status, "application/json", body);
}

const char *request_header(SoupServerMessage *msg, const char *name) {
  return soup_message_headers_get_one(soup_server_message_get_request_headers(msg), name);
}

// Not the provider's: lets scripts and people see a video's length (GET /videos/<id>).
void Emulator::Impl::on_videos(SoupServer *, SoupServerMessage *msg, const char *path, GHashTable *,
                               gpointer data) {
  auto *self = static_cast<Impl *>(data);
  const std::string id = g_str_has_prefix(path, "/videos/") ? path + strlen("/videos/") : "";
  double seconds = -1;
  {
    std::lock_guard<std::mutex> lock(self->mutex);
    auto video = self->videos.find(id);
    if (video != self->videos.end())
      seconds = video->second;
  }
  if (seconds < 0) {
    respond_json(msg, SOUP_STATUS_NOT_FOUND, message_json("unknown video"));
  } else {
    g_autoptr(JsonBuilder) b = json_builder_new();
    json_builder_begin_object(b);
    set_string(b, "id", id);
    json_builder_set_member_name(b, "duration");
    json_builder_add_double_value(b, seconds);
    json_builder_end_object(b);
    respond_json(msg, SOUP_STATUS_OK, to_json(b));
  }
  self->log_request(msg, path, "");
}

// Not the provider's: a callback receiver, so callback_url can point at the emulator.

void Emulator::Impl::on_callbacks(SoupServer *, SoupServerMessage *msg, const char *path,
                                  GHashTable *, gpointer data) {
  auto *self = static_cast<Impl *>(data);
  SoupMessageBody *body = soup_server_message_get_request_body(msg);
  g_autoptr(GBytes) bytes = soup_message_body_flatten(body);
  gsize size = 0;
  const char *text = static_cast<const char *>(g_bytes_get_data(bytes, &size));
  {
    std::lock_guard<std::mutex> lock(self->mutex);
    self->received_callbacks.emplace_back(text ? text : "", size);
  }
  self->state_changed.notify_all();
  soup_server_message_set_status(msg, SOUP_STATUS_NO_CONTENT, nullptr);
  self->log_request(msg, path, "");
}
Emulator::Impl::~Impl() {
  {
    std::lock_guard<std::mutex> lock(mutex);
    stopping = true;
  }
  state_changed.notify_all();
  if (thread.joinable()) {
    g_main_loop_quit(loop);
    thread.join();
  }
  // After the server thread: it is the one that queues renders. Waits for running renders,
  // which notice `stopping` within one bus poll.
  g_thread_pool_free(render_pool, FALSE, TRUE);
  if (media_dir_is_temporary)
    remove_dir(media_dir);
  g_clear_error(&start_error);
  g_object_unref(cancellable);
  g_object_unref(drop_cancellable);
  g_main_loop_unref(loop);
  g_main_context_unref(context);
}

void Emulator::Impl::log(const char *format, ...) {
  if (options.quiet)
    return;
  va_list args;
  va_start(args, format);
  g_autofree char *line = g_strdup_vprintf(format, args);
  va_end(args);
  g_printerr("kirin-emulator: %s\n", line);
}

bool Emulator::Impl::start(GError **error) {
  if (thread.joinable() || stopping) {
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "the emulator was already started");
    return false;
  }
  if (!gst_is_initialized())
    gst_init(nullptr, nullptr);
  if (options.media_dir.empty()) {
    char *dir = g_dir_make_tmp("kirin-emulator-XXXXXX", error);
    if (!dir)
      return false;
    media_dir = dir;
    g_free(dir);
    media_dir_is_temporary = true;
  } else {
    media_dir = options.media_dir;
    if (g_mkdir_with_parents(media_dir.c_str(), 0755) != 0) {
      g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno), "cannot create %s: %s",
                  media_dir.c_str(), g_strerror(errno));
      return false;
    }
  }
  thread = std::thread([this] { run_thread(); });
  std::unique_lock<std::mutex> lock(mutex);
  state_changed.wait(lock, [this] { return thread_ready; });
  if (!start_error)
    return true;
  g_propagate_error(error, start_error);
  start_error = nullptr;
  lock.unlock();
  thread.join();
  return false;
}

void Emulator::Impl::run_thread() {
  g_main_context_push_thread_default(context);
  GError *error = nullptr;
  if (open_server(&error)) {
    session = soup_session_new_with_options("timeout", 10, "user-agent", "kirin-emulator", nullptr);
    tick_source = g_timeout_source_new(kTickMs);
    g_source_set_callback(
        tick_source,
        [](gpointer self) -> gboolean {
          static_cast<Impl *>(self)->tick();
          return G_SOURCE_CONTINUE;
        },
        this, nullptr);
    g_source_attach(tick_source, context);
    // Reported from inside the running loop, so that a g_main_loop_quit() from the
    // destructor can never come before g_main_loop_run() and be lost.
    GSource *ready = g_idle_source_new();
    g_source_set_callback(
        ready,
        [](gpointer self) -> gboolean {
          auto *impl = static_cast<Impl *>(self);
          {
            std::lock_guard<std::mutex> lock(impl->mutex);
            impl->thread_ready = impl->serving = true;
          }
          impl->state_changed.notify_all();
          return G_SOURCE_REMOVE;
        },
        this, nullptr);
    g_source_attach(ready, context);
    g_source_unref(ready);
    g_main_loop_run(loop);
  } else {
    {
      std::lock_guard<std::mutex> lock(mutex);
      start_error = error;
      thread_ready = true;
    }
    state_changed.notify_all();
  }
  close_server();
  g_main_context_pop_thread_default(context);
}

bool Emulator::Impl::open_server(GError **error) {
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                "TLS needs both a certificate and a key file");
    return false;
  }
  if (!options.tls_cert_file.empty()) {
    certificate = g_tls_certificate_new_from_files(options.tls_cert_file.c_str(),
                                                   options.tls_key_file.c_str(), error);
    if (!certificate)
      return false;
  }
  server =
      soup_server_new("server-header", "kirin-emulator ", "tls-certificate", certificate, nullptr);
  soup_server_add_handler(server, kApiPath, on_api, this, nullptr);
  soup_server_add_handler(server, kFilesPath, on_files, this, nullptr);
  soup_server_add_handler(server, "/videos", on_videos, this, nullptr);
  soup_server_add_handler(server, "/callbacks", on_callbacks, this, nullptr);
  soup_server_add_handler(server, nullptr, on_unknown, this, nullptr);
  return listen(error);
}

// On start, and again on the same port when going back online.
bool Emulator::Impl::listen(GError **error) {
  g_autoptr(GInetAddress) address = g_inet_address_new_from_string(options.host.c_str());
  if (!address) {
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "not an IP address: %s",
                options.host.c_str());
    return false;
  }
  g_autoptr(GSocketAddress) socket_address =
      g_inet_socket_address_new(address, bound_port ? bound_port : options.port);
  // Our own socket for a long accept queue: GLib's default backlog of 10 resets
  // connections when hundreds of clients arrive at once.
  g_autoptr(GSocket) socket = g_socket_new(g_inet_address_get_family(address), G_SOCKET_TYPE_STREAM,
                                           G_SOCKET_PROTOCOL_TCP, error);
  if (!socket)
    return false;
  g_socket_set_listen_backlog(socket, 1024);
  if (!g_socket_bind(socket, socket_address, TRUE, error) || !g_socket_listen(socket, error) ||
      !soup_server_listen_socket(
          server, socket, certificate ? SOUP_SERVER_LISTEN_HTTPS : SoupServerListenOptions(0),
          error))
    return false;
  if (bound_port)
    return true;
  // From the listening socket: soup_server_get_uris() leaks an address in libsoup 3.2.
  GSList *listeners = soup_server_get_listeners(server);
  g_autoptr(GSocketAddress) local =
      listeners ? g_socket_get_local_address(G_SOCKET(listeners->data), nullptr) : nullptr;
  g_slist_free(listeners);
  bound_port = G_IS_INET_SOCKET_ADDRESS(local)
                   ? g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(local))
                   : options.port;
  const bool ipv6 = options.host.find(':') != std::string::npos;
  base_url = (certificate ? "https://" : "http://") +
             (ipv6 ? "[" + options.host + "]" : options.host) + ":" + std::to_string(bound_port);
  return true;
}

void Emulator::Impl::close_server() {
  {
    std::lock_guard<std::mutex> lock(mutex);
    serving = false;
  }
  shutting_down = true;
  g_cancellable_cancel(cancellable);
  g_cancellable_cancel(drop_cancellable);
  if (tick_source) {
    g_source_destroy(tick_source);
    g_clear_pointer(&tick_source, g_source_unref);
  }
  // Closes every client connection too, including those held by the `hang` fault.
  if (server)
    soup_server_disconnect(server);
  drop_held(); // their connections are closed now
  if (session)
    soup_session_abort(session);
  while (outstanding_io > 0)
    g_main_context_iteration(context, TRUE);
  g_clear_object(&session);
  g_clear_object(&server);
  g_clear_object(&certificate);
  while (g_main_context_iteration(context, FALSE)) {
  }
}

void Emulator::Impl::log_request(SoupServerMessage *msg, const char *path,
                                 const std::string &note) {
  const guint status = soup_server_message_get_status(msg);
  // Whether a key was sent matters to the tests; the key itself never appears in logs.
  log("%s %s -> %s%s%s%s", soup_server_message_get_method(msg), path,
      status ? std::to_string(status).c_str() : "(no answer yet)",
      request_header(msg, "Authorization") ? " [with Authorization]" : "", note.empty() ? "" : " ",
      note.c_str());
}

void Emulator::Impl::set_online(bool want_online) {
  if (!server || shutting_down || want_online == online)
    return;
  if (!want_online) {
    // Listeners and client connections alike, hung ones included; drops are cut short.
    soup_server_disconnect(server);
    g_cancellable_cancel(drop_cancellable);
    g_object_unref(drop_cancellable);
    drop_cancellable = g_cancellable_new();
    online = false;
    log("offline");
    return;
  }
  g_autoptr(GError) error = nullptr;
  online = listen(&error);
  if (online)
    log("online again");
  else // not quiet: the test will see refused connections and wonder why
    g_printerr("kirin-emulator: cannot listen again on port %u: %s\n", bound_port, error->message);
}

void Emulator::Impl::run_on_thread(std::function<void()> work) {
  struct Call {
    Impl *impl;
    std::function<void()> work;
    bool done = false;
  } call{this, std::move(work)};
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (!serving)
      return;
  }
  g_main_context_invoke(
      context,
      [](gpointer data) -> gboolean {
        auto *call = static_cast<Call *>(data);
        Impl *impl = call->impl; // `call` may be gone once `done` is set
        call->work();
        {
          std::lock_guard<std::mutex> lock(impl->mutex);
          call->done = true;
        }
        impl->state_changed.notify_all();
        return G_SOURCE_REMOVE;
      },
      &call);
  std::unique_lock<std::mutex> lock(mutex);
  state_changed.wait(lock, [&] { return call.done; });
}

} // namespace kirin_emu
