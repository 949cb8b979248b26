#include "cli/input_lines.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include "io/traces.hpp"
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
  if (auto m = j.find("metadata"); m != j.end() && m->is_object()) {
    Trace t;
    t.metadata = m->dump();
    out.represents_traffic = represents_traffic(t);
  }
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

void for_each_input_line(const std::string& path,
                         const std::function<void(InputLine&&, size_t line_no)>& fn) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status))
    throw InputError(fmt::format("\"{}\" does not exist; check the path", path));
  if (!std::filesystem::is_regular_file(status))
    throw InputError(fmt::format(
        "\"{}\" is not a regular file (a directory, device, FIFO or socket); pass a JSONL file "
        "of texts (copy a stream to a file first)",
        path));
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(fmt::format("cannot open \"{}\": {}", path, std::strerror(errno)));
  std::vector<char> buf(kMaxInputLineBytes + 2);
  size_t no = 0;
  while (true) {
    in.getline(buf.data(), static_cast<std::streamsize>(buf.size()));
    const auto got = in.gcount();
    if (in.bad())
      throw InputError(fmt::format("error while reading \"{}\" after line {}: {}", path, no,
                                   std::strerror(errno)));
    if (in.fail() && !in.eof()) {
      // getline filled the buffer without finding the end of the line.
      throw InputError(fmt::format(
          "{}:{}: the line is longer than {} MiB; each line holds one text to route as JSON", path,
          no + 1, kMaxInputLineBytes >> 20));
    }
    if (got == 0 && in.eof()) break;
    ++no;
    // gcount counts the newline getline consumed (not stored).
    std::string line(buf.data(), static_cast<size_t>(got) - (in.eof() ? 0 : 1));
    if (line.find_first_not_of(" \t\r") != std::string::npos)
      fn(parse_input_line(line, path, no), no);
    if (in.eof()) break;
  }
}

}  // namespace tracer::cli
