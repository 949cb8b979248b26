#pragma once
// The chat completions the proxy writes itself (a handled request's answer, as one JSON object
// or as server-sent events) and the reading of streamed upstream answers. No sockets here, so
// everything can be unit-tested.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace tracer::serve {

// A handled request's answer.
struct HandledAnswer {
  std::string id;           // "chatcmpl-tracer-..."
  int64_t created_s = 0;    // Unix seconds
  std::string model;        // echoed from the request ("tracer-surrogate" when it had none)
  std::string content;      // the label, or {"FIELD": label} with --label-json-field
  size_t prompt_bytes = 0;  // bytes of the request's message text
  nlohmann::json tracer;    // the "tracer" object: served_by, decision, label, probability, ...
};

// Token counts of a handled answer: an estimate, 4 bytes of text per token (OpenAI's rule of
// thumb for English text; the surrogate runs no tokenizer), at least 1 per non-empty text.
// {"prompt_tokens", "completion_tokens", "total_tokens"}.
nlohmann::json estimated_usage(size_t prompt_bytes, size_t completion_bytes);

// {"object": "chat.completion", ...} with one choice and the estimated usage.
std::string completion_json(const HandledAnswer& a);

// The same answer as OpenAI streams it (Content-Type text/event-stream): a chunk with the
// role, one with the content, one with finish_reason "stop", a usage chunk (empty choices)
// when `include_usage`, then "data: [DONE]".
std::string completion_sse(const HandledAnswer& a, bool include_usage);

// The assistant's text in a streamed chat completion (server-sent events): the content deltas
// of choice 0 in order. False when no event carries one (not a chat completion stream) or the
// stream was cut off (neither "data: [DONE]" nor a finish_reason for choice 0) or ended for
// another reason than "stop" (length, content_filter, tool_calls): a partial answer must not
// become a trace.
bool sse_answer_text(std::string_view events, std::string& answer);

// What a shadow audit sends: the request without "stream", "stream_options", "stop",
// "max_tokens", "max_completion_tokens", "n", "logprobs" and "top_logprobs", so the LLM's answer
// comes back as one whole label in one JSON object. Returns `body` unchanged when it is not JSON.
std::string audit_body(std::string_view body);

}  // namespace tracer::serve
