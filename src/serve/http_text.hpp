#pragma once
// Small text helpers of the HTTP server: header and path checks, safe echoes of client input.
#include <string>
#include <string_view>

#include "serve/metrics.hpp"

namespace tracer::serve {

bool iequals(std::string_view a, std::string_view b);  // ASCII case-insensitive
// Equality whose time does not depend on where the strings differ (API keys).
bool constant_time_equal(std::string_view a, std::string_view b);
// The methods a known endpoint accepts, for Allow headers and 405 messages.
const char* allowed_methods(Endpoint e);
// A client's path (or method) safe to quote in a message: at most 200 bytes, controls as '?'.
std::string printable_path(const std::string& path);
// `s` without carriage returns (CRLF and LF line endings compare equal).
std::string without_cr(std::string_view s);
// Whether a JSON request body asks for "stream": true (false when it is not JSON).
bool stream_requested(std::string_view body);
// Whether a (decoded) path has a "." or ".." segment, which could leave /v1/ upstream.
bool has_dot_segment(std::string_view path);
// A value that is safe in an HTTP header: printable ASCII, at most 200 bytes.
std::string header_safe(std::string_view v);

}  // namespace tracer::serve
