#include "serve/completions.hpp"

#include "serve/requests.hpp"

namespace tracer::serve {
namespace {

using nlohmann::json;

size_t tokens(size_t bytes) { return bytes == 0 ? 0 : (bytes + 3) / 4; }

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

json chunk(const HandledAnswer& a, json choices) {
  return {{"id", a.id},
          {"object", "chat.completion.chunk"},
          {"created", a.created_s},
          {"model", a.model},
          {"choices", std::move(choices)}};
}

json delta_choice(json delta, json finish_reason) {
  return json::array(
      {{{"index", 0}, {"delta", std::move(delta)}, {"finish_reason", std::move(finish_reason)}}});
}

}  // namespace

json estimated_usage(size_t prompt_bytes, size_t completion_bytes) {
  const size_t p = tokens(prompt_bytes), c = tokens(completion_bytes);
  return {{"prompt_tokens", p}, {"completion_tokens", c}, {"total_tokens", p + c}};
}

std::string completion_json(const HandledAnswer& a) {
  json message{{"role", "assistant"}, {"content", a.content}};
  json j{
      {"id", a.id},
      {"object", "chat.completion"},
      {"created", a.created_s},
      {"model", a.model},
      {"choices",
       json::array({{{"index", 0}, {"message", std::move(message)}, {"finish_reason", "stop"}}})},
      {"usage", estimated_usage(a.prompt_bytes, a.content.size())},
      {"tracer", a.tracer}};
  return dump(j);
}

std::string completion_sse(const HandledAnswer& a, bool include_usage) {
  std::string out;
  auto event = [&out](const json& j) { out += "data: " + dump(j) + "\n\n"; };
  event(chunk(a, delta_choice({{"role", "assistant"}, {"content", ""}}, nullptr)));
  event(chunk(a, delta_choice({{"content", a.content}}, nullptr)));
  json last = chunk(a, delta_choice(json::object(), "stop"));
  last["tracer"] = a.tracer;
  event(last);
  if (include_usage) {
    json usage = chunk(a, json::array());
    usage["usage"] = estimated_usage(a.prompt_bytes, a.content.size());
    event(usage);
  }
  out += "data: [DONE]\n\n";
  return out;
}

bool sse_answer_text(std::string_view events, std::string& answer) {
  answer.clear();
  bool found = false, finished = false;
  size_t pos = 0;
  while (pos < events.size() && !finished) {
    size_t end = events.find('\n', pos);
    if (end == std::string_view::npos) end = events.size();
    std::string_view line = events.substr(pos, end - pos);
    pos = end + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.substr(0, 5) != "data:") continue;
    std::string_view data = trim(line.substr(5));
    if (data == "[DONE]") {
      finished = true;
      break;
    }
    json j = json::parse(data.begin(), data.end(), nullptr, false);
    if (!j.is_object()) continue;
    auto choices = j.find("choices");
    if (choices == j.end() || !choices->is_array()) continue;
    for (const json& c : *choices) {
      if (!c.is_object()) continue;
      auto index = c.find("index");
      if (index != c.end() && !(index->is_number_integer() && *index == 0)) continue;
      auto reason = c.find("finish_reason");
      if (reason != c.end() && reason->is_string()) {
        if (*reason != "stop") return false;  // length, content_filter, tool_calls: not a label
        finished = true;
      }
      auto delta = c.find("delta");
      if (delta == c.end() || !delta->is_object()) continue;
      auto content = delta->find("content");
      if (content == delta->end() || !content->is_string()) continue;
      answer += content->get_ref<const std::string&>();
      found = true;
    }
  }
  return found && finished;
}

std::string audit_body(std::string_view body) {
  json j = json::parse(body.begin(), body.end(), nullptr, false);
  if (!j.is_object()) return std::string(body);
  for (const char* key : {"stream", "stream_options", "stop", "max_tokens", "max_completion_tokens",
                          "n", "logprobs", "top_logprobs"})
    j.erase(key);
  return dump(j);
}

}  // namespace tracer::serve
