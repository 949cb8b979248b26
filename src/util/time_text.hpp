#pragma once
// Durations and UTC timestamps as users and manifests write them.
#include <cstdint>
#include <string>
#include <string_view>

namespace tracer {

// "90" or "90s" (seconds), "45m", "12h", "30d", "2w": a positive whole number and an optional
// unit. Returns seconds. Throws InputError naming `what` (e.g. "--memory-ttl") otherwise.
int64_t parse_duration_seconds(std::string_view text, std::string_view what);

// "2026-12-01T02:51:18Z" (manifest.json → created_at) as Unix seconds; -1 when `text` is not a
// UTC timestamp of that exact form or names no real instant (2026-02-31, second 60).
int64_t parse_utc_timestamp(std::string_view text);

// Unix seconds as "2026-12-01T02:51:18Z"; the inverse of parse_utc_timestamp.
std::string format_utc_timestamp(int64_t unix_s);
// The current time in that form.
std::string utc_now();

}  // namespace tracer
