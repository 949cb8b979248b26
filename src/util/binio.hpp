#pragma once
// Little-endian binary (de)serialisation for the model file. Readers check every bound, so a
// truncated or corrupted file raises FormatError instead of reading garbage.
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "util/error.hpp"

namespace tracer {

class BinaryWriter {
 public:
  template <typename T>
    requires std::is_trivially_copyable_v<T>
  void put(const T& v) {
    const auto* p = reinterpret_cast<const char*>(&v);
    buf_.append(p, sizeof(T));
  }
  void put_string(std::string_view s) {
    put<uint64_t>(s.size());
    buf_.append(s.data(), s.size());
  }
  template <typename T>
    requires std::is_trivially_copyable_v<T>
  void put_vector(std::span<const T> v) {
    put<uint64_t>(v.size());
    buf_.append(reinterpret_cast<const char*>(v.data()), v.size_bytes());
  }
  template <typename T>
  void put_vector(const std::vector<T>& v) {
    put_vector(std::span<const T>(v));
  }
  void put_strings(const std::vector<std::string>& v) {
    put<uint64_t>(v.size());
    for (const auto& s : v) put_string(s);
  }
  const std::string& bytes() const { return buf_; }
  std::string take() { return std::move(buf_); }

 private:
  std::string buf_;
};

class BinaryReader {
 public:
  explicit BinaryReader(std::string_view data) : data_(data) {}

  template <typename T>
    requires std::is_trivially_copyable_v<T>
  T get() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, data_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string get_string(size_t max_len = 1u << 30) {
    auto n = get<uint64_t>();
    if (n > max_len) throw FormatError("model file: string length out of range (file corrupted?)");
    need(n);
    std::string s(data_.substr(pos_, n));
    pos_ += n;
    return s;
  }
  template <typename T>
    requires std::is_trivially_copyable_v<T>
  std::vector<T> get_vector(size_t max_len = size_t{1} << 34) {
    auto n = get<uint64_t>();
    if (n > max_len || n > remaining() / (sizeof(T) ? sizeof(T) : 1))
      throw FormatError("model file: array length out of range (file truncated or corrupted)");
    std::vector<T> v(n);
    if (n) std::memcpy(v.data(), data_.data() + pos_, n * sizeof(T));
    pos_ += n * sizeof(T);
    return v;
  }
  std::vector<std::string> get_strings() {
    auto n = get<uint64_t>();
    if (n > remaining() / sizeof(uint64_t))
      throw FormatError("model file: list length out of range (file truncated or corrupted)");
    std::vector<std::string> v;
    v.reserve(n);
    for (uint64_t i = 0; i < n; ++i) v.push_back(get_string());
    return v;
  }
  size_t remaining() const { return data_.size() - pos_; }
  bool done() const { return pos_ == data_.size(); }

 private:
  void need(size_t n) const {
    if (n > remaining()) throw FormatError("model file: unexpected end of data (file truncated?)");
  }
  std::string_view data_;
  size_t pos_ = 0;
};

}  // namespace tracer
