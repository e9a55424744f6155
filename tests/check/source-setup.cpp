// A source-setup handler written for souphttpsrc configures the download of kirinextendsrc,
// on the element alone and reached through playbin's own source-setup, from C and from Python
// (source_setup.py): a proxy that asks for credentials (tinyproxy on loopback, started here),
// cookies and extra headers that reach the result host, and the CA of a result host with a
// certificate of its own (a second emulator, over TLS) as the source's own tls-database (and
// ssl-ca-file, which souphttpsrc 1.22 ignores on libsoup 3: the element says so). What the servers
// saw is asserted from their request logs.
//
// Usage: test-source-setup SOURCE_SETUP_PY (meson passes it).
#include "common.h"

#include "emulator-fixture.h"
#include "program.h"

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace {

using kirin_emu::Route;

constexpr const char *kKey = "source-setup-test-key";
constexpr const char *kProxyUser = "kirin-user", *kProxyPassword = "s3cret-pw";
constexpr const char *kProxyName = "kirin-test-proxy"; // in the Via header the proxy adds
std::string python_app;                                // source_setup.py

const char *mode_name(int mode) {
  return mode == 0 ? "element" : "playbin";
}

bool contains(const std::string &text, const std::string &part) {
  return text.find(part) != std::string::npos;
}

// tinyproxy on a free loopback port, in the foreground, asking for Basic credentials; killed
// when this goes. Its config, stdout and stderr are in `dir`.
class Proxy {
public:
  explicit Proxy(const WorkDir &dir) {
    g_autofree char *program = g_find_program_in_path("tinyproxy");
    fail_unless(program != nullptr, "tinyproxy is not installed (scripts/deps.sh lists it)");
    const std::string conf = dir.file("tinyproxy.conf");
    std::string log;
    // A port found free may be taken before tinyproxy binds it: then it exits, and another
    // port is tried.
    for (int attempt = 0; attempt < 3; attempt++) {
      port_ = kirin_test_free_port();
      std::string text = "Port " + std::to_string(port_) + "\nListen 127.0.0.1\nAllow 127.0.0.1\n" +
                         "Timeout 30\nMaxClients 20\nLogLevel Info\n" + "BasicAuth " + kProxyUser +
                         " " + kProxyPassword + "\nViaProxyName \"" + kProxyName + "\"\n";
      fail_unless(g_file_set_contents(conf.c_str(), text.c_str(), -1, nullptr));
      program_ = kirin_test_spawn({program, "-d", "-c", conf}, dir, "tinyproxy", {});
      if (listening())
        return;
      stop();
      log = program_->both();
      program_.reset();
    }
    fail("tinyproxy did not listen:\n%s", log.c_str());
  }
  ~Proxy() { stop(); }
  Proxy(const Proxy &) = delete;
  Proxy &operator=(const Proxy &) = delete;

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string log() const { return program_ ? program_->both() : ""; }

private:
  // Until tinyproxy accepts a connection (at most 10 s, longer under the sanitizers), or
  // exits.
  bool listening() {
    g_autoptr(GSocketClient) client = g_socket_client_new();
    const gint64 deadline =
        g_get_monotonic_time() + (gint64)(10 * G_USEC_PER_SEC * kirin_test_slowdown());
    while (g_get_monotonic_time() < deadline && g_subprocess_get_identifier(program_->process)) {
      g_autoptr(GSocketConnection) connection =
          g_socket_client_connect_to_host(client, "127.0.0.1", port_, nullptr, nullptr);
      if (connection)
        return true;
      g_usleep(20 * 1000);
    }
    return false;
  }
  void stop() {
    if (!program_)
      return;
    g_subprocess_force_exit(program_->process);
    g_subprocess_wait(program_->process, nullptr, nullptr);
  }

  std::unique_ptr<Program> program_;
  guint port_ = 0;
};

// What the application's handler sets on the download source, and what it was handed.
struct Handler {
  std::string proxy, proxy_id, proxy_pw;
  std::vector<std::string> cookies;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string ssl_ca_file;
  std::string tls_database_file; // a GTlsFileDatabase of it as the source's tls-database

  std::mutex lock;
  std::vector<std::string> factories; // of the sources it configured, in order
};

// The application's code, as it is written for souphttpsrc.
void on_source_setup(GstElement *, GstElement *source, gpointer data) {
  auto *handler = static_cast<Handler *>(data);
  {
    std::lock_guard<std::mutex> guard(handler->lock);
    handler->factories.emplace_back(GST_OBJECT_NAME(gst_element_get_factory(source)));
  }
  if (!handler->proxy.empty())
    g_object_set(source, "proxy", handler->proxy.c_str(), nullptr);
  if (!handler->proxy_id.empty())
    g_object_set(source, "proxy-id", handler->proxy_id.c_str(), "proxy-pw",
                 handler->proxy_pw.c_str(), nullptr);
  if (!handler->cookies.empty()) {
    std::vector<const char *> cookies;
    for (const std::string &cookie : handler->cookies)
      cookies.push_back(cookie.c_str());
    cookies.push_back(nullptr);
    g_object_set(source, "cookies", cookies.data(), nullptr);
  }
  if (!handler->headers.empty()) {
    GstStructure *headers = gst_structure_new_empty("extra-headers");
    for (const auto &[name, value] : handler->headers)
      gst_structure_set(headers, name.c_str(), G_TYPE_STRING, value.c_str(), nullptr);
    g_object_set(source, "extra-headers", headers, nullptr);
    gst_structure_free(headers);
  }
  if (!handler->ssl_ca_file.empty())
    g_object_set(source, "ssl-ca-file", handler->ssl_ca_file.c_str(), nullptr);
  if (!handler->tls_database_file.empty()) {
    GError *error = nullptr;
    GTlsDatabase *database = g_tls_file_database_new(handler->tls_database_file.c_str(), &error);
    fail_unless(database != nullptr, "%s", error ? error->message : "");
    g_object_set(source, "tls-database", database, nullptr);
    g_object_unref(database);
  }
}

std::atomic<guint64> received_bytes{0};

// Plays demo-5s from `api` with `handler` on the download source: kirinextendsrc ! fakesink
// (mode 0, counting the bytes in received_bytes), or playbin uri=kirin://demo-5s (mode 1),
// whose source-setup hands out the kirinextendsrc. A journal of its own, so that the run
// creates its own task.
void play(int mode, const kirin_emu::Emulator &api, Handler &handler, RunResult &result) {
  kirin_test_own_journal();
  received_bytes = 0;
  GstElement *pipeline;
  if (mode == 0) {
    pipeline = gst_pipeline_new(nullptr);
    GstElement *src = kirin_test_make_src(api);
    g_object_set(src, "video-id", "demo-5s", nullptr);
    GstElement *sink = gst_element_factory_make("fakesink", nullptr);
    g_object_set(sink, "signal-handoffs", TRUE, "sync", FALSE, nullptr);
    g_signal_connect(sink, "handoff", G_CALLBACK(+[](GstElement *, GstBuffer *buffer, GstPad *) {
                       received_bytes += gst_buffer_get_size(buffer);
                     }),
                     nullptr);
    gst_bin_add_many(GST_BIN(pipeline), src, sink, nullptr);
    g_signal_connect(src, "source-setup", G_CALLBACK(on_source_setup), &handler);
    fail_unless(gst_element_link(src, sink));
  } else {
    kirin_test_export_emulator(api);
    pipeline = gst_element_factory_make("playbin", nullptr);
    fail_unless(pipeline != nullptr);
    g_object_set(pipeline, "uri", "kirin://demo-5s?poll-interval=50", nullptr);
    for (const char *property : {"video-sink", "audio-sink"}) {
      GstElement *sink = gst_element_factory_make("fakesink", nullptr);
      g_object_set(sink, "sync", FALSE, nullptr);
      g_object_set(pipeline, property, sink, nullptr);
    }
    g_signal_connect(
        pipeline, "source-setup", G_CALLBACK(+[](GstElement *, GstElement *source, gpointer data) {
          assert_same_text(GST_OBJECT_NAME(gst_element_get_factory(source)), "kirinextendsrc");
          g_signal_connect(source, "source-setup", G_CALLBACK(on_source_setup), data);
        }),
        &handler);
  }
  kirin_test_run(pipeline, 60 * kirin_test_slowdown(), result);
  gst_object_unref(pipeline);
  std::lock_guard<std::mutex> guard(handler.lock);
  fail_if(handler.factories.empty(), "%s: the handler never ran", mode_name(mode));
  for (const std::string &factory : handler.factories)
    assert_same_text(factory, "souphttpsrc");
}

void assert_eos(int mode, const RunResult &result) {
  fail_if(result.error, "%s: %s (%s)", mode_name(mode), result.error ? result.error->message : "",
          result.error_debug.c_str());
  fail_unless(result.eos, "%s: no EOS within the bound", mode_name(mode));
}

// The run's own task: the emulator's last created one.
std::string last_task(const kirin_emu::Emulator &emu) {
  std::string task;
  for (const kirin_emu::RequestRecord &r : emu.requests())
    if (r.route == Route::Create && !r.task_id.empty())
      task = r.task_id;
  return task;
}

// The requests on `route` from the `first`-th on.
std::vector<kirin_emu::RequestRecord> requests_on(const kirin_emu::Emulator &emu, Route route,
                                                  size_t first = 0) {
  std::vector<kirin_emu::RequestRecord> all = emu.requests(), found;
  for (size_t i = first; i < all.size(); i++)
    if (all[i].route == route)
      found.push_back(all[i]);
  return found;
}

// The size of the run's result (of the emulator's last task).
size_t result_size(const kirin_emu::Emulator &emu) {
  size_t size = kirin_test_read_file(emu.task_result_path(last_task(emu))).size();
  fail_unless(size > 100000, "the result is %zu bytes", size);
  return size;
}

// Element mode: the whole result came through (playbin decodes it).
void assert_received(int mode, size_t size) {
  fail_unless(mode != 0 || received_bytes == size, "received %" G_GUINT64_FORMAT " of %zu bytes",
              (guint64)received_bytes, size);
}

// Each download from the `first`-th request on carried these cookies and headers.
void assert_download_headers(const kirin_emu::Emulator &emu, size_t first,
                             const std::vector<std::string> &cookies,
                             const std::vector<std::pair<std::string, std::string>> &headers) {
  std::vector<kirin_emu::RequestRecord> downloads = requests_on(emu, Route::Download, first);
  fail_if(downloads.empty(), "nothing was downloaded");
  for (const kirin_emu::RequestRecord &r : downloads) {
    for (const std::string &cookie : cookies)
      fail_unless(contains(r.header("Cookie"), cookie), "the download's Cookie is '%s', not %s",
                  r.header("Cookie").c_str(), cookie.c_str());
    for (const auto &[name, value] : headers)
      assert_same_text(r.header(name), value);
  }
}

// Every download of the run came through the proxy; the API's own requests did not.
void assert_proxied_downloads(const kirin_emu::Emulator &emu, const std::string &proxy_log) {
  std::vector<kirin_emu::RequestRecord> downloads = requests_on(emu, Route::Download);
  fail_if(downloads.empty(), "nothing was downloaded");
  for (const kirin_emu::RequestRecord &r : downloads)
    fail_unless(contains(r.header("Via"), kProxyName),
                "%s came without the proxy's Via ('%s'):\n%s", r.path.c_str(),
                r.header("Via").c_str(), proxy_log.c_str());
  for (Route route : {Route::Create, Route::Poll})
    for (const kirin_emu::RequestRecord &r : requests_on(emu, route))
      fail_unless(r.header("Via").empty(), "the API request %s went through the proxy",
                  r.path.c_str());
}

// A result host over TLS with a self-signed certificate of its own (cert), serving a result
// it rendered (url, bytes); its certificate is in no system store.
struct TlsResultHost {
  std::string dir, cert, key, url, bytes;
  std::unique_ptr<kirin_emu::Emulator> emu;

  TlsResultHost() {
    g_autofree char *made = g_dir_make_tmp("kirin-source-setup-tls-XXXXXX", nullptr);
    fail_unless(made != nullptr);
    dir = made;
    GError *error = nullptr;
    fail_unless(kirin_emu::Emulator::make_self_signed(dir, cert, key, &error), "openssl: %s",
                error ? error->message : "");
    auto options = kirin_test_emulator_options(kKey);
    options.tls_cert_file = cert;
    options.tls_key_file = key;
    emu = kirin_test_start_emulator(options);
    // A result of its own, fetched trusting its certificate through the element's ca-file.
    GstElement *pipeline = gst_pipeline_new(nullptr);
    GstElement *src = kirin_test_make_src(*emu);
    GstElement *sink = gst_element_factory_make("fakesink", nullptr);
    g_object_set(src, "video-id", "demo-5s", "ca-file", cert.c_str(), nullptr);
    gst_bin_add_many(GST_BIN(pipeline), src, sink, nullptr);
    fail_unless(gst_element_link(src, sink));
    RunResult result;
    kirin_test_run(pipeline, 60 * kirin_test_slowdown(), result);
    fail_unless(result.eos, "the TLS result host rendered nothing: %s",
                result.error ? result.error->message : "timed out");
    g_autofree char *result_url = nullptr, *task = nullptr;
    g_object_get(src, "result-url", &result_url, "task-id", &task, nullptr);
    url = result_url ? result_url : "";
    bytes = kirin_test_read_file(emu->task_result_path(task ? task : ""));
    gst_object_unref(pipeline);
    fail_unless(g_str_has_prefix(url.c_str(), "https://127.0.0.1:") && bytes.size() > 100000,
                "%s, %zu bytes", url.c_str(), bytes.size());
  }
  ~TlsResultHost() {
    emu.reset();
    g_unlink(cert.c_str());
    g_unlink(key.c_str());
    g_rmdir(dir.c_str());
  }
  TlsResultHost(const TlsResultHost &) = delete;
  TlsResultHost &operator=(const TlsResultHost &) = delete;

  // Requests for files it saw.
  size_t downloads() const { return requests_on(*emu, Route::Download).size(); }
  // It answered a request for a file since it had seen `before`.
  bool served_since(size_t before) const {
    std::vector<kirin_emu::RequestRecord> seen = requests_on(*emu, Route::Download);
    return seen.size() > before && seen.back().status / 100 == 2;
  }
};

// source_setup.py in `mode` with `args`, the service in its environment, and a journal of its
// own; waits (at most 120 s) for it to exit by itself.
std::unique_ptr<Program> run_python(int mode, const kirin_emu::Emulator &api,
                                    const std::vector<std::string> &args, const WorkDir &dir) {
  kirin_test_own_journal();
  std::vector<std::string> argv{python_app, mode_name(mode)};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<std::pair<std::string, std::string>> env{{"VTRIX_API_URL", api.api_url()},
                                                       {"VTRIX_API_KEY", kKey}};
  // Under the sanitizers the Python interpreter's own allocations left at exit are not ours;
  // memory errors, in our plugin too, still end the run.
  if (const char *asan = g_getenv("ASAN_OPTIONS"))
    env.emplace_back("ASAN_OPTIONS", std::string(asan) + ":detect_leaks=0");
  auto program = kirin_test_spawn(argv, dir, "python", env);
  fail_unless(kirin_test_wait_up_to(*program, 120 * kirin_test_slowdown()),
              "source_setup.py %s did not end within 120 s:\n%s", mode_name(mode),
              program->both().c_str());
  return program;
}

// It exited 0: every check of its own passed; in element mode, having received `size` bytes.
void assert_python_passed(int mode, const Program &program, size_t size = 0) {
  fail_unless(program.exit_status == 0, "source_setup.py %s exited with %d:\n%s", mode_name(mode),
              program.exit_status, program.both().c_str());
  fail_unless(mode != 0 || size == 0 ||
                  contains(program.out(), "received " + std::to_string(size) + " bytes"),
              "%s", program.both().c_str());
}

} // namespace

