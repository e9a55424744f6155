// kirin:// URIs: parsing, round trips, refusals, and playbin / uridecodebin end to end.
#include "common.h"

#include "emulator-fixture.h"

#include <memory>

namespace {

constexpr const char *kKey = "uri-test-key";

std::string uri_of(GstElement *element) {
  g_autofree char *uri = gst_uri_handler_get_uri(GST_URI_HANDLER(element));
  return uri ? uri : "";
}

std::string string_property(GstElement *element, const char *name) {
  g_autofree char *value = nullptr;
  g_object_get(element, name, &value, nullptr);
  return value ? value : "";
}

GstElement *from_uri(const char *uri, GError **error) {
  return gst_element_make_from_uri(GST_URI_SRC, uri, nullptr, error);
}

} // namespace

GST_START_TEST(test_uri_sets_properties_and_round_trips) {
  GError *error = nullptr;
  // A case-sensitive ID with characters a host name may not hold.
  GstElement *src = from_uri("kirin://Vid_A%2Fb%20C%3F?prompt=pan%20left%20%C3%A9&"
                             "negative-prompt=no%26text&cfg-scale=0.7&poll-interval=250&"
                             "extensions=2&stream-intermediate=true",
                             &error);
  fail_unless(src != nullptr, "%s", error ? error->message : "");
  assert_same_text(string_property(src, "video-id"), "Vid_A/b C?");
  assert_same_text(string_property(src, "prompt"), "pan left é");
  assert_same_text(string_property(src, "negative-prompt"), "no&text");
  double cfg = 0;
  guint interval = 0;
  g_object_get(src, "cfg-scale", &cfg, "poll-interval", &interval, nullptr);
  fail_unless(cfg == 0.7);
  fail_unless_equals_int(interval, 250);
  gboolean intermediate = FALSE;
  g_object_get(src, "stream-intermediate", &intermediate, nullptr);
  fail_unless(intermediate);

  std::string uri = uri_of(src);
  // Numbers are written in their shortest form that reads back the same.
  fail_unless(uri.find("cfg-scale=0.7&") != std::string::npos, "%s", uri.c_str());
  GstElement *again = from_uri(uri.c_str(), &error);
  fail_unless(again != nullptr, "%s does not parse back: %s", uri.c_str(),
              error ? error->message : "");
  assert_same_text(uri_of(again), uri);
  assert_same_text(string_property(again, "video-id"), "Vid_A/b C?");
  assert_same_text(string_property(again, "prompt"), "pan left é");
  assert_same_text(string_property(again, "negative-prompt"), "no&text");
  g_object_get(again, "cfg-scale", &cfg, "stream-intermediate", &intermediate, nullptr);
  fail_unless(cfg == 0.7);
  fail_unless(intermediate);
  gst_object_unref(again);

  // A new URI replaces the old one whole: what it does not name is back to its default.
  fail_unless(gst_uri_handler_set_uri(GST_URI_HANDLER(src), "kirin://?task-id=task-42", &error));
  assert_same_text(string_property(src, "video-id"), "");
  assert_same_text(string_property(src, "prompt"), "");
  assert_same_text(string_property(src, "task-id"), "task-42");
  assert_same_text(uri_of(src), "kirin://?task-id=task-42");
  gst_object_unref(src);
}
GST_END_TEST;

GST_START_TEST(test_uri_refusals_are_clear) {
  GstElement *src = gst_element_factory_make("kirinextendsrc", nullptr);
  g_object_set(src, "video-id", "keep-me", nullptr);
  const struct {
    const char *uri;
    const char *says;
  } cases[] = {
      {"kirin://vid?colour=red", "Unknown key 'colour'"},
      {"kirin://vid?api-key=secret", "may not set 'api-key': it is refused for safety"},
      {"kirin://vid?api-url=http%3A%2F%2Fevil.example%2F", "may not set 'api-url'"},
      // A URI from a playlist must not choose where files are written.
      {"kirin://vid?cache-dir=%2Fetc", "may not set 'cache-dir'"},
      {"kirin://vid?cfg-scale=2", "Invalid value '2' for 'cfg-scale'"},
      {"kirin://vid?poll-interval=soon", "Invalid value 'soon' for 'poll-interval'"},
      {"kirin://a/b", "percent-encode"},
      {"http://example.com/x", "not supported"},
  };
  for (const auto &c : cases) {
    GError *error = nullptr;
    fail_if(gst_uri_handler_set_uri(GST_URI_HANDLER(src), c.uri, &error), "%s accepted", c.uri);
    fail_unless(error && strstr(error->message, c.says), "%s: %s", c.uri,
                error ? error->message : "no error");
    // A key put in a URI by mistake is not repeated in the error.
    fail_unless(strstr(error->message, "secret") == nullptr, "%s", error->message);
    g_clear_error(&error);
    // A refused URI changes nothing.
    assert_same_text(string_property(src, "video-id"), "keep-me");
  }
  gst_object_unref(src);
}
GST_END_TEST;

