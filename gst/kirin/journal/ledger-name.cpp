// What a journal is called: a file's path, or a server's URI, which may hold a password (as
// may a libpq keyword string, which is refused but must not be shown whole either).
#include "ledger.h"

#include <cstring>
#include <vector>

namespace kirin {

bool journal_on_server(const std::string &journal) {
  return g_str_has_prefix(journal.c_str(), "postgresql://") ||
         g_str_has_prefix(journal.c_str(), "postgres://");
}

namespace {

// "user:password@host" -> "user@host"; the password is all between the first ':' and the
// last '@' (libpq reads it so).
std::string without_password_in_authority(const std::string &authority) {
  size_t at = authority.rfind('@');
  if (at == std::string::npos)
    return authority;
  size_t colon = authority.find(':');
  if (colon == std::string::npos || colon > at)
    return authority;
  return authority.substr(0, colon) + authority.substr(at);
}

// "a=1&password=x&b=2" -> "a=1&b=2", also when the name is percent-encoded.
std::string without_password_in_query(const std::string &query) {
  std::string kept;
  g_auto(GStrv) params = g_strsplit(query.c_str(), "&", -1);
  for (char **param = params; *param; param++) {
    std::string text = *param;
    g_autofree char *name = g_uri_unescape_string(text.substr(0, text.find('=')).c_str(), nullptr);
    if (name && g_ascii_strcasecmp(name, "password") == 0)
      continue;
    kept += (kept.empty() ? "" : "&") + text;
  }
  return kept;
}

// libpq's connection keywords (libpq's documentation, "Parameter Key Words").
// Each between spaces.
constexpr const char *kLibpqKeywords =
    " host hostaddr port dbname user password passfile service connect_timeout client_encoding "
    "options application_name fallback_application_name keepalives keepalives_idle "
    "keepalives_interval keepalives_count tcp_user_timeout sslmode requiressl sslcompression "
    "sslcert sslkey sslpassword sslrootcert sslcrl sslcrldir sslsni requirepeer "
    "ssl_min_protocol_version ssl_max_protocol_version gssencmode krbsrvname gsslib "
    "target_session_attrs channel_binding load_balance_hosts replication ";

size_t skip_spaces(const std::string &text, size_t at) {
  while (at < text.size() && g_ascii_isspace(text[at]))
    at++;
  return at;
}

// The end of a keyword string's value starting at `at`: a quoted one ('...', in which a
// backslash escapes) to its closing quote (or the end), another to the next space.
size_t value_end(const std::string &text, size_t at) {
  if (at < text.size() && text[at] == '\'') {
    for (at++; at < text.size() && text[at] != '\''; at++)
      if (text[at] == '\\')
        at++;
    return MIN(at + 1, text.size());
  }
  while (at < text.size() && !g_ascii_isspace(text[at]))
    at++;
  return at;
}

// "host=h password='x y' user=u" -> "host=h user=u". Every pair whose keyword is not
// password stays as written.
std::string without_password_in_keywords(const std::string &text) {
  std::string kept;
  size_t at = skip_spaces(text, 0);
  while (at < text.size()) {
    const size_t start = at;
    while (at < text.size() && text[at] != '=' && !g_ascii_isspace(text[at]))
      at++;
    const std::string keyword = text.substr(start, at - start);
    at = skip_spaces(text, at);
    if (at < text.size() && text[at] == '=')
      at = value_end(text, skip_spaces(text, at + 1));
    if (keyword != "password")
      kept += (kept.empty() ? "" : " ") + text.substr(start, at - start);
    at = skip_spaces(text, at);
  }
  return kept;
}

} // namespace

bool journal_is_keyword_string(const std::string &journal) {
  size_t start = skip_spaces(journal, 0), end = start;
  while (end < journal.size() && (g_ascii_isalpha(journal[end]) || journal[end] == '_'))
    end++;
  const size_t equals = skip_spaces(journal, end);
  if (equals >= journal.size() || journal[equals] != '=')
    return false;
  // libpq's keywords are lower case; "Host=" is no file name anyone means either.
  g_autofree char *lower = g_ascii_strdown(journal.c_str() + start, end - start);
  const std::string keyword = std::string(" ") + lower + " ";
  return end > start && strstr(kLibpqKeywords, keyword.c_str()) != nullptr;
}

std::string journal_display_name(const std::string &journal) {
  if (journal_is_keyword_string(journal))
    return without_password_in_keywords(journal);
  if (!journal_on_server(journal))
    return journal;
  size_t authority_start = journal.find("://") + 3;
  size_t authority_end = journal.find_first_of("/?", authority_start);
  if (authority_end == std::string::npos)
    authority_end = journal.size();
  std::string name = journal.substr(0, authority_start) +
                     without_password_in_authority(
                         journal.substr(authority_start, authority_end - authority_start));
  std::string rest = journal.substr(authority_end);
  size_t query_start = rest.find('?');
  if (query_start == std::string::npos)
    return name + rest;
  std::string query = without_password_in_query(rest.substr(query_start + 1));
  return name + rest.substr(0, query_start) + (query.empty() ? "" : "?" + query);
}

} // namespace kirin
