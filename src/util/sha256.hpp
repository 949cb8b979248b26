#pragma once
// SHA-256 (FIPS 180-4), incremental. Used for content identities (the trace store's import
// keys), where a collision must be out of the question for any realistic number of records.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace tracer {

class Sha256 {
 public:
  using Digest = std::array<uint8_t, 32>;
  Sha256();
  Sha256& update(std::string_view bytes);
  Digest finish();  // the object must not be updated afterwards

  static Digest of(std::string_view bytes) { return Sha256().update(bytes).finish(); }
  static std::string hex(const Digest& d);

 private:
  void block(const uint8_t* p);
  std::array<uint32_t, 8> h_;
  std::array<uint8_t, 64> buf_{};
  size_t buffered_ = 0;
  uint64_t total_ = 0;  // bytes hashed so far
};

}  // namespace tracer
