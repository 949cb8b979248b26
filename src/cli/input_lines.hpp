#pragma once
// One line of a JSONL file of texts to route (`tracer predict -i`, `tracer drift`): a JSON
// string, or an object with the text in "input" (or text/query/prompt), an optional "id" and,
// for `tracer drift`, an optional teacher label ("teacher" or "label").
#include <cstddef>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace tracer::cli {

struct InputLine {
  std::string text;
  nlohmann::json id;                   // null when absent
  std::optional<std::string> teacher;  // the LLM's label, when the line carries one
  // false for a trace-store row outside the traffic sample (a deferred request, or a handled
  // one not audited): see represents_traffic in io/traces.hpp. `tracer drift` leaves them out.
  bool represents_traffic = true;
};

// Throws InputError naming file:line and what to fix.
InputLine parse_input_line(const std::string& line, const std::string& file, size_t line_no);

// The longest line `for_each_input_line` reads: a text to route is far shorter (the server's
// default limit is 64 KiB); a longer line is a wrong file, not a request.
inline constexpr size_t kMaxInputLineBytes = size_t{16} << 20;

// Calls `fn` with every non-blank line of `path`, parsed, in order. Throws InputError when the
// path is not a regular file (a directory, /dev/zero, a FIFO), cannot be read, a line is longer
// than kMaxInputLineBytes (memory stays bounded) or reading fails midway: a failed read never
// looks like the end of the file.
void for_each_input_line(const std::string& path,
                         const std::function<void(InputLine&&, size_t line_no)>& fn);

}  // namespace tracer::cli
