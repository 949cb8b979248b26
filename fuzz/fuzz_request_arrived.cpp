// libFuzzer target for the connection loop's request-head scan (src/serve/connection_loop.hpp:
// request_arrived, which reads the head of every request before httplib does). Not part of the
// CMake build; see scripts/fuzz.sh. Never crashes or throws, and a buffer the loop has filled
// to its read cap always counts as arrived (else that connection would stall until its
// deadline with nothing left to read).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "serve/connection_loop.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const size_t max_buffered = 1 + data[0];
  const size_t max_head = 1 + data[1];
  std::string_view bytes(reinterpret_cast<const char*>(data + 2), size - 2);
  const bool arrived = tracer::serve::request_arrived(bytes, max_buffered, max_head);
  if (bytes.size() >= std::max(max_buffered, max_head) && !arrived) std::abort();
  return 0;
}