// The handler's proxy, user and password: the download goes through tinyproxy, which lets it
// pass only with those credentials (its Via header is on every download the emulator saw).
GST_START_TEST(test_proxy_with_credentials) {
  const int mode = __i__;
  WorkDir dir;
  Proxy proxy(dir);
  auto api = kirin_test_start_emulator(kKey);
  Handler handler;
  handler.proxy = proxy.url();
  handler.proxy_id = kProxyUser;
  handler.proxy_pw = kProxyPassword;
  RunResult result;
  play(mode, *api, handler, result);
  assert_eos(mode, result);
  assert_proxied_downloads(*api, proxy.log());
  assert_received(mode, result_size(*api));
}
GST_END_TEST;

// Credentials the proxy refuses end the run with an error that says so and names the task;
// nothing reaches the result host around the proxy. tinyproxy 1.11.1 answers a request
// without credentials with 407 and one with a wrong password with 401 (the proxy's answer,
// not the result host's). Index: the mode, then 0 = a wrong password, 1 = no credentials.
GST_START_TEST(test_proxy_refuses_credentials) {
  const int mode = __i__ % 2;
  const bool wrong_password = __i__ / 2 == 0;
  WorkDir dir;
  Proxy proxy(dir);
  auto api = kirin_test_start_emulator(kKey);
  Handler handler;
  handler.proxy = proxy.url();
  if (wrong_password) {
    handler.proxy_id = kProxyUser;
    handler.proxy_pw = "wrong-password";
  }
  const std::string status = wrong_password ? "401" : "407";
  RunResult result;
  play(mode, *api, handler, result);
  fail_unless(result.error != nullptr, "%s: refused credentials did not fail the run",
              mode_name(mode));
  g_print("%s, proxy answered %s: %s (%s)\n", mode_name(mode), status.c_str(),
          result.error->message, result.error_debug.c_str());
  fail_unless(g_error_matches(result.error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_NOT_AUTHORIZED),
              "%s: %s", mode_name(mode), result.error->message);
  assert_same_text(result.detail("http-status"), status);
  fail_unless(contains(result.error_debug, "(" + status + ")"), "%s", result.error_debug.c_str());
  fail_unless(wrong_password || contains(result.error->message, "Proxy Authentication Required"),
              "%s", result.error->message);
  const std::string task = last_task(*api);
  fail_unless(!task.empty() && contains(result.error->message, task), "%s", result.error->message);
  fail_unless(requests_on(*api, Route::Download).empty(),
              "%s: the result host was reached around the proxy", mode_name(mode));
}
GST_END_TEST;

