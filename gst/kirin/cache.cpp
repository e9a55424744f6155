#include "cache.h"

#include <glib/gstdio.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <iterator>
#include <fcntl.h>
#include <unistd.h>

namespace kirin {

namespace {

// Bumped when the entry's meaning changes; entries of another version are ignored.
constexpr gint kJournalVersion = 1;

std::string entry_path(const std::string &dir, const std::string &key) {
  g_autofree char *path = g_build_filename(dir.c_str(), (key + ".journal").c_str(), nullptr);
  return path;
}

std::string key_string(GKeyFile *file, const char *group, const char *name) {
  g_autofree char *value = g_key_file_get_string(file, group, name, nullptr);
  return value ? value : "";
}

double key_double(GKeyFile *file, const char *group, const char *name, double fallback) {
  GError *error = nullptr;
  double value = g_key_file_get_double(file, group, name, &error);
  if (error) {
    g_error_free(error);
    return fallback;
  }
  return value;
}

} // namespace

std::string cache_key(const CacheRequest &request) {
  // Every field with its length, so no two requests give the same text.
  const CreateRequest &r = request.request;
  std::string text;
  auto add = [&text](const char *name, const std::string &value) {
    text += std::string(name) + "=" + std::to_string(value.size()) + ":" + value + "\n";
  };
  add("model", r.model);
  add("video_id", r.video_id);
  add("prompt", r.prompt);
  add("negative_prompt", r.negative_prompt);
  if (r.cfg_scale) {
    char number[G_ASCII_DTOSTR_BUF_SIZE];
    add("cfg_scale", g_ascii_dtostr(number, sizeof number, *r.cfg_scale));
  }
  add("external_task_id", r.external_task_id);
  add("step", std::to_string(request.step));
  g_autofree char *digest = g_compute_checksum_for_string(G_CHECKSUM_SHA256, text.c_str(), -1);
  return std::string(digest, 32);
}

bool journal_write(const std::string &dir, const JournalEntry &entry, std::string &error) {
  if (g_mkdir_with_parents(dir.c_str(), 0700) != 0) {
    error = "cannot create " + dir + ": " + g_strerror(errno);
    return false;
  }
  GKeyFile *file = g_key_file_new();
  g_key_file_set_integer(file, "journal", "version", kJournalVersion);
  const CreateRequest &r = entry.request.request;
  g_key_file_set_string(file, "request", "model", r.model.c_str());
  g_key_file_set_string(file, "request", "video_id", r.video_id.c_str());
  g_key_file_set_string(file, "request", "prompt", r.prompt.c_str());
  g_key_file_set_string(file, "request", "negative_prompt", r.negative_prompt.c_str());
  if (r.cfg_scale)
    g_key_file_set_double(file, "request", "cfg_scale", *r.cfg_scale);
  g_key_file_set_string(file, "request", "external_task_id", r.external_task_id.c_str());
  g_key_file_set_integer(file, "request", "step", (gint)entry.request.step);
  g_key_file_set_string(file, "task", "external_task_id", entry.external_task_id.c_str());
  g_key_file_set_string(file, "task", "task_id", entry.task_id.c_str());
  g_key_file_set_string(file, "task", "status", entry.completed ? "completed" : "created");
  if (entry.completed) {
    g_key_file_set_string(file, "task", "result_url", entry.result_url.c_str());
    g_key_file_set_string(file, "task", "result_video_id", entry.result_video_id.c_str());
    g_key_file_set_double(file, "task", "duration", entry.duration);
    g_key_file_set_string(file, "task", "cost", entry.cost.c_str());
  }
  if (!entry.media_file.empty()) {
    g_key_file_set_string(file, "media", "file", entry.media_file.c_str());
    g_key_file_set_uint64(file, "media", "size", entry.media_size);
  }
  gsize length = 0;
  g_autofree char *text = g_key_file_to_data(file, &length, nullptr);
  g_key_file_free(file);

  std::string path = entry_path(dir, cache_key(entry.request));
  GError *gerror = nullptr;
  // Temporary file, then rename: readers see the old entry or the new one.
  if (!g_file_set_contents_full(path.c_str(), text, (gssize)length, G_FILE_SET_CONTENTS_CONSISTENT,
                                0600, &gerror)) {
    error = gerror->message;
    g_error_free(gerror);
    return false;
  }
  return true;
}

void journal_remove(const std::string &dir, const CacheRequest &request) {
  g_unlink(entry_path(dir, cache_key(request)).c_str());
}

bool journal_read(const std::string &dir, const std::string &key, JournalEntry &entry,
                  std::string &error) {
  entry = JournalEntry();
  error.clear();
  std::string path = entry_path(dir, key);
  if (!g_file_test(path.c_str(), G_FILE_TEST_EXISTS))
    return false; // no entry
  GKeyFile *file = g_key_file_new();
  GError *gerror = nullptr;
  if (!g_key_file_load_from_file(file, path.c_str(), G_KEY_FILE_NONE, &gerror)) {
    error = path + " is not readable (" + gerror->message + ")";
    g_error_free(gerror);
    g_key_file_free(file);
    return false;
  }
  if (key_double(file, "journal", "version", 0) != kJournalVersion) {
    error = path + " is not a journal entry of this version";
    g_key_file_free(file);
    return false;
  }
  CreateRequest &r = entry.request.request;
  r.model = key_string(file, "request", "model");
  r.video_id = key_string(file, "request", "video_id");
  r.prompt = key_string(file, "request", "prompt");
  r.negative_prompt = key_string(file, "request", "negative_prompt");
  double cfg = key_double(file, "request", "cfg_scale", NAN);
  if (!std::isnan(cfg))
    r.cfg_scale = cfg;
  r.external_task_id = key_string(file, "request", "external_task_id");
  entry.request.step = (guint)key_double(file, "request", "step", 1);
  entry.external_task_id = key_string(file, "task", "external_task_id");
  entry.task_id = key_string(file, "task", "task_id");
  entry.completed = key_string(file, "task", "status") == "completed";
  entry.result_url = key_string(file, "task", "result_url");
  entry.result_video_id = key_string(file, "task", "result_video_id");
  entry.duration = key_double(file, "task", "duration", -1);
  entry.cost = key_string(file, "task", "cost");
  entry.media_file = key_string(file, "media", "file");
  entry.media_size = g_key_file_get_uint64(file, "media", "size", nullptr);
  g_key_file_free(file);

  // A renamed or edited file must not answer for another request.
  if (cache_key(entry.request) != key || entry.task_id.empty()) {
    error = path + " does not belong to this request";
    entry = JournalEntry();
    return false;
  }
  return true;
}

std::string cached_media_path(const std::string &dir, const JournalEntry &entry) {
  // Only a plain file name in the directory: an entry cannot point elsewhere.
  if (entry.media_file.empty() || entry.media_file.find('/') != std::string::npos ||
      entry.media_file[0] == '.')
    return {};
  g_autofree char *path = g_build_filename(dir.c_str(), entry.media_file.c_str(), nullptr);
  GStatBuf st;
  if (g_stat(path, &st) != 0 || !S_ISREG(st.st_mode) || (guint64)st.st_size != entry.media_size)
    return {};
  return path;
}

std::string cache_dir_problem(const std::string &dir) {
  if (g_mkdir_with_parents(dir.c_str(), 0700) != 0)
    return std::string("cannot be created: ") + g_strerror(errno);
  if (!g_file_test(dir.c_str(), G_FILE_TEST_IS_DIR))
    return "is not a directory";
  if (g_access(dir.c_str(), W_OK | X_OK) != 0)
    return std::string("is not writable: ") + g_strerror(errno);
  return {};
}

MediaWriter::MediaWriter(std::string dir, std::string key)
    : dir_(std::move(dir)), key_(std::move(key)) {
  g_autofree char *name = g_strdup_printf("%s.XXXXXX.part", key_.c_str());
  g_autofree char *path = g_build_filename(dir_.c_str(), name, nullptr);
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
  std::string name = key_ + ".media";
  g_autofree char *path = g_build_filename(dir_.c_str(), name.c_str(), nullptr);
  if (g_rename(temp_path_.c_str(), path) != 0) {
    error = std::string("cannot move the cached copy into place: ") + g_strerror(errno);
    abandon();
    return {};
  }
  temp_path_.clear();
  return name;
}

} // namespace kirin
