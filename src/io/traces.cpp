#include "io/traces.hpp"

#include <fmt/format.h>
#include <utf8proc.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cfloat>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "io/chunked_reader.hpp"
#include "io/csv.hpp"
#include "io/utf8.hpp"
#include "util/error.hpp"
#include "util/json_kind.hpp"

namespace tracer {
namespace {

using nlohmann::json;

constexpr std::array<std::string_view, 4> kInputKeys = {"input", "text", "query", "prompt"};
constexpr std::array<std::string_view, 3> kLabelKeys = {"teacher", "label", "output"};
// nlohmann::json::dump recurses; deep metadata could otherwise overflow the stack.
constexpr size_t kMaxMetadataDepth = 64;
constexpr std::string_view kExample = R"({"input": "...", "teacher": "..."})";

enum class Format { kJsonl, kCsv };

std::string lower_ascii(std::string s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return s;
}

std::string_view trim_ascii(std::string_view s) {
  const auto first = s.find_first_not_of(" \t\r\n\f\v");
  if (first == std::string_view::npos) return {};
  const auto last = s.find_last_not_of(" \t\r\n\f\v");
  return s.substr(first, last - first + 1);
}

// Cuts `s` to at most `max` bytes on a UTF-8 boundary, marking the cut.
std::string shorten(std::string_view s, size_t max) {
  if (s.size() <= max) return std::string(s);
  size_t cut = max;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  return std::string(s.substr(0, cut)) + "...";
}

// A label or column name quoted for a message, with control characters made visible.
std::string in_quotes(std::string_view s) {
  std::string out = "\"";
  for (const char ch : shorten(s, 80)) {
    const auto c = static_cast<unsigned char>(ch);
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20 || c == 0x7F) {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

std::string keys_list(std::span<const std::string_view> keys) {
  std::string out;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (i > 0) out += i + 1 == keys.size() ? " or " : ", ";
    out += in_quotes(keys[i]);
  }
  return out;
}

std::string invalid_utf8_reason(std::string_view what, size_t offset) {
  return fmt::format(
      "{} is not valid UTF-8 (bad byte at offset {}); tracer reads UTF-8 text: convert the file, "
      "e.g. `iconv -f latin1 -t utf-8 FILE > FILE.utf8`",
      what, offset);
}

// nlohmann's messages start with "[json.exception.parse_error.101] parse error at line 1, ";
// keep the column and the description, shortened.
std::string clean_parse_error(std::string_view what) {
  if (const auto p = what.find("] "); p != std::string_view::npos) what.remove_prefix(p + 2);
  constexpr std::string_view kLine1 = "parse error at line 1, ";
  if (what.starts_with(kLine1)) what.remove_prefix(kLine1.size());
  return shorten(what, 200);
}

size_t json_depth(const json& root) {
  std::vector<std::pair<const json*, size_t>> stack = {{&root, 1}};
  size_t deepest = 0;
  while (!stack.empty()) {
    const auto [node, depth] = stack.back();
    stack.pop_back();
    deepest = std::max(deepest, depth);
    if (depth > kMaxMetadataDepth) break;
    if (node->is_structured()) {
      for (const auto& child : *node) stack.emplace_back(&child, depth + 1);
    }
  }
  return deepest;
}

// Converts one embedding value, rejecting values a float cannot hold (the cast would be UB).
bool to_float(double v, float* out) {
  if (!std::isfinite(v) || std::fabs(v) > static_cast<double>(FLT_MAX)) return false;
  *out = static_cast<float>(v);
  return true;
}

std::string embedding_from_json(const json& j, std::vector<float>* out) {
  if (!j.is_array()) {
    return fmt::format(
        "\"embedding\" is {}, not an array of numbers; write it as [0.12, -0.5, ...] or leave "
        "the field out",
        json_kind(j));
  }
  if (j.empty()) {
    return "\"embedding\" is an empty array; give the vector's numbers or leave the field out";
  }
  out->clear();
  out->reserve(j.size());
  for (size_t i = 0; i < j.size(); ++i) {
    const json& v = j[i];
    float f = 0;
    if (!v.is_number()) {
      return fmt::format(
          "\"embedding\"[{}] is {}, not a number; the embedding must be an array of numbers", i,
          json_kind(v));
    }
    if (!to_float(v.get<double>(), &f)) {
      return fmt::format("\"embedding\"[{}] = {} does not fit a 32-bit float; rescale the vector",
                         i, shorten(v.dump(), 40));
    }
    out->push_back(f);
  }
  return {};
}

// CSV embeddings: a JSON array ("[0.1, 0.2]"), or numbers separated by spaces, commas,
// semicolons or tabs ("0.1 0.2", "0.1,0.2" inside a quoted field). An empty cell means none.
std::string embedding_from_text(std::string_view cell, std::vector<float>* out) {
  const std::string_view s = trim_ascii(cell);
  out->clear();
  if (s.empty()) return {};
  if (s.front() == '[') {
    const json j = json::parse(s, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) {
      return "the \"embedding\" column starts with '[' but is not a valid JSON array; write it "
             "as [0.12, -0.5, ...] or as numbers separated by spaces";
    }
    return embedding_from_json(j, out);
  }
  constexpr std::string_view kSeparators = " \t\r\n,;";
  size_t i = 0;
  while (i < s.size()) {
    i = s.find_first_not_of(kSeparators, i);
    if (i == std::string_view::npos) break;
    size_t end = s.find_first_of(kSeparators, i);
    if (end == std::string_view::npos) end = s.size();
    const std::string_view token = s.substr(i, end - i);
    double v = 0;
    const auto [ptr, ec] = std::from_chars(token.data(), token.data() + token.size(), v);
    float f = 0;
    if (ec != std::errc() || ptr != token.data() + token.size() || !to_float(v, &f)) {
      return fmt::format(
          "the \"embedding\" column has {} at position {}, which is not a finite number; write "
          "the vector as [0.12, -0.5, ...] or as numbers separated by spaces",
          in_quotes(token), out->size());
    }
    out->push_back(f);
    i = end;
  }
  return {};
}

// Checks shared by both formats once input and label are known to be strings.
std::string check_text(const Trace& t, std::string_view input_key, std::string_view label_key,
                       const ReadOptions& options) {
  if (is_blank_text(t.input)) {
    return fmt::format(
        "input field {} is empty; every trace needs the text the LLM classified as a non-empty "
        "string",
        in_quotes(input_key));
  }
  if (is_blank_text(t.teacher)) {
    return fmt::format(
        "label field {} is empty; every trace needs the LLM's label as a non-empty string",
        in_quotes(label_key));
  }
  if (t.input.size() > options.max_input_bytes) {
    return fmt::format(
        "input field {} is {} bytes, over the limit of {} bytes; shorten the text or raise the "
        "input size limit",
        in_quotes(input_key), t.input.size(), options.max_input_bytes);
  }
  if (t.teacher.size() > options.max_label_bytes) {
    return fmt::format(
        "label field {} is {} bytes, over the limit of {} bytes; labels should be short class "
        "names (does the field hold the LLM's whole response instead of the label?)",
        in_quotes(label_key), t.teacher.size(), options.max_label_bytes);
  }
  if (t.gold && t.gold->size() > options.max_label_bytes) {
    return fmt::format("\"gold\" is {} bytes, over the label limit of {} bytes; shorten it",
                       t.gold->size(), options.max_label_bytes);
  }
  return {};
}

// Finds the first alias present in `obj`; `*used` names it.
const json* find_alias(const json& obj, std::span<const std::string_view> keys,
                       std::string_view* used) {
  for (const std::string_view key : keys) {
    const auto it = obj.find(key);
    if (it != obj.end()) {
      *used = key;
      return &*it;
    }
  }
  return nullptr;
}

// Reads a required string field (input or label); returns the reason when it is unusable.
std::string required_string(const json& obj, std::span<const std::string_view> keys, bool is_label,
                            std::string* out, std::string_view* used) {
  const std::string_view role = is_label ? "label" : "input";
  const std::string_view need = is_label ? "the LLM's label" : "the text the LLM classified";
  const json* v = find_alias(obj, keys, used);
  if (v == nullptr) {
    return fmt::format("no {} field; add {} (or {}) with {}", role, in_quotes(keys[0]),
                       keys_list(keys.subspan(1)), need);
  }
  if (v->is_string()) {
    *out = v->get<std::string>();
    return {};
  }
  if (v->is_null()) {
    return fmt::format("{} field {} is null; every trace needs {} as a non-empty string", role,
                       in_quotes(*used), need);
  }
  if (v->is_number() || v->is_boolean()) {
    return fmt::format(
        "{} field {} is {} ({}), not a string; write it as a JSON string, e.g. "
        "{}: \"{}\"",
        role, in_quotes(*used), json_kind(*v), v->dump(), in_quotes(*used), v->dump());
  }
  return fmt::format("{} field {} is {}, not a string; every trace needs {} as one JSON string",
                     role, in_quotes(*used), json_kind(*v), need);
}

std::string parse_json_line(std::string_view line, const ReadOptions& options, Trace* t) {
  if (const size_t bad = invalid_utf8_offset(line); bad != std::string_view::npos) {
    return invalid_utf8_reason("the line", bad);
  }
  json j;
  try {
    j = json::parse(line);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for numbers like 1e999
    return fmt::format("malformed JSON ({}); each line must be one complete JSON object such as {}",
                       clean_parse_error(e.what()), kExample);
  }
  if (!j.is_object()) {
    std::string hint;
    if (j.is_array()) hint = " (a file holding one JSON array must be rewritten as JSON Lines)";
    return fmt::format("expected a JSON object, got {}{}; each line must be one object such as {}",
                       json_kind(j), hint, kExample);
  }
  std::string_view input_key, label_key;
  if (auto r = required_string(j, kInputKeys, false, &t->input, &input_key); !r.empty()) return r;
  if (auto r = required_string(j, kLabelKeys, true, &t->teacher, &label_key); !r.empty()) {
    return r;
  }
  if (const auto it = j.find("id"); it != j.end() && !it->is_null()) {
    if (it->is_string()) {
      t->id = it->get<std::string>();
    } else if (it->is_number()) {
      t->id = it->dump();
    } else {
      return fmt::format("\"id\" is {}; write the id as a string or a number", json_kind(*it));
    }
  }
  if (const auto it = j.find("gold"); it != j.end() && !it->is_null()) {
    if (!it->is_string()) {
      return fmt::format("\"gold\" is {}; write the human label as a string, or null when unknown",
                         json_kind(*it));
    }
    // An empty gold label means "not labelled", as an empty CSV cell does.
    if (auto g = it->get<std::string>(); !is_blank_text(g)) t->gold = std::move(g);
  }
  if (const auto it = j.find("embedding"); it != j.end() && !it->is_null()) {
    if (auto r = embedding_from_json(*it, &t->embedding); !r.empty()) return r;
  }
  if (const auto it = j.find("metadata"); it != j.end() && !it->is_null()) {
    if (json_depth(*it) > kMaxMetadataDepth) {
      return fmt::format("\"metadata\" is nested more than {} levels deep; flatten it",
                         kMaxMetadataDepth);
    }
    t->metadata = it->dump();
  }
  return check_text(*t, input_key, label_key, options);
}

// Column positions found in a CSV header; -1 when absent.
struct Columns {
  size_t count = 0;
  int input = -1, label = -1, id = -1, gold = -1, embedding = -1, metadata = -1;
  std::string_view input_name, label_name;
};

Columns map_header(const CsvRecord& header, const std::string& path) {
  const std::string where = fmt::format("{}:{}", path, header.line);
  if (!header.error.empty() || header.too_long) {
    throw InputError(fmt::format("{}: the CSV header row is malformed: {}", where,
                                 header.too_long ? "it is too long" : header.error));
  }
  std::vector<std::string> names;
  for (const auto& f : header.fields) names.push_back(lower_ascii(std::string(trim_ascii(f))));
  auto position = [&](std::string_view name) {
    int found = -1;
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] != name) continue;
      if (found >= 0) {
        throw InputError(fmt::format(
            "{}: column {} appears twice in the header (columns {} and {}); rename or remove one",
            where, in_quotes(name), found + 1, i + 1));
      }
      found = static_cast<int>(i);
    }
    return found;
  };
  Columns cols;
  cols.count = names.size();
  for (const auto key : kInputKeys) {
    if (const int p = position(key); p >= 0 && cols.input < 0) {
      cols.input = p;
      cols.input_name = key;
    }
  }
  for (const auto key : kLabelKeys) {
    if (const int p = position(key); p >= 0 && cols.label < 0) {
      cols.label = p;
      cols.label_name = key;
    }
  }
  cols.id = position("id");
  cols.gold = position("gold");
  cols.embedding = position("embedding");
  cols.metadata = position("metadata");
  if (cols.input >= 0 && cols.label >= 0) return cols;

