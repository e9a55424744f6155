// Arbitrary bytes as the body of an HTTP error response. The text that comes back goes
// into an error message a person reads and into one log line, so it must be short, valid
// UTF-8 and free of control characters, whatever the server sent.
#include "fuzz_common.h"
#include "task.h"

#include <cstdint>

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
  fuzz_make_glib_warnings_fatal();
  return 0;
}

// Invalid UTF-8, so no parse can produce it: the fuzzer can spell out any valid text.
const std::string kLeftOver = "\xffleft over from an earlier response";

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string code = kLeftOver;
  const std::string text =
      kirin::parse_error_body(reinterpret_cast<const char *>(data), size, &code);
  fuzz_require(code != kLeftOver, "the code is cleared first");
  fuzz_require(size != 0 || text.empty(), "an empty body gives an empty text");
  fuzz_require(fuzz_is_utf8(text), "the text is valid UTF-8");
  // 200 characters, then "…" when cut.
  fuzz_require(g_utf8_strlen(text.c_str(), (gssize)text.size()) <= 201,
               "the text is at most 200 characters and an ellipsis");
  for (unsigned char c : text)
    fuzz_require(c >= 0x20 && c != 0x7f, "the text has no control characters");
  fuzz_require(text.empty() || (text.front() != ' ' && text.back() != ' '), "the text is trimmed");
  fuzz_require(text.find("  ") == std::string::npos, "whitespace runs are one space");
  return 0;
}
