// What must not leak, and whom the element trusts: the API key never appears in any output,
// goes only to the API host, and TLS is verified (with an opt-in extra CA, never a bypass).
#include "common.h"

#include "debug-capture.h"
#include "emulator-fixture.h"

#include <memory>

namespace {

constexpr const char *kKey = "sk-live-7f3a9c1e5b-never-print-me";

// Runs kirinextendsrc ! filesink and keeps everything the bus said as text.
void run(GstElement *src, RunResult &result, std::string &bus_text, std::string *output = nullptr) {
  g_autofree char *path = g_strdup_printf("%s/kirin-security-%d.mp4", g_get_tmp_dir(), getpid());
  GstElement *pipeline = gst_pipeline_new(nullptr);
  GstElement *sink = gst_element_factory_make("filesink", nullptr);
  g_object_set(sink, "location", path, nullptr);
  gst_bin_add_many(GST_BIN(pipeline), src, sink, nullptr);
  gst_element_link(src, sink);
  kirin_test_run(pipeline, 60, result);
  for (const GstStructure *s : result.task_messages) {
    g_autofree char *text = gst_structure_to_string(s);
    bus_text += text;
  }
  if (result.error) {
    bus_text += result.error->message;
    bus_text += result.error_debug;
    if (result.error_details) {
      g_autofree char *details = gst_structure_to_string(result.error_details);
      bus_text += details;
    }
  }
  gst_object_unref(pipeline);
  if (output)
    *output = kirin_test_read_file(path);
  g_unlink(path);
}

std::string self_signed_dir() {
  g_autofree char *dir = g_dir_make_tmp("kirin-tls-XXXXXX", nullptr);
  return dir ? dir : "";
}

} // namespace

GST_START_TEST(test_key_never_printed_at_debug_9) {
  auto emu = kirin_test_start_emulator(kKey);
  g_setenv("VTRIX_API_KEY", kKey, TRUE);
  kirin_test_capture_debug_start();

  std::string bus_text, properties;
  // A full task, from creation to EOS, with the key from the environment.
  GstElement *src = gst_element_factory_make("kirinextendsrc", nullptr);
  gst_object_ref(src);
  g_object_set(src, "api-url", emu->api_url().c_str(), "video-id", "demo-5s", "poll-interval", 50,
               nullptr);
  RunResult result;
  run(src, result, bus_text);
  fail_unless(result.eos, "the task did not complete");
  // Every readable property, as gst-inspect or an application would read them.
  guint n = 0;
  GParamSpec **specs = g_object_class_list_properties(G_OBJECT_GET_CLASS(src), &n);
  for (guint i = 0; i < n; i++) {
    if (!(specs[i]->flags & G_PARAM_READABLE) || specs[i]->value_type == GST_TYPE_OBJECT)
      continue;
    GValue value = G_VALUE_INIT;
    g_value_init(&value, specs[i]->value_type);
    g_object_get_property(G_OBJECT(src), specs[i]->name, &value);
    g_autofree char *text = gst_value_serialize(&value);
    properties += text ? text : "";
    g_value_unset(&value);
  }
  g_free(specs);
  gst_object_unref(src);

  // A refused key, set as a property this time: errors must not echo it either. (A new
  // take: the same request would replay the one just paid for, without using the key.)
  const std::string wrong_key = std::string(kKey) + "-revoked";
  src = gst_element_factory_make("kirinextendsrc", nullptr);
  g_object_set(src, "api-url", emu->api_url().c_str(), "video-id", "demo-5s", "api-key",
               wrong_key.c_str(), "fresh", TRUE, nullptr);
  RunResult refused;
  run(src, refused, bus_text);
  fail_unless(refused.error != nullptr);

  const std::string captured = kirin_test_capture_debug_stop();
  // The capture really saw the element and client at work.
  fail_unless(captured.find("kirinclient") != std::string::npos);
  fail_unless(captured.size() > 100000, "only %zu bytes of debug output", captured.size());
  g_print("scanned %zu bytes of debug output, %zu of bus messages, %zu of properties\n",
          captured.size(), bus_text.size(), properties.size());
  fail_unless(captured.find(kKey) == std::string::npos, "the key appears in the debug output");
  fail_unless(bus_text.find(kKey) == std::string::npos, "the key appears on the bus");
  fail_unless(properties.find(kKey) == std::string::npos, "the key is readable");
  fail_unless(emu->download_auth_count() == 0, "the key was sent to the result host");
}
GST_END_TEST;

GST_START_TEST(test_key_not_in_gst_inspect) {
  const char *argv[] = {"gst-inspect-1.0", "kirinextendsrc", nullptr};
  g_auto(GStrv) env = g_get_environ();
  env = g_environ_setenv(env, "VTRIX_API_KEY", kKey, TRUE);
  g_autofree char *out = nullptr;
  g_autofree char *err = nullptr;
  int status = 0;
  fail_unless(g_spawn_sync(nullptr, (char **)argv, env, G_SPAWN_SEARCH_PATH, nullptr, nullptr, &out,
                           &err, &status, nullptr));
  fail_unless(strstr(out, "api-key") != nullptr, "gst-inspect did not list the element: %s", err);
  fail_unless(strstr(out, kKey) == nullptr && strstr(err, kKey) == nullptr);
}
GST_END_TEST;