  std::string found;
  for (size_t i = 0; i < header.fields.size() && i < 20; ++i) {
    found += (i ? ", " : "") + in_quotes(header.fields[i]);
  }
  std::string hint;
  if (header.fields.size() == 1 && header.fields[0].find_first_of("\t;") != std::string::npos) {
    hint = " (the header looks tab- or semicolon-separated; tracer reads comma-separated files)";
  }
  const bool no_input = cols.input < 0;
  throw InputError(fmt::format(
      "{}: the CSV header has no {} column; add a column named {} (or {}) holding {}. Columns "
      "found: {}{}",
      where, no_input ? "input" : "label", in_quotes(no_input ? kInputKeys[0] : kLabelKeys[0]),
      keys_list(no_input ? std::span<const std::string_view>(kInputKeys).subspan(1)
                         : std::span<const std::string_view>(kLabelKeys).subspan(1)),
      no_input ? "the text the LLM classified" : "the LLM's label", found, hint));
}

std::string parse_csv_record(const CsvRecord& rec, const Columns& cols, const ReadOptions& options,
                             Trace* t) {
  if (rec.fields.size() != cols.count) {
    return fmt::format(
        "the record has {} fields but the header has {}; quote fields that contain commas, "
        "quotes or line breaks (\"like, this\")",
        rec.fields.size(), cols.count);
  }
  auto cell = [&](int col, std::string_view name, std::string* out) -> std::string {
    const std::string& v = rec.fields[static_cast<size_t>(col)];
    if (const size_t bad = invalid_utf8_offset(v); bad != std::string_view::npos) {
      return invalid_utf8_reason(fmt::format("field {}", in_quotes(name)), bad);
    }
    *out = v;
    return {};
  };
  if (auto r = cell(cols.input, cols.input_name, &t->input); !r.empty()) return r;
  if (auto r = cell(cols.label, cols.label_name, &t->teacher); !r.empty()) return r;
  if (cols.id >= 0) {
    if (auto r = cell(cols.id, "id", &t->id); !r.empty()) return r;
  }
  if (cols.gold >= 0) {
    std::string gold;
    if (auto r = cell(cols.gold, "gold", &gold); !r.empty()) return r;
    if (!is_blank_text(gold)) t->gold = std::move(gold);
  }
  if (cols.embedding >= 0) {
    const auto& v = rec.fields[static_cast<size_t>(cols.embedding)];
    if (auto r = embedding_from_text(v, &t->embedding); !r.empty()) return r;
  }
  if (cols.metadata >= 0) {
    // A cell holding JSON is kept as compact JSON; any other text becomes a JSON string.
    std::string text;
    if (auto r = cell(cols.metadata, "metadata", &text); !r.empty()) return r;
    if (!trim_ascii(text).empty()) {
      const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
      const bool usable = !j.is_discarded() && json_depth(j) <= kMaxMetadataDepth;
      t->metadata = usable ? j.dump() : json(text).dump();
    }
  }
  return check_text(*t, cols.input_name, cols.label_name, options);
}

