// libFuzzer target for the duration and timestamp parsers (src/util/time_text.hpp: `tracer serve
// --memory-ttl`, manifest.json → created_at). Not part of the CMake build; see scripts/fuzz.sh.
// A duration is either refused with InputError or a positive number of seconds at most 100
// years; a timestamp is -1 or a non-negative Unix time that prints back to exactly the same text.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <string_view>

#include "util/error.hpp"
#include "util/time_text.hpp"

namespace {

void require(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const int64_t s = tracer::parse_duration_seconds(text, "--memory-ttl");
    require(s > 0 && s <= int64_t{100} * 365 * 86400);
  } catch (const tracer::InputError&) {
  }
  const int64_t t = tracer::parse_utc_timestamp(text);
  if (t >= 0) {
    std::time_t tt = static_cast<std::time_t>(t);
    std::tm tm{};
    require(gmtime_r(&tt, &tm) != nullptr);
    char back[32];
    require(std::strftime(back, sizeof back, "%Y-%m-%dT%H:%M:%SZ", &tm) == 20);
    require(std::string_view(back) == text);
  } else {
    require(t == -1);
  }
  return 0;
}
