// The bodies around the task object: the HTTP error bodies the provider answers with, and the
// create request body the client builds (strict JSON, every field, cfg_scale exact and
// shortest). The task object itself is in task.cpp.
#include "common.h"

#include <json-glib/json-glib.h>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "strict_json.h"
#include "task.h"

static std::string error_body(const std::string &body, std::string *code = nullptr) {
  return kirin::parse_error_body(body.data(), body.size(), code);
}

// ---- HTTP error bodies ----

GST_START_TEST(test_error_body_json) {
  std::string code = "stale";
  assert_same_text(error_body(R"({"message":"Invalid API key"})", &code), "Invalid API key");
  assert_same_text(code, "");
  assert_same_text(error_body(R"({"error":"insufficient balance"})", &code),
                   "insufficient balance");
  assert_same_text(
      error_body(R"({"error":{"code":"014002097","message":"HTTP error response"}})", &code),
      "HTTP error response");
  assert_same_text(code, "014002097");
  assert_same_text(error_body(R"({"error":{"code":401,"error_message":"bad key"}})", &code),
                   "bad key");
  assert_same_text(code, "401");
  assert_same_text(error_body(R"({"code":429,"message":"slow\n\n  down"})", &code), "slow down");
  assert_same_text(code, "429");
  // The code pointer is optional.
  assert_same_text(error_body(R"({"error":{"code":"1","message":"m"}})"), "m");
  // JSON without any message: the body itself.
  assert_same_text(error_body(R"({"status":500})", &code), R"({"status":500})");
}
GST_END_TEST;

GST_START_TEST(test_error_body_html) {
  const std::string html =
      "<html>\r\n<head><title>502 Bad Gateway</title></head>\n"
      "<body>\n\t<center><h1>502 Bad Gateway</h1></center>\n</body>\n</html>\n";
  std::string code = "stale";
  assert_same_text(error_body(html, &code),
                   "<html> <head><title>502 Bad Gateway</title></head> <body> <center>"
                   "<h1>502 Bad Gateway</h1></center> </body> </html>");
  assert_same_text(code, "");
}
GST_END_TEST;

GST_START_TEST(test_error_body_empty) {
  std::string code = "stale";
  assert_same_text(kirin::parse_error_body(nullptr, 0, &code), "");
  assert_same_text(code, "");
  assert_same_text(error_body(""), "");
  assert_same_text(error_body(" \r\n\t "), "");
}
GST_END_TEST;

GST_START_TEST(test_error_body_long_text) {
  std::string text;
  while (text.size() < 10 * 1024)
    text += "Service temporarily unavailable. ";
  const std::string message = error_body(text);
  fail_unless_equals_int(g_utf8_strlen(message.c_str(), -1), 201);
  fail_unless(g_str_has_suffix(message.c_str(), "…"));
  fail_unless(g_str_has_prefix(message.c_str(), "Service temporarily unavailable. Service"));

  assert_same_text(error_body(std::string(200, 'a')), std::string(200, 'a'));
  assert_same_text(error_body(std::string(201, 'a')), std::string(200, 'a') + "…");

  // Cut at a character boundary, never inside a multi-byte character.
  std::string accents;
  for (int i = 0; i < 300; i++)
    accents += "é";
  const std::string cut = error_body(accents);
  fail_unless(g_utf8_validate(cut.c_str(), -1, nullptr));
  fail_unless_equals_int(g_utf8_strlen(cut.c_str(), -1), 201);
  assert_same_text(error_body(accents.substr(0, 400)), accents.substr(0, 400));
}
GST_END_TEST;

GST_START_TEST(test_error_body_bad_bytes) {
  assert_same_text(error_body("bad\x01\x02 gateway\x7f"), "bad?? gateway?");
  assert_same_text(error_body(std::string("abc\0def", 7)), "abc?def");
  const std::string latin1 = error_body("caf\xe9 indisponible");
  fail_unless(g_utf8_validate(latin1.c_str(), -1, nullptr));
  fail_unless(latin1.find("\xef\xbf\xbd") != std::string::npos, "no replacement in %s",
              latin1.c_str());
  fail_unless(g_str_has_suffix(latin1.c_str(), " indisponible"));
}
GST_END_TEST;

// ---- the create body ----

