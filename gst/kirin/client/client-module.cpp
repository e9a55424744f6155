// The module's one exported symbol: the table the plugin's loader calls through (client.h).
#include "client.h"

#include "callback-receiver.h"
#include "client-thread.h"
#include "job.h"

#include <gio/gio.h>
#include <gmodule.h>

#include <type_traits>

namespace kirin {
namespace module {
namespace {

GObject *tls_file_database_new(const std::string &path, std::string &error) {
  GError *gerror = nullptr;
  GTlsDatabase *database = g_tls_file_database_new(path.c_str(), &gerror);
  if (!database) {
    error = gerror->message;
    g_error_free(gerror);
  }
  return G_OBJECT(database);
}

// Queued as an idle source: sources of one priority are dispatched in the order attached.
void post(std::function<void()> work) {
  GSource *source = g_idle_source_new();
  g_source_set_priority(source, G_PRIORITY_DEFAULT);
  g_source_set_callback(
      source,
      [](gpointer data) -> gboolean {
        (*static_cast<std::function<void()> *>(data))();
        return G_SOURCE_REMOVE;
      },
      new std::function<void()>(std::move(work)),
      [](gpointer data) { delete static_cast<std::function<void()> *>(data); });
  g_source_attach(source, ClientThread::get().context());
  g_source_unref(source);
}

} // namespace
} // namespace module
} // namespace kirin

extern "C" G_MODULE_EXPORT const kirin::ClientApi *kirin_client_api() {
  static const kirin::ClientApi api = {
      kirin::kClientAbiVersion,
      sizeof(kirin::ClientApi),
      kirin::module::job_start,
      kirin::module::job_cancel,
      kirin::module::callback_listener_start,
      kirin::module::job_error_name,
      kirin::module::tls_file_database_new,
      kirin::module::post,
  };
  return &api;
}

// The loader calls it by name with this type.
static_assert(std::is_same<decltype(&kirin_client_api), kirin::ClientApiFunction>::value,
              "kirin_client_api must match ClientApiFunction");
