// The result cache of `cache-dir`: a journal of the tasks this machine paid for, and the
// media they produced. One key file per request (`<key>.journal`) and one media file per
// completed download (`<key>.media`), both written to a temporary file and renamed, so a
// crash leaves either the old or the new version, never half of one. Several processes may
// share a directory. Knows nothing of GStreamer elements.
#pragma once

#include "task.h"

#include <glib.h>

#include <map>
#include <string>

namespace kirin {

// What makes two runs "the same": the request's parameters, the user's external task ID
// and the step of a chain. The callback URL is not part of it (it only says where to
// notify).
struct CacheRequest {
  CreateRequest request; // external_task_id as the user set it ("" when not set)
  guint step = 1;
};

// The file-name stem of a request's entries: 32 hex digits of the SHA-256 of its fields.
std::string cache_key(const CacheRequest &request);

struct JournalEntry {
  CacheRequest request;
  std::string external_task_id; // the one sent to the provider
  std::string task_id;
  bool completed = false;
  // Known once completed.
  std::string result_url;
  std::string result_video_id;
  double duration = -1;
  std::string cost;
  // The downloaded result, once it was received whole: a file in the cache directory.
  std::string media_file;
  guint64 media_size = 0;
};

// Reads the entry of `key`. Returns false when there is none; an unreadable or foreign
// entry also counts as none, with the reason in `error`.
bool journal_read(const std::string &dir, const std::string &key, JournalEntry &entry,
                  std::string &error);

// Writes the entry atomically, creating the directory when needed.
bool journal_write(const std::string &dir, const JournalEntry &entry, std::string &error);

// Removes the entry of `request` (its media file stays until overwritten or deleted).
void journal_remove(const std::string &dir, const CacheRequest &request);

// The cached media of an entry, when the file is there with the recorded size.
std::string cached_media_path(const std::string &dir, const JournalEntry &entry);

// Checks that `dir` exists or can be created, and is writable. Returns the problem or "".
std::string cache_dir_problem(const std::string &dir);

// Keeps a copy of a download as it streams by. Writes land at their byte offset (a
// demuxer may seek), and the copy is kept only when every byte of the file arrived; it
// is then renamed into place. Until then it is a temporary file, removed by the
// destructor.
class MediaWriter {
public:
  MediaWriter(std::string dir, std::string key);
  ~MediaWriter();
  MediaWriter(const MediaWriter &) = delete;
  MediaWriter &operator=(const MediaWriter &) = delete;

  // False once a write failed (disk full...): the copy is abandoned, the stream is not.
  bool ok() const { return fd_ >= 0; }
  void write(guint64 offset, const guint8 *data, gsize size);
  // When bytes [0, total_size) all arrived, moves the copy into place and returns its file
  // name (within the directory); otherwise returns "" and the copy is dropped.
  std::string commit(guint64 total_size, std::string &error);

private:
  void abandon();
  std::string dir_, key_, temp_path_;
  int fd_ = -1;
  std::map<guint64, guint64> ranges_; // start -> end of the byte ranges received, merged
};

} // namespace kirin