// The handler's cookies and extra headers reach the result host, and only it.
GST_START_TEST(test_cookies_and_extra_headers) {
  const int mode = __i__;
  auto api = kirin_test_start_emulator(kKey);
  Handler handler;
  handler.cookies = {"session=abc123", "theme=dark"};
  handler.headers = {{"X-Kirin-Test", "from-source-setup"}, {"X-Tenant", "channel-7"}};
  RunResult result;
  play(mode, *api, handler, result);
  assert_eos(mode, result);
  assert_download_headers(*api, 0, handler.cookies, handler.headers);
  for (Route route : {Route::Create, Route::Poll})
    for (const kirin_emu::RequestRecord &r : requests_on(*api, route))
      fail_unless(r.header("Cookie").empty() && r.header("X-Kirin-Test").empty(),
                  "the API request %s carried the download's settings", r.path.c_str());
  assert_received(mode, result_size(*api));
}
GST_END_TEST;

// The result is on another host, over TLS with a certificate of its own, and the handler sets
// ssl-ca-file, which souphttpsrc 1.22 drops on libsoup 3: the element says so, naming
// tls-database, and the failed download's error names the task and tls-database too.
GST_START_TEST(test_ssl_ca_file_is_said_to_be_ignored) {
  const int mode = __i__;
  TlsResultHost cdn;
  auto api = kirin_test_start_emulator(kKey);
  const size_t before = cdn.downloads();
  fail_unless(api->push_fault(Route::Task, "url:" + cdn.url));
  Handler handler;
  handler.ssl_ca_file = cdn.cert;
  RunResult result;
  play(mode, *api, handler, result);
  bool said = false;
  for (const std::string &warning : result.warnings)
    said = said || (contains(warning, "ssl-ca-file") && contains(warning, "tls-database"));
  fail_unless(said, "%s: no warning names ssl-ca-file and tls-database", mode_name(mode));
  fail_unless(result.error != nullptr, "%s: the untrusted host was accepted", mode_name(mode));
  fail_unless(contains(result.error->message, last_task(*api)) &&
                  contains(result.error->message, "tls-database"),
              "%s", result.error->message);
  fail_unless_equals_int(cdn.downloads(), before);
}
GST_END_TEST;

