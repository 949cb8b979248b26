// The proxy's own chat completions (JSON and server-sent events) and the reading of streamed
// upstream answers.
#include "serve/completions.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "serve_test_util.hpp"

namespace tracer::serve {
namespace {

using nlohmann::json;

HandledAnswer answer() {
  HandledAnswer a;
  a.id = "chatcmpl-tracer-1";
  a.created_s = 1700000000;
  a.model = "m";
  a.content = "card_arrival";  // 12 bytes: 3 tokens
  a.prompt_bytes = 41;         // 11 tokens
  a.tracer = {{"decision", "handled"}};
  return a;
}

TEST(Completions, HandledAnswerAsOneObjectWithEstimatedUsage) {
  json j = json::parse(completion_json(answer()));
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["choices"][0]["message"]["content"], "card_arrival");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(j["usage"],
            json({{"prompt_tokens", 11}, {"completion_tokens", 3}, {"total_tokens", 14}}));
  EXPECT_EQ(estimated_usage(0, 1)["prompt_tokens"], 0);
  EXPECT_EQ(estimated_usage(0, 1)["completion_tokens"], 1);
}

TEST(Completions, HandledAnswerStreamedAsOpenAiChunks) {
  for (bool usage : {false, true}) {
    std::vector<json> ev = testing::sse_events(completion_sse(answer(), usage));
    ASSERT_EQ(ev.size(), usage ? 5u : 4u);
    EXPECT_EQ(ev[0]["object"], "chat.completion.chunk");
    EXPECT_EQ(ev[0]["choices"][0]["delta"]["role"], "assistant");
    EXPECT_EQ(ev[1]["choices"][0]["delta"]["content"], "card_arrival");
    EXPECT_TRUE(ev[1]["choices"][0]["finish_reason"].is_null());
    EXPECT_EQ(ev[2]["choices"][0]["finish_reason"], "stop");
    if (usage) {
      EXPECT_TRUE(ev[3]["choices"].empty());
      EXPECT_EQ(ev[3]["usage"]["total_tokens"], 14);
    }
    EXPECT_EQ(ev.back(), "[DONE]");
    // Read back as the proxy reads a streamed upstream answer.
    std::string text;
    ASSERT_TRUE(sse_answer_text(completion_sse(answer(), usage), text));
    EXPECT_EQ(text, "card_arrival");
  }
}

TEST(Completions, StreamedUpstreamAnswerAssembled) {
  std::string text;
  EXPECT_TRUE(sse_answer_text(
      "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}\r\n\r\n"
      ": keep-alive comment\n\n"
      "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"card_\"}}]}\n\n"
      "data: {\"choices\":[{\"index\":1,\"delta\":{\"content\":\"other choice\"}}]}\n\n"
      "data:{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"arrival\"}}]}\n\n"
      "data: not json\n\n"
      "data: [DONE]\n\n"
      "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"after done\"}}]}\n\n",
      text));
  EXPECT_EQ(text, "card_arrival");
  EXPECT_FALSE(sse_answer_text("{\"choices\": []}", text));
  // Cut off: no [DONE], no finish_reason. Ended by a finish_reason alone: complete.
  EXPECT_FALSE(sse_answer_text(
      "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"card_\"}}]}\n\n", text));
  EXPECT_TRUE(sse_answer_text(
      "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"card\"}}]}\n\n"
      "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
      text));
  EXPECT_EQ(text, "card");
  // Ended for another reason than "stop": cut at max_tokens, not a label.
  EXPECT_FALSE(sse_answer_text(
      "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"refund\"}}]}\n\n"
      "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}\n\n"
      "data: [DONE]\n\n",
      text));
  EXPECT_FALSE(sse_answer_text("", text));
  EXPECT_FALSE(
      sse_answer_text("data: {\"choices\":[{\"index\":\"0\",\"delta\":{\"content\":1}}]}", text));
}

// The audit asks for the whole label in one object, whatever limits the client's request set.
TEST(Completions, AuditBodyAsksForTheWholeLabel) {
  json j = json::parse(audit_body(
      R"({"model": "m", "stream": true, "stream_options": {"include_usage": true}, "n": 1,
          "stop": ["0"], "max_tokens": 2, "max_completion_tokens": 2, "logprobs": false,
          "temperature": 0})"));
  EXPECT_EQ(j, json({{"model", "m"}, {"temperature", 0}}));
  EXPECT_EQ(audit_body("not json"), "not json");
}

}  // namespace
}  // namespace tracer::serve
