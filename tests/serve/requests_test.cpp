// Request parsing of the HTTP API and the proxy, without sockets.
#include "serve/requests.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "serve/metrics.hpp"
#include "util/error.hpp"

namespace tracer::serve {
namespace {

using nlohmann::json;

// The status and type of the ApiError `f` throws (0 when it throws none).
template <class F>
std::pair<int, std::string> api_error(F f) {
  try {
    f();
  } catch (const ApiError& e) {
    return {e.status(), e.type()};
  }
  return {0, ""};
}

TEST(ServeRequests, RouteAcceptsTextOrInputAndEchoesId) {
  RequestLimits lim;
  EXPECT_EQ(parse_route_request(R"({"text": "card lost"})", lim).text, "card lost");
  auto r = parse_route_request(R"({"input": "ex\u00e9", "id": 7})", lim);
  EXPECT_EQ(r.text, "ex\xc3\xa9");
  EXPECT_EQ(r.id, 7);
  EXPECT_TRUE(parse_route_request(R"({"text": ""})", lim).id.is_null());
}

TEST(ServeRequests, RouteRejectsBadBodiesWith4xx) {
  RequestLimits lim;
  lim.max_text_bytes = 10;
  for (const char* body : {"", "not json", "[1,2]", "\"text\"", R"({"text": 5})", R"({"txt": "a"})",
                           R"({"text": ["a"]})", R"({"text": "a", "id": {"x": 1}})",
                           "{\"text\": \"\xff\"}", R"({"text": "a")"}) {
    auto [status, type] = api_error([&] { parse_route_request(body, lim); });
    EXPECT_EQ(status, 400) << body;
    EXPECT_EQ(type, "invalid_request_error") << body;
  }
  EXPECT_EQ(api_error([&] { parse_route_request(R"({"text": "0123456789A"})", lim); }).first, 413);
  EXPECT_EQ(api_error([&] { parse_route_request(R"({"text": "0123456789"})", lim); }).first, 0);
}

TEST(ServeRequests, VectorsAreRejectedWithAClearMessage) {
  try {
    parse_route_request(R"({"vector": [0.1, 0.2]})", {});
    FAIL() << "no error";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), 400);
    EXPECT_NE(std::string(e.what()).find("vector"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("\"text\""), std::string::npos) << e.what();
  }
  EXPECT_EQ(api_error([] { parse_batch_request(R"({"embeddings": [[1]]})", {}); }).first, 400);
}

TEST(ServeRequests, BatchIsBounded) {
  RequestLimits lim;
  lim.max_batch = 3;
  auto t = parse_batch_request(R"({"texts": ["a", "b", "c"]})", lim);
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[2], "c");
  EXPECT_TRUE(parse_batch_request(R"({"inputs": []})", lim).empty());
  EXPECT_EQ(api_error([&] { parse_batch_request(R"({"texts": ["a","b","c","d"]})", lim); }).first,
            413);
  EXPECT_EQ(api_error([&] { parse_batch_request(R"({"texts": ["a", 1]})", lim); }).first, 400);
  EXPECT_EQ(api_error([&] { parse_batch_request(R"({"texts": "a"})", lim); }).first, 400);
}

TEST(ServeRequests, ChatTextFollowsTextFrom) {
  std::string body = R"({"model": "m", "messages": [
      {"role": "system", "content": "classify"},
      {"role": "user", "content": "first"},
      {"role": "assistant", "content": null},
      {"role": "user", "content": [{"type": "text", "text": "second"},
                                   {"type": "image_url", "image_url": {"url": "x"}},
                                   {"type": "text", "text": "part"}]}]})";
  ChatRequest c = parse_chat_request(body, TextFrom::kLastUser, {});
  EXPECT_EQ(c.text, "second\npart");
  EXPECT_EQ(c.model, "m");
  EXPECT_EQ(c.system_prompt, "classify");
  EXPECT_FALSE(c.stream);
  // The image is part of the input the surrogate cannot see: the LLM must answer, unrecorded.
  EXPECT_EQ(c.unsupported, "image_url content");
  EXPECT_FALSE(c.recordable);
  EXPECT_EQ(parse_chat_request(body, TextFrom::kAllUser, {}).text, "first\nsecond\npart");
  EXPECT_EQ(parse_chat_request(body, TextFrom::kSystemLastUser, {}).text, "classify\nsecond\npart");
  EXPECT_EQ(parse_text_from("system+last-user"), TextFrom::kSystemLastUser);
  EXPECT_THROW(parse_text_from("first-user"), InputError);
}