// The same host trusted through the handler's own tls-database; without either, the same
// download fails in the TLS handshake: the result host sees no request.
GST_START_TEST(test_tls_database_trusts_the_result_host) {
  const int mode = __i__;
  TlsResultHost cdn;
  auto api = kirin_test_start_emulator(kKey);
  const size_t before = cdn.downloads();
  fail_unless(api->push_fault(Route::Task, "url:" + cdn.url));
  Handler trusting;
  trusting.tls_database_file = cdn.cert;
  RunResult trusted;
  play(mode, *api, trusting, trusted);
  assert_eos(mode, trusted);
  fail_unless(cdn.served_since(before), "%s: the TLS result host served nothing", mode_name(mode));
  assert_received(mode, cdn.bytes.size());

  const size_t seen = cdn.downloads();
  fail_unless(api->push_fault(Route::Task, "url:" + cdn.url));
  Handler plain; // trusts nothing beyond the system's authorities
  RunResult refused;
  play(mode, *api, plain, refused);
  fail_unless(refused.error != nullptr, "%s: an unknown certificate was accepted", mode_name(mode));
  g_print("%s, untrusted result host: %s (%s)\n", mode_name(mode), refused.error->message,
          refused.error_debug.c_str());
  fail_unless(contains(refused.error->message, last_task(*api)), "%s", refused.error->message);
  // No HTTP answer came: the handshake failed.
  assert_same_text(refused.detail("http-status"), "0");
  fail_unless_equals_int(cdn.downloads(), seen);
}
GST_END_TEST;

