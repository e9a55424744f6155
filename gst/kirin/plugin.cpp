#include "gstkirinextendsrc.h"

static gboolean plugin_init(GstPlugin *plugin) {
  return GST_ELEMENT_REGISTER(kirinextendsrc, plugin);
}

GST_PLUGIN_DEFINE(GST_VERSION_MAJOR, GST_VERSION_MINOR, kirin,
                  "Extend videos with the Vtrix Kirin duration-extension API", plugin_init, VERSION,
                  "LGPL", "gst-kirin", "https://cloud.vtrix.ai/")
