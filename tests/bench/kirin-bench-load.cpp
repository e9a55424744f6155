// kirin-bench-load: how long gst_plugin_load_file takes for one plugin file (dlopen of the
// plugin and its libraries, then plugin_init). A program of its own that links GStreamer
// only: in kirin-bench, libsoup and json-glib are loaded already (the emulator uses them),
// which would make the kirin plugin look cheaper than it is.
//
//   kirin-bench-load FILE [MODULE]   prints {"plugin", "load_ms", "elements"[, "module_ms"]}
//
// MODULE: also time g_module_open of the plugin's client module after the plugin, which is
// what the first element to run pays once per process (gst/kirin/client/client.h).
#include <gmodule.h>
#include <gst/gst.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

int main(int argc, char **argv) {
  gst_init(&argc, &argv);
  if (argc != 2 && argc != 3) {
    g_printerr("usage: kirin-bench-load PLUGIN-FILE [MODULE-FILE]\n");
    return 2;
  }
  const gint64 start = g_get_monotonic_time();
  GError *error = nullptr;
  GstPlugin *plugin = gst_plugin_load_file(argv[1], &error);
  const gint64 end = g_get_monotonic_time();
  if (!plugin) {
    g_printerr("kirin-bench-load: cannot load %s: %s\n", argv[1], error->message);
    return 1;
  }
  std::vector<std::string> elements;
  GList *features =
      gst_registry_get_feature_list_by_plugin(gst_registry_get(), gst_plugin_get_name(plugin));
  for (GList *l = features; l; l = l->next)
    if (GST_IS_ELEMENT_FACTORY(l->data))
      elements.push_back(gst_plugin_feature_get_name(GST_PLUGIN_FEATURE(l->data)));
  gst_plugin_feature_list_free(features);
  std::sort(elements.begin(), elements.end());
  std::string list;
  for (const std::string &name : elements)
    list += (list.empty() ? "\"" : ", \"") + name + "\"";
  std::string module_ms;
  if (argc == 3) {
    const gint64 module_start = g_get_monotonic_time();
    GModule *module = g_module_open(argv[2], G_MODULE_BIND_LOCAL);
    const gint64 module_end = g_get_monotonic_time();
    if (!module) {
      g_printerr("kirin-bench-load: cannot load %s: %s\n", argv[2], g_module_error());
      return 1;
    }
    module_ms = ", \"module_ms\": " + std::to_string((module_end - module_start) / 1000.0);
  }
  std::printf("{\"plugin\": \"%s\", \"load_ms\": %.4f, \"elements\": [%s]%s}\n",
              gst_plugin_get_name(plugin), (end - start) / 1000.0, list.c_str(), module_ms.c_str());
  gst_object_unref(plugin);
  return 0;
}
