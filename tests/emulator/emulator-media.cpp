// The result files under /files/: a video or cover by name, a single byte range of it, and
// the download faults (drop, no-range).
#include "emulator-internal.h"

#include <string>

namespace kirin_emu {
namespace {

// The file at `local_path`, mapped; nullptr once answered with a 500.
GBytes *map_file(SoupServerMessage *msg, const std::string &local_path) {
  g_autoptr(GError) error = nullptr;
  GMappedFile *mapped = g_mapped_file_new(local_path.c_str(), FALSE, &error);
  if (!mapped) {
    respond_json(msg, SOUP_STATUS_INTERNAL_SERVER_ERROR, message_json(error->message));
    return nullptr;
  }
  GBytes *file_bytes = g_mapped_file_get_bytes(mapped);
  g_mapped_file_unref(mapped);
  return file_bytes;
}

// The part of a file of `total` bytes to answer: the whole file (200), or the single range
// asked for (206) clamped to the file. False once answered with a 416.
bool pick_range(SoupServerMessage *msg, goffset total, guint &status, goffset &start,
                goffset &end) {
  SoupMessageHeaders *request_headers = soup_server_message_get_request_headers(msg);
  SoupMessageHeaders *headers = soup_server_message_get_response_headers(msg);
  // A single range is answered here, without copying: SoupServer's own Range support
  // flattens (copies) the body and does not clamp an end beyond the file.
  SoupRange *ranges = nullptr;
  int range_count = 0;
  if (total > 0 && soup_message_headers_get_ranges(request_headers, total, &ranges, &range_count)) {
    const goffset first_start = ranges[0].start, first_end = ranges[0].end;
    soup_message_headers_free_ranges(request_headers, ranges);
    if (range_count > 1) {
      // Several ranges: the whole file instead (RFC 9110 allows ignoring Range).
      soup_message_headers_remove(request_headers, "Range");
    } else if (first_start >= total) {
      soup_message_headers_replace(headers, "Content-Range",
                                   ("bytes */" + std::to_string(total)).c_str());
      respond_json(msg, SOUP_STATUS_REQUESTED_RANGE_NOT_SATISFIABLE,
                   message_json("range not satisfiable"));
      return false;
    } else {
      status = SOUP_STATUS_PARTIAL_CONTENT;
      start = std::max<goffset>(0, first_start);
      end = std::min(first_end, total - 1);
    }
  }
  return true;
}

// The head of a `drop` answer, written by hand: it promises `length` body bytes.
std::string drop_head(guint status, const char *content_type, gsize length,
                      const std::string &content_range) {
  std::string head = "HTTP/1.1 " + std::to_string(status) + " " + soup_status_get_phrase(status) +
                     "\r\nContent-Type: " + content_type +
                     "\r\nContent-Length: " + std::to_string(length) +
                     "\r\nAccept-Ranges: bytes\r\n";
  if (status == SOUP_STATUS_PARTIAL_CONTENT)
    head += "Content-Range: " + content_range + "\r\n";
  head += "Connection: close\r\n\r\n";
  return head;
}

} // namespace

void Emulator::Impl::handle_files(SoupServerMessage *msg, const char *path) {
  Exchange exchange;
  exchange.route = Route::Download;
  exchange.arrival_us = g_get_monotonic_time();
  taken_over = false;
  streamed = false;
  const bool with_auth = request_header(msg, "Authorization") != nullptr;
  const std::string name = path + strlen(kFilesPath) + (path[strlen(kFilesPath)] == '/');
  {
    std::lock_guard<std::mutex> lock(mutex);
    ++downloads;
    if (with_auth)
      ++download_auths;
    for (const auto &[id, task] : tasks) {
      if (task.video_name == name || task.cover_name == name) {
        exchange.task_id = id;
        break;
      }
    }
  }
  std::string note = serve_file(msg, path);
  if (record_and_hold(msg, path, exchange))
    note += note.empty() ? "(held)" : " (held)";
  log_request(msg, path, note);
}

std::string Emulator::Impl::serve_file(SoupServerMessage *msg, const char *path) {
  const char *method = soup_server_message_get_method(msg);
  if (method != SOUP_METHOD_GET && method != SOUP_METHOD_HEAD) {
    respond_json(msg, SOUP_STATUS_METHOD_NOT_ALLOWED, message_json("use GET"));
    return "";
  }
  std::optional<Fault> fault;
  if (!take_fault(msg, Route::Download, fault))
    return "";
  const bool drop = fault && fault->kind == FaultKind::Drop;
  const bool no_range = fault && fault->kind == FaultKind::NoRange;
  if (fault && !drop && !no_range)
    return apply_fault(msg, *fault);
  std::string local_path;
  {
    std::lock_guard<std::mutex> lock(mutex);
    const auto found = files.find(path + strlen(kFilesPath) + (path[strlen(kFilesPath)] == '/'));
    if (found != files.end())
      local_path = found->second;
  }
  if (local_path.empty()) {
    respond_json(msg, SOUP_STATUS_NOT_FOUND, message_json("file not found"));
    return "";
  }
  // Mapped, not read: the body and any range of it are views of the same mapping.
  g_autoptr(GBytes) file_bytes = map_file(msg, local_path);
  if (!file_bytes)
    return "";
  const goffset total = goffset(g_bytes_get_size(file_bytes));
  SoupMessageHeaders *request_headers = soup_server_message_get_request_headers(msg);
  SoupMessageHeaders *headers = soup_server_message_get_response_headers(msg);
  // `no-range`: as a server without range support. Removed, not just skipped, since
  // SoupServer would otherwise answer the range of a 200 itself.
  if (no_range)
    soup_message_headers_remove(request_headers, "Range");

  guint status = SOUP_STATUS_OK;
  goffset start = 0, end = total - 1;
  if (!pick_range(msg, total, status, start, end))
    return "";
  const char *content_type = g_str_has_suffix(path, ".mp4") ? "video/mp4" : "image/jpeg";
  g_autoptr(GBytes) slice = g_bytes_new_from_bytes(file_bytes, start, gsize(end - start + 1));
  const std::string content_range =
      "bytes " + std::to_string(start) + "-" + std::to_string(end) + "/" + std::to_string(total);

  if (drop) {
    std::string head = drop_head(status, content_type, g_bytes_get_size(slice), content_range);
    soup_server_message_set_status(msg, status, nullptr); // for the log; written by hand
    const gsize sent = std::min<gsize>(gsize(fault->number), g_bytes_get_size(slice));
    start_drop(msg, std::move(head), g_bytes_new_from_bytes(slice, 0, sent));
    return "(injected drop after " + std::to_string(sent) + " bytes)";
  }
  if (!no_range)
    soup_message_headers_replace(headers, "Accept-Ranges", "bytes");
  if (status == SOUP_STATUS_PARTIAL_CONTENT)
    soup_message_headers_replace(headers, "Content-Range", content_range.c_str());
  soup_message_headers_set_content_type(headers, content_type, nullptr);
  soup_message_headers_set_content_length(headers, goffset(g_bytes_get_size(slice)));
  soup_message_body_append_bytes(soup_server_message_get_response_body(msg), slice);
  soup_server_message_set_status(msg, status, nullptr);
  return no_range ? "(injected no-range)" : "";
}

} // namespace kirin_emu
