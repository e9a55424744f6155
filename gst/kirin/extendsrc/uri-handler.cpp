// The GstURIHandler of kirinextendsrc: kirin://VIDEO_ID?key=value&..., so playbin,
// uridecodebin and gst-play pick the element for such URIs.
#include "element.h"

#include <cmath>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

using kirin::Settings;

namespace {

// The video ID is percent-decoded as is, never parsed as a host name (which could lower-case
// or reject it). Query keys are property names. The key, the API URL and the CA file are not
// accepted in a URI: a URI can come from a playlist or another program, and must not
// redirect the key or trust.
const char *const kUriProperties[] = {"prompt",
                                      "negative-prompt",
                                      "cfg-scale",
                                      "task-id",
                                      "external-task-id",
                                      "callback-url",
                                      "model",
                                      "poll-interval",
                                      "timeout",
                                      "request-timeout",
                                      "extensions",
                                      "stream-intermediate",
                                      "fresh"};

using UriValues = std::vector<std::pair<GParamSpec *, GValue>>;

void clear_values(UriValues &values) {
  for (auto &entry : values)
    g_value_unset(&entry.second);
  values.clear();
}

GstURIType uri_get_type(GType) {
  return GST_URI_SRC;
}

const gchar *const *uri_get_protocols(GType) {
  static const gchar *protocols[] = {"kirin", nullptr};
  return protocols;
}

// Whether a property is at its default as far as a URI is concerned: for cfg-scale, not
// set; for the IDs, not set by the user (generated IDs are results, not the request).
bool uri_default(GstKirinExtendSrc *self, const char *name, GParamSpec *pspec,
                 const GValue *value) {
  std::lock_guard<std::mutex> guard(self->priv->lock);
  const Settings &s = self->priv->settings;
  if (g_str_equal(name, "cfg-scale"))
    return !s.cfg_scale_set;
  if (g_str_equal(name, "task-id"))
    return s.task_id.empty();
  if (g_str_equal(name, "external-task-id"))
    return s.external_task_id.empty();
  return g_param_value_defaults(pspec, value);
}

char *value_text(const GValue *value) {
  if (G_VALUE_HOLDS_DOUBLE(value)) {
    // The shortest text that reads back as the same number: 0.7, not 0.69999999999999996.
    const double number = g_value_get_double(value);
    char buffer[G_ASCII_DTOSTR_BUF_SIZE];
    for (int digits = 1; digits <= 17; digits++) {
      g_autofree char *format = g_strdup_printf("%%.%dg", digits);
      if (g_ascii_strtod(g_ascii_formatd(buffer, sizeof buffer, format, number), nullptr) == number)
        break;
    }
    return g_strdup(buffer);
  }
  if (G_VALUE_HOLDS_STRING(value))
    return g_value_dup_string(value);
  return gst_value_serialize(value);
}

gchar *uri_get_uri(GstURIHandler *handler) {
  auto *self = GST_KIRIN_EXTEND_SRC(handler);
  std::string video_id;
  {
    std::lock_guard<std::mutex> guard(self->priv->lock);
    video_id = self->priv->settings.video_id;
  }
  g_autofree char *escaped_id = g_uri_escape_string(video_id.c_str(), nullptr, FALSE);
  std::string uri = std::string("kirin://") + escaped_id;
  char separator = '?';
  for (const char *name : kUriProperties) {
    GParamSpec *pspec = g_object_class_find_property(G_OBJECT_GET_CLASS(self), name);
    GValue value = G_VALUE_INIT;
    g_value_init(&value, pspec->value_type);
    g_object_get_property(G_OBJECT(self), name, &value);
    if (!uri_default(self, name, pspec, &value)) {
      g_autofree char *text = value_text(&value);
      g_autofree char *escaped = g_uri_escape_string(text ? text : "", nullptr, FALSE);
      uri += separator;
      uri += name;
      uri += '=';
      uri += escaped;
      separator = '&';
    }
    g_value_unset(&value);
  }
  return g_strdup(uri.c_str());
}

// The video ID of a kirin:// URI (after the scheme, before the query), or false.
bool parse_video_id(const char *rest, const char *query, std::string &video_id) {
  std::string id_part(rest, query ? (size_t)(query - rest) : strlen(rest));
  if (!id_part.empty() && id_part.back() == '/')
    id_part.pop_back();
  if (id_part.find_first_of("#/") != std::string::npos)
    return false;
  g_autofree char *decoded = g_uri_unescape_string(id_part.c_str(), nullptr);
  if (!decoded)
    return false;
  video_id = decoded;
  return true;
}

// Properties that exist but a URI may not set. A URI may come from a playlist, a web page or
// another program: it must not choose where the key goes, what TLS trusts, or where files are
// written. Saying so tells the user the key is not a typo.
const char *const kUriRefused[] = {
    "api-key",   "api-url",        "ca-file",         "allow-http-result",   "journal",
    "cache-dir", "cache-max-size", "callback-listen", "callback-public-url", "journal-outage-wait"};

// A whole number as a URI writes it: decimal digits only (no sign, space or 0x, which
// strtoul would take, wrapping -1 to 4294967295), within the property's range.
bool uint_from_text(const GParamSpecUInt *spec, const char *text, GValue *value) {
  guint64 number = 0;
  if (!*text || text[strspn(text, "0123456789")] != '\0' ||
      !g_ascii_string_to_unsigned(text, 10, spec->minimum, spec->maximum, &number, nullptr))
    return false;
  g_value_set_uint(value, (guint)number);
  return true;
}

// A decimal number (1e-1 too, not hex, inf or nan), within the property's range.
bool double_from_text(const GParamSpecDouble *spec, const char *text, GValue *value) {
  if (!*text || text[strspn(text, "0123456789.eE+-")] != '\0')
    return false;
  char *end = nullptr;
  double number = g_ascii_strtod(text, &end);
  if (*end != '\0' || !std::isfinite(number) || number < spec->minimum || number > spec->maximum)
    return false;
  g_value_set_double(value, number);
  return true;
}

// One value as its property's type and within its range; false when it is not one.
bool value_from_text(GParamSpec *pspec, const char *text, GValue *value) {
  if (G_VALUE_HOLDS_STRING(value)) {
    g_value_set_string(value, text);
    return true;
  }
  if (G_IS_PARAM_SPEC_UINT(pspec))
    return uint_from_text(G_PARAM_SPEC_UINT(pspec), text, value);
  if (G_IS_PARAM_SPEC_DOUBLE(pspec))
    return double_from_text(G_PARAM_SPEC_DOUBLE(pspec), text, value);
  return gst_value_deserialize_with_pspec(value, text, pspec) &&
         !g_param_value_validate(pspec, value);
}

// What a value of the property must be, for an error; "" for strings.
std::string expected_value(GParamSpec *pspec) {
  char low[G_ASCII_DTOSTR_BUF_SIZE], high[G_ASCII_DTOSTR_BUF_SIZE];
  if (G_IS_PARAM_SPEC_UINT(pspec))
    return "a whole number from " + std::to_string(G_PARAM_SPEC_UINT(pspec)->minimum) + " to " +
           std::to_string(G_PARAM_SPEC_UINT(pspec)->maximum) + " is expected";
  if (G_IS_PARAM_SPEC_DOUBLE(pspec))
    return std::string("a number from ") +
           g_ascii_formatd(low, sizeof low, "%g", G_PARAM_SPEC_DOUBLE(pspec)->minimum) + " to " +
           g_ascii_formatd(high, sizeof high, "%g", G_PARAM_SPEC_DOUBLE(pspec)->maximum) +
           " is expected";
  if (G_IS_PARAM_SPEC_BOOLEAN(pspec))
    return "true or false is expected";
  return {};
}

// One query value as the property's type, or false with `error` set.
bool parse_value(GObjectClass *klass, const char *name, const char *text, UriValues &values,
                 GError **error) {
  bool known = false, refused = false;
  for (const char *allowed : kUriProperties)
    known |= g_str_equal(name, allowed);
  for (const char *unsafe : kUriRefused)
    refused |= g_str_equal(name, unsafe);
  if (refused) {
    g_set_error(error, GST_URI_ERROR, GST_URI_ERROR_BAD_URI,
                "The kirin URI may not set '%s': it is refused for safety, since a URI can come "
                "from a playlist or another program. Set it as a property from your own code "
                "(the API key and URL also come from VTRIX_API_KEY and VTRIX_API_URL)",
                name);
    return false;
  }
  GParamSpec *pspec = known ? g_object_class_find_property(klass, name) : nullptr;
  if (!pspec) {
    g_set_error(error, GST_URI_ERROR, GST_URI_ERROR_BAD_URI,
                "Unknown key '%s' in the kirin URI: it accepts prompt, negative-prompt, "
                "cfg-scale, task-id, external-task-id, callback-url, model, "
                "poll-interval, timeout, request-timeout, extensions, stream-intermediate and "
                "fresh",
                name);
    return false;
  }
  GValue value = G_VALUE_INIT;
  g_value_init(&value, pspec->value_type);
  if (!value_from_text(pspec, text, &value)) {
    std::string expected = expected_value(pspec);
    g_set_error(error, GST_URI_ERROR, GST_URI_ERROR_BAD_URI,
                "Invalid value '%s' for '%s' in the kirin URI%s%s", text, name,
                expected.empty() ? "" : ": ", expected.c_str());
    g_value_unset(&value);
    return false;
  }
  values.emplace_back(pspec, value);
  return true;
}

// Every key and value of the query, checked before anything changes.
bool parse_query(GObjectClass *klass, const char *query, UriValues &values, GError **error) {
  if (!query || !query[1])
    return true;
  GError *parse_error = nullptr;
  GHashTable *params = g_uri_parse_params(query + 1, -1, "&", G_URI_PARAMS_NONE, &parse_error);
  if (!params) {
    g_set_error(error, GST_URI_ERROR, GST_URI_ERROR_BAD_URI, "Invalid query in the kirin URI: %s",
                parse_error->message);
    g_error_free(parse_error);
    return false;
  }
  bool ok = true;
  GHashTableIter iter;
  gpointer key, text;
  g_hash_table_iter_init(&iter, params);
  while (ok && g_hash_table_iter_next(&iter, &key, &text))
    ok = parse_value(klass, static_cast<const char *>(key), static_cast<const char *>(text), values,
                     error);
  g_hash_table_unref(params);
  if (!ok)
    clear_values(values);
  return ok;
}

// A URI says everything: what it does not set returns to the default.
void apply_uri(GstKirinExtendSrc *self, const std::string &video_id, UriValues &values) {
  for (const char *name : kUriProperties) {
    GParamSpec *pspec = g_object_class_find_property(G_OBJECT_GET_CLASS(self), name);
    GValue value = G_VALUE_INIT;
    g_value_init(&value, pspec->value_type);
    g_param_value_set_default(pspec, &value);
    g_object_set_property(G_OBJECT(self), name, &value);
    g_value_unset(&value);
  }
  {
    std::lock_guard<std::mutex> guard(self->priv->lock);
    self->priv->settings.cfg_scale_set = false;
    self->priv->settings.video_id = video_id;
  }
  for (auto &[pspec, value] : values)
    g_object_set_property(G_OBJECT(self), pspec->name, &value);
}

gboolean uri_set_uri(GstURIHandler *handler, const gchar *uri, GError **error) {
  auto *self = GST_KIRIN_EXTEND_SRC(handler);
  if (GST_STATE(self) > GST_STATE_READY) {
    g_set_error(error, GST_URI_ERROR, GST_URI_ERROR_BAD_STATE,
                "The URI can only be changed in the NULL or READY state");
    return FALSE;
  }
  const char *prefix = "kirin://";
  if (!uri || g_ascii_strncasecmp(uri, prefix, strlen(prefix)) != 0) {
    g_set_error(error, GST_URI_ERROR, GST_URI_ERROR_UNSUPPORTED_PROTOCOL, "Not a kirin:// URI: %s",
                uri ? uri : "(null)");
    return FALSE;
  }
  const char *rest = uri + strlen(prefix);
  const char *query = strchr(rest, '?');
  std::string video_id;
  if (!parse_video_id(rest, query, video_id)) {
    g_set_error(error, GST_URI_ERROR, GST_URI_ERROR_BAD_URI,
                "Invalid video ID in %s: percent-encode it (a '/' is %%2F)", uri);
    return FALSE;
  }
  UriValues values;
  if (!parse_query(G_OBJECT_GET_CLASS(self), query, values, error))
    return FALSE;
  apply_uri(self, video_id, values);
  clear_values(values);
  return TRUE;
}

} // namespace

void gst_kirin_extend_src_uri_handler_init(gpointer iface, gpointer) {
  auto *handler = static_cast<GstURIHandlerInterface *>(iface);
  handler->get_type = uri_get_type;
  handler->get_protocols = uri_get_protocols;
  handler->get_uri = uri_get_uri;
  handler->set_uri = uri_set_uri;
}