TEST(ServeRequests, ChatRejectsMalformedMessages) {
  for (const char* body :
       {"{}", R"({"messages": []})", R"({"messages": {}})", R"({"messages": [1]})",
        R"({"messages": [{"content": "x"}]})", R"({"messages": [{"role": "user", "content": 3}]})",
        R"({"messages": [{"role": "user", "content": [{"text": "no type"}]}]})",
        R"({"messages": [{"role": "user", "content": "x"}], "stream": "yes"})",
        R"({"messages": [{"role": "user", "content": "x"}], "model": 4})",
        R"({"messages": [{"role": "user", "content": "x"}], "n": 0})",
        R"({"messages": [{"role": "user", "content": "x"}], "n": "2"})",
        R"({"messages": [{"role": "user", "content": "x"}],
                               "response_format": "json"})"}) {
    EXPECT_EQ(api_error([&] { parse_chat_request(body, TextFrom::kLastUser, {}); }).first, 400)
        << body;
  }
  ChatRequest s = parse_chat_request(R"({"messages": [{"role": "user", "content": "x"}],
                                         "stream": true, "stream_options": {"include_usage": true}})",
                                     TextFrom::kLastUser, {});
  EXPECT_TRUE(s.stream);
  EXPECT_TRUE(s.include_usage);
  EXPECT_EQ(s.unsupported, "");
}

// Well-formed requests a label cannot answer are not errors: they go to the LLM (unsupported),
// and only those whose answer still says the text's label may become traces.
TEST(ServeRequests, ChatFeaturesALabelCannotHonour) {
  auto parse = [](const std::string& extra, RequestLimits lim = {}) {
    return parse_chat_request(R"({"messages": [{"role": "user", "content": "card"}])" + extra + "}",
                              TextFrom::kLastUser, lim);
  };
  struct Case {
    std::string extra, unsupported;
    bool recordable;
  };
  for (const Case& c : std::vector<Case>{
           {"", "", true},
           {R"(, "n": 1)", "", true},
           {R"(, "n": 3)", "n = 3", true},
           {R"(, "tools": [{"type": "function", "function": {"name": "f"}}])", "tools", false},
           {R"(, "tools": [{"type": "function"}], "tool_choice": "none")", "", true},
           {R"(, "tools": [])", "", true},
           {R"(, "functions": [{"name": "f"}])", "functions", false},
           {R"(, "response_format": {"type": "json_schema", "json_schema": {}})",
            "response_format json_schema", false},
           {R"(, "response_format": {"type": "json_object"})", "", true},  // the server decides
           {R"(, "response_format": {"type": "text"})", "", true},
           {R"(, "logprobs": true)", "logprobs", true},
           // Answerable (label_fits decides), but an answer cut at a stop sequence looks whole.
           {R"(, "stop": ["\n"])", "", false},
           {R"(, "max_tokens": 5)", "", true},
           {R"(, "logprobs": false)", "", true},
           {R"(, "top_logprobs": 2)", "top_logprobs", true},
           {R"(, "modalities": ["text", "audio"])", "audio output", false},
           {R"(, "audio": {"voice": "alloy", "format": "wav"})", "audio output", false},
       }) {
    ChatRequest r = parse(c.extra);
    EXPECT_EQ(r.unsupported, c.unsupported) << c.extra;
    EXPECT_EQ(r.recordable, c.recordable) << c.extra;
  }
  EXPECT_EQ(parse(R"(, "response_format": {"type": "json_object"})").response_format,
            "json_object");
  RequestLimits lim;
  lim.max_text_bytes = 3;
  ChatRequest long_text = parse("", lim);  // "card" is 4 bytes: the LLM answers, unrecorded
  EXPECT_EQ(long_text.unsupported, "a text over --max-text-bytes");
  EXPECT_FALSE(long_text.recordable);
  EXPECT_TRUE(long_text.text.empty());
  ChatRequest no_user = parse_chat_request(R"({"messages": [{"role": "system", "content": "x"}]})",
                                           TextFrom::kLastUser, {});
  EXPECT_EQ(no_user.unsupported, "no user message");
  EXPECT_FALSE(no_user.recordable);
  ChatRequest audio_in = parse_chat_request(
      R"({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]})",
      TextFrom::kLastUser, {});
  EXPECT_EQ(audio_in.unsupported, "input_audio content");
  EXPECT_EQ(parse("").prompt_bytes, 4u);
}

