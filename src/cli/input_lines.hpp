#pragma once
// One line of a JSONL file of texts to route (`tracer predict -i`, `tracer drift`): a JSON
// string, or an object with the text in "input" (or text/query/prompt), an optional "id" and,
// for `tracer drift`, an optional teacher label ("teacher" or "label").
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace tracer::cli {

struct InputLine {
  std::string text;
  nlohmann::json id;                   // null when absent
  std::optional<std::string> teacher;  // the LLM's label, when the line carries one
};

// Throws InputError naming file:line and what to fix.
InputLine parse_input_line(const std::string& line, const std::string& file, size_t line_no);

}  // namespace tracer::cli
