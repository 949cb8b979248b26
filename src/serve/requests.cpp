#include "serve/requests.hpp"

#include <re2/re2.h>

#include "util/error.hpp"

namespace tracer::serve {
namespace {

using nlohmann::json;

constexpr const char* kInvalid = "invalid_request_error";
constexpr const char* kTooLarge = "request_too_large";
// The part of an answer the label regex reads: labels come first, and the bound keeps the cost
// of one answer fixed (RE2 is linear in it).
constexpr size_t kMaxRegexInput = 8 * 1024;

ApiError invalid(const std::string& message) { return ApiError(400, kInvalid, message); }

json parse_object(std::string_view body) {
  json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded())
    throw invalid("the request body is not valid JSON (UTF-8); send a JSON object");
  if (!j.is_object()) throw invalid("the request body must be a JSON object");
  return j;
}

void reject_vectors(const json& j) {
  for (const char* key : {"vector", "embedding", "vectors", "embeddings"})
    if (j.contains(key))
      throw invalid(std::string("this server routes text: precomputed vectors (\"") + key +
                    "\") are not supported because the policy's featurizer reads text; send "
                    "{\"text\": \"...\"} instead");
}

void check_text_size(size_t bytes, const RequestLimits& limits, const std::string& what) {
  if (bytes > limits.max_text_bytes)
    throw ApiError(413, kTooLarge,
                   what + " is " + std::to_string(bytes) + " bytes; the limit is " +
                       std::to_string(limits.max_text_bytes) + " (--max-text-bytes)");
}

const json* find_first(const json& j, std::initializer_list<const char*> keys, const char** found) {
  for (const char* k : keys) {
    auto it = j.find(k);
    if (it != j.end()) {
      *found = k;
      return &*it;
    }
  }
  return nullptr;
}

}  // namespace

std::string error_body(std::string_view message, std::string_view type) {
  // OpenAI's error shape: message, type, param, code.
  json j{{"error", {{"message", message}, {"type", type}, {"param", nullptr}, {"code", nullptr}}}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string_view trim(std::string_view s) {
  constexpr std::string_view ws = " \t\r\n\v\f";
  size_t b = s.find_first_not_of(ws);
  if (b == std::string_view::npos) return {};
  size_t e = s.find_last_not_of(ws);
  return s.substr(b, e - b + 1);
}

RouteRequest parse_route_request(std::string_view body, const RequestLimits& limits) {
  json j = parse_object(body);
  reject_vectors(j);
  const char* key = nullptr;
  const json* t = find_first(j, {"text", "input"}, &key);
  if (!t) throw invalid("missing \"text\": send {\"text\": \"...\"} (or \"input\")");
  if (t->is_array())
    throw invalid(std::string("\"") + key +
                  "\" must be one string; send several texts to "
                  "/v1/route/batch as {\"texts\": [...]}");
  if (!t->is_string()) throw invalid(std::string("\"") + key + "\" must be a string");
  RouteRequest r;
  r.text = t->get<std::string>();
  check_text_size(r.text.size(), limits, "the text");
  auto id = j.find("id");
  if (id != j.end() && !id->is_null()) {
    if (!id->is_string() && !id->is_number()) throw invalid("\"id\" must be a string or a number");
    r.id = *id;
  }
  return r;
}

AuditRequest parse_audit_request(std::string_view body, const RequestLimits& limits) {
  RouteRequest rq = parse_route_request(body, limits);
  json j = parse_object(body);
  const char* key = nullptr;
  const json* l = find_first(j, {"label", "teacher"}, &key);
  if (!l)
    throw invalid(
        "missing \"label\": send {\"text\": \"...\", \"label\": \"<the LLM's label for the "
        "text>\"}");
  if (!l->is_string()) throw invalid(std::string("\"") + key + "\" must be a string");
  AuditRequest r;
  r.label = std::string(trim(l->get_ref<const std::string&>()));
  if (r.label.empty()) throw invalid(std::string("\"") + key + "\" must not be empty");
  check_text_size(r.label.size(), limits, "the label");
  r.text = std::move(rq.text);
  r.id = std::move(rq.id);
  return r;
}

std::vector<std::string> parse_batch_request(std::string_view body, const RequestLimits& limits) {
  json j = parse_object(body);
  reject_vectors(j);
  const char* key = nullptr;
  const json* t = find_first(j, {"texts", "inputs"}, &key);
  if (!t) throw invalid("missing \"texts\": send {\"texts\": [\"...\", ...]}");
  if (!t->is_array()) throw invalid(std::string("\"") + key + "\" must be an array of strings");
  if (t->size() > limits.max_batch)
    throw ApiError(413, kTooLarge,
                   "the batch has " + std::to_string(t->size()) + " texts; the limit is " +
                       std::to_string(limits.max_batch) + " (--max-batch); split it");
  std::vector<std::string> texts;
  texts.reserve(t->size());
  for (size_t i = 0; i < t->size(); ++i) {
    const json& v = (*t)[i];
    if (!v.is_string())
      throw invalid(std::string("\"") + key + "\"[" + std::to_string(i) + "] must be a string");
    texts.push_back(v.get<std::string>());
    check_text_size(texts.back().size(), limits, "text " + std::to_string(i));
  }
  return texts;
}

TextFrom parse_text_from(std::string_view name) {
  if (name == "last-user") return TextFrom::kLastUser;
  if (name == "all-user") return TextFrom::kAllUser;
  if (name == "system+last-user") return TextFrom::kSystemLastUser;
  throw InputError("unknown --text-from '" + std::string(name) +
                   "'; choose last-user, all-user or system+last-user");
}

std::string text_from_name(TextFrom t) {
  switch (t) {
    case TextFrom::kLastUser:
      return "last-user";
    case TextFrom::kAllUser:
      return "all-user";
    case TextFrom::kSystemLastUser:
      return "system+last-user";
  }
  return "";
}

std::string content_text(const json& content, std::string* other_part) {
  if (content.is_null()) return {};
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array())
    throw invalid("a message \"content\" must be a string or an array of content parts");
  std::string out;
  bool first = true;
  for (const json& part : content) {
    if (!part.is_object()) throw invalid("each content part must be an object with a \"type\"");
    auto type = part.find("type");
    if (type == part.end() || !type->is_string())
      throw invalid("each content part needs a string \"type\"");
    if (*type != "text") {  // images, audio, files: not text the surrogate can read
      if (other_part && other_part->empty()) *other_part = type->get<std::string>();
      continue;
    }
    auto text = part.find("text");
    if (text == part.end() || !text->is_string())
      throw invalid("a content part of type \"text\" needs a string \"text\"");
    if (!first) out += '\n';
    out += text->get_ref<const std::string&>();
    first = false;
  }
  return out;
}

namespace {

std::string join_lines(const std::vector<std::string>& parts) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? "\n" : "") + parts[i];
  return out;
}