// Parses `body` and returns a new reference to input[0].params, checking the shape.
static JsonObject *create_params(const std::string &body, std::string &model) {
  std::string why;
  fail_unless(strict_json::valid(body, &why), "not JSON (%s): %s", why.c_str(), body.c_str());
  g_autoptr(JsonParser) parser = json_parser_new();
  g_autoptr(GError) error = nullptr;
  fail_unless(json_parser_load_from_data(parser, body.data(), body.size(), &error), "%s: %s",
              body.c_str(), error ? error->message : "");
  JsonNode *root = json_parser_get_root(parser);
  fail_unless(JSON_NODE_HOLDS_OBJECT(root));
  JsonObject *object = json_node_get_object(root);
  fail_unless_equals_int(json_object_get_size(object), 2);
  JsonNode *model_node = json_object_get_member(object, "model");
  fail_unless(model_node && json_node_get_value_type(model_node) == G_TYPE_STRING);
  model = json_node_get_string(model_node);
  JsonNode *input = json_object_get_member(object, "input");
  fail_unless(input && JSON_NODE_HOLDS_ARRAY(input));
  JsonArray *items = json_node_get_array(input);
  fail_unless_equals_int(json_array_get_length(items), 1);
  JsonNode *item = json_array_get_element(items, 0);
  fail_unless(JSON_NODE_HOLDS_OBJECT(item));
  fail_unless_equals_int(json_object_get_size(json_node_get_object(item)), 1);
  JsonNode *params = json_object_get_member(json_node_get_object(item), "params");
  fail_unless(params && JSON_NODE_HOLDS_OBJECT(params));
  return json_object_ref(json_node_get_object(params));
}

static std::string string_param(JsonObject *params, const char *name) {
  JsonNode *node = json_object_get_member(params, name);
  fail_unless(node && json_node_get_value_type(node) == G_TYPE_STRING, "%s is not a string", name);
  return json_node_get_string(node);
}

GST_START_TEST(test_create_body_all_fields) {
  kirin::CreateRequest request;
  request.video_id = "vid-123";
  request.prompt = "the camera keeps moving forward";
  request.negative_prompt = "blur, \"text\", watermark\\";
  request.cfg_scale = 0.7;
  request.callback_url = "https://hooks.example/kirin?x=1&y=2";
  request.external_task_id = "order-42";
  std::string model;
  JsonObject *params = create_params(kirin::build_create_body(request), model);
  assert_same_text(model, "kirin_duration_extension");
  fail_unless_equals_int(json_object_get_size(params), 6);
  assert_same_text(string_param(params, "video_id"), "vid-123");
  assert_same_text(string_param(params, "prompt"), request.prompt);
  assert_same_text(string_param(params, "negative_prompt"), "blur, \"text\", watermark\\");
  assert_same_text(string_param(params, "callback_url"), "https://hooks.example/kirin?x=1&y=2");
  assert_same_text(string_param(params, "external_task_id"), "order-42");
  JsonNode *cfg = json_object_get_member(params, "cfg_scale");
  fail_unless(cfg && json_node_get_value_type(cfg) == G_TYPE_DOUBLE);
  fail_unless_equals_float(json_node_get_double(cfg), 0.7);
  json_object_unref(params);
}
GST_END_TEST;

GST_START_TEST(test_create_body_only_set_fields) {
  kirin::CreateRequest request;
  request.video_id = "vid-1";
  std::string model;
  JsonObject *params = create_params(kirin::build_create_body(request), model);
  assert_same_text(model, "kirin_duration_extension");
  fail_unless_equals_int(json_object_get_size(params), 1);
  assert_same_text(string_param(params, "video_id"), "vid-1");
  fail_if(json_object_has_member(params, "cfg_scale"));
  fail_if(json_object_has_member(params, "prompt"));
  json_object_unref(params);

  // A scale of zero is set, not absent; whole numbers stay doubles.
  for (double scale : {0.0, 1.0}) {
    request.cfg_scale = scale;
    params = create_params(kirin::build_create_body(request), model);
    fail_unless_equals_int(json_object_get_size(params), 2);
    JsonNode *cfg = json_object_get_member(params, "cfg_scale");
    fail_unless(cfg && json_node_get_value_type(cfg) == G_TYPE_DOUBLE);
    fail_unless_equals_float(json_node_get_double(cfg), scale);
    json_object_unref(params);
  }

  // JSON cannot carry NaN: leave it out rather than send an invalid body.
  request.cfg_scale = NAN;
  params = create_params(kirin::build_create_body(request), model);
  fail_if(json_object_has_member(params, "cfg_scale"));
  json_object_unref(params);

  request = kirin::CreateRequest();
  request.model = "kirin_duration_extension_v2";
  request.prompt = "p";
  params = create_params(kirin::build_create_body(request), model);
  assert_same_text(model, "kirin_duration_extension_v2");
  fail_unless_equals_int(json_object_get_size(params), 1);
  assert_same_text(string_param(params, "prompt"), "p");
  json_object_unref(params);
}
GST_END_TEST;

