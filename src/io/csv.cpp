#include "io/csv.hpp"

#include <string_view>

namespace tracer {
namespace {

// Bounds the memory a line of commas can claim (each field costs a std::string).
constexpr size_t kMaxFields = size_t{1} << 16;

}  // namespace

bool CsvRecord::blank() const {
  if (any_quoted || fields.size() != 1) return false;
  return fields[0].find_first_not_of(" \t") == std::string::npos;
}

bool CsvReader::next(CsvRecord& rec) {
  enum class State { kFieldStart, kUnquoted, kQuoted, kQuoteInQuoted };
  rec.fields.clear();
  rec.line = line_;
  rec.any_quoted = false;
  rec.too_long = false;
  rec.error.clear();

  std::string field;
  size_t bytes = 0;
  size_t quote_line = 0;
  State state = State::kFieldStart;
  bool any = false;
  auto append = [&](char c) {
    if (bytes < max_bytes_) {
      field.push_back(c);
      ++bytes;
    } else {
      rec.too_long = true;
    }
  };
  auto end_field = [&] {
    if (rec.fields.size() < kMaxFields) {
      rec.fields.push_back(std::move(field));
    } else if (rec.error.empty()) {
      rec.error = "the record has more than " + std::to_string(kMaxFields) +
                  " fields; is this really a comma-separated file?";
    }
    field.clear();
    state = State::kFieldStart;
  };

  for (;;) {
    const int c = in_.get();
    if (c == ChunkedReader::kEof) {
      if (!any) return false;
      if (state == State::kQuoted && rec.error.empty()) {
        rec.error = "the quoted field opened on line " + std::to_string(quote_line) +
                    " is never closed (it runs to the end of the file); close it with '\"' and "
                    "write any quote inside it as '\"\"'";
      }
      end_field();
      return true;
    }
    any = true;
    const char ch = static_cast<char>(c);
    switch (state) {
      case State::kFieldStart:
        if (ch == '"') {
          state = State::kQuoted;
          rec.any_quoted = true;
          quote_line = line_;
        } else if (ch == ',') {
          end_field();
        } else if (ch == '\n') {
          ++line_;
          end_field();
          return true;
        } else if (ch != '\r') {
          append(ch);
          state = State::kUnquoted;
        }
        break;
      case State::kUnquoted:
        if (ch == ',') {
          end_field();
        } else if (ch == '\n') {
          ++line_;
          end_field();
          return true;
        } else if (ch != '\r') {
          append(ch);
        }
        break;
      case State::kQuoted:
        if (ch == '"') {
          state = State::kQuoteInQuoted;
        } else {
          if (ch == '\n') ++line_;
          append(ch);
        }
        break;
      case State::kQuoteInQuoted:
        if (ch == '"') {
          append('"');
          state = State::kQuoted;
        } else if (ch == ',') {
          end_field();
        } else if (ch == '\n') {
          ++line_;
          end_field();
          return true;
        } else if (ch != '\r') {
          if (rec.error.empty()) {
            rec.error = "field " + std::to_string(rec.fields.size() + 1) +
                        " has text after its closing quote; quote the whole field and write "
                        "each quote inside it as '\"\"'";
          }
          append(ch);
          state = State::kUnquoted;
        }
        break;
    }
  }
}

}  // namespace tracer