// The request's generation options a label cannot honour (sets r.unsupported / r.recordable).
void screen_options(const json& j, ChatRequest& r) {
  auto flag = [&](const std::string& what, bool recordable) {
    if (r.unsupported.empty()) r.unsupported = what;
    r.recordable = r.recordable && recordable;
  };
  auto n = j.find("n");
  if (n != j.end() && !n->is_null()) {
    if (!n->is_number_integer() || n->get<int64_t>() < 1)
      throw invalid("\"n\" must be a positive integer");
    if (n->get<int64_t>() != 1) flag("n = " + std::to_string(n->get<int64_t>()), true);
  }
  auto choice = j.find("tool_choice");
  const bool tools_off = choice != j.end() && choice->is_string() && *choice == "none";
  for (const char* key : {"tools", "functions"}) {
    auto t = j.find(key);
    if (t != j.end() && !t->is_null() && !(t->is_array() && t->empty()) && !tools_off)
      flag(key, false);
  }
  auto format = j.find("response_format");
  if (format != j.end() && !format->is_null()) {
    if (!format->is_object() || !format->contains("type") || !(*format)["type"].is_string())
      throw invalid("\"response_format\" must be an object with a string \"type\"");
    r.response_format = (*format)["type"].get<std::string>();
    if (r.response_format != "text" && r.response_format != "json_object")
      flag("response_format " + r.response_format, false);
  }
  auto logprobs = j.find("logprobs");
  if (logprobs != j.end() && logprobs->is_boolean() && logprobs->get<bool>())
    flag("logprobs", true);
  auto top = j.find("top_logprobs");
  if (top != j.end() && top->is_number() && top->get<double>() > 0) flag("top_logprobs", true);
  auto stop = j.find("stop");
  if (stop != j.end() && !stop->is_null()) {
    if (stop->is_string()) {
      r.stop.push_back(stop->get<std::string>());
    } else if (stop->is_array()) {
      for (const json& s : *stop) {
        if (!s.is_string()) throw invalid("\"stop\" must be a string or an array of strings");
        r.stop.push_back(s.get<std::string>());
      }
    } else {
      throw invalid("\"stop\" must be a string or an array of strings");
    }
    // An answer cut at a stop sequence still ends with finish_reason "stop": the LLM's answer
    // to such a request may be a truncated label, so it never becomes a trace.
    if (!r.stop.empty()) r.recordable = false;
  }
  for (const char* key : {"max_tokens", "max_completion_tokens"}) {
    auto m = j.find(key);
    if (m == j.end() || m->is_null()) continue;
    if (!m->is_number_integer() || m->get<int64_t>() < 0)
      throw invalid(std::string("\"") + key + "\" must be a non-negative integer");
    const int64_t v = m->get<int64_t>();
    r.max_tokens = r.max_tokens < 0 ? v : std::min(r.max_tokens, v);
  }
  auto audio = j.find("audio");
  bool audio_out = audio != j.end() && !audio->is_null();
  auto modalities = j.find("modalities");
  if (modalities != j.end() && modalities->is_array())
    for (const json& m : *modalities) audio_out = audio_out || (m.is_string() && m == "audio");
  if (audio_out) flag("audio output", false);
}

}  // namespace