// Bookkeeping shared by both formats: counts, the first reasons, one embedding width across the
// file, and forwarding good traces to the sink.
class Collector {
 public:
  Collector(const std::string& path, const ReadOptions& options,
            const std::function<void(Trace&&)>& sink, ReadReport* report)
      : path_(path), options_(options), sink_(sink), report_(*report) {
    report_ = ReadReport{};
    report_.path = path;
  }

  void seen() { ++report_.lines; }

  void bad(size_t line, std::string_view reason) {
    ++bad_;
    if (options_.skip_invalid) ++report_.skipped;
    if (report_.errors.size() < options_.max_errors_reported) {
      report_.errors.push_back(fmt::format("{}:{}: {}", path_, line, reason));
    }
  }

  void good(Trace&& t) {
    const size_t width = t.embedding.size();
    if (!width_known_) {
      width_known_ = true;
      width_ = width;
      width_line_ = t.line;
    } else if (width != width_) {
      bad(t.line, width_mismatch(width));
      return;
    }
    ++report_.accepted;
    // Without skip_invalid the file is rejected after the first bad record, so stop feeding it.
    if (bad_ == 0 || options_.skip_invalid) sink_(std::move(t));
  }

  // Throws when the file is rejected: bad records without skip_invalid, or no valid trace.
  void finish(std::string_view unit, std::string_view empty_message) const {
    const size_t records = report_.accepted + bad_;
    if (bad_ > 0 && !options_.skip_invalid) {
      throw InputError(fmt::format(
          "{}: {} of {} {}{} {} invalid; fix these lines or pass --skip-invalid to skip them:{}",
          path_, bad_, records, unit, records == 1 ? "" : "s", bad_ == 1 ? "is" : "are",
          listing()));
    }
    if (report_.accepted == 0) {
      if (bad_ > 0) {
        throw InputError(fmt::format("{}: no valid traces: all {} {}{} are invalid:{}", path_, bad_,
                                     unit, bad_ == 1 ? "" : "s", listing()));
      }
      throw InputError(fmt::format("{}: {}", path_, empty_message));
    }
  }