// cfg-scale reads back as the shortest decimal that parses to the same double.
GST_START_TEST(test_uri_writes_shortest_cfg_scale) {
  GstElement *src = gst_element_factory_make("kirinextendsrc", nullptr);
  g_object_set(src, "video-id", "v", nullptr);
  const struct {
    double value;
    const char *written;
  } cases[] = {{0.7, "0.7"}, {0.1 + 0.2, "0.30000000000000004"}, {1.0, "1"},
               {0.0, "0"},   {0.123456789, "0.123456789"},       {1e-7, "1e-07"}};
  for (const auto &c : cases) {
    g_object_set(src, "cfg-scale", c.value, nullptr);
    assert_same_text(uri_of(src), std::string("kirin://v?cfg-scale=") + c.written);
    GError *error = nullptr;
    GstElement *again = from_uri(uri_of(src).c_str(), &error);
    fail_unless(again != nullptr, "%s", error ? error->message : "");
    double read = -1;
    g_object_get(again, "cfg-scale", &read, nullptr);
    fail_unless(read == c.value, "%s read back as %.17g", c.written, read);
    gst_object_unref(again);
  }
  gst_object_unref(src);
}
GST_END_TEST;

// A number in a URI is decimal and within its property's range: strtoul would take -5 as
// 4294967291 ms and 0x10 as 16. Each is refused with the key and the range, changing nothing.
GST_START_TEST(test_uri_refuses_numbers_out_of_form_or_range) {
  GstElement *src = gst_element_factory_make("kirinextendsrc", nullptr);
  fail_unless(gst_uri_handler_set_uri(GST_URI_HANDLER(src), "kirin://keep-me?timeout=7", nullptr));
  const struct {
    const char *uri;
    const char *says;
  } cases[] = {
      {"kirin://vid?poll-interval=-5",
       "Invalid value '-5' for 'poll-interval' in the kirin URI: a whole number from 1 to "
       "4294967295 is expected"},
      {"kirin://vid?timeout=-1", "'timeout' in the kirin URI: a whole number from 0 to"},
      {"kirin://vid?timeout=0x10", "Invalid value '0x10' for 'timeout'"},
      {"kirin://vid?timeout=%2B5", "Invalid value '+5' for 'timeout'"},
      {"kirin://vid?timeout=%205", "Invalid value ' 5' for 'timeout'"},
      {"kirin://vid?timeout=99999999999", "Invalid value '99999999999' for 'timeout'"},
      {"kirin://vid?request-timeout=0", "'request-timeout' in the kirin URI: a whole number from "
                                        "1 to 3600 is expected"},
      {"kirin://vid?extensions=100", "Invalid value '100' for 'extensions' in the kirin URI: a "
                                     "whole number from 1 to 36 is expected"},
      {"kirin://vid?extensions=0", "from 1 to 36"},
      {"kirin://vid?cfg-scale=-0.5", "'cfg-scale' in the kirin URI: a number from 0 to 1"},
      {"kirin://vid?cfg-scale=nan", "Invalid value 'nan' for 'cfg-scale'"},
      {"kirin://vid?cfg-scale=0x0.8p0", "Invalid value '0x0.8p0' for 'cfg-scale'"},
      {"kirin://vid?fresh=maybe", "Invalid value 'maybe' for 'fresh' in the kirin URI: true or "
                                  "false"},
  };
  for (const auto &c : cases) {
    GError *error = nullptr;
    fail_if(gst_uri_handler_set_uri(GST_URI_HANDLER(src), c.uri, &error), "%s accepted", c.uri);
    fail_unless(error && strstr(error->message, c.says), "%s: %s", c.uri,
                error ? error->message : "no error");
    g_clear_error(&error);
    assert_same_text(uri_of(src), "kirin://keep-me?timeout=7");
  }
  // Decimal numbers within range are taken, 1e-1 too.
  GError *error = nullptr;
  fail_unless(gst_uri_handler_set_uri(GST_URI_HANDLER(src),
                                      "kirin://vid?timeout=0&extensions=36&cfg-scale=1e-1&"
                                      "poll-interval=4294967295",
                                      &error),
              "%s", error ? error->message : "");
  guint timeout = 1, extensions = 0, interval = 0;
  double cfg = 0;
  g_object_get(src, "timeout", &timeout, "extensions", &extensions, "cfg-scale", &cfg,
               "poll-interval", &interval, nullptr);
  fail_unless_equals_int(timeout, 0);
  fail_unless_equals_int(extensions, 36);
  fail_unless(cfg == 0.1);
  fail_unless(interval == G_MAXUINT);
  gst_object_unref(src);
}
GST_END_TEST;