bool peek_chat_scope(std::string_view body, std::string& model, std::string& system_prompt) {
  json j = json::parse(body.begin(), body.end(), nullptr, false);
  if (!j.is_object()) return false;
  auto messages = j.find("messages");
  if (messages == j.end() || !messages->is_array()) return false;
  auto m = j.find("model");
  model = m != j.end() && m->is_string() ? m->get<std::string>() : std::string();
  std::vector<std::string> system;
  for (const json& message : *messages) {
    if (!message.is_object()) continue;
    auto role = message.find("role");
    if (role == message.end() || !(*role == "system" || *role == "developer")) continue;
    auto content = message.find("content");
    if (content == message.end()) continue;
    std::string text;
    if (content->is_string()) text = content->get<std::string>();
    if (content->is_array())
      for (const json& part : *content)
        if (part.is_object() && part.contains("text") && part["text"].is_string() &&
            part.value("type", json()) == "text")
          text += (text.empty() ? "" : "\n") + part["text"].get<std::string>();
    system.push_back(std::move(text));
  }
  system_prompt = join_lines(system);
  return true;
}

std::string label_fits(const ChatRequest& request, std::string_view answer) {
  for (const std::string& s : request.stop)
    if (!s.empty() && answer.find(s) != std::string_view::npos)
      return "a stop sequence occurs in the label";
  const auto tokens = static_cast<int64_t>((answer.size() + 1) / 2);
  if (request.max_tokens >= 0 && tokens > request.max_tokens)
    return "max_tokens is below the label";
  return {};
}

ChatRequest parse_chat_request(std::string_view body, TextFrom from, const RequestLimits& limits) {
  json j = parse_object(body);
  ChatRequest r;
  auto model = j.find("model");
  if (model != j.end() && !model->is_null()) {
    if (!model->is_string()) throw invalid("\"model\" must be a string");
    r.model = model->get<std::string>();
  }
  auto stream = j.find("stream");
  if (stream != j.end() && !stream->is_null()) {
    if (!stream->is_boolean()) throw invalid("\"stream\" must be true or false");
    r.stream = stream->get<bool>();
  }
  auto stream_options = j.find("stream_options");
  if (stream_options != j.end() && stream_options->is_object()) {
    auto usage = stream_options->find("include_usage");
    r.include_usage = usage != stream_options->end() && usage->is_boolean() && usage->get<bool>();
  }
  auto messages = j.find("messages");
  if (messages == j.end()) throw invalid("missing \"messages\": send an array of chat messages");
  if (!messages->is_array() || messages->empty())
    throw invalid("\"messages\" must be a non-empty array of {\"role\", \"content\"} objects");
  screen_options(j, r);
  std::vector<std::string> user, system;
  std::string other_part;
  for (const json& m : *messages) {
    if (!m.is_object())
      throw invalid("each message must be an object with \"role\" and \"content\"");
    auto role = m.find("role");
    if (role == m.end() || !role->is_string())
      throw invalid("each message needs a string \"role\"");
    auto content = m.find("content");
    std::string text = content == m.end() ? std::string() : content_text(*content, &other_part);
    r.prompt_bytes += text.size();
    const std::string& rname = role->get_ref<const std::string&>();
    if (rname == "user")
      user.push_back(std::move(text));
    else if (rname == "system" || rname == "developer")
      system.push_back(std::move(text));
  }
  if (!other_part.empty()) {
    if (r.unsupported.empty()) r.unsupported = other_part + " content";
    r.recordable = false;
  }
  r.system_prompt = join_lines(system);
  if (user.empty()) {
    if (r.unsupported.empty()) r.unsupported = "no user message";
    r.recordable = false;
    return r;
  }
  switch (from) {
    case TextFrom::kLastUser:
      r.text = user.back();
      break;
    case TextFrom::kAllUser:
      r.text = join_lines(user);
      break;
    case TextFrom::kSystemLastUser:
      r.text = system.empty() ? user.back() : r.system_prompt + "\n" + user.back();
      break;
  }
  if (r.text.size() > limits.max_text_bytes) {
    // Too long to route or to store: the LLM answers it; nothing is recorded.
    if (r.unsupported.empty()) r.unsupported = "a text over --max-text-bytes";
    r.recordable = false;
    r.text.clear();
  }
  return r;
}

