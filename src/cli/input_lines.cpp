#include "cli/input_lines.hpp"

#include "util/error.hpp"

namespace tracer::cli {

InputLine parse_input_line(const std::string& line, const std::string& file, size_t no) {
  const std::string where = file + ":" + std::to_string(no) + ": ";
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception&) {
    throw InputError(where +
                     "not valid JSON; each line must be an object like {\"input\": \"...\"}");
  }
  InputLine out;
  if (j.is_string()) {
    out.text = j.get<std::string>();
    return out;
  }
  if (!j.is_object()) throw InputError(where + "expected a JSON object with an \"input\" field");
  if (j.contains("id")) out.id = j["id"];
  for (const char* key : {"teacher", "label"}) {
    auto it = j.find(key);
    if (it != j.end() && it->is_string()) {
      out.teacher = it->get<std::string>();
      break;
    }
  }
  for (const char* key : {"input", "text", "query", "prompt"}) {
    auto it = j.find(key);
    if (it == j.end()) continue;
    if (!it->is_string()) throw InputError(where + "field \"" + key + "\" must be a string");
    out.text = it->get<std::string>();
    return out;
  }
  throw InputError(where + "no text field; add \"input\" (or text/query/prompt)");
}

}  // namespace tracer::cli