// A URI must not add trust: neither a CA to trust nor a plain-HTTP download. Both keys are
// refused, and neither a refused nor an accepted URI changes what the application set.
GST_START_TEST(test_uri_refuses_trust_keys) {
  GstElement *src = gst_element_factory_make("kirinextendsrc", nullptr);
  g_object_set(src, "video-id", "keep-me", "ca-file", "/app/ca.pem", "allow-http-result", FALSE,
               nullptr);
  const char *refused[] = {
      "kirin://vid?ca-file=%2Ftmp%2Fevil.pem",
      "kirin://vid?allow-http-result=true",
      "kirin://vid?prompt=rain&allow-http-result=1",
  };
  for (const char *uri : refused) {
    GError *error = nullptr;
    fail_if(gst_uri_handler_set_uri(GST_URI_HANDLER(src), uri, &error), "%s accepted", uri);
    fail_unless(error != nullptr, "%s: no error", uri);
    fail_unless(g_error_matches(error, GST_URI_ERROR, GST_URI_ERROR_BAD_URI), "%s: %s", uri,
                error->message);
    const char *key = strstr(uri, "ca-file") ? "ca-file" : "allow-http-result";
    g_autofree char *names_key = g_strdup_printf("'%s'", key);
    fail_unless(strstr(error->message, names_key), "%s: %s", uri, error->message);
    // The value a playlist tried to slip in is not echoed back.
    fail_unless(strstr(error->message, "evil") == nullptr, "%s", error->message);
    g_clear_error(&error);
    assert_same_text(string_property(src, "video-id"), "keep-me");
    assert_same_text(string_property(src, "prompt"), "");
    assert_same_text(string_property(src, "ca-file"), "/app/ca.pem");
    gboolean allow_http = TRUE;
    g_object_get(src, "allow-http-result", &allow_http, nullptr);
    fail_if(allow_http, "%s turned allow-http-result on", uri);
  }

  // An accepted URI resets what URIs carry, never the trust the application chose.
  g_object_set(src, "allow-http-result", TRUE, nullptr);
  GError *error = nullptr;
  fail_unless(gst_uri_handler_set_uri(GST_URI_HANDLER(src), "kirin://other?prompt=x", &error), "%s",
              error ? error->message : "");
  assert_same_text(string_property(src, "ca-file"), "/app/ca.pem");
  gboolean allow_http = FALSE;
  g_object_get(src, "allow-http-result", &allow_http, nullptr);
  fail_unless(allow_http);
  // Nor does the element's own URI carry them.
  std::string uri = uri_of(src);
  fail_unless(uri.find("ca-file") == std::string::npos, "%s", uri.c_str());
  fail_unless(uri.find("allow-http") == std::string::npos, "%s", uri.c_str());
  gst_object_unref(src);
}
GST_END_TEST;

// A key a URI may not set is refused for safety, and says so: it is a property the user may
// well know, so "Unknown key" would read like a typo and suggest trying another spelling.
GST_START_TEST(test_uri_refuses_unsafe_keys_for_safety) {
  GstElement *src = gst_element_factory_make("kirinextendsrc", nullptr);
  const char *const unsafe[] = {"api-key",
                                "api-url",
                                "ca-file",
                                "allow-http-result",
                                "journal",
                                "cache-dir",
                                "cache-max-size",
                                "callback-listen",
                                "callback-public-url",
                                "journal-outage-wait"};
  for (const char *key : unsafe) {
    // Each is a real property of the element, settable from code.
    fail_unless(g_object_class_find_property(G_OBJECT_GET_CLASS(src), key) != nullptr, "%s", key);
    std::string uri = std::string("kirin://vid?") + key + "=x";
    GError *error = nullptr;
    fail_if(gst_uri_handler_set_uri(GST_URI_HANDLER(src), uri.c_str(), &error), "%s accepted",
            uri.c_str());
    fail_unless(error != nullptr, "%s", uri.c_str());
    std::string says = std::string("may not set '") + key + "': it is refused for safety";
    fail_unless(strstr(error->message, says.c_str()) != nullptr, "%s: %s", uri.c_str(),
                error->message);
    fail_unless(strstr(error->message, "Unknown key") == nullptr, "%s", error->message);
    g_clear_error(&error);
  }
  gst_object_unref(src);
}
GST_END_TEST;