bool chat_answer_text(std::string_view upstream_body, std::string& answer) {
  json j = json::parse(upstream_body.begin(), upstream_body.end(), nullptr, false);
  if (!j.is_object()) return false;
  auto choices = j.find("choices");
  if (choices == j.end() || !choices->is_array() || choices->empty()) return false;
  const json& c = (*choices)[0];
  if (!c.is_object()) return false;
  // Cut at max_tokens ("length"), filtered, or a tool call: not a whole label.
  auto reason = c.find("finish_reason");
  if (reason != c.end() && reason->is_string() && *reason != "stop") return false;
  auto message = c.find("message");
  if (message == c.end() || !message->is_object()) return false;
  auto content = message->find("content");
  if (content == message->end()) return false;
  try {
    answer = content_text(*content);
  } catch (const ApiError&) {
    return false;
  }
  return true;
}

LabelJson label_json_kind(const std::vector<std::string>& labels) {
  if (labels.empty()) return LabelJson::kString;
  bool numbers = true, booleans = true;
  for (const std::string& l : labels) {
    json j = json::parse(l, nullptr, false);
    // Exactly the JSON text of a number (no padding): what extract() makes of a JSON number.
    numbers = numbers && j.is_number() && j.dump() == l;
    booleans = booleans && j.is_boolean() && j.dump() == l;
  }
  return numbers ? LabelJson::kNumber : booleans ? LabelJson::kBoolean : LabelJson::kString;
}

json label_json(const std::string& label, LabelJson kind) {
  if (kind == LabelJson::kString) return label;
  json j = json::parse(label, nullptr, false);
  return j.is_discarded() ? json(label) : j;
}

LabelParser::LabelParser(std::string json_field, const std::string& regex)
    : json_field_(std::move(json_field)) {
  if (!json_field_.empty() && !regex.empty())
    throw InputError("give --label-json-field or --label-regex, not both");
  if (regex.empty()) return;
  RE2::Options options;
  options.set_log_errors(false);
  auto re = std::make_shared<const RE2>(regex, options);
  if (!re->ok())
    throw InputError("--label-regex '" + regex + "' is not a valid regular expression (" +
                     re->error() + "; RE2 syntax: no backreferences or lookarounds)");
  if (re->NumberOfCapturingGroups() != 1)
    throw InputError("--label-regex '" + regex +
                     "' must have exactly one capture group (...) "
                     "around the label; it has " +
                     std::to_string(re->NumberOfCapturingGroups()));
  regex_ = std::move(re);
}

std::string LabelParser::extract(std::string_view answer) const {
  if (regex_) {
    std::string_view in = answer.substr(0, std::min(answer.size(), kMaxRegexInput));
    re2::StringPiece label;
    if (!RE2::PartialMatch(re2::StringPiece(in.data(), in.size()), *regex_, &label)) return {};
    return std::string(trim(std::string_view(label.data(), label.size())));
  }
  std::string_view a = trim(answer);
  if (json_field_.empty()) return std::string(a);
  // Models often wrap JSON in a Markdown code fence.
  if (a.substr(0, 3) == "```") {
    size_t nl = a.find('\n');
    a = nl == std::string_view::npos ? std::string_view() : a.substr(nl + 1);
    a = trim(a);
    if (a.size() >= 3 && a.substr(a.size() - 3) == "```") a = trim(a.substr(0, a.size() - 3));
  }
  json j = json::parse(a.begin(), a.end(), nullptr, false);
  if (!j.is_object()) return {};
  auto it = j.find(json_field_);
  if (it == j.end()) return {};
  if (it->is_string()) return std::string(trim(it->get_ref<const std::string&>()));
  if (it->is_number() || it->is_boolean()) return it->dump();
  return {};
}

}  // namespace tracer::serve
