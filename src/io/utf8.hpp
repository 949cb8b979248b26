#pragma once
// Small UTF-8 helpers for validating trace text.
#include <utf8proc.h>

#include <cstdint>
#include <cstring>
#include <string_view>

namespace tracer {

// Byte offset of the first byte that breaks UTF-8 well-formedness (overlongs, surrogates and code
// points above U+10FFFF included), or npos when `s` is valid UTF-8.
inline size_t invalid_utf8_offset(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    // Traces are mostly ASCII: skip 8 bytes at a time while no high bit is set.
    if (i + 8 <= n) {
      uint64_t word;
      std::memcpy(&word, p + i, 8);
      if ((word & 0x8080808080808080ULL) == 0) {
        i += 8;
        continue;
      }
    }
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte (Unicode Table 3-7)
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return i;
    }
    if (i + 1 >= n || p[i + 1] < lo || p[i + 1] > hi) return i;
    for (size_t k = 2; k < len; ++k) {
      if (i + k >= n || (p[i + k] & 0xC0) != 0x80) return i;
    }
    i += len;
  }
  return std::string_view::npos;
}

inline bool is_valid_utf8(std::string_view s) {
  return invalid_utf8_offset(s) == std::string_view::npos;
}

// Valid UTF-8 holding only whitespace (ASCII, NEL or Unicode space/line/paragraph separators):
// such an input or label counts as empty.
inline bool is_blank_text(std::string_view s) {
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(s.data());
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      if (c != ' ' && (c < '\t' || c > '\r')) return false;
      ++i;
      continue;
    }
    utf8proc_int32_t cp = 0;
    const auto n = utf8proc_iterate(p + i, static_cast<utf8proc_ssize_t>(s.size() - i), &cp);
    if (n <= 0) return false;
    const auto cat = utf8proc_category(cp);
    if (cp != 0x85 && cat != UTF8PROC_CATEGORY_ZS && cat != UTF8PROC_CATEGORY_ZL &&
        cat != UTF8PROC_CATEGORY_ZP) {
      return false;
    }
    i += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace tracer
