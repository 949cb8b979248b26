#include "serve/connection_loop.hpp"

#include <gtest/gtest.h>

#include <string>

namespace tracer::serve {
namespace {

constexpr size_t kBuffer = 64;
constexpr size_t kHead = 128;

bool arrived(const std::string& bytes) { return request_arrived(bytes, kBuffer, kHead); }

TEST(RequestArrived, WaitsForTheWholeHead) {
  EXPECT_FALSE(arrived(""));
  EXPECT_FALSE(arrived("GET /healthz HTTP/1.1\r\nHost: x\r\n"));
  EXPECT_FALSE(arrived("GET /healthz HTTP/1.1\r\nHost: x\r\n\r"));
  EXPECT_TRUE(arrived("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_TRUE(arrived("GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n"));  // pipelined: the first is in
}

TEST(RequestArrived, WaitsForASmallBodyAnnouncedByContentLength) {
  const std::string head = "POST /v1/route HTTP/1.1\r\ncontent-LENGTH:  10 \r\n\r\n";
  EXPECT_FALSE(arrived(head));
  EXPECT_FALSE(arrived(head + "012345678"));
  EXPECT_TRUE(arrived(head + "0123456789"));
  EXPECT_TRUE(arrived("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"));
}

// What the worker must read or refuse itself is handed over as soon as the head is in.
TEST(RequestArrived, LeavesLargeChunkedAndOddBodiesToTheWorker) {
  EXPECT_TRUE(arrived("POST / HTTP/1.1\r\nContent-Length: 1000\r\n\r\n"));  // over the buffer
  EXPECT_TRUE(arrived("POST / HTTP/1.1\r\nContent-Length: 60\r\n\r\n"));    // head + body over
  EXPECT_TRUE(arrived("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"));
  EXPECT_TRUE(arrived("POST / HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"));
  EXPECT_TRUE(arrived("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 20\r\n\r\n"));
  EXPECT_TRUE(arrived("POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n"));
  EXPECT_TRUE(arrived("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n"));
  EXPECT_TRUE(arrived("POST / HTTP/1.1\r\nContent-Length:\r\n\r\n"));
}

TEST(RequestArrived, AHeadWithoutEndIsHandedOverAtItsLimit) {
  const std::string endless = "GET / HTTP/1.1\r\nX-Long: " + std::string(kHead, 'a');
  EXPECT_TRUE(arrived(endless));
  EXPECT_FALSE(arrived(endless.substr(0, kHead - 1)));
}

// RFC 9112: a request without Content-Length or Transfer-Encoding has no body; httplib would
// wait for one, so the head gets "Content-Length: 0".
TEST(AddMissingLength, GivesBodilessPostsAZeroLength) {
  std::string post = "POST /v1/admin/reload HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\n";
  add_missing_length(post);
  EXPECT_EQ(post,
            "POST /v1/admin/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\nGET / "
            "HTTP/1.1\r\n");
  for (std::string unchanged :
       {std::string("POST / HTTP/1.1\r\ncontent-length: 3\r\n\r\nabc"),
        std::string("PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
        std::string("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        std::string("POST / HTTP/1.1\r\nHost: x\r\n")}) {  // head not all there yet
    const std::string before = unchanged;
    add_missing_length(unchanged);
    EXPECT_EQ(unchanged, before);
  }
}

}  // namespace
}  // namespace tracer::serve
