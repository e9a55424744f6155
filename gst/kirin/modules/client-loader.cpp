// The plugin's side of the client (see client.h): loads libgstkirin-client.module from the
// plugin's own directory when an element first needs it, and forwards every call to it.
#include "client.h"

#include "modules.h"

namespace kirin {
namespace {

// Version 1 of the table had no version field.
LazyModule<ClientApi> client_module({"libgstkirin-client.module", kClientApiSymbol,
                                     kClientAbiVersion, sizeof(ClientApi), true});

const ClientApi *api() {
  return client_module.get();
}

} // namespace

bool client_load(std::string &error) {
  if (api())
    return true;
  error = client_module.load_error();
  return false;
}

// Called only after client_load succeeded (the element's start()).
JobHandle job_start(JobConfig config, JobCallbacks callbacks) {
  return api()->job_start(std::move(config), std::move(callbacks));
}

void job_cancel(const JobHandle &job) {
  if (job) // a job exists only if the module was loaded
    api()->job_cancel(job);
}

guint callback_listener_start(const std::string &listen, std::string &error) {
  return client_load(error) ? api()->callback_listener_start(listen, error) : 0;
}

// Called only after client_load succeeded (a run exists).
void client_post(std::function<void()> work) {
  api()->post(std::move(work));
}

const char *job_error_name(JobError error) {
  return api() ? api()->job_error_name(error) : "unknown";
}

GObject *tls_file_database_new(const std::string &path, std::string &error) {
  return client_load(error) ? api()->tls_file_database_new(path, error) : nullptr;
}

} // namespace kirin