GST_START_TEST(test_create_body_unicode) {
  const std::string pieces = "日本語の動画 ✨ éàü “quotes” \n\t\x01 🎬 ";
  std::string prompt;
  while (g_utf8_strlen(prompt.c_str(), -1) < 2500)
    prompt += pieces;
  prompt.resize(g_utf8_offset_to_pointer(prompt.c_str(), 2500) - prompt.c_str());
  fail_unless_equals_int(g_utf8_strlen(prompt.c_str(), -1), 2500);

  kirin::CreateRequest request;
  request.video_id = "vid-1";
  request.prompt = prompt;
  request.negative_prompt = "ぼやけ";
  const std::string body = kirin::build_create_body(request);
  std::string model;
  JsonObject *params = create_params(body, model);
  fail_unless(string_param(params, "prompt") == prompt, "prompt changed in transit");
  assert_same_text(string_param(params, "negative_prompt"), "ぼやけ");
  json_object_unref(params);
}
GST_END_TEST;

// The text of cfg_scale in a create body ("" when absent).
static std::string cfg_scale_text(const std::string &body) {
  const std::string name = "\"cfg_scale\":";
  const size_t at = body.find(name);
  if (at == std::string::npos)
    return {};
  const size_t start = at + name.size();
  return body.substr(start, body.find_first_of(",}", start) - start);
}

// The body carrying `scale` is strict JSON, and its cfg_scale reads back as the same double
// (bit for bit, so -0.0 too), through strtod and through json-glib; returns the number's text.
static std::string check_scale_round_trip(double scale) {
  kirin::CreateRequest request;
  request.video_id = "v";
  request.cfg_scale = scale;
  const std::string body = kirin::build_create_body(request);
  std::string model;
  JsonObject *params = create_params(body, model);
  const std::string text = cfg_scale_text(body);
  const double read = g_ascii_strtod(text.c_str(), nullptr);
  fail_unless(memcmp(&read, &scale, sizeof read) == 0, "%.17g is sent as %s, which reads as %.17g",
              scale, text.c_str(), read);
  JsonNode *cfg = json_object_get_member(params, "cfg_scale");
  fail_unless(cfg && json_node_get_value_type(cfg) == G_TYPE_DOUBLE, "%s is not a double",
              text.c_str());
  const double parsed = json_node_get_double(cfg);
  fail_unless(memcmp(&parsed, &scale, sizeof parsed) == 0, "json-glib reads %s as %.17g",
              text.c_str(), parsed);
  json_object_unref(params);
  return text;
}

// No shorter number reads back as `value`: rounded to fewer significant digits than `text`
// has, it is another double.
static void check_shortest(double value, const std::string &text) {
  std::string digits;
  for (char c : text.substr(0, text.find('e')))
    if (g_ascii_isdigit(c))
      digits += c;
  digits.erase(0, digits.find_first_not_of('0'));
  digits.erase(digits.find_last_not_of('0') + 1);
  for (size_t precision = 1; precision < digits.size(); precision++) {
    char format[16], shorter[64];
    g_snprintf(format, sizeof format, "%%.%de", (int)precision - 1);
    g_ascii_formatd(shorter, sizeof shorter, format, value);
    fail_if(g_ascii_strtod(shorter, nullptr) == value, "%s is not the shortest form: %s is too",
            text.c_str(), shorter);
  }
}

