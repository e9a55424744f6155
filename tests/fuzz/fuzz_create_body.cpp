// build_create_body with arbitrary field values: the body must be one strict-JSON object in
// the provider's shape that carries exactly the set fields, unchanged. The input holds the
// fields separated by NUL bytes: video_id, prompt, negative_prompt, callback_url,
// external_task_id, model, and cfg_scale as text ("0.5", "nan", "-1e308", …).
#include "fuzz_common.h"
#include "strict_json.h"
#include "task.h"

#include <json-glib/json-glib.h>

#include <cmath>
#include <cstdint>
#include <vector>

namespace {

// The member of `params` as text, or nullptr when it is absent or not a string.
const char *string_param(JsonObject *params, const char *name) {
  JsonNode *node = json_object_get_member(params, name);
  if (node == nullptr || !JSON_NODE_HOLDS_VALUE(node) ||
      json_node_get_value_type(node) != G_TYPE_STRING)
    return nullptr;
  return json_node_get_string(node);
}

void require_string_param(JsonObject *params, const char *name, const std::string &value) {
  const char *sent = string_param(params, name);
  if (value.empty())
    fuzz_require(!json_object_has_member(params, name), "an unset field is left out");
  else
    fuzz_require(sent != nullptr && value == sent, "a set field is sent unchanged");
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
  fuzz_make_glib_warnings_fatal();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::vector<std::string> fields(1);
  for (size_t i = 0; i < size; i++) {
    if (data[i] == '\0')
      fields.emplace_back();
    else
      fields.back() += (char)data[i];
  }
  fields.resize(7);

  kirin::CreateRequest request;
  request.video_id = fields[0];
  request.prompt = fields[1];
  request.negative_prompt = fields[2];
  request.callback_url = fields[3];
  request.external_task_id = fields[4];
  if (!fields[5].empty())
    request.model = fields[5];
  if (!fields[6].empty())
    request.cfg_scale = g_ascii_strtod(fields[6].c_str(), nullptr);

  const std::string body = kirin::build_create_body(request);

  // JSON text is UTF-8: what the body says about other bytes is not defined. The element
  // refuses prompts that are not UTF-8; the other fields are the caller's to get right.
  for (const std::string &field : fields)
    if (!fuzz_is_utf8(field))
      return 0;
  // Strictly: json-glib's parser also takes 01, .5, 0x10, single quotes and raw control
  // characters. Any finite cfg_scale, also outside the property's range 0..1.
  fuzz_require(strict_json::valid(body), "the body is strict JSON");

  g_autoptr(JsonParser) parser = json_parser_new();
  fuzz_require(json_parser_load_from_data(parser, body.data(), (gssize)body.size(), nullptr),
               "the body is JSON");
  JsonNode *root = json_parser_get_root(parser);
  fuzz_require(root && JSON_NODE_HOLDS_OBJECT(root), "the body is an object");
  JsonObject *object = json_node_get_object(root);
  const char *model = string_param(object, "model");
  fuzz_require(model != nullptr && request.model == model, "the model is sent unchanged");
  JsonNode *input = json_object_get_member(object, "input");
  fuzz_require(input && JSON_NODE_HOLDS_ARRAY(input) &&
                   json_array_get_length(json_node_get_array(input)) == 1,
               "input is an array of one item");
  JsonNode *item = json_array_get_element(json_node_get_array(input), 0);
  fuzz_require(JSON_NODE_HOLDS_OBJECT(item), "the input item is an object");
  JsonNode *params_node = json_object_get_member(json_node_get_object(item), "params");
  fuzz_require(params_node && JSON_NODE_HOLDS_OBJECT(params_node), "params is an object");
  JsonObject *params = json_node_get_object(params_node);

  require_string_param(params, "video_id", request.video_id);
  require_string_param(params, "prompt", request.prompt);
  require_string_param(params, "negative_prompt", request.negative_prompt);
  require_string_param(params, "callback_url", request.callback_url);
  require_string_param(params, "external_task_id", request.external_task_id);

  JsonNode *scale = json_object_get_member(params, "cfg_scale");
  if (request.cfg_scale && std::isfinite(*request.cfg_scale)) {
    fuzz_require(scale && JSON_NODE_HOLDS_VALUE(scale) &&
                     (json_node_get_value_type(scale) == G_TYPE_DOUBLE ||
                      json_node_get_value_type(scale) == G_TYPE_INT64),
                 "a finite cfg_scale is sent as a number");
    fuzz_require(json_node_get_double(scale) == *request.cfg_scale,
                 "cfg_scale is sent without losing precision");
  } else {
    fuzz_require(scale == nullptr, "an unset or non-finite cfg_scale is left out");
  }
  fuzz_require(json_object_get_size(params) <= 6, "params holds only the request's fields");
  return 0;
}