// The same handler in Python (PyGObject): through the proxy with its credentials, a cookie
// and an extra header; without the proxy, several cookies and headers; then credentials the
// proxy refuses, which the application sees as the proxy's 401 (wrong password) or 407 (none).
GST_START_TEST(test_python_proxy_cookies_headers) {
  const int mode = __i__;
  WorkDir dir;
  Proxy proxy(dir);
  auto api = kirin_test_start_emulator(kKey);
  auto app =
      run_python(mode, *api,
                 {"--proxy", proxy.url(), "--proxy-id", kProxyUser, "--proxy-pw", kProxyPassword,
                  "--cookie", "session=py123", "--header", "X-Kirin-Test=from-python"},
                 dir);
  assert_python_passed(mode, *app, result_size(*api));
  assert_proxied_downloads(*api, proxy.log());
  assert_download_headers(*api, 0, {"session=py123"}, {{"X-Kirin-Test", "from-python"}});

  size_t seen = api->requests().size();
  auto direct = run_python(mode, *api,
                           {"--cookie", "session=py456", "--cookie", "lang=en", "--header",
                            "X-Kirin-Test=direct", "--header", "X-Tenant=channel-9"},
                           dir);
  assert_python_passed(mode, *direct, result_size(*api));
  assert_download_headers(*api, seen, {"session=py456", "lang=en"},
                          {{"X-Kirin-Test", "direct"}, {"X-Tenant", "channel-9"}});

  for (const char *status : {"401", "407"}) {
    std::vector<std::string> args{"--proxy",         proxy.url(),
                                  "--expect-error",  "resource:NOT_AUTHORIZED",
                                  "--expect-status", status};
    if (g_str_equal(status, "401"))
      args.insert(args.end(), {"--proxy-id", kProxyUser, "--proxy-pw", "wrong-password"});
    seen = api->requests().size();
    auto refused = run_python(mode, *api, args, dir);
    assert_python_passed(mode, *refused);
    fail_unless(requests_on(*api, Route::Download, seen).empty(),
                "%s: the result host was reached around the proxy", status);
  }
}
GST_END_TEST;