 private:
  std::string width_mismatch(size_t width) const {
    if (width_ == 0) {
      return fmt::format(
          "this trace has an \"embedding\" of width {} but the first trace (line {}) has none; "
          "give every trace an embedding or none",
          width, width_line_);
    }
    if (width == 0) {
      return fmt::format(
          "this trace has no \"embedding\" but the first trace (line {}) has one of width {}; "
          "give every trace an embedding of width {} or none",
          width_line_, width_, width_);
    }
    return fmt::format(
        "\"embedding\" has {} numbers but the first trace (line {}) has {}; every embedding must "
        "have the same width (were two embedding models mixed?)",
        width, width_line_, width_);
  }

  std::string listing() const {
    std::string out;
    for (const auto& e : report_.errors) out += "\n  " + e;
    if (bad_ > report_.errors.size()) {
      out += fmt::format("\n  ... and {} more", bad_ - report_.errors.size());
    }
    return out;
  }

  const std::string& path_;
  const ReadOptions& options_;
  const std::function<void(Trace&&)>& sink_;
  ReadReport& report_;
  size_t bad_ = 0;
  bool width_known_ = false;
  size_t width_ = 0;
  size_t width_line_ = 0;
};

Format format_of(const std::string& path) {
  const std::string ext = lower_ascii(std::filesystem::path(path).extension().string());
  if (ext == ".jsonl" || ext == ".ndjson" || ext == ".json") return Format::kJsonl;
  if (ext == ".csv") return Format::kCsv;
  throw InputError(fmt::format(
      "cannot tell the format of \"{}\" from its extension {}; supported: .jsonl, .ndjson, .json "
      "(one JSON object per line) and .csv (with a header row) - rename the file",
      path, ext.empty() ? std::string("(none)") : in_quotes(ext)));
}