// cfg-scale's range is 0..1: its edges, subnormals, and values json-glib 1.6 wrote as
// "4e-35.0" (not JSON) or as 0.69999999999999996 (not the shortest).
GST_START_TEST(test_create_body_cfg_scale_edges) {
  const struct {
    double value;
    const char *text;
  } cases[] = {
      {0.0, "0.0"},
      {-0.0, "-0.0"},
      {1.0, "1.0"},
      {0.5, "0.5"},
      {0.7, "0.7"},
      {0.1, "0.1"},
      {0.1 + 0.2, "0.30000000000000004"},
      {std::nextafter(1.0, 0.0), "0.9999999999999999"},
      {1e-7, "1e-07"},
      {4e-35, "4e-35"},
      {1e-300, "1e-300"},
      {DBL_MIN, "2.2250738585072014e-308"},                     // the smallest normal double
      {std::nextafter(DBL_MIN, 0.0), "2.225073858507201e-308"}, // the largest subnormal
      {1e-310, "1e-310"},
      {5e-324, "5e-324"}, // the smallest subnormal
      {std::nextafter(5e-324, 1.0), "1e-323"},
  };
  for (const auto &c : cases) {
    const std::string text = check_scale_round_trip(c.value);
    fail_unless(text == c.text, "%.17g is sent as %s, expected %s", c.value, text.c_str(), c.text);
    assert_same_text(kirin::json_number(c.value), c.text);
  }
}
GST_END_TEST;

// Every power of two the range holds, its neighbours, and pseudo-random doubles of [0, 1) (the
// same ones every run) and beyond: always strict JSON, exact, and the shortest form.
GST_START_TEST(test_create_body_cfg_scale_sweep) {
  std::vector<double> values;
  for (int exponent = 0; exponent >= -1074; exponent--) {
    const double power = std::ldexp(1.0, exponent);
    values.push_back(power);
    values.push_back(std::nextafter(power, 0.0));
    values.push_back(std::nextafter(power, 1.0));
  }
  GRand *rand = g_rand_new_with_seed(20240611);
  for (int i = 0; i < 3000; i++) {
    // Random bits below the bit pattern of 1.0 are exactly the doubles in [0, 1).
    const guint64 bits =
        (((guint64)g_rand_int(rand) << 32) | g_rand_int(rand)) % 0x3ff0000000000000;
    double value;
    memcpy(&value, &bits, sizeof value);
    values.push_back(value);
    // Outside the property's range too: the element never sends these, the body holds them.
    values.push_back(g_rand_double_range(rand, -1e300, 1e300) * std::ldexp(1.0, -i % 900));
  }
  g_rand_free(rand);
  for (double value : values) {
    const std::string text = check_scale_round_trip(value);
    check_shortest(value, text);
  }
}
GST_END_TEST;

// json-glib 1.6 copies U+001F into a string raw, which no strict parser accepts.
GST_START_TEST(test_create_body_control_characters) {
  std::string prompt;
  for (int c = 1; c < 0x20; c++)
    prompt += (char)c;
  prompt += "\x7f\"\\/end";
  kirin::CreateRequest request;
  request.video_id = "v";
  request.prompt = prompt;
  request.negative_prompt = "\x1f";
  const std::string body = kirin::build_create_body(request);
  for (unsigned char c : body)
    fail_if(c < 0x20, "a raw control character 0x%02x in %s", c, body.c_str());
  std::string model;
  JsonObject *params = create_params(body, model);
  fail_unless(string_param(params, "prompt") == prompt, "the prompt changed in transit");
  assert_same_text(string_param(params, "negative_prompt"), "\x1f");
  json_object_unref(params);
}
GST_END_TEST;

static Suite *task_bodies_suite(void) {
  Suite *suite = suite_create("kirin-task-bodies");

  TCase *errors = tcase_create("error-body");
  suite_add_tcase(suite, errors);
  tcase_add_test(errors, test_error_body_json);
  tcase_add_test(errors, test_error_body_html);
  tcase_add_test(errors, test_error_body_empty);
  tcase_add_test(errors, test_error_body_long_text);
  tcase_add_test(errors, test_error_body_bad_bytes);

  TCase *create = tcase_create("create-body");
  suite_add_tcase(suite, create);
  tcase_add_test(create, test_create_body_all_fields);
  tcase_add_test(create, test_create_body_only_set_fields);
  tcase_add_test(create, test_create_body_unicode);
  tcase_add_test(create, test_create_body_cfg_scale_edges);
  tcase_add_test(create, test_create_body_cfg_scale_sweep);
  tcase_add_test(create, test_create_body_control_characters);

  return suite;
}

int main(int argc, char **argv) {
  kirin_test_init(&argc, &argv, "task-bodies");
  return gst_check_run_suite(task_bodies_suite(), "task-bodies", __FILE__);
}
