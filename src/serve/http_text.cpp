#include "serve/http_text.hpp"

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>

namespace tracer::serve {

using nlohmann::json;

bool iequals(std::string_view a, std::string_view b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
    return std::tolower(static_cast<unsigned char>(x)) ==
           std::tolower(static_cast<unsigned char>(y));
  });
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

const char* allowed_methods(Endpoint e) {
  switch (e) {
    case Endpoint::kHealth:
    case Endpoint::kPolicy:
    case Endpoint::kMetrics:
    case Endpoint::kDrift:
      return "GET, HEAD";
    case Endpoint::kAudit:
      return "GET, HEAD, POST";
    default:
      return "POST";
  }
}

std::string printable_path(const std::string& path) {
  std::string p = path.substr(0, 200);
  for (char& c : p)
    if (static_cast<unsigned char>(c) < 0x20) c = '?';
  return p;
}

std::string without_cr(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s)
    if (c != '\r') out += c;
  return out;
}

bool stream_requested(std::string_view body) {
  json j = json::parse(body.begin(), body.end(), nullptr, false);
  if (!j.is_object()) return false;
  auto s = j.find("stream");
  return s != j.end() && s->is_boolean() && s->get<bool>();
}

bool has_dot_segment(std::string_view path) {
  size_t at = 0;
  while (at <= path.size()) {
    size_t end = path.find('/', at);
    if (end == std::string_view::npos) end = path.size();
    const std::string_view segment = path.substr(at, end - at);
    if (segment == "." || segment == "..") return true;
    at = end + 1;
  }
  return false;
}

std::string header_safe(std::string_view v) {
  std::string out(v.substr(0, 200));
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) c = '?';
  return out;
}

}  // namespace tracer::serve
