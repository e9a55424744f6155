// Preloaded into the sanitized test processes only (the asan test setup in meson.build).
//
// gst-plugins-good before 1.22.7 has souphttpsrc's shared session object, GstSoupSession,
// finalize without chaining up to GObject. GObject then never clears the object's data,
// where GLib 2.74 keeps the notification queue it creates on the last unref, so every
// session that ends leaks 48 bytes inside GLib. That happens under our element whenever
// its child source stops, and a suppression broad enough to cover it (souphttpsrc's
// module, or g_object_unref) would also hide leaks in our own code. Instead, this adds the
// missing chain-up, as souphttpsrc 1.22.7 itself does, and LeakSanitizer keeps seeing
// everything else.
#include <glib-object.h>

#include <dlfcn.h>

#include <cstring>

namespace {

GClassInitFunc soup_session_class_init = nullptr;
void (*soup_session_finalize)(GObject *) = nullptr;

void count_entry(GQuark, gpointer, gpointer count) {
  (*static_cast<guint *>(count))++;
}

void finalize_and_chain_up(GObject *object) {
  soup_session_finalize(object);
  // A souphttpsrc that already chains up has cleared the data: finalizing twice would not
  // be safe, so chain up only when the data is still there.
  guint entries = 0;
  g_datalist_foreach(&object->qdata, count_entry, &entries);
  if (entries > 0)
    G_OBJECT_CLASS(g_type_class_peek(G_TYPE_OBJECT))->finalize(object);
}

void class_init_with_chain_up(gpointer klass, gpointer data) {
  soup_session_class_init(klass, data);
  GObjectClass *object_class = G_OBJECT_CLASS(klass);
  soup_session_finalize = object_class->finalize;
  object_class->finalize = finalize_and_chain_up;
}

} // namespace

// G_DEFINE_TYPE registers GstSoupSession through this function; every other type passes
// through unchanged.
extern "C" __attribute__((visibility("default"))) GType
g_type_register_static_simple(GType parent_type, const gchar *type_name, guint class_size,
                              GClassInitFunc class_init, guint instance_size,
                              GInstanceInitFunc instance_init, GTypeFlags flags) {
  using Register =
      GType (*)(GType, const gchar *, guint, GClassInitFunc, guint, GInstanceInitFunc, GTypeFlags);
  static const auto next_register =
      reinterpret_cast<Register>(dlsym(RTLD_NEXT, "g_type_register_static_simple"));
  if (class_init && type_name && strcmp(type_name, "GstSoupSession") == 0 &&
      parent_type == G_TYPE_OBJECT) {
    soup_session_class_init = class_init;
    class_init = class_init_with_chain_up;
  }
  return next_register(parent_type, type_name, class_size, class_init, instance_size, instance_init,
                       flags);
}
