// A strict check of JSON text (RFC 8259): exactly one value, with optional whitespace
// around it. json-glib's parser cannot tell whether a body is JSON: it accepts 0x10, .5, 01,
// 1., single-quoted strings, comments and raw control characters in strings. Used by the
// create-body tests and by the fuzz-create-body target.
#pragma once

#include <glib.h>

#include <string>

namespace strict_json {

class Checker {
public:
  explicit Checker(const std::string &text) : text_(text) {}

  // True when the whole text is one JSON value; otherwise `error` says where it broke.
  bool check(std::string &error) {
    if (!g_utf8_validate(text_.data(), (gssize)text_.size(), nullptr))
      return report(error, "not UTF-8");
    skip_space();
    if (!value(0))
      return report(error, what_);
    skip_space();
    if (at_ != text_.size())
      return report(error, "text after the value");
    return true;
  }

private:
  static constexpr int kMaxDepth = 512;

  bool report(std::string &error, const std::string &what) const {
    error = what + " at byte " + std::to_string(at_);
    return false;
  }
  bool broken(const char *what) {
    what_ = what;
    return false;
  }
  bool more() const { return at_ < text_.size(); }
  char peek() const { return more() ? text_[at_] : '\0'; }
  bool is_digit() const { return more() && g_ascii_isdigit(text_[at_]); }

  void skip_space() {
    while (more() && (peek() == ' ' || peek() == '\t' || peek() == '\n' || peek() == '\r'))
      at_++;
  }

  bool literal(const char *word) {
    const std::string expected(word);
    if (text_.compare(at_, expected.size(), expected) != 0)
      return broken("not a JSON value");
    at_ += expected.size();
    return true;
  }

  bool value(int depth) {
    if (depth > kMaxDepth)
      return broken("nested too deeply");
    switch (peek()) {
    case '{':
      return object(depth);
    case '[':
      return array(depth);
    case '"':
      return string();
    case 't':
      return literal("true");
    case 'f':
      return literal("false");
    case 'n':
      return literal("null");
    default:
      return number();
    }
  }

  bool object(int depth) {
    at_++; // '{'
    skip_space();
    if (peek() == '}') {
      at_++;
      return true;
    }
    for (;;) {
      if (peek() != '"')
        return broken("a member name is not a string");
      if (!string())
        return false;
      skip_space();
      if (peek() != ':')
        return broken("no ':' after a member name");
      at_++;
      skip_space();
      if (!value(depth + 1))
        return false;
      skip_space();
      if (peek() == '}') {
        at_++;
        return true;
      }
      if (peek() != ',')
        return broken("no ',' or '}' after a member");
      at_++;
      skip_space();
    }
  }

  bool array(int depth) {
    at_++; // '['
    skip_space();
    if (peek() == ']') {
      at_++;
      return true;
    }
    for (;;) {
      if (!value(depth + 1))
        return false;
      skip_space();
      if (peek() == ']') {
        at_++;
        return true;
      }
      if (peek() != ',')
        return broken("no ',' or ']' after an element");
      at_++;
      skip_space();
    }
  }

  bool string() {
    at_++; // '"'
    while (more()) {
      const auto c = (unsigned char)text_[at_];
      if (c == '"') {
        at_++;
        return true;
      }
      if (c < 0x20)
        return broken("a raw control character in a string");
      if (c != '\\') {
        at_++;
        continue;
      }
      at_++;
      switch (peek()) {
      case '"':
      case '\\':
      case '/':
      case 'b':
      case 'f':
      case 'n':
      case 'r':
      case 't':
        at_++;
        break;
      case 'u':
        at_++;
        for (int i = 0; i < 4; i++, at_++)
          if (!more() || !g_ascii_isxdigit(peek()))
            return broken("a \\u escape without four hex digits");
        break;
      default:
        return broken("an unknown escape in a string");
      }
    }
    return broken("an unterminated string");
  }

  // -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
  bool number() {
    if (peek() == '-')
      at_++;
    if (peek() == '0') {
      at_++;
    } else if (is_digit()) {
      while (is_digit())
        at_++;
    } else {
      return broken("not a JSON value");
    }
    if (peek() == '.') {
      at_++;
      if (!is_digit())
        return broken("no digit after a decimal point");
      while (is_digit())
        at_++;
    }
    if (peek() == 'e' || peek() == 'E') {
      at_++;
      if (peek() == '+' || peek() == '-')
        at_++;
      if (!is_digit())
        return broken("no digit in an exponent");
      while (is_digit())
        at_++;
    }
    return true;
  }

  const std::string &text_;
  size_t at_ = 0;
  std::string what_;
};

// True when `text` is strict JSON; otherwise `error` (when given) says what broke and where.
inline bool valid(const std::string &text, std::string *error = nullptr) {
  std::string reason;
  const bool ok = Checker(text).check(reason);
  if (error)
    *error = reason;
  return ok;
}

} // namespace strict_json
