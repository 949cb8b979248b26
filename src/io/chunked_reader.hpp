#pragma once
// Buffered reading of a file in fixed-size chunks, so that memory stays bounded however long a
// line is: callers cap what they keep and the rest of an over-long line is dropped.
#include <algorithm>
#include <cstring>
#include <istream>
#include <string>
#include <string_view>
#include <vector>

namespace tracer {

class ChunkedReader {
 public:
  static constexpr int kEof = -1;

  explicit ChunkedReader(std::istream& in, size_t chunk_bytes = size_t{1} << 16)
      : in_(in), buf_(chunk_bytes) {}

  // The bytes currently buffered (after the first call, the start of the file); used to sniff
  // byte-order marks.
  std::string_view peek_buffer() {
    if (pos_ == end_) refill();
    return {buf_.data() + pos_, end_ - pos_};
  }
  void skip(size_t n) { pos_ += std::min(n, end_ - pos_); }

  // Reads the next line without its '\n'. Keeps at most `limit` bytes in `line`; when the line is
  // longer, sets *truncated and discards the rest. Returns false at end of file.
  bool read_line(std::string& line, size_t limit, bool* truncated) {
    line.clear();
    *truncated = false;
    bool any = false;
    for (;;) {
      if (pos_ == end_ && !refill()) return any;
      any = true;
      const char* start = buf_.data() + pos_;
      const size_t avail = end_ - pos_;
      const auto* nl = static_cast<const char*>(std::memchr(start, '\n', avail));
      const size_t take = nl ? static_cast<size_t>(nl - start) : avail;
      const size_t room = limit - line.size();
      if (take > room) *truncated = true;
      line.append(start, std::min(take, room));
      pos_ += take;
      if (nl) {
        ++pos_;
        return true;
      }
    }
  }

  int get() {
    if (pos_ == end_ && !refill()) return kEof;
    return static_cast<unsigned char>(buf_[pos_++]);
  }

  // True when the underlying stream failed for a reason other than reaching the end.
  bool failed() const { return in_.bad(); }

 private:
  bool refill() {
    if (!in_) return false;
    in_.read(buf_.data(), static_cast<std::streamsize>(buf_.size()));
    pos_ = 0;
    end_ = static_cast<size_t>(in_.gcount());
    return end_ > 0;
  }

  std::istream& in_;
  std::vector<char> buf_;
  size_t pos_ = 0;
  size_t end_ = 0;
};

}  // namespace tracer