TEST(ServeRequests, UpstreamAnswerAndLabelParsing) {
  std::string answer;
  ASSERT_TRUE(chat_answer_text(R"({"choices": [{"index": 0, "message": {"role": "assistant",)"
                               R"( "content": "  card_arrival\n"}}]})",
                               answer));
  EXPECT_EQ(LabelParser().extract(answer), "card_arrival");
  EXPECT_FALSE(chat_answer_text(R"({"choices": []})", answer));
  EXPECT_FALSE(chat_answer_text("oops", answer));
  EXPECT_FALSE(chat_answer_text(R"({"choices": [{"message": {"content": 5}}]})", answer));
  // Cut at max_tokens or filtered: not a whole label.
  EXPECT_FALSE(chat_answer_text(
      R"({"choices": [{"message": {"content": "refund"}, "finish_reason": "length"}]})", answer));
  EXPECT_TRUE(chat_answer_text(
      R"({"choices": [{"message": {"content": "refund_request"}, "finish_reason": "stop"}]})",
      answer));

  LabelParser json_field("intent", "");
  EXPECT_EQ(json_field.extract(R"({"intent": " lost_card ", "why": "..."})"), "lost_card");
  EXPECT_EQ(json_field.extract("```json\n{\"intent\": \"lost_card\"}\n```"), "lost_card");
  EXPECT_EQ(json_field.extract("lost_card"), "");
  EXPECT_EQ(json_field.extract(R"({"other": "lost_card"})"), "");

  LabelParser regex("", "Label: *([a-z_]+)");
  EXPECT_EQ(regex.extract("Thinking...\nLabel: lost_card."), "lost_card");
  EXPECT_EQ(regex.extract("no label here"), "");
  EXPECT_THROW(LabelParser("", "no group"), InputError);
  EXPECT_THROW(LabelParser("", "(a)(b)"), InputError);
  EXPECT_THROW(LabelParser("", "(unclosed"), InputError);
  EXPECT_THROW(LabelParser("f", "(x)"), InputError);
  EXPECT_THROW(LabelParser("", "(a)\\1"), InputError);  // backreferences: not in RE2's syntax
  EXPECT_EQ(LabelParser("", "(?:x)?(\\w+)?$").extract("..."), "");  // the group did not match

  // Nested quantifiers: exponential for a backtracking engine (std::regex never finished on
  // such an answer), linear in RE2. The answer is longer than the 8 KiB the regex reads.
  LabelParser nested("", "^((?:a+)+)b");
  EXPECT_EQ(nested.extract(std::string(20000, 'a')), "");
  EXPECT_EQ(nested.extract("aaab"), "aaa");
}

