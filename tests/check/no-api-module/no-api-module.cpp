// A file named like the client module that does not export kirin_client_api, for
// test-module.
#include <gmodule.h>

extern "C" G_MODULE_EXPORT int kirin_client_something_else() {
  return 0;
}
