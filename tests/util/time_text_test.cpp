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

TEST(TimeText, TimePointsAreRelativeOrIso8601) {
  const int64_t now = 1'800'000'000'000;  // 2027-01-15T08:00:00Z
  EXPECT_EQ(parse_time_point_ms("30d", now, "--since"), now - 30LL * 86400 * 1000);
  EXPECT_EQ(parse_time_point_ms("12h", now, "--since"), now - 12LL * 3600 * 1000);
  EXPECT_EQ(parse_time_point_ms("2026-11-30", now, "--since"), 1'795'996'800'000);
  EXPECT_EQ(parse_time_point_ms("2026-11-30T00:00:00Z", now, "--since"), 1'795'996'800'000);
  EXPECT_EQ(parse_time_point_ms("2026-11-30T14:05", now, "--since"),
            1'795'996'800'000 + (14 * 3600 + 5 * 60) * 1000LL);
  EXPECT_EQ(parse_time_point_ms("2026-11-30T02:00:00.25+02:00", now, "--since"),
            1'795'996'800'000 + 250);
  EXPECT_EQ(parse_time_point_ms("2026-11-30T00:00-0530", now, "--since"),
            1'795'996'800'000 + (5 * 3600 + 30 * 60) * 1000LL);
  for (const char* bad : {"", "30", "yesterday", "2026-02-31", "2026-13-01", "2026-11-30T25:00",
                          "2026-11-30T14:05:09Zjunk", "2026-11-30T14", "1969-12-31", "0d", "-5d",
                          "2026-11-30T14:05:09."}) {
    try {
      parse_time_point_ms(bad, now, "--since");
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("--since"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace tracer
