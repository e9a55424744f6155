// A main for a fuzz target without libFuzzer: runs LLVMFuzzerTestOneInput once on every
// file given, and on every file in every directory given, in name order. `meson test` runs
// each target this way over its corpus (the seeds and every input that once failed), with
// any compiler and under the sanitizers of the build. A broken promise aborts, so the test
// fails; the input being run was printed last.
//
// Usage: fuzz-replay-TARGET FILE|DIRECTORY...
#include <glib.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
extern "C" int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

namespace {

bool add_inputs(const char *path, std::vector<std::string> &inputs) {
  if (!g_file_test(path, G_FILE_TEST_IS_DIR)) {
    inputs.emplace_back(path);
    return true;
  }
  GError *error = nullptr;
  GDir *dir = g_dir_open(path, 0, &error);
  if (!dir) {
    fprintf(stderr, "%s\n", error->message);
    g_error_free(error);
    return false;
  }
  std::vector<std::string> names;
  while (const char *name = g_dir_read_name(dir))
    names.emplace_back(name);
  g_dir_close(dir);
  std::sort(names.begin(), names.end());
  for (const std::string &name : names) {
    std::string file = std::string(path) + "/" + name;
    if (g_file_test(file.c_str(), G_FILE_TEST_IS_REGULAR))
      inputs.push_back(file);
  }
  return true;
}

} // namespace

int main(int argc, char **argv) {
  if (LLVMFuzzerInitialize)
    LLVMFuzzerInitialize(&argc, &argv);
  std::vector<std::string> inputs;
  for (int i = 1; i < argc; i++)
    if (!add_inputs(argv[i], inputs))
      return 1;
  if (inputs.empty()) {
    fprintf(stderr, "usage: %s FILE|DIRECTORY... (no input found)\n", argv[0]);
    return 1;
  }
  for (const std::string &input : inputs) {
    gchar *contents = nullptr;
    gsize length = 0;
    GError *error = nullptr;
    if (!g_file_get_contents(input.c_str(), &contents, &length, &error)) {
      fprintf(stderr, "%s\n", error->message);
      g_error_free(error);
      return 1;
    }
    printf("%s (%zu bytes)\n", input.c_str(), length);
    fflush(stdout);
    // A buffer of exactly the input's size, as libFuzzer gives: AddressSanitizer then sees
    // a read past its end.
    std::unique_ptr<uint8_t[]> data(new uint8_t[length ? length : 1]);
    memcpy(data.get(), contents, length);
    g_free(contents);
    LLVMFuzzerTestOneInput(data.get(), length);
  }
  // The replay counts as one check, like a gst-check test that loops over cases, in the
  // form scripts/count-checks reads (a crash before this line counts as one failure).
  printf("%zu inputs replayed\nChecks: 1, Failures: 0, Errors: 0\n", inputs.size());
  return 0;
}
