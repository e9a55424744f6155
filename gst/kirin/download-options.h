// What an application sets on kirinhttpsrc (download.h), with souphttpsrc's names: the
// properties, and the values they hold. The element reads them under its object lock.
#pragma once

#include <gio/gio.h>
#include <gst/gst.h>

#include <string>

namespace kirin {
namespace module {

struct DownloadOptions {
  std::string location;
  std::string user_agent = "gst-kirin/" VERSION;
  std::string proxy; // empty: the system's proxy settings
  GstStructure *extra_headers = nullptr;
  guint timeout = 15; // seconds of silence before a connection counts as broken; souphttpsrc's
  gint retries = 3;   // resumptions in a row of a download that broke off; -1: no limit
  bool ssl_strict = true;
  GTlsDatabase *tls_database = nullptr;
  bool automatic_redirect = true;

  DownloadOptions() = default;
  DownloadOptions(const DownloadOptions &) = delete;
  DownloadOptions &operator=(const DownloadOptions &) = delete;
  ~DownloadOptions();
};

void install_download_properties(GObjectClass *klass);
// False for a property ID that is not one of these.
bool set_download_property(DownloadOptions &options, guint id, const GValue *value);
bool get_download_property(const DownloadOptions &options, guint id, GValue *value);

} // namespace module
} // namespace kirin
