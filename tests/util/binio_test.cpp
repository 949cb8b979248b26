#include "util/binio.hpp"

#include <gtest/gtest.h>

namespace tracer {
namespace {

TEST(BinIO, RoundTripsScalarsStringsAndVectors) {
  BinaryWriter w;
  w.put<uint32_t>(7);
  w.put<double>(0.25);
  w.put_string("héllo");
  w.put_vector(std::vector<float>{1.5f, -2.f});
  w.put_strings({"a", "", "bc"});
  BinaryReader r(w.bytes());
  EXPECT_EQ(r.get<uint32_t>(), 7u);
  EXPECT_EQ(r.get<double>(), 0.25);
  EXPECT_EQ(r.get_string(), "héllo");
  EXPECT_EQ(r.get_vector<float>(), (std::vector<float>{1.5f, -2.f}));
  EXPECT_EQ(r.get_strings(), (std::vector<std::string>{"a", "", "bc"}));
  EXPECT_TRUE(r.done());
}

TEST(BinIO, TruncatedDataThrowsFormatError) {
  BinaryWriter w;
  w.put_vector(std::vector<float>(100, 1.f));
  std::string bytes = w.bytes().substr(0, 50);
  BinaryReader r(bytes);
  EXPECT_THROW(r.get_vector<float>(), FormatError);
  BinaryReader r2(std::string_view("abc"));
  EXPECT_THROW(r2.get<uint64_t>(), FormatError);
}

}  // namespace
}  // namespace tracer
