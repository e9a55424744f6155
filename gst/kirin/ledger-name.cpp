// What a journal is called: a file's path, or a server's URI, which may hold a password.
#include "ledger.h"

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

} // namespace

std::string journal_display_name(const std::string &journal) {
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