std::ifstream open_trace_file(const std::string& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status)) {
    throw InputError(fmt::format("trace file \"{}\" does not exist; check the path", path));
  }
  if (std::filesystem::is_directory(status)) {
    throw InputError(
        fmt::format("\"{}\" is a directory; pass a trace file (.jsonl or .csv)", path));
  }
  if (!std::filesystem::is_regular_file(status)) {
    // /dev/zero, a FIFO or a socket would be read forever or block.
    throw InputError(fmt::format(
        "\"{}\" is not a regular file (a device, FIFO or socket); pass a trace file on disk "
        "(copy a stream to a file first)",
        path));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw InputError(fmt::format("cannot open trace file \"{}\": {}; check its permissions", path,
                                 std::strerror(errno)));
  }
  return in;
}

// Rejects UTF-16/32 files up front (every line would fail otherwise) and skips a UTF-8 BOM.
void skip_byte_order_mark(ChunkedReader& reader, const std::string& path) {
  const std::string_view head = reader.peek_buffer();
  if (head.starts_with("\xEF\xBB\xBF")) {
    reader.skip(3);
  } else if (head.starts_with("\xFF\xFE") || head.starts_with("\xFE\xFF") ||
             head.starts_with(std::string_view("\x00\x00\xFE\xFF", 4))) {
    throw InputError(
        fmt::format("\"{}\" is encoded as UTF-16 or UTF-32; tracer reads UTF-8: convert it, e.g. "
                    "`iconv -f utf-16 -t utf-8 FILE > FILE.utf8`",
                    path));
  }
}

