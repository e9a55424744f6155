// kirinhttpsrc's properties (download-options.h).
#include "download-options.h"

namespace kirin {
namespace module {
namespace {

enum {
  PROP_0,
  PROP_LOCATION,
  PROP_USER_AGENT,
  PROP_PROXY,
  PROP_EXTRA_HEADERS,
  PROP_TIMEOUT,
  PROP_RETRIES,
  PROP_SSL_STRICT,
  PROP_TLS_DATABASE,
  PROP_AUTOMATIC_REDIRECT,
};

} // namespace

DownloadOptions::~DownloadOptions() {
  if (extra_headers)
    gst_structure_free(extra_headers);
  g_clear_object(&tls_database);
}

void install_download_properties(GObjectClass *object_class) {
  const DownloadOptions defaults;
  const auto flags = GParamFlags(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
  g_object_class_install_property(object_class, PROP_LOCATION,
                                  g_param_spec_string("location", "Location",
                                                      "The http:// or https:// URL to read",
                                                      nullptr, flags));
  g_object_class_install_property(object_class, PROP_USER_AGENT,
                                  g_param_spec_string("user-agent", "User-Agent",
                                                      "The User-Agent header sent",
                                                      defaults.user_agent.c_str(), flags));
  g_object_class_install_property(
      object_class, PROP_PROXY,
      g_param_spec_string("proxy", "Proxy",
                          "HTTP proxy URI (http://host:port); unset: the system's proxy settings",
                          nullptr, flags));
  g_object_class_install_property(
      object_class, PROP_EXTRA_HEADERS,
      g_param_spec_boxed("extra-headers", "Extra headers",
                         "Headers added to every request (field name: header, value: its text)",
                         GST_TYPE_STRUCTURE, flags));
  g_object_class_install_property(
      object_class, PROP_TIMEOUT,
      g_param_spec_uint("timeout", "Timeout",
                        "Seconds a connection may stay silent before it counts as broken "
                        "(0: no limit)",
                        0, 3600, defaults.timeout, flags));
  g_object_class_install_property(
      object_class, PROP_RETRIES,
      g_param_spec_int("retries", "Retries",
                       "Times a broken-off download is resumed in a row from where it stopped, "
                       "with a Range request, before it is an error (-1: no limit)",
                       -1, G_MAXINT, defaults.retries, flags));
  g_object_class_install_property(
      object_class, PROP_SSL_STRICT,
      g_param_spec_boolean("ssl-strict", "Strict TLS",
                           "Refuse a server whose certificate cannot be verified", TRUE, flags));
  g_object_class_install_property(
      object_class, PROP_TLS_DATABASE,
      g_param_spec_object("tls-database", "TLS database",
                          "The certificates trusted (unset: the system's)", G_TYPE_TLS_DATABASE,
                          flags));
  g_object_class_install_property(object_class, PROP_AUTOMATIC_REDIRECT,
                                  g_param_spec_boolean("automatic-redirect", "Follow redirects",
                                                       "Follow the server's redirects", TRUE,
                                                       flags));
}

bool set_download_property(DownloadOptions &options, guint id, const GValue *value) {
  switch (id) {
  case PROP_LOCATION:
    options.location = g_value_get_string(value) ? g_value_get_string(value) : "";
    break;
  case PROP_USER_AGENT:
    options.user_agent = g_value_get_string(value) ? g_value_get_string(value) : "";
    break;
  case PROP_PROXY:
    options.proxy = g_value_get_string(value) ? g_value_get_string(value) : "";
    break;
  case PROP_EXTRA_HEADERS:
    if (options.extra_headers)
      gst_structure_free(options.extra_headers);
    options.extra_headers = static_cast<GstStructure *>(g_value_dup_boxed(value));
    break;
  case PROP_TIMEOUT:
    options.timeout = g_value_get_uint(value);
    break;
  case PROP_RETRIES:
    options.retries = g_value_get_int(value);
    break;
  case PROP_SSL_STRICT:
    options.ssl_strict = g_value_get_boolean(value);
    break;
  case PROP_TLS_DATABASE:
    g_clear_object(&options.tls_database);
    options.tls_database = G_TLS_DATABASE(g_value_dup_object(value));
    break;
  case PROP_AUTOMATIC_REDIRECT:
    options.automatic_redirect = g_value_get_boolean(value);
    break;
  default:
    return false;
  }
  return true;
}

bool get_download_property(const DownloadOptions &options, guint id, GValue *value) {
  switch (id) {
  case PROP_LOCATION:
    g_value_set_string(value, options.location.empty() ? nullptr : options.location.c_str());
    break;
  case PROP_USER_AGENT:
    g_value_set_string(value, options.user_agent.c_str());
    break;
  case PROP_PROXY:
    g_value_set_string(value, options.proxy.empty() ? nullptr : options.proxy.c_str());
    break;
  case PROP_EXTRA_HEADERS:
    g_value_set_boxed(value, options.extra_headers);
    break;
  case PROP_TIMEOUT:
    g_value_set_uint(value, options.timeout);
    break;
  case PROP_RETRIES:
    g_value_set_int(value, options.retries);
    break;
  case PROP_SSL_STRICT:
    g_value_set_boolean(value, options.ssl_strict);
    break;
  case PROP_TLS_DATABASE:
    g_value_set_object(value, options.tls_database);
    break;
  case PROP_AUTOMATIC_REDIRECT:
    g_value_set_boolean(value, options.automatic_redirect);
    break;
  default:
    return false;
  }
  return true;
}

} // namespace module
} // namespace kirin
