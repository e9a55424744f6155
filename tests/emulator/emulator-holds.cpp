// Recording the provider routes' requests, and holding their answers back until released
// (hold(), release() and the waits on held answers).
#include "emulator-internal.h"

#include <sys/socket.h>

#include <cerrno>
#include <chrono>

namespace kirin_emu {

bool Emulator::Impl::record_and_hold(SoupServerMessage *msg, const char *path, Exchange &exchange) {
  RequestRecord record;
  record.route = exchange.route;
  record.method = soup_server_message_get_method(msg);
  record.path = path;
  record.task_id = exchange.task_id;
  record.external_task_id = exchange.external_task_id;
  record.video_id = exchange.video_id;
  const char *agent =
      soup_message_headers_get_one(soup_server_message_get_request_headers(msg), "User-Agent");
  record.user_agent = agent ? agent : "";
  SoupMessageHeadersIter iter;
  soup_message_headers_iter_init(&iter, soup_server_message_get_request_headers(msg));
  const char *name, *value;
  while (soup_message_headers_iter_next(&iter, &name, &value))
    record.headers.emplace_back(name, value);
  record.arrival_us = exchange.arrival_us;
  record.streaming = streamed;
  bool hold = false;
  if (!taken_over) {
    std::lock_guard<std::mutex> lock(mutex);
    const auto rule = holds.find(exchange.route);
    if (rule != holds.end()) {
      const HoldFilter &filter = rule->second;
      hold = (filter.task_id.empty() || exchange.route == Route::Create ||
              filter.task_id == exchange.task_id) &&
             (!filter.only_final || exchange.route == Route::Download ||
              is_final(exchange.task_status));
    }
  }
  record.status = hold ? 0 : soup_server_message_get_status(msg);
  std::unique_lock<std::mutex> lock(mutex);
  records.push_back(std::move(record));
  if (!hold)
    return false;
  // The answer stays as computed; only its sending waits.
  auto entry = std::make_unique<Held>();
  entry->impl = this;
  entry->route = exchange.route;
  entry->record = records.size() - 1;
  entry->msg = SOUP_SERVER_MESSAGE(g_object_ref(msg));
  Held *raw = entry.get();
  held.push_back(std::move(entry));
  lock.unlock();
  soup_server_message_pause(msg);
  // Emitted when the server closes the connection (set_offline, shutdown): libsoup then
  // forgets the message, and unpausing it would be an error.
  raw->disconnected_id =
      g_signal_connect(msg, "disconnected", G_CALLBACK(on_held_disconnected), raw);
  // libsoup does not read a paused connection, so a client that gives up would go unseen.
  if (GSocket *socket = soup_server_message_get_socket(msg)) {
    raw->watch =
        g_socket_create_source(socket, GIOCondition(G_IO_IN | G_IO_HUP | G_IO_ERR), nullptr);
    g_source_set_callback(raw->watch, G_SOURCE_FUNC(on_held_socket), raw, nullptr);
    g_source_attach(raw->watch, context);
  }
  state_changed.notify_all();
  return true;
}

// A held connection became readable: at its end (the client closed it), the answer was
// abandoned. Bytes before the end (not expected: a client sends nothing while it waits)
// are left to libsoup, and the watch ends either way.
gboolean Emulator::Impl::on_held_socket(GSocket *socket, GIOCondition, gpointer data) {
  auto *entry = static_cast<Held *>(data);
  char byte;
  ssize_t n = recv(g_socket_get_fd(socket), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return G_SOURCE_CONTINUE;
  if (n <= 0) {
    std::lock_guard<std::mutex> lock(entry->impl->mutex);
    entry->abandoned = true;
  }
  entry->impl->state_changed.notify_all();
  return G_SOURCE_REMOVE;
}

void Emulator::Impl::on_held_disconnected(SoupServerMessage *msg, gpointer data) {
  auto *entry = static_cast<Held *>(data);
  Impl *impl = entry->impl;
  // The reference on `msg` is dropped later, outside libsoup's emission.
  g_signal_handler_disconnect(msg, entry->disconnected_id);
  entry->disconnected_id = 0;
  entry->stop_watching();
  std::string path;
  {
    std::lock_guard<std::mutex> lock(impl->mutex);
    entry->gone = true;
    path = impl->records[entry->record].path;
  }
  impl->log("held answer to %s not sent: the connection closed", path.c_str());
  impl->state_changed.notify_all();
}

size_t Emulator::Impl::release_held(Route route, bool only_one) {
  std::vector<std::unique_ptr<Held>> taken;
  std::vector<std::string> paths;
  {
    std::lock_guard<std::mutex> lock(mutex);
    for (auto it = held.begin(); it != held.end();) {
      if ((*it)->route != route) {
        ++it;
        continue;
      }
      const bool live = !(*it)->gone;
      if (live) {
        RequestRecord &record = records[(*it)->record];
        record.status = soup_server_message_get_status((*it)->msg);
        paths.push_back(record.path);
      }
      taken.push_back(std::move(*it));
      it = held.erase(it);
      if (live && only_one)
        break;
    }
  }
  size_t released = 0;
  for (auto &entry : taken) {
    entry->stop_watching();
    if (entry->disconnected_id)
      g_signal_handler_disconnect(entry->msg, entry->disconnected_id);
    if (!entry->gone) {
      soup_server_message_unpause(entry->msg); // libsoup keeps its own reference
      ++released;
    }
    g_object_unref(entry->msg);
  }
  for (const auto &path : paths)
    log("released the held answer to %s", path.c_str());
  state_changed.notify_all();
  return released;
}

// On shutdown, after soup_server_disconnect(): every held connection is closed.
void Emulator::Impl::drop_held() {
  std::deque<std::unique_ptr<Held>> dropped;
  {
    std::lock_guard<std::mutex> lock(mutex);
    dropped.swap(held);
  }
  for (auto &entry : dropped) {
    entry->stop_watching();
    if (entry->disconnected_id)
      g_signal_handler_disconnect(entry->msg, entry->disconnected_id);
    g_object_unref(entry->msg);
  }
  state_changed.notify_all();
}

void Emulator::hold(Route route, HoldFilter filter) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->holds[route] = std::move(filter);
}

size_t Emulator::wait_abandoned(Route route, size_t at_least, guint timeout_ms) const {
  std::unique_lock<std::mutex> lock(impl_->mutex);
  auto abandoned = [&] {
    return size_t(std::count_if(impl_->held.begin(), impl_->held.end(), [route](const auto &e) {
      return e->route == route && e->abandoned;
    }));
  };
  impl_->state_changed.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                                [&] { return abandoned() >= at_least; });
  return abandoned();
}

size_t Emulator::wait_held(Route route, size_t at_least, guint timeout_ms) const {
  std::unique_lock<std::mutex> lock(impl_->mutex);
  impl_->state_changed.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                                [&] { return impl_->held_count(route) >= at_least; });
  return impl_->held_count(route);
}

void Emulator::release(Route route) {
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->holds.erase(route);
  }
  impl_->run_on_thread([this, route] { impl_->release_held(route, false); });
}

bool Emulator::release_one(Route route) {
  size_t released = 0;
  impl_->run_on_thread([&] { released = impl_->release_held(route, true); });
  return released > 0;
}

} // namespace kirin_emu