// The Python handler's ssl-ca-file: the application hears that it is ignored and that
// tls-database is the way, and the untrusted download's error says the same.
GST_START_TEST(test_python_ssl_ca_file) {
  const int mode = __i__;
  WorkDir dir;
  TlsResultHost cdn;
  auto api = kirin_test_start_emulator(kKey);
  const size_t before = cdn.downloads();
  fail_unless(api->push_fault(Route::Task, "url:" + cdn.url));
  auto ignored = run_python(mode, *api,
                            {"--ssl-ca-file", cdn.cert, "--expect-warning", "tls-database",
                             "--expect-error", "stream:FAILED", "--expect-text", "tls-database"},
                            dir);
  assert_python_passed(mode, *ignored);
  fail_unless_equals_int(cdn.downloads(), before);
}
GST_END_TEST;

// The Python handler's own tls-database trusts the same host; without it the download fails
// in the TLS handshake, before any HTTP answer.
GST_START_TEST(test_python_tls_database) {
  const int mode = __i__;
  WorkDir dir;
  TlsResultHost cdn;
  auto api = kirin_test_start_emulator(kKey);
  const size_t before = cdn.downloads();
  fail_unless(api->push_fault(Route::Task, "url:" + cdn.url));
  auto trusted = run_python(mode, *api, {"--tls-database", cdn.cert}, dir);
  assert_python_passed(mode, *trusted, cdn.bytes.size());
  fail_unless(cdn.served_since(before), "%s: the TLS result host served nothing", mode_name(mode));

  const size_t seen = cdn.downloads();
  fail_unless(api->push_fault(Route::Task, "url:" + cdn.url));
  auto refused =
      run_python(mode, *api, {"--expect-error", "stream:FAILED", "--expect-status", "0"}, dir);
  assert_python_passed(mode, *refused);
  fail_unless_equals_int(cdn.downloads(), seen);
}
GST_END_TEST;

