// The threads of this test's process, by name: what a suite checks to see a worker come
// and go.
#pragma once

#include <gst/check/gstcheck.h>

// The threads of this process named `name` (their /proc comm).
inline int threads_named(const char *name) {
  int count = 0;
  GDir *dir = g_dir_open("/proc/self/task", 0, nullptr);
  fail_unless(dir != nullptr);
  while (const char *task = g_dir_read_name(dir)) {
    g_autofree char *path = g_strdup_printf("/proc/self/task/%s/comm", task);
    g_autofree char *comm = nullptr;
    if (g_file_get_contents(path, &comm, nullptr, nullptr) &&
        g_strcmp0(g_strstrip(comm), name) == 0)
      count++;
  }
  g_dir_close(dir);
  return count;
}
