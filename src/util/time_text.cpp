#include "util/time_text.hpp"

#include <charconv>
#include <ctime>
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

std::string format_utc_timestamp(int64_t unix_s) {
  const std::time_t t = static_cast<std::time_t>(unix_s);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string utc_now() { return format_utc_timestamp(static_cast<int64_t>(std::time(nullptr))); }

}  // namespace tracer