void read_jsonl(ChunkedReader& reader, const ReadOptions& options, Collector& collector) {
  const size_t limit = options.max_line_bytes;
  // One spare byte so a line of exactly `limit` bytes plus its CR still fits.
  const size_t keep = limit == SIZE_MAX ? limit : limit + 1;
  std::string line;
  bool truncated = false;
  size_t number = 0;
  while (reader.read_line(line, keep, &truncated)) {
    ++number;
    collector.seen();
    if (!truncated && !line.empty() && line.back() == '\r') line.pop_back();
    if (truncated || line.size() > limit) {
      collector.bad(number,
                    fmt::format("the line is longer than the limit of {} bytes; each line must "
                                "hold one trace as a JSON object",
                                limit));
      continue;
    }
    if (trim_ascii(line).empty()) continue;
    Trace trace;
    trace.line = number;
    if (auto reason = parse_json_line(line, options, &trace); !reason.empty()) {
      collector.bad(number, reason);
    } else {
      collector.good(std::move(trace));
    }
  }
}

// Returns false when the file has no header row.
bool read_csv(ChunkedReader& reader, const std::string& path, const ReadOptions& options,
              Collector& collector) {
  CsvReader csv(reader, options.max_line_bytes);
  CsvRecord rec;
  std::optional<Columns> cols;
  while (csv.next(rec)) {
    if (!cols) {
      if (!rec.blank()) cols = map_header(rec, path);
      continue;
    }
    collector.seen();
    if (rec.blank()) continue;
    if (rec.too_long) {
      collector.bad(rec.line,
                    fmt::format("the record is longer than the limit of {} bytes; look for a "
                                "quote that is never closed",
                                options.max_line_bytes));
      continue;
    }
    if (!rec.error.empty()) {
      collector.bad(rec.line, rec.error);
      continue;
    }
    Trace trace;
    trace.line = rec.line;
    if (auto reason = parse_csv_record(rec, *cols, options, &trace); !reason.empty()) {
      collector.bad(rec.line, reason);
    } else {
      collector.good(std::move(trace));
    }
  }
  return cols.has_value();
}

}  // namespace

void stream_traces(const std::string& path, const ReadOptions& options,
                   const std::function<void(Trace&&)>& sink, ReadReport* report) {
  std::ifstream in = open_trace_file(path);
  const Format format = format_of(path);
  ChunkedReader reader(in);
  skip_byte_order_mark(reader, path);
  ReadReport local;
  Collector collector(path, options, sink, report != nullptr ? report : &local);
  if (format == Format::kJsonl) {
    read_jsonl(reader, options, collector);
  } else if (!read_csv(reader, path, options, collector)) {
    throw InputError(fmt::format(
        "\"{}\" is empty; a CSV trace file starts with a header row naming its columns, e.g. "
        "input,teacher",
        path));
  }
  if (reader.failed()) {
    throw InputError(fmt::format("error while reading \"{}\": {}", path, std::strerror(errno)));
  }
  if (format == Format::kJsonl) {
    collector.finish("line", fmt::format("no traces found (the file is empty or has only blank "
                                         "lines); write one JSON object per line such as {}",
                                         kExample));
  } else {
    collector.finish("record",
                     "the CSV file has a header row but no records; add one row per trace");
  }
}

std::vector<size_t> TraceSet::label_counts() const {
  std::vector<size_t> counts(labels.size(), 0);
  for (const int label : y) ++counts[static_cast<size_t>(label)];
  return counts;
}

TraceSet read_traces(const std::string& path, const ReadOptions& options, ReadReport* report) {
  return read_trace_files({path}, options, report);
}

