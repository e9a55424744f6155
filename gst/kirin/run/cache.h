// The kept copies of cache-dir: each completed download of a result, written to a
// temporary file and renamed into place only when every byte arrived, so a crash leaves
// the old copy or none, never half of one. The journal (journal.h) says which task made
// which copy. Several processes may share a directory. Knows nothing of GStreamer elements.
#pragma once

#include <glib.h>

#include <map>
#include <string>

namespace kirin {

// Checks that `dir` exists or can be created, and is writable. Returns the problem or "".
std::string cache_dir_problem(const std::string &dir);

// Deletes the temporary files ("*.<pid>.XXXXXX.part") that processes which are gone left in
// `dir`.
void remove_dead_parts(const std::string &dir);

// Keeps a copy of a download as it streams by. Writes land at their byte offset (a
// demuxer may seek), and the copy is kept only when every byte of the file arrived; it
// is then renamed into place. Until then it is a temporary file, removed by the
// destructor.
class MediaWriter {
public:
  // The copy becomes `dir`/`name`.
  MediaWriter(std::string dir, std::string name);
  ~MediaWriter();
  MediaWriter(const MediaWriter &) = delete;
  MediaWriter &operator=(const MediaWriter &) = delete;

  // False once a write failed (disk full...): the copy is abandoned, the stream is not.
  bool ok() const { return fd_ >= 0; }
  void write(guint64 offset, const guint8 *data, gsize size);
  // When bytes [0, total_size) all arrived, moves the copy into place and returns its
  // path; otherwise returns "" and the copy is dropped.
  std::string commit(guint64 total_size, std::string &error);

private:
  void abandon();
  std::string dir_, name_, temp_path_;
  int fd_ = -1;
  std::map<guint64, guint64> ranges_; // start -> end of the byte ranges received, merged
};

} // namespace kirin
