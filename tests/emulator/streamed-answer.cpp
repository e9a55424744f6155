#include "streamed-answer.h"

#include <sys/socket.h>

#include <string>

namespace kirin_emu {
namespace {

constexpr char kBodyHead[] = "{\"id\":\"task-big\",\"status\":\"pending\",\"pad\":\"";
constexpr char kBodyTail[] = "\"}";
constexpr gsize kPieceBytes = 64 * 1024;
// A small send buffer and a paced body keep the count honest. Unpaced, loopback fills the
// client's receive buffer (Linux grows it to several MB) faster than the client reads, and
// the count would say more about the kernel than the client. Paced, a client that reads
// what arrives holds little unread: what the socket accepted but the client never read is
// about the send buffer plus a piece or two. 64 KiB per 2 ms is 32 MB/s.
constexpr int kSendBufferBytes = 64 * 1024;
constexpr guint kPaceMs = 2;

struct StreamJob {
  GIOStream *stream; // owned
  GCancellable *cancellable;
  StreamProgress progress;
  gint64 total;       // body bytes, < 0 = endless
  std::string buffer; // what the current write sends
  gsize buffer_sent = 0;
  gsize head_left = 0;  // bytes of the HTTP head still in `buffer`
  guint64 produced = 0; // body bytes put into buffers so far
  guint64 written = 0;  // body bytes the socket accepted

  ~StreamJob() {
    g_io_stream_close(stream, nullptr, nullptr);
    g_object_unref(stream);
    g_clear_object(&cancellable);
  }

  // The body byte at `offset`: the object's head, padding, and its tail when it has an end.
  char body_byte(guint64 offset) const {
    const guint64 head = sizeof kBodyHead - 1, tail = sizeof kBodyTail - 1;
    if (offset < head)
      return kBodyHead[offset];
    if (total >= 0 && offset >= guint64(total) - tail)
      return kBodyTail[offset - (guint64(total) - tail)];
    return 'x';
  }

  // Appends the next piece of the body to `buffer`; false when the body is all produced.
  bool produce() {
    guint64 left = total < 0 ? kPieceBytes : guint64(total) - produced;
    const gsize piece = gsize(MIN(left, guint64(kPieceBytes)));
    for (gsize i = 0; i < piece; i++)
      buffer.push_back(body_byte(produced + i));
    produced += piece;
    return piece > 0;
  }

  void write_next() {
    if (buffer_sent == buffer.size()) {
      buffer.clear();
      buffer_sent = 0;
      if (!produce()) {
        finish();
        return;
      }
    }
    g_output_stream_write_async(g_io_stream_get_output_stream(stream), buffer.data() + buffer_sent,
                                buffer.size() - buffer_sent, G_PRIORITY_DEFAULT, cancellable,
                                written_cb, this);
  }

  static void written_cb(GObject *source, GAsyncResult *result, gpointer data) {
    auto *job = static_cast<StreamJob *>(data);
    gssize n = g_output_stream_write_finish(G_OUTPUT_STREAM(source), result, nullptr);
    if (n <= 0) { // the client hung up, or shutdown
      job->finish();
      return;
    }
    job->buffer_sent += gsize(n);
    const gsize head = MIN(job->head_left, gsize(n));
    job->head_left -= head;
    job->written += gsize(n) - head;
    job->progress(job->written, false);
    if (job->buffer_sent < job->buffer.size()) {
      job->write_next();
      return;
    }
    GSource *pause = g_timeout_source_new(kPaceMs);
    g_source_set_callback(
        pause,
        [](gpointer data) -> gboolean {
          static_cast<StreamJob *>(data)->write_next();
          return G_SOURCE_REMOVE;
        },
        job, nullptr);
    g_source_attach(pause, g_main_context_get_thread_default());
    g_source_unref(pause);
  }

  void finish() {
    progress(written, true);
    delete this;
  }
};

std::string http_head(gint64 body_bytes) {
  std::string head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n";
  if (body_bytes >= 0)
    head += "Content-Length: " + std::to_string(body_bytes) + "\r\n";
  return head + "Connection: close\r\n\r\n";
}

void shrink_send_buffer(GIOStream *stream) {
  GIOStream *base = stream;
  if (G_IS_TLS_CONNECTION(stream))
    g_object_get(stream, "base-io-stream", &base, nullptr);
  else
    g_object_ref(base);
  if (G_IS_SOCKET_CONNECTION(base))
    g_socket_set_option(g_socket_connection_get_socket(G_SOCKET_CONNECTION(base)), SOL_SOCKET,
                        SO_SNDBUF, kSendBufferBytes, nullptr);
  g_object_unref(base);
}

} // namespace

void stream_answer(GIOStream *stream, gint64 body_bytes, GCancellable *cancellable,
                   StreamProgress progress) {
  shrink_send_buffer(stream);
  auto *job =
      new StreamJob{stream, cancellable ? G_CANCELLABLE(g_object_ref(cancellable)) : nullptr,
                    std::move(progress), body_bytes, http_head(body_bytes)};
  job->head_left = job->buffer.size();
  job->write_next();
}

} // namespace kirin_emu
