// kirin-bench fetch: the download phase only, first buffer to EOS, of the element or of
// souphttpsrc on the same URL.
#include "bench-common.h"

namespace kirin_bench {

int run_fetch(const Args &args) {
  const std::string kind = args.get("source", "element");
  const std::string url = args.get("url");
  GstElement *source;
  if (kind == "element") {
    source = make_extend_src(args.get("api-url"), args.get("api-key", "test-key"));
  } else {
    source = gst_element_factory_make("souphttpsrc", nullptr);
    g_object_set(source, "location", url.c_str(), nullptr);
  }
  Flow flow;
  flow.watch(source);
  GstElement *pipeline = make_pipeline(source);
  std::string error = run_to_eos(pipeline, args.number("max-seconds", 300));
  gst_object_unref(pipeline);
  const double seconds = (flow.eos_us - flow.first_us) / 1e6;
  Json out;
  out.str("source", kind).integer("bytes", flow.bytes).integer("buffers", flow.buffers);
  out.num("seconds", seconds).num("bytes_per_s", seconds > 0 ? flow.bytes / seconds : 0);
  out.num("first_gap_ms", (flow.second_us - flow.first_us) / 1000.0);
  out.str("error", error).str("plugin", plugin_file());
  out.print();
  return error.empty() ? 0 : 1;
}

} // namespace kirin_bench
