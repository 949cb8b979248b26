#pragma once
// Request bodies of the HTTP API and the OpenAI-compatible proxy, parsed without sockets so they
// can be unit-tested and fuzzed. Every failure is an ApiError carrying the HTTP status to answer.
#include <cstddef>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace re2 {
class RE2;
}

namespace tracer::serve {

// An error answered to the client as {"error": {"message", "type"}} with this HTTP status.
class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string type, const std::string& message)
      : std::runtime_error(message), status_(status), type_(std::move(type)) {}
  int status() const { return status_; }
  const std::string& type() const { return type_; }

 private:
  int status_;
  std::string type_;
};

// {"error": {"message": ..., "type": ...}} (invalid UTF-8 in the message is replaced).
std::string error_body(std::string_view message, std::string_view type);

struct RequestLimits {
  size_t max_text_bytes = 64 * 1024;  // longer texts get 413
  size_t max_batch = 256;             // more texts in one batch get 413
};

// POST /v1/route: {"text": "..."} or {"input": "..."}; an optional "id" (string or number) is
// echoed back.
struct RouteRequest {
  std::string text;
  nlohmann::json id;  // null when absent
};
RouteRequest parse_route_request(std::string_view body, const RequestLimits& limits);

// POST /v1/audit: {"text": "...", "label": "<the LLM's label for it>"} ("input" for "text",
// "teacher" for "label"); an optional "id" is echoed back.
struct AuditRequest {
  std::string text;
  std::string label;  // trimmed, never empty
  nlohmann::json id;  // null when absent
};
AuditRequest parse_audit_request(std::string_view body, const RequestLimits& limits);

// POST /v1/route/batch: {"texts": [...]} (or "inputs").
std::vector<std::string> parse_batch_request(std::string_view body, const RequestLimits& limits);

// Which chat messages make the text to classify.
enum class TextFrom { kLastUser, kAllUser, kSystemLastUser };
TextFrom parse_text_from(std::string_view name);  // throws InputError naming the choices
std::string text_from_name(TextFrom t);

// POST /v1/chat/completions (OpenAI-compatible). Only malformed requests are errors (400); a
// well-formed request the surrogate cannot answer in the shape it asks for is not an error but
// `unsupported`: the proxy then sends it to the LLM unchanged (docs/serve.md, "What the proxy
// answers").
struct ChatRequest {
  std::string text;           // what the router classifies (per TextFrom)
  std::string model;          // the "model" field ("" when absent)
  std::string system_prompt;  // the system and developer messages, joined by "\n" ("" when none)
  bool stream = false;
  bool include_usage = false;   // stream_options.include_usage
  std::string response_format;  // response_format.type ("" when absent)
  // The first feature asked for that a label cannot honour, in words ("" when none): "n = 3",
  // "tools", "response_format json_schema", "logprobs", "audio output", "image_url content",
  // "no user message", "a text over --max-text-bytes". response_format json_object is left to
  // the server (it can answer it with --label-json-field).
  std::string unsupported;
  // Whether the LLM's answer to this request still says the label of `text` alone (so it may
  // become a trace): false when the input holds more than the text (images, audio, files), the
  // answer has another shape (tools, JSON schema) or the text was too long to store.
  bool recordable = true;
  size_t prompt_bytes = 0;  // bytes of all message text, for the usage estimate
  // Limits on the answer: "stop" sequences and max_tokens / max_completion_tokens (-1: none).
  // A handled answer must obey them as the LLM's would (label_fits).
  std::vector<std::string> stop;
  int64_t max_tokens = -1;
};

// "" when `answer` (the handled answer's content) is what the LLM could have answered under the
// request's limits; otherwise why not ("a stop sequence occurs in the label", "max_tokens is
// below the label"). Tokens are counted conservatively at 2 bytes each (tokenizers average
// about 4 bytes a token on English text), so a label that may not fit is deferred.
std::string label_fits(const ChatRequest& request, std::string_view answer);
ChatRequest parse_chat_request(std::string_view body, TextFrom from, const RequestLimits& limits);

// What decides whether a chat request is the policy's task, read leniently (before and whatever
// the rest of the request holds): the "model" ("" when absent) and the system prompt (system
// and developer messages joined by "\n", text parts only). False when the body is not a JSON
// object with a "messages" array.
bool peek_chat_scope(std::string_view body, std::string& model, std::string& system_prompt);

// A message "content": a string, or an array of parts of which {"type": "text", "text"} count.
// `other_part`, when given, receives the type of the first part that is not text ("" if none).
std::string content_text(const nlohmann::json& content, std::string* other_part = nullptr);

// The assistant's answer in an upstream chat completion (choices[0].message.content); returns
// false when the body is not a chat completion with a text answer, or when choice 0 ended for
// another reason than "stop" (length, content_filter, tool_calls: not a whole label).
bool chat_answer_text(std::string_view upstream_body, std::string& answer);

// Turns the LLM's answer into a candidate label: the trimmed answer, or a JSON field of it, or
// the first capture group of a regex. The regex is RE2's syntax (https://github.com/google/re2/
// wiki/Syntax: no backreferences or lookarounds) and runs in time linear in the answer, whatever
// the pattern: nested quantifiers cannot make a request hang.
class LabelParser {
 public:
  LabelParser() = default;
  // Throws InputError when both are given or the regex is invalid / has not exactly one capture
  // group.
  LabelParser(std::string json_field, const std::string& regex);
  // The candidate label ("" when the answer does not contain one).
  std::string extract(std::string_view answer) const;
  const std::string& json_field() const { return json_field_; }

 private:
  std::string json_field_;
  std::shared_ptr<const re2::RE2> regex_;  // null: no regex
};

// How a handled answer writes the label into the --label-json-field object. The label parser
// reads {"label": 30} as the label "30" (numbers and booleans become their JSON text), so the
// policy's labels do not say what type the LLM used; the label space does: when every label of
// the policy is a JSON number ("30", "-1.5"), labels are written as numbers, when every label is
// "true" or "false" as booleans, otherwise as strings.
enum class LabelJson { kString, kNumber, kBoolean };
LabelJson label_json_kind(const std::vector<std::string>& labels);
nlohmann::json label_json(const std::string& label, LabelJson kind);

std::string_view trim(std::string_view s);

}  // namespace tracer::serve
