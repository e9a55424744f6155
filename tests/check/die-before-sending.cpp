// Preloaded (LD_PRELOAD) into a gst-launch-1.0 by tests/check/journal.cpp: the process
// kills itself just before it marks its claimed create as sending. That moment (the row
// claimed, the create not sent) has no request an emulator hold could keep back, and a
// timed kill hits it only by chance.
#include <sqlite3.h>

#include <csignal>
#include <cstring>
#include <dlfcn.h>

extern "C" __attribute__((visibility("default"))) int sqlite3_step(sqlite3_stmt *stmt) {
  static auto next = reinterpret_cast<int (*)(sqlite3_stmt *)>(dlsym(RTLD_NEXT, "sqlite3_step"));
  static const char kSending[] = "UPDATE tasks SET status = 'sending'";
  const char *sql = sqlite3_sql(stmt);
  if (sql && strncmp(sql, kSending, sizeof kSending - 1) == 0)
    raise(SIGKILL);
  return next(stmt);
}