// With --label-json-field, a handled answer keeps the JSON type the LLM's labels have.
TEST(ServeRequests, LabelJsonTypeFollowsTheLabelSpace) {
  EXPECT_EQ(label_json_kind({"30", "7", "-1.5"}), LabelJson::kNumber);
  EXPECT_EQ(label_json_kind({"true", "false"}), LabelJson::kBoolean);
  EXPECT_EQ(label_json_kind({"30", "card_arrival"}), LabelJson::kString);
  EXPECT_EQ(label_json_kind({"030"}), LabelJson::kString);  // not how a JSON number reads back
  EXPECT_EQ(label_json_kind({" 30"}), LabelJson::kString);
  EXPECT_EQ(label_json_kind({}), LabelJson::kString);
  EXPECT_EQ(label_json("30", LabelJson::kNumber), json(30));
  EXPECT_EQ(label_json("-1.5", LabelJson::kNumber), json(-1.5));
  EXPECT_EQ(label_json("true", LabelJson::kBoolean), json(true));
  EXPECT_EQ(label_json("30", LabelJson::kString), json("30"));
  // What the parser reads from {"label": 30} is what the kind recognises.
  EXPECT_EQ(label_json_kind({LabelParser("label", "").extract(R"({"label": 30})")}),
            LabelJson::kNumber);
}

TEST(ServeRequests, ErrorBodyIsJsonEvenForBadUtf8) {
  json j = json::parse(error_body("bad \xff byte", "invalid_request_error"));
  EXPECT_EQ(j["error"]["type"], "invalid_request_error");
  EXPECT_TRUE(j["error"]["message"].is_string());
}

TEST(ServeMetrics, RendersPrometheusText) {
  Metrics m;
  m.count_request(Endpoint::kRoute, 200);
  m.count_request(Endpoint::kRoute, 200);
  m.count_request(endpoint_of("/nope"), 404);
  m.observe_latency(Endpoint::kRoute, 0.00003);
  m.observe_latency(Endpoint::kRoute, 0.003);
  RouteResult handled;
  handled.handled = true;
  RouteResult ood;
  ood.reason = DeferReason::kOutOfDistribution;
  m.count_decision(handled);
  m.count_decision(ood);
  m.count_decision(ood);
  RouteResult rare;
  rare.reason = DeferReason::kRareLabel;
  m.count_decision(rare);
  std::string text = m.render("v\"1", "l2d", 10);
  auto has = [&](const std::string& line) { return text.find(line + "\n") != std::string::npos; };
  EXPECT_TRUE(has(R"(tracer_requests_total{endpoint="/v1/route",status="200"} 2)")) << text;
  EXPECT_TRUE(has(R"(tracer_requests_total{endpoint="other",status="404"} 1)")) << text;
  EXPECT_TRUE(has(R"(tracer_request_duration_seconds_bucket{endpoint="/v1/route",le="5e-05"} 1)"))
      << text;
  EXPECT_TRUE(has(R"(tracer_request_duration_seconds_bucket{endpoint="/v1/route",le="0.005"} 2)"))
      << text;
  EXPECT_TRUE(has(R"(tracer_request_duration_seconds_count{endpoint="/v1/route"} 2)")) << text;
  EXPECT_TRUE(has(R"(tracer_decisions_total{decision="handled"} 1)")) << text;
  EXPECT_TRUE(has(R"(tracer_decisions_total{decision="deferred",reason="out_of_distribution"} 2)"))
      << text;
  // Every reason has its own series (rare_label was once counted as no_policy).
  EXPECT_TRUE(has(R"(tracer_decisions_total{decision="deferred",reason="rare_label"} 1)")) << text;
  EXPECT_TRUE(has(R"(tracer_decisions_total{decision="deferred",reason="no_policy"} 0)")) << text;
  EXPECT_TRUE(has(R"(tracer_policy_info{policy_version="v\"1",method="l2d",labels="10"} 1)"))
      << text;
  EXPECT_EQ(m.requests(Endpoint::kRoute, 200), 2u);
}

}  // namespace
}  // namespace tracer::serve
