#include "cache.h"

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

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
constexpr gint64 kJournalVersion = 1;

std::string entry_path(const std::string &dir, const std::string &key) {
  g_autofree char *path = g_build_filename(dir.c_str(), (key + ".json").c_str(), nullptr);
  return path;
}

void add_string(JsonBuilder *builder, const char *name, const std::string &value) {
  json_builder_set_member_name(builder, name);
  json_builder_add_string_value(builder, value.c_str());
}

// The request as one canonical JSON text: the same request always gives the same bytes.
void add_request(JsonBuilder *builder, const CacheRequest &r) {
  json_builder_begin_object(builder);
  add_string(builder, "model", r.request.model);
  add_string(builder, "video_id", r.request.video_id);
  add_string(builder, "prompt", r.request.prompt);
  add_string(builder, "negative_prompt", r.request.negative_prompt);
  json_builder_set_member_name(builder, "cfg_scale");
  if (r.request.cfg_scale)
    json_builder_add_double_value(builder, *r.request.cfg_scale);
  else
    json_builder_add_null_value(builder);
  add_string(builder, "external_task_id", r.request.external_task_id);
  json_builder_set_member_name(builder, "step");
  json_builder_add_int_value(builder, r.step);
  json_builder_end_object(builder);
}

std::string to_text(JsonBuilder *builder, bool pretty) {
  JsonNode *root = json_builder_get_root(builder);
  JsonGenerator *generator = json_generator_new();
  json_generator_set_pretty(generator, pretty);
  json_generator_set_root(generator, root);
  g_autofree char *text = json_generator_to_data(generator, nullptr);
  g_object_unref(generator);
  json_node_unref(root);
  return text;
}

std::string member_string(JsonObject *object, const char *name) {
  JsonNode *node = json_object_get_member(object, name);
  if (!node || JSON_NODE_TYPE(node) != JSON_NODE_VALUE ||
      json_node_get_value_type(node) != G_TYPE_STRING)
    return {};
  return json_node_get_string(node);
}

double member_double(JsonObject *object, const char *name, double fallback) {
  JsonNode *node = json_object_get_member(object, name);
  if (!node || JSON_NODE_TYPE(node) != JSON_NODE_VALUE)
    return fallback;
  GType type = json_node_get_value_type(node);
  if (type == G_TYPE_DOUBLE)
    return json_node_get_double(node);
  if (type == G_TYPE_INT64)
    return (double)json_node_get_int(node);
  return fallback;
}

} // namespace

std::string cache_key(const CacheRequest &request) {
  JsonBuilder *builder = json_builder_new();
  add_request(builder, request);
  std::string text = to_text(builder, false);
  g_object_unref(builder);
  g_autofree char *digest = g_compute_checksum_for_string(G_CHECKSUM_SHA256, text.c_str(), -1);
  return std::string(digest, 32);
}

bool journal_write(const std::string &dir, const JournalEntry &entry, std::string &error) {
  if (g_mkdir_with_parents(dir.c_str(), 0700) != 0) {
    error = "cannot create " + dir + ": " + g_strerror(errno);
    return false;
  }
  JsonBuilder *builder = json_builder_new();
  json_builder_begin_object(builder);
  json_builder_set_member_name(builder, "version");
  json_builder_add_int_value(builder, kJournalVersion);
  json_builder_set_member_name(builder, "request");
  add_request(builder, entry.request);
  add_string(builder, "external_task_id", entry.external_task_id);
  add_string(builder, "task_id", entry.task_id);
  add_string(builder, "status", entry.completed ? "completed" : "created");
  if (entry.completed) {
    add_string(builder, "result_url", entry.result_url);
    add_string(builder, "result_video_id", entry.result_video_id);
    json_builder_set_member_name(builder, "duration");
    json_builder_add_double_value(builder, entry.duration);
    add_string(builder, "cost", entry.cost);
  }
  if (!entry.media_file.empty()) {
    add_string(builder, "media_file", entry.media_file);
    json_builder_set_member_name(builder, "media_size");
    json_builder_add_int_value(builder, (gint64)entry.media_size);
  }
  json_builder_end_object(builder);
  std::string text = to_text(builder, true) + "\n";
  g_object_unref(builder);

  std::string key = cache_key(entry.request);
  std::string path = entry_path(dir, key);
  GError *gerror = nullptr;
  // Temporary file, then rename: readers see the old entry or the new one.
  if (!g_file_set_contents_full(path.c_str(), text.data(), (gssize)text.size(),
                                G_FILE_SET_CONTENTS_CONSISTENT, 0600, &gerror)) {
    error = gerror->message;
    g_error_free(gerror);
    return false;
  }
  return true;
}

bool journal_read(const std::string &dir, const std::string &key, JournalEntry &entry,
                  std::string &error) {
  entry = JournalEntry();
  error.clear();
  std::string path = entry_path(dir, key);
  char *data = nullptr;
  gsize length = 0;
  if (!g_file_get_contents(path.c_str(), &data, &length, nullptr))
    return false; // no entry
  JsonParser *parser = json_parser_new();
  GError *gerror = nullptr;
  bool ok = json_parser_load_from_data(parser, data, (gssize)length, &gerror);
  g_free(data);
  if (!ok) {
    error = path + " is not readable JSON (" + gerror->message + ")";
    g_error_free(gerror);
    g_object_unref(parser);
    return false;
  }
  JsonNode *root = json_parser_get_root(parser);
  JsonObject *object = root && JSON_NODE_HOLDS_OBJECT(root) ? json_node_get_object(root) : nullptr;
  JsonNode *request = object ? json_object_get_member(object, "request") : nullptr;
  if (!object || member_double(object, "version", 0) != kJournalVersion || !request ||
      !JSON_NODE_HOLDS_OBJECT(request)) {
    error = path + " is not a journal entry of this version";
    g_object_unref(parser);
    return false;
  }
  JsonObject *r = json_node_get_object(request);
  entry.request.request.model = member_string(r, "model");
  entry.request.request.video_id = member_string(r, "video_id");
  entry.request.request.prompt = member_string(r, "prompt");
  entry.request.request.negative_prompt = member_string(r, "negative_prompt");
  double cfg = member_double(r, "cfg_scale", NAN);
  if (!std::isnan(cfg))
    entry.request.request.cfg_scale = cfg;
  entry.request.request.external_task_id = member_string(r, "external_task_id");
  entry.request.step = (guint)member_double(r, "step", 1);
  entry.external_task_id = member_string(object, "external_task_id");
  entry.task_id = member_string(object, "task_id");
  entry.completed = member_string(object, "status") == "completed";
  entry.result_url = member_string(object, "result_url");
  entry.result_video_id = member_string(object, "result_video_id");
  entry.duration = member_double(object, "duration", -1);
  entry.cost = member_string(object, "cost");
  entry.media_file = member_string(object, "media_file");
  entry.media_size = (guint64)member_double(object, "media_size", 0);
  g_object_unref(parser);

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