GST_START_TEST(test_tls_verified_with_optional_ca_file) {
  std::string dir = self_signed_dir();
  std::string cert, key;
  GError *error = nullptr;
  fail_unless(kirin_emu::Emulator::make_self_signed(dir, cert, key, &error), "openssl: %s",
              error ? error->message : "");
  auto options = kirin_test_emulator_options(kKey);
  options.tls_cert_file = cert;
  options.tls_key_file = key;
  auto emu = kirin_test_start_emulator(options);
  fail_unless(g_str_has_prefix(emu->api_url().c_str(), "https://"));

  // An unknown certificate is refused, clearly, and no task is created.
  GstElement *src = gst_element_factory_make("kirinextendsrc", nullptr);
  g_object_set(src, "api-url", emu->api_url().c_str(), "api-key", kKey, "video-id", "demo-5s",
               nullptr);
  RunResult refused;
  std::string bus_text;
  run(src, refused, bus_text);
  fail_unless(refused.error != nullptr);
  fail_unless(strstr(refused.error->message, "No task was created") != nullptr, "%s",
              refused.error->message);
  g_print("untrusted certificate: %s\n", refused.error->message);
  fail_unless_equals_int(emu->create_count(), 0);

  // Trusting the CA that signed it makes the same run work, download included.
  src = gst_element_factory_make("kirinextendsrc", nullptr);
  gst_object_ref(src);
  g_object_set(src, "api-url", emu->api_url().c_str(), "api-key", kKey, "video-id", "demo-5s",
               "poll-interval", 50, "ca-file", cert.c_str(), nullptr);
  RunResult trusted;
  std::string output;
  run(src, trusted, bus_text, &output);
  fail_if(trusted.error, "%s", trusted.error ? trusted.error->message : "");
  fail_unless(trusted.eos);
  g_autofree char *task = nullptr;
  g_object_get(src, "task-id", &task, nullptr);
  fail_unless(output == kirin_test_read_file(emu->task_result_path(task)));
  gst_object_unref(src);

  // A missing CA file is a settings error naming the property.
  src = gst_element_factory_make("kirinextendsrc", nullptr);
  g_object_set(src, "api-url", emu->api_url().c_str(), "api-key", kKey, "video-id", "demo-5s",
               "ca-file", "/nonexistent/ca.pem", nullptr);
  RunResult missing;
  run(src, missing, bus_text);
  fail_unless(missing.error && strstr(missing.error->message, "ca-file") != nullptr);
  g_unlink(cert.c_str());
  g_unlink(key.c_str());
  g_rmdir(dir.c_str());
}
GST_END_TEST;

GST_START_TEST(test_plain_http_result_needs_opt_in) {
  std::string dir = self_signed_dir();
  std::string cert, key;
  fail_unless(kirin_emu::Emulator::make_self_signed(dir, cert, key, nullptr));
  auto tls = kirin_test_emulator_options(kKey);
  tls.tls_cert_file = cert;
  tls.tls_key_file = key;
  auto api = kirin_test_start_emulator(tls);
  // The result itself lives on a plain-http server.
  auto cdn = kirin_test_start_emulator(kKey);
  std::string plain_url, plain_path;
  {
    GstElement *src = gst_element_factory_make("kirinextendsrc", nullptr);
    gst_object_ref(src);
    g_object_set(src, "api-url", cdn->api_url().c_str(), "api-key", kKey, "video-id", "demo-5s",
                 "poll-interval", 50, nullptr);
    RunResult result;
    std::string bus_text;
    run(src, result, bus_text);
    fail_unless(result.eos);
    g_autofree char *url = nullptr, *task = nullptr;
    g_object_get(src, "result-url", &url, "task-id", &task, nullptr);
    plain_url = url;
    plain_path = cdn->task_result_path(task);
    gst_object_unref(src);
  }
  for (gboolean allow : {gboolean(FALSE), gboolean(TRUE)}) {
    fail_unless(api->push_fault(kirin_emu::Route::Task, "url:" + plain_url));
    GstElement *src = gst_element_factory_make("kirinextendsrc", nullptr);
    g_object_set(src, "api-url", api->api_url().c_str(), "api-key", kKey, "video-id", "demo-5s",
                 "poll-interval", 50, "ca-file", cert.c_str(), "allow-http-result", allow, nullptr);
    RunResult result;
    std::string bus_text, output;
    run(src, result, bus_text, &output);
    if (allow) {
      fail_if(result.error, "%s", result.error ? result.error->message : "");
      fail_unless(output == kirin_test_read_file(plain_path));
    } else {
      fail_unless(result.error && strstr(result.error->message, "allow-http-result"), "%s",
                  result.error ? result.error->message : "no error");
    }
  }
  fail_unless_equals_int(cdn->download_auth_count(), 0);
  g_unlink(cert.c_str());
  g_unlink(key.c_str());
  g_rmdir(dir.c_str());
}
GST_END_TEST;

static Suite *security_suite() {
  Suite *s = suite_create("security");
  TCase *tc = tcase_create("security");
  tcase_set_timeout(tc, 180);
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_key_never_printed_at_debug_9);
  tcase_add_test(tc, test_key_not_in_gst_inspect);
  tcase_add_test(tc, test_tls_verified_with_optional_ca_file);
  tcase_add_test(tc, test_plain_http_result_needs_opt_in);
  return s;
}

int main(int argc, char **argv) {
  kirin_test_init(&argc, &argv, "security");
  return gst_check_run_suite(security_suite(), "security", __FILE__);
}
