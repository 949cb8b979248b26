#include "util/sha256.hpp"

#include <gtest/gtest.h>

#include <string>

namespace tracer {
namespace {

std::string hex_of(const std::string& s) { return Sha256::hex(Sha256::of(s)); }

TEST(Sha256, MatchesFips180Vectors) {
  EXPECT_EQ(hex_of(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(hex_of("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(hex_of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(hex_of(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, IncrementalEqualsOneShotAtEveryPadBoundary) {
  // Lengths around the 55/56/64-byte padding edges, fed in awkward pieces.
  for (size_t len : {0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1000}) {
    std::string s;
    for (size_t i = 0; i < len; ++i) s.push_back(static_cast<char>('a' + i * 7 % 26));
    Sha256 h;
    for (size_t i = 0; i < len; i += 13) h.update(std::string_view(s).substr(i, 13));
    EXPECT_EQ(h.finish(), Sha256::of(s)) << len;
  }
}

}  // namespace
}  // namespace tracer
