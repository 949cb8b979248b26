#include "util/time_text.hpp"

#include <gtest/gtest.h>

#include "util/error.hpp"

namespace tracer {
namespace {

TEST(TimeText, DurationsTakeAWholeNumberAndAUnit) {
  EXPECT_EQ(parse_duration_seconds("3600", "--x"), 3600);
  EXPECT_EQ(parse_duration_seconds("90s", "--x"), 90);
  EXPECT_EQ(parse_duration_seconds("45m", "--x"), 45 * 60);
  EXPECT_EQ(parse_duration_seconds("12h", "--x"), 12 * 3600);
  EXPECT_EQ(parse_duration_seconds("30d", "--x"), 30 * 86400);
  EXPECT_EQ(parse_duration_seconds("2w", "--x"), 14 * 86400);
  for (const char* bad : {"", "0", "-5", "7 d", "7D", "1.5h", "d", "h7", "99999999999999999999",
                          "10000000w", "nan", "7dd"}) {
    try {
      parse_duration_seconds(bad, "--memory-ttl");
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("--memory-ttl"), std::string::npos) << e.what();
    }
  }
}

TEST(TimeText, UtcTimestampsOfTheManifestForm) {
  EXPECT_EQ(parse_utc_timestamp("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(parse_utc_timestamp("2026-12-01T02:51:18Z"), 1796093478);
  for (const char* bad :
       {"", "2026-12-01", "2026-12-01T02:51:18", "2026-13-01T02:51:18Z", "2026-12-01T24:00:00Z",
        "2026-12-01 02:51:18Z", "20x6-12-01T02:51:18Z", "1969-12-31T23:59:59Z",
        "2026-12-01T02:51:18+01:00", "2026-02-31T00:00:00Z", "2026-06-30T23:59:60Z"})
    EXPECT_EQ(parse_utc_timestamp(bad), -1) << bad;
}

}  // namespace
}  // namespace tracer
