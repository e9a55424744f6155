// The kept copy of a download (gst/kirin/run/cache.h's MediaWriter): it is renamed into place
// only when the byte ranges received cover [0, size), whatever order they came in. A copy
// with a hole would replay as a corrupt file for good, so a refused commit must leave
// nothing behind. Pure file I/O: no element, no emulator.
#include "cache.h"

#include <gst/check/gstcheck.h>

#include <glib/gstdio.h>

#include <set>
#include <string>
#include <vector>

namespace {

// A directory of its own, removed with what is left in it.
struct TempDir {
  std::string path;
  TempDir() {
    g_autofree char *made = g_dir_make_tmp("kirin-media-writer-XXXXXX", nullptr);
    fail_unless(made != nullptr);
    path = made;
  }
  ~TempDir() {
    for (const std::string &name : names())
      g_unlink((path + "/" + name).c_str());
    g_rmdir(path.c_str());
  }
  std::set<std::string> names() const {
    std::set<std::string> found;
    if (GDir *dir = g_dir_open(path.c_str(), 0, nullptr)) {
      while (const char *name = g_dir_read_name(dir))
        found.insert(name);
      g_dir_close(dir);
    }
    return found;
  }
};

// The byte at `offset` of the result: different at every offset of the test, so a byte
// written at the wrong place shows.
std::vector<guint8> result_bytes(gsize size) {
  std::vector<guint8> bytes(size);
  for (gsize i = 0; i < size; i++)
    bytes[i] = (guint8)(i * 7 + 3);
  return bytes;
}

void write_range(kirin::MediaWriter &writer, const std::vector<guint8> &result, guint64 start,
                 guint64 end) {
  writer.write(start, result.data() + start, end - start);
}

// A refused commit: no path, a reason, and the directory as empty as before.
void assert_refused(kirin::MediaWriter &writer, guint64 size, const TempDir &dir) {
  std::string error;
  std::string path = writer.commit(size, error);
  fail_unless(path.empty(), "a copy was kept at %s", path.c_str());
  fail_if(error.empty(), "refused without a reason");
  std::set<std::string> left = dir.names();
  fail_unless(left.empty(), "left in the cache: %s (and %zu more)",
              left.empty() ? "" : left.begin()->c_str(), left.empty() ? 0 : left.size() - 1);
}

} // namespace

GST_START_TEST(test_hole_is_refused) {
  TempDir dir;
  std::vector<guint8> result = result_bytes(30);
  kirin::MediaWriter writer(dir.path, "copy.mp4");
  fail_unless(writer.ok());
  write_range(writer, result, 0, 10);
  write_range(writer, result, 20, 30);
  // The temporary file exists while the copy is written.
  fail_unless_equals_int(dir.names().size(), 1);
  assert_refused(writer, 30, dir);
}
GST_END_TEST;

// A hole at the very start (a demuxer that seeked to the end first and never back).
GST_START_TEST(test_missing_start_is_refused) {
  TempDir dir;
  std::vector<guint8> result = result_bytes(30);
  kirin::MediaWriter writer(dir.path, "copy.mp4");
  write_range(writer, result, 5, 30);
  assert_refused(writer, 30, dir);
}
GST_END_TEST;

GST_START_TEST(test_overlapping_out_of_order_writes_are_kept) {
  TempDir dir;
  std::vector<guint8> result = result_bytes(64);
  kirin::MediaWriter writer(dir.path, "copy.mp4");
  // Out of order, overlapping, touching and contained ranges, as seeks and retries give.
  write_range(writer, result, 40, 64);
  write_range(writer, result, 0, 12);
  write_range(writer, result, 30, 45);
  write_range(writer, result, 5, 10);
  write_range(writer, result, 12, 20); // touches [0, 12)
  write_range(writer, result, 18, 31); // bridges the last gap
  std::string error;
  std::string path = writer.commit(64, error);
  fail_if(path.empty(), "refused: %s", error.c_str());
  fail_unless(path == dir.path + "/copy.mp4", "%s", path.c_str());
  // Only the copy: the temporary file was renamed, not left beside it.
  std::set<std::string> left = dir.names();
  fail_unless(left == std::set<std::string>{"copy.mp4"}, "%zu files in the cache", left.size());
  gchar *contents = nullptr;
  gsize length = 0;
  fail_unless(g_file_get_contents(path.c_str(), &contents, &length, nullptr));
  fail_unless_equals_uint64(length, result.size());
  fail_unless(memcmp(contents, result.data(), length) == 0, "the copy's bytes differ");
  g_free(contents);
}
GST_END_TEST;

// The source reported a size larger than what passed through (the stream ended early).
GST_START_TEST(test_size_beyond_received_is_refused) {
  TempDir dir;
  std::vector<guint8> result = result_bytes(40);
  kirin::MediaWriter writer(dir.path, "copy.mp4");
  write_range(writer, result, 0, 30);
  assert_refused(writer, 40, dir);
}
GST_END_TEST;

// Dropped without a commit (the run stopped mid-download): the temporary file goes too.
GST_START_TEST(test_uncommitted_copy_leaves_nothing) {
  TempDir dir;
  std::vector<guint8> result = result_bytes(30);
  {
    kirin::MediaWriter writer(dir.path, "copy.mp4");
    write_range(writer, result, 0, 30);
    fail_unless_equals_int(dir.names().size(), 1);
  }
  fail_unless(dir.names().empty());
}
GST_END_TEST;

static Suite *media_writer_suite() {
  Suite *s = suite_create("media-writer");
  TCase *tc = tcase_create("general");
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_hole_is_refused);
  tcase_add_test(tc, test_missing_start_is_refused);
  tcase_add_test(tc, test_overlapping_out_of_order_writes_are_kept);
  tcase_add_test(tc, test_size_beyond_received_is_refused);
  tcase_add_test(tc, test_uncommitted_copy_leaves_nothing);
  return s;
}

GST_CHECK_MAIN(media_writer);