TraceSet read_trace_files(const std::vector<std::string>& paths, const ReadOptions& options,
                          ReadReport* report) {
  if (paths.empty()) throw InputError("no trace files given");
  // One file given twice would log every call twice: the gate counts copies once, but the
  // memory tier would take them for repeated LLM calls that agree with each other.
  for (size_t i = 0; i < paths.size(); ++i)
    for (size_t j = 0; j < i; ++j) {
      std::error_code ec;
      if (std::filesystem::equivalent(paths[i], paths[j], ec) && !ec)
        throw InputError("trace file \"" + paths[i] + "\" is given twice (as \"" + paths[j] +
                         "\"); give each file once: every line is read as one LLM call");
    }
  TraceSet set;
  ReadReport total;
  for (const auto& path : paths) {
    ReadReport one;
    const size_t before = set.traces.size();
    auto add = [&total](const ReadReport& r) {
      total.path = total.path.empty() ? r.path : total.path + "," + r.path;
      total.lines += r.lines;
      total.accepted += r.accepted;
      total.skipped += r.skipped;
      total.errors.insert(total.errors.end(), r.errors.begin(), r.errors.end());
    };
    try {
      stream_traces(
          path, options, [&set](Trace&& t) { set.traces.push_back(std::move(t)); }, &one);
    } catch (const InputError&) {
      // The caller's report still lists what was wrong, as with one file.
      add(one);
      if (report) *report = std::move(total);
      throw;
    }
    if (before > 0 && set.traces.size() > before &&
        set.traces[before].embedding.size() != set.traces.front().embedding.size())
      throw InputError(fmt::format(
          "{} has embeddings of width {} but {} has width {}; all trace files must agree", path,
          set.traces[before].embedding.size(), paths.front(), set.traces.front().embedding.size()));
    add(one);
  }
  if (report) *report = std::move(total);

  std::unordered_set<std::string_view> distinct;
  for (const auto& t : set.traces) distinct.insert(t.teacher);
  set.labels.assign(distinct.begin(), distinct.end());
  std::sort(set.labels.begin(), set.labels.end());
  std::unordered_map<std::string_view, int> index;
  for (size_t i = 0; i < set.labels.size(); ++i) index.emplace(set.labels[i], static_cast<int>(i));
  set.y.reserve(set.traces.size());
  for (const auto& t : set.traces) set.y.push_back(index.at(t.teacher));
  set.embedding_dim = set.traces.empty() ? 0 : set.traces.front().embedding.size();
  return set;
}

void check_label_counts(const TraceSet& set, size_t min_per_label) {
  if (set.labels.size() < 2) {
    throw InputError(fmt::format(
        "{}; a classifier needs at least two labels to choose between - check that the label "
        "field holds the LLM's label for each trace",
        set.labels.empty() ? std::string("there are no traces")
                           : fmt::format("all {} traces have the same label {}", set.size(),
                                         in_quotes(set.labels.front()))));
  }
  const auto counts = set.label_counts();
  std::vector<size_t> rare;
  for (size_t i = 0; i < counts.size(); ++i) {
    if (counts[i] < min_per_label) rare.push_back(i);
  }
  if (rare.empty()) return;
  std::stable_sort(rare.begin(), rare.end(),
                   [&](size_t a, size_t b) { return counts[a] < counts[b]; });
  constexpr size_t kShown = 10;
  std::string list;
  for (size_t k = 0; k < rare.size() && k < kShown; ++k) {
    list +=
        fmt::format("{}{} ({})", k ? ", " : "", in_quotes(set.labels[rare[k]]), counts[rare[k]]);
  }
  if (rare.size() > kShown) list += fmt::format(", and {} more", rare.size() - kShown);
  throw InputError(fmt::format(
      "{} of {} labels {} fewer than {} traces: {}; collect more traces for {}, or merge "
      "{} into related labels or drop {}",
      rare.size(), set.labels.size(), rare.size() == 1 ? "has" : "have", min_per_label, list,
      rare.size() == 1 ? "it" : "them", rare.size() == 1 ? "it" : "them",
      rare.size() == 1 ? "it" : "them"));
}

bool represents_traffic(const Trace& t) {
  if (t.metadata.find("\"decision\"") == std::string::npos) return true;
  const auto m = nlohmann::json::parse(t.metadata, nullptr, false);
  if (!m.is_object()) return true;
  const auto d = m.find("decision");
  if (d == m.end() || !d->is_string() || d->get_ref<const std::string&>().empty()) return true;
  const auto s = m.find("sampled");
  return s != m.end() && s->is_boolean() && s->get<bool>();
}

bool is_surrogate_answer(const Trace& t) {
  if (t.metadata.find("\"handled\"") == std::string::npos) return false;
  const auto m = nlohmann::json::parse(t.metadata, nullptr, false);
  if (!m.is_object()) return false;
  const auto d = m.find("decision");
  if (d == m.end() || !d->is_string() || *d != "handled") return false;
  const auto src = m.find("source");
  if (src != m.end() && src->is_string() && *src == "audit") return false;
  const auto sm = m.find("sampled");
  return !(sm != m.end() && sm->is_boolean() && sm->get<bool>());
}

}  // namespace tracer
