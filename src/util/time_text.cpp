#include "util/time_text.hpp"

#include <charconv>
#include <chrono>
#include <ctime>
#include <optional>
#include <string>

#include "util/error.hpp"

namespace tracer {

int64_t parse_duration_seconds(std::string_view text, std::string_view what) {
  const std::string help = std::string(what) +
                           " takes a duration like 3600, 90s, 45m, 12h, 30d or 2w; got '" +
                           std::string(text.substr(0, 64)) + "'";
  int64_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec == std::errc() && n <= 0)
    throw InputError(std::string(what) + " must be a positive duration (at least 1 second); got '" +
                     std::string(text.substr(0, 64)) + "'");
  if (ec == std::errc::result_out_of_range)
    throw InputError(std::string(what) + " is longer than 100 years");
  if (ec != std::errc()) throw InputError(help);
  std::string_view unit(end, static_cast<size_t>(text.data() + text.size() - end));
  int64_t scale = 0;
  if (unit.empty() || unit == "s")
    scale = 1;
  else if (unit == "m")
    scale = 60;
  else if (unit == "h")
    scale = 3600;
  else if (unit == "d")
    scale = 86400;
  else if (unit == "w")
    scale = 7 * 86400;
  if (scale == 0) throw InputError(help);
  if (n > INT64_C(100) * 365 * 86400 / scale)
    throw InputError(what.empty() ? help : std::string(what) + " is longer than 100 years");
  return n * scale;
}

int64_t parse_utc_timestamp(std::string_view text) {
  if (text.size() != 20 || text[4] != '-' || text[7] != '-' || text[10] != 'T' || text[13] != ':' ||
      text[16] != ':' || text[19] != 'Z')
    return -1;
  auto field = [&](size_t at, size_t len, int lo, int hi) {
    int v = 0;
    auto [end, ec] = std::from_chars(text.data() + at, text.data() + at + len, v);
    if (ec != std::errc() || end != text.data() + at + len || v < lo || v > hi) return -1;
    return v;
  };
  std::tm tm{};
  tm.tm_year = field(0, 4, 1970, 9999) - 1900;
  tm.tm_mon = field(5, 2, 1, 12) - 1;
  tm.tm_mday = field(8, 2, 1, 31);
  tm.tm_hour = field(11, 2, 0, 23);
  tm.tm_min = field(14, 2, 0, 59);
  tm.tm_sec = field(17, 2, 0, 60);
  if (tm.tm_year < 70 || tm.tm_mon < 0 || tm.tm_mday < 1 || tm.tm_hour < 0 || tm.tm_min < 0 ||
      tm.tm_sec < 0)
    return -1;
  const std::tm want = tm;
  const std::time_t t = timegm(&tm);
  std::tm back{};
  // timegm normalises 2026-02-31 to March 3rd and second 60 to the next minute: refuse those.
  if (t < 0 || !gmtime_r(&t, &back) || back.tm_year != want.tm_year || back.tm_mon != want.tm_mon ||
      back.tm_mday != want.tm_mday || back.tm_hour != want.tm_hour || back.tm_min != want.tm_min ||
      back.tm_sec != want.tm_sec)
    return -1;
  return static_cast<int64_t>(t);
}

namespace {

// Reads exactly `len` digits at `at` into v; false when they are not all digits or v is not in
// [lo, hi].
bool digits(std::string_view t, size_t at, size_t len, int lo, int hi, int& v) {
  if (at + len > t.size()) return false;
  for (size_t i = at; i < at + len; ++i)
    if (t[i] < '0' || t[i] > '9') return false;
  std::from_chars(t.data() + at, t.data() + at + len, v);
  return v >= lo && v <= hi;
}

// "YYYY-MM-DD[THH:MM[:SS[.fff]]][Z|±HH[:]MM]" as Unix milliseconds, or nullopt.
std::optional<int64_t> parse_iso8601_ms(std::string_view t) {
  std::tm tm{};
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (t.size() < 10 || t[4] != '-' || t[7] != '-' || !digits(t, 0, 4, 1970, 9999, year) ||
      !digits(t, 5, 2, 1, 12, month) || !digits(t, 8, 2, 1, 31, day))
    return std::nullopt;
  size_t at = 10;
  int64_t millis = 0, offset_s = 0;
  if (at < t.size() && (t[at] == 'T' || t[at] == ' ')) {
    if (at + 6 > t.size() || t[at + 3] != ':' || !digits(t, at + 1, 2, 0, 23, hour) ||
        !digits(t, at + 4, 2, 0, 59, minute))
      return std::nullopt;
    at += 6;
    if (at < t.size() && t[at] == ':') {
      if (!digits(t, at + 1, 2, 0, 59, second)) return std::nullopt;
      at += 3;
      if (at < t.size() && t[at] == '.') {
        size_t n = 0;
        for (++at; at < t.size() && t[at] >= '0' && t[at] <= '9'; ++at, ++n)
          if (n < 3) millis = millis * 10 + (t[at] - '0');
        if (n == 0) return std::nullopt;
        for (; n < 3; ++n) millis *= 10;
      }
    }
    if (at < t.size() && t[at] == 'Z') {
      ++at;
    } else if (at < t.size() && (t[at] == '+' || t[at] == '-')) {
      const int sign = t[at] == '-' ? -1 : 1;
      int oh = 0, om = 0;
      if (!digits(t, at + 1, 2, 0, 23, oh)) return std::nullopt;
      at += 3;
      if (at < t.size() && t[at] == ':') ++at;
      if (!digits(t, at, 2, 0, 59, om)) return std::nullopt;
      at += 2;
      offset_s = sign * (oh * 3600 + om * 60);
    }
  }
  if (at != t.size()) return std::nullopt;
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  const std::time_t s = timegm(&tm);
  std::tm back{};
  // timegm normalises 2026-02-31 to March 3rd: refuse dates that do not exist.
  if (!gmtime_r(&s, &back) || back.tm_mday != day || back.tm_mon != month - 1) return std::nullopt;
  return (static_cast<int64_t>(s) - offset_s) * 1000 + millis;
}

}  // namespace

int64_t parse_time_point_ms(std::string_view text, int64_t now_ms, std::string_view what) {
  const std::string shown(text.substr(0, 64));
  if (!text.empty() && text.front() >= '0' && text.front() <= '9' && text.back() >= 'a' &&
      text.back() <= 'z' && text.size() <= 24 && text.find('-') == std::string_view::npos) {
    const int64_t back_s = parse_duration_seconds(text, what);
    return now_ms - back_s * 1000;
  }
  if (auto ms = parse_iso8601_ms(text)) return *ms;
  throw InputError(std::string(what) +
                   " takes a time: a duration back from now (30d, 12h, 45m, 2w), a date "
                   "(2026-11-30) or an ISO-8601 date-time (2026-11-30T14:05:09Z, "
                   "2026-11-30T16:05+02:00); got '" +
                   shown + "'");
}

std::string format_utc_timestamp(int64_t unix_s) {
  const std::time_t t = static_cast<std::time_t>(unix_s);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string utc_now() { return format_utc_timestamp(static_cast<int64_t>(std::time(nullptr))); }

int64_t unix_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace tracer
