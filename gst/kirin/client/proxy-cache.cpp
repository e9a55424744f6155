#include "proxy-cache.h"

#include <map>
#include <mutex>
#include <string>
#include <vector>

#define KIRIN_TYPE_PROXY_CACHE (kirin_proxy_cache_get_type())
G_DECLARE_FINAL_TYPE(KirinProxyCache, kirin_proxy_cache, KIRIN, PROXY_CACHE, GObject)

namespace {

struct ProxyCacheState {
  struct Answer {
    std::vector<std::string> proxies;
    gint64 expires_us = 0;
  };
  guint keep_seconds = 0;
  std::mutex lock;
  std::map<std::string, Answer> answers;
  std::map<std::string, std::vector<GTask *>> waiting; // lookups of a key in flight
};

// What the answer depends on for our requests: they all go to one API host (and its paths).
std::string proxy_cache_key(const char *uri) {
  GUri *parsed = g_uri_parse(uri, G_URI_FLAGS_NONE, nullptr);
  if (!parsed)
    return uri;
  std::string key = std::string(g_uri_get_scheme(parsed)) + "://" +
                    (g_uri_get_host(parsed) ? g_uri_get_host(parsed) : "") + ":" +
                    std::to_string(g_uri_get_port(parsed));
  g_uri_unref(parsed);
  return key;
}

gchar **to_strv(const std::vector<std::string> &items) {
  gchar **out = g_new0(gchar *, items.size() + 1);
  for (size_t i = 0; i < items.size(); i++)
    out[i] = g_strdup(items[i].c_str());
  return out;
}

} // namespace

struct _KirinProxyCache {
  GObject parent;
  ProxyCacheState *state;
};

static void kirin_proxy_cache_iface_init(GProxyResolverInterface *iface);
G_DEFINE_TYPE_WITH_CODE(KirinProxyCache, kirin_proxy_cache, G_TYPE_OBJECT,
                        G_IMPLEMENT_INTERFACE(G_TYPE_PROXY_RESOLVER, kirin_proxy_cache_iface_init))

static void kirin_proxy_cache_init(KirinProxyCache *self) {
  self->state = new ProxyCacheState();
}

static void kirin_proxy_cache_finalize(GObject *object) {
  delete KIRIN_PROXY_CACHE(object)->state;
  G_OBJECT_CLASS(kirin_proxy_cache_parent_class)->finalize(object);
}

static void kirin_proxy_cache_class_init(KirinProxyCacheClass *klass) {
  G_OBJECT_CLASS(klass)->finalize = kirin_proxy_cache_finalize;
}

// The kept answer for `key`, or nullptr.
static gchar **proxy_cache_find(ProxyCacheState *state, const std::string &key) {
  auto found = state->answers.find(key);
  if (found == state->answers.end() || found->second.expires_us <= g_get_monotonic_time())
    return nullptr;
  return to_strv(found->second.proxies);
}

static void proxy_cache_store(ProxyCacheState *state, const std::string &key, gchar **proxies) {
  ProxyCacheState::Answer answer;
  for (gchar **p = proxies; p && *p; p++)
    answer.proxies.push_back(*p);
  answer.expires_us = g_get_monotonic_time() + (gint64)state->keep_seconds * G_USEC_PER_SEC;
  state->answers[key] = std::move(answer);
}

static gchar **kirin_proxy_cache_lookup(GProxyResolver *resolver, const gchar *uri,
                                        GCancellable *cancellable, GError **error) {
  ProxyCacheState *state = KIRIN_PROXY_CACHE(resolver)->state;
  const std::string key = proxy_cache_key(uri);
  {
    std::lock_guard<std::mutex> guard(state->lock);
    if (gchar **kept = proxy_cache_find(state, key))
      return kept;
  }
  gchar **proxies =
      g_proxy_resolver_lookup(g_proxy_resolver_get_default(), uri, cancellable, error);
  if (proxies) {
    std::lock_guard<std::mutex> guard(state->lock);
    proxy_cache_store(state, key, proxies);
  }
  return proxies;
}

struct ProxyLookup {
  KirinProxyCache *self; // a reference
  std::string key;
};

static void proxy_cache_looked_up(GObject *source, GAsyncResult *result, gpointer data) {
  auto *lookup = static_cast<ProxyLookup *>(data);
  ProxyCacheState *state = lookup->self->state;
  GError *error = nullptr;
  gchar **proxies = g_proxy_resolver_lookup_finish(G_PROXY_RESOLVER(source), result, &error);
  std::vector<GTask *> tasks;
  {
    std::lock_guard<std::mutex> guard(state->lock);
    tasks.swap(state->waiting[lookup->key]);
    state->waiting.erase(lookup->key);
    if (proxies)
      proxy_cache_store(state, lookup->key, proxies);
  }
  // A waiter whose own cancellable fired gets G_IO_ERROR_CANCELLED from GTask; the shared
  // lookup itself is never cancelled by one of them.
  for (GTask *task : tasks) {
    if (proxies)
      g_task_return_pointer(task, g_strdupv(proxies), (GDestroyNotify)g_strfreev);
    else
      g_task_return_error(task, g_error_copy(error));
    g_object_unref(task);
  }
  g_strfreev(proxies);
  g_clear_error(&error);
  g_object_unref(lookup->self);
  delete lookup;
}

static void kirin_proxy_cache_lookup_async(GProxyResolver *resolver, const gchar *uri,
                                           GCancellable *cancellable, GAsyncReadyCallback callback,
                                           gpointer user_data) {
  KirinProxyCache *self = KIRIN_PROXY_CACHE(resolver);
  GTask *task = g_task_new(resolver, cancellable, callback, user_data);
  g_task_set_source_tag(task, (gpointer)kirin_proxy_cache_lookup_async);
  const std::string key = proxy_cache_key(uri);
  {
    std::lock_guard<std::mutex> guard(self->state->lock);
    if (gchar **kept = proxy_cache_find(self->state, key)) {
      g_task_return_pointer(task, kept, (GDestroyNotify)g_strfreev);
      g_object_unref(task);
      return;
    }
    std::vector<GTask *> &waiting = self->state->waiting[key];
    waiting.push_back(task);
    if (waiting.size() > 1)
      return; // answered with the lookup already in flight
  }
  g_proxy_resolver_lookup_async(g_proxy_resolver_get_default(), uri, nullptr, proxy_cache_looked_up,
                                new ProxyLookup{KIRIN_PROXY_CACHE(g_object_ref(self)), key});
}

static gchar **kirin_proxy_cache_lookup_finish(GProxyResolver *, GAsyncResult *result,
                                               GError **error) {
  return static_cast<gchar **>(g_task_propagate_pointer(G_TASK(result), error));
}

static void kirin_proxy_cache_iface_init(GProxyResolverInterface *iface) {
  iface->lookup = kirin_proxy_cache_lookup;
  iface->lookup_async = kirin_proxy_cache_lookup_async;
  iface->lookup_finish = kirin_proxy_cache_lookup_finish;
}

namespace kirin {
namespace module {

GProxyResolver *proxy_cache_new(guint keep_seconds) {
  auto *cache = KIRIN_PROXY_CACHE(g_object_new(KIRIN_TYPE_PROXY_CACHE, nullptr));
  cache->state->keep_seconds = keep_seconds;
  return G_PROXY_RESOLVER(cache);
}

} // namespace module
} // namespace kirin