static void link_to_sink(GstElement *, GstPad *pad, gpointer sink) {
  GstPad *sinkpad = gst_element_get_static_pad(GST_ELEMENT(sink), "sink");
  if (!gst_pad_is_linked(sinkpad))
    gst_pad_link(pad, sinkpad);
  gst_object_unref(sinkpad);
}

static GstPadProbeReturn count_buffers(GstPad *, GstPadProbeInfo *, gpointer data) {
  g_atomic_int_inc(static_cast<gint *>(data));
  return GST_PAD_PROBE_OK;
}

GST_START_TEST(test_playbin_plays_kirin_uri) {
  auto emu = kirin_test_start_emulator(kKey);
  kirin_test_export_emulator(*emu); // like a user: the service and the key from the environment
  GstElement *playbin = gst_element_factory_make("playbin", nullptr);
  fail_unless(playbin != nullptr);
  GstElement *video_sink = gst_element_factory_make("fakesink", nullptr);
  gint frames = 0;
  GstPad *pad = gst_element_get_static_pad(video_sink, "sink");
  gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER, count_buffers, &frames, nullptr);
  gst_object_unref(pad);
  g_object_set(playbin, "uri", "kirin://demo-5s?poll-interval=50", "video-sink", video_sink,
               "audio-sink", gst_element_factory_make("fakesink", nullptr), nullptr);
  RunResult result;
  kirin_test_run(playbin, 60, result);
  fail_if(result.error, "%s", result.error ? result.error->message : "");
  fail_unless(result.eos);
  fail_unless_equals_int(g_atomic_int_get(&frames), 250); // 10 s at 25 fps
  fail_unless_equals_int(emu->create_count(), 1);
  gst_object_unref(playbin);
}
GST_END_TEST;

GST_START_TEST(test_uridecodebin_decodes_kirin_uri) {
  auto emu = kirin_test_start_emulator(kKey);
  kirin_test_export_emulator(*emu);
  GstElement *pipeline = gst_pipeline_new(nullptr);
  GstElement *decoder = gst_element_factory_make("uridecodebin", nullptr);
  GstElement *sink = gst_element_factory_make("fakesink", nullptr);
  g_object_set(decoder, "uri", "kirin://demo-5s?poll-interval=50", nullptr);
  gst_bin_add_many(GST_BIN(pipeline), decoder, sink, nullptr);
  g_signal_connect(decoder, "pad-added", G_CALLBACK(link_to_sink), sink);
  RunResult result;
  kirin_test_run(pipeline, 60, result);
  fail_if(result.error, "%s", result.error ? result.error->message : "");
  fail_unless(result.eos);
  gst_object_unref(pipeline);
}
GST_END_TEST;

static Suite *uri_suite() {
  Suite *s = suite_create("uri");
  TCase *tc = tcase_create("uri");
  tcase_set_timeout(tc, 120);
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_uri_sets_properties_and_round_trips);
  tcase_add_test(tc, test_uri_refusals_are_clear);
  tcase_add_test(tc, test_uri_refuses_numbers_out_of_form_or_range);
  tcase_add_test(tc, test_uri_writes_shortest_cfg_scale);
  tcase_add_test(tc, test_uri_refuses_trust_keys);
  tcase_add_test(tc, test_uri_refuses_unsafe_keys_for_safety);
  tcase_add_test(tc, test_playbin_plays_kirin_uri);
  tcase_add_test(tc, test_uridecodebin_decodes_kirin_uri);
  return s;
}

int main(int argc, char **argv) {
  kirin_test_init(&argc, &argv, "uri");
  return gst_check_run_suite(uri_suite(), "uri", __FILE__);
}
