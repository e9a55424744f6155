#include "cache.h"

#include <glib/gstdio.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iterator>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

namespace kirin {

namespace {

// The pid in a temporary file's name "<name>.<pid>.XXXXXX.part", or 0.
long part_owner(const char *file_name) {
  if (!g_str_has_suffix(file_name, ".part"))
    return 0;
  g_auto(GStrv) fields = g_strsplit(file_name, ".", -1);
  guint n = g_strv_length(fields);
  if (n < 4)
    return 0;
  char *end = nullptr;
  long pid = strtol(fields[n - 3], &end, 10);
  return end && *end == '\0' && pid > 0 ? pid : 0;
}

} // namespace

std::string cache_dir_problem(const std::string &dir) {
  if (g_mkdir_with_parents(dir.c_str(), 0700) != 0)
    return std::string("cannot be created: ") + g_strerror(errno);
  if (!g_file_test(dir.c_str(), G_FILE_TEST_IS_DIR))
    return "is not a directory";
  if (g_access(dir.c_str(), W_OK | X_OK) != 0)
    return std::string("is not writable: ") + g_strerror(errno);
  return {};
}

void remove_dead_parts(const std::string &dir) {
  GDir *entries = g_dir_open(dir.c_str(), 0, nullptr);
  if (!entries)
    return;
  while (const char *name = g_dir_read_name(entries)) {
    long pid = part_owner(name);
    // Only a process that is gone: a live one may still be writing its copy.
    if (pid > 0 && kill((pid_t)pid, 0) != 0 && errno == ESRCH) {
      g_autofree char *path = g_build_filename(dir.c_str(), name, nullptr);
      g_unlink(path);
    }
  }
  g_dir_close(entries);
}

MediaWriter::MediaWriter(std::string dir, std::string name)
    : dir_(std::move(dir)), name_(std::move(name)) {
  g_autofree char *temp = g_strdup_printf("%s.%ld.XXXXXX.part", name_.c_str(), (long)getpid());
  g_autofree char *path = g_build_filename(dir_.c_str(), temp, nullptr);
  fd_ = g_mkstemp_full(path, O_RDWR | O_CLOEXEC, 0600);
  if (fd_ >= 0)
    temp_path_ = path;
}

MediaWriter::~MediaWriter() {
  abandon();
}

void MediaWriter::abandon() {
  if (fd_ >= 0) {
    close(fd_);
    fd_ = -1;
  }
  if (!temp_path_.empty()) {
    g_unlink(temp_path_.c_str());
    temp_path_.clear();
  }
}

void MediaWriter::write(guint64 offset, const guint8 *data, gsize size) {
  if (fd_ < 0 || size == 0)
    return;
  for (gsize done = 0; done < size;) {
    ssize_t n = pwrite(fd_, data + done, size - done, (off_t)(offset + done));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      abandon();
      return;
    }
    done += (gsize)n;
  }
  // Merge [offset, offset + size) into the received ranges.
  guint64 start = offset, end = offset + size;
  auto it = ranges_.upper_bound(start);
  if (it != ranges_.begin() && std::prev(it)->second >= start)
    --it;
  while (it != ranges_.end() && it->first <= end) {
    start = std::min(start, it->first);
    end = std::max(end, it->second);
    it = ranges_.erase(it);
  }
  ranges_[start] = end;
}

std::string MediaWriter::commit(guint64 total_size, std::string &error) {
  if (fd_ < 0) {
    error = "a write to the cache failed";
    abandon();
    return {};
  }
  if (total_size == 0 || ranges_.size() != 1 || ranges_.begin()->first != 0 ||
      ranges_.begin()->second != total_size) {
    error = "not every byte of the result passed through";
    abandon();
    return {};
  }
  if (ftruncate(fd_, (off_t)total_size) != 0 || fsync(fd_) != 0) {
    error = std::string("cannot complete the cached copy: ") + g_strerror(errno);
    abandon();
    return {};
  }
  close(fd_);
  fd_ = -1;
  g_autofree char *path = g_build_filename(dir_.c_str(), name_.c_str(), nullptr);
  if (g_rename(temp_path_.c_str(), path) != 0) {
    error = std::string("cannot move the cached copy into place: ") + g_strerror(errno);
    abandon();
    return {};
  }
  temp_path_.clear();
  return path;
}

} // namespace kirin
