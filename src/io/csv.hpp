#pragma once
// RFC 4180 CSV records: comma-separated, fields optionally quoted with '"', a quote inside a
// quoted field written as two quotes, and line breaks allowed inside quoted fields.
//
// Leniencies, chosen so that common exports read as people expect:
//  - records may end in LF or CRLF; a CR outside quotes is dropped, inside quotes it is kept;
//  - a '"' inside an unquoted field is kept as a literal character;
//  - the final record need not end with a line break.
// Text after a closing quote (`"abc"def`) and a quote still open at end of file are errors.
#include <string>
#include <vector>

#include "io/chunked_reader.hpp"

namespace tracer {

struct CsvRecord {
  std::vector<std::string> fields;
  size_t line = 0;          // 1-based physical line the record starts on
  bool any_quoted = false;  // some field was quoted (a quoted empty field is not a blank line)
  bool too_long = false;    // the record exceeded the byte limit; its fields are incomplete
  std::string error;        // why the record is malformed; empty when it is well-formed

  // A line holding nothing but spaces/tabs.
  bool blank() const;
};

class CsvReader {
 public:
  // Records longer than `max_record_bytes` (summed over fields) are flagged too_long and their
  // excess bytes dropped, so memory stays bounded.
  CsvReader(ChunkedReader& in, size_t max_record_bytes) : in_(in), max_bytes_(max_record_bytes) {}

  // Reads the next record; false at end of file.
  bool next(CsvRecord& rec);

 private:
  ChunkedReader& in_;
  size_t max_bytes_;
  size_t line_ = 1;
};

}  // namespace tracer