static Suite *source_setup_suite() {
  Suite *s = suite_create("source-setup");
  TCase *tc = tcase_create("general");
  tcase_set_timeout(tc, 240);
  // Index 0: kirinextendsrc alone; 1: inside playbin.
  tcase_add_loop_test(tc, test_proxy_with_credentials, 0, 2);
  tcase_add_loop_test(tc, test_proxy_refuses_credentials, 0, 4);
  tcase_add_loop_test(tc, test_cookies_and_extra_headers, 0, 2);
  tcase_add_loop_test(tc, test_ssl_ca_file_is_said_to_be_ignored, 0, 2);
  tcase_add_loop_test(tc, test_tls_database_trusts_the_result_host, 0, 2);
  tcase_add_loop_test(tc, test_python_proxy_cookies_headers, 0, 2);
  tcase_add_loop_test(tc, test_python_ssl_ca_file, 0, 2);
  tcase_add_loop_test(tc, test_python_tls_database, 0, 2);
  suite_add_tcase(s, tc);
  return s;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    g_printerr("usage: %s SOURCE_SETUP_PY\n", argv[0]);
    return 1;
  }
  python_app = argv[1];
  argc = 1;
  kirin_test_init(&argc, &argv, "source-setup");
  int status = gst_check_run_suite(source_setup_suite(), "source-setup", __FILE__);
  // The Python runs share this process's registry file, and write it again.
  g_unlink(g_getenv("GST_REGISTRY_1_0"));
  return status;
}
