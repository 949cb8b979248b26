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

// A point in time as users write it for --since/--until, as Unix milliseconds:
//   a duration back from `now_ms`: "30d", "12h", "45m", "90s", "2w" (units required);
//   a UTC date: "2026-11-30" (its midnight);
//   an ISO-8601 date-time: "2026-11-30T14:05", "2026-11-30T14:05:09", with an optional
//   fraction of a second (".250") and zone ("Z", "+02:00", "-0530"); no zone means UTC.
// Throws InputError naming `what` (e.g. "--since") and the accepted forms otherwise.
int64_t parse_time_point_ms(std::string_view text, int64_t now_ms, std::string_view what);

// Unix seconds as "2026-12-01T02:51:18Z"; the inverse of parse_utc_timestamp.
std::string format_utc_timestamp(int64_t unix_s);
// The current time in that form.
std::string utc_now();
// The current time as Unix milliseconds (system clock).
int64_t unix_now_ms();

}  // namespace tracer
