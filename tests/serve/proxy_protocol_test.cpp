// The proxy as an OpenAI-compatible drop-in (docs/serve.md, "Which requests the proxy
// answers"): requests of another task pass through untouched, features a label cannot honour
// are deferred (never ignored), streaming works both ways, and other OpenAI paths reach the LLM.
// Real HTTP on loopback against an in-process server and an LLM stand-in.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "serve/server.hpp"
#include "serve_test_util.hpp"

namespace tracer {
namespace {

using nlohmann::json;
using testing::eventually;
using testing::FakeLlm;
using testing::metric;
using testing::RunningServer;
using testing::TempDir;

constexpr const char* kPrompt = "Classify the intent.";

using Policy = testing::RoutedPolicy;

class ProxyProtocol : public testing::SharedPolicySuite<Policy> {
 protected:
  // The LLM answers "llm:" + the text, so its answers are told apart from the surrogate's.
  FakeLlm llm{[](const std::string& text) { return "llm:" + text; }};
  TempDir tmp;

  serve::ServeOptions options() const {
    serve::ServeOptions o;
    o.policy_dir = policy_->path;
    o.port = 0;
    o.threads = 8;
    o.upstream = llm.url();
    o.trace_db = tmp.file("traces.db");
    return o;
  }
};

json message(const std::string& role, json content) {
  return {{"role", role}, {"content", std::move(content)}};
}

// A chat request for `text` under `system` (none when empty), with `extra` fields merged in.
std::string chat(const std::string& text, const std::string& system = kPrompt,
                 json extra = json::object(), const std::string& model = "gpt-test") {
  json messages = json::array();
  if (!system.empty()) messages.push_back(message("system", system));
  messages.push_back(message("user", text));
  json j{{"model", model}, {"messages", std::move(messages)}};
  j.update(extra);
  return j.dump();
}

std::string content_of(const std::string& body, size_t choice = 0) {
  return json::parse(body)["choices"][choice]["message"]["content"];
}

std::string streamed_text(const std::vector<json>& ev) {
  std::string text;
  for (const json& e : ev)
    if (e.is_object() && !e["choices"].empty() && e["choices"][0]["delta"].contains("content"))
      text += e["choices"][0]["delta"]["content"].get<std::string>();
  return text;
}

double recorded(const httplib::Client& c) {
  auto m = const_cast<httplib::Client&>(c).Get("/metrics");
  return metric(m->body, R"(tracer_traces_recorded_total{label_known="true"})") +
         metric(m->body, R"(tracer_traces_recorded_total{label_known="false"})");
}

TEST_F(ProxyProtocol, RequestsOfAnotherTaskPassThroughUntouchedAndUnrecorded) {
  Policy& p = *policy_;
  serve::ServeOptions o = options();
  o.match_models = {"gpt-test"};
  o.match_system_prompt = kPrompt;
  RunningServer rs(o);
  auto c = rs.client();
  const std::string& text = p.handled.at(0);

  // The task: handled by the surrogate.
  auto r = c->Post("/v1/chat/completions", chat(text), "application/json");
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->get_header_value("X-Tracer-Decision"), "handled");
  EXPECT_EQ(content_of(r->body), p.surrogate(text));
  // Whitespace around the system prompt does not matter.
  r = c->Post("/v1/chat/completions", chat(text, std::string("\n") + kPrompt + "  "),
              "application/json");
  EXPECT_EQ(r->get_header_value("X-Tracer-Decision"), "handled");

  // Another system prompt, no system prompt, another model: the LLM answers, as sent.
  struct Case {
    std::string body, reason;
  };
  for (const Case& k : std::vector<Case>{
           {chat(text, "You are a translator. Translate to French."), "out_of_scope:system_prompt"},
           {chat(text, ""), "out_of_scope:system_prompt"},
           {chat(text, kPrompt, json::object(), "gpt-other"), "out_of_scope:model"}}) {
    const int calls = llm.calls();
    r = c->Post("/v1/chat/completions", k.body, "application/json");
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_EQ(r->get_header_value("X-Tracer-Decision"), "passthrough");
    EXPECT_EQ(r->get_header_value("X-Tracer-Reason"), k.reason);
    EXPECT_EQ(content_of(r->body), "llm:" + text);
    EXPECT_EQ(llm.calls(), calls + 1);
    EXPECT_EQ(json::parse(llm.last_body()), json::parse(k.body));  // forwarded unchanged
  }
  // Another task's request passes whatever tracer's own validation would say of it.
  r = c->Post("/v1/chat/completions", chat(text, "Translate.", {{"n", 0}}), "application/json");
  EXPECT_EQ(r->get_header_value("X-Tracer-Decision"), "passthrough");
  EXPECT_EQ(json::parse(llm.last_body())["n"], 0);
  // In scope, the same request is the client's error.
  EXPECT_EQ(
      c->Post("/v1/chat/completions", chat(text, kPrompt, {{"n", 0}}), "application/json")->status,
      400);
  auto m = c->Get("/metrics");
  EXPECT_EQ(metric(m->body, R"(tracer_proxy_passthrough_total{why="out_of_scope"})"), 4);

  // A two-line prompt: CRLF and LF line endings match alike.
  serve::ServeOptions two = options();
  two.match_system_prompt = "Classify the intent.\nAnswer with the label.";
  two.trace_db = tmp.file("two.db");
  RunningServer rs2(two);
  for (const char* prompt : {"Classify the intent.\r\nAnswer with the label.",
                             "Classify the intent.\nAnswer with the label.\n"}) {
    r = rs2.client()->Post("/v1/chat/completions", chat(text, prompt), "application/json");
    EXPECT_EQ(r->get_header_value("X-Tracer-Decision"), "handled") << prompt;
  }
  EXPECT_EQ(recorded(*c), 0);  // nothing of another task becomes a trace
}

TEST_F(ProxyProtocol, FeaturesALabelCannotHonourAreDeferredNeverIgnored) {
  Policy& p = *policy_;
  serve::ServeOptions o = options();
  o.limits.max_text_bytes = 200;
  RunningServer rs(o);
  auto c = rs.client();
  const std::string& text = p.handled.at(0);  // the surrogate would answer it alone
  json tool = {{"type", "function"},
               {"function", {{"name", "set_intent"}, {"parameters", json::object()}}}};
  struct Case {
    std::string body, feature;
    bool recorded;
  };
  std::vector<Case> cases{
      {chat(text, kPrompt, {{"n", 3}}), "n = 3", true},
      {chat(text, kPrompt, {{"tools", json::array({tool})}, {"tool_choice", "required"}}), "tools",
       false},
      {chat(text, kPrompt, {{"response_format", {{"type", "json_object"}}}}),
       "response_format json_object", true},
      {chat(text, kPrompt, {{"logprobs", true}}), "logprobs", true},
      {chat(text, kPrompt, {{"modalities", json::array({"text", "audio"})}}), "audio output",
       false},
      {json{{"messages",
             json::array({message("user", json::array({{{"type", "text"}, {"text", text}},
                                                       {{"type", "image_url"},
                                                        {"image_url", {{"url", "data:,"}}}}}))})}}
           .dump(),
       "image_url content", false},
      {chat(std::string(300, 'x')), "a text over --max-text-bytes", false},
      {json{{"messages", json::array({message("system", kPrompt)})}}.dump(), "no user message",
       false},
  };
  double traces = 0;
  for (const Case& k : cases) {
    const int calls = llm.calls();
    auto r = c->Post("/v1/chat/completions", k.body, "application/json");
    ASSERT_EQ(r->status, 200) << k.feature << ": " << r->body;
    EXPECT_EQ(r->get_header_value("X-Tracer-Decision"), "deferred") << k.feature;
    EXPECT_EQ(r->get_header_value("X-Tracer-Reason"), "unsupported") << k.feature;
    EXPECT_EQ(r->get_header_value("X-Tracer-Unsupported").rfind(k.feature, 0), 0u)
        << k.feature << ": " << r->get_header_value("X-Tracer-Unsupported");
    EXPECT_EQ(llm.calls(), calls + 1) << k.feature;
    EXPECT_EQ(json::parse(llm.last_body()), json::parse(k.body)) << k.feature;
    if (k.feature == "n = 3") {
      ASSERT_EQ(json::parse(r->body)["choices"].size(), 3u);
      EXPECT_EQ(content_of(r->body, 2), "llm:" + text);
    }
    traces += k.recorded;
    EXPECT_TRUE(eventually([&] { return recorded(*c) == traces; }, 5))
        << k.feature << ": " << recorded(*c) << " traces, expected " << traces;
  }
  auto m = c->Get("/metrics");
  EXPECT_EQ(metric(m->body, R"(tracer_proxy_passthrough_total{why="unsupported"})"),
            static_cast<double>(cases.size()));

  // With --label-json-field the labels are JSON objects: json_object is answered locally.
  RunningServer js([&] {
    serve::ServeOptions j = options();
    j.label_json_field = "intent";
    j.trace_db = tmp.file("traces-json.db");
    return j;
  }());
  auto cj = js.client();
  auto r = cj->Post("/v1/chat/completions",
                    chat(text, kPrompt, {{"response_format", {{"type", "json_object"}}}}),
                    "application/json");
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->get_header_value("X-Tracer-Decision"), "handled");
  EXPECT_EQ(json::parse(content_of(r->body)), json({{"intent", p.surrogate(text)}}));
}

TEST_F(ProxyProtocol, StreamsHandledAndDeferredAnswers) {
  Policy& p = *policy_;
  RunningServer rs(options());
  auto c = rs.client();
  const std::string& handled = p.handled.at(1);
  const std::string& deferred = p.deferred.at(0);

  for (bool usage : {false, true}) {
    json extra{{"stream", true}};
    if (usage) extra["stream_options"] = {{"include_usage", true}};
    // Handled: the surrogate's label as OpenAI chunks; the LLM is not called.
    const int calls = llm.calls();
    auto r = c->Post("/v1/chat/completions", chat(handled, kPrompt, extra), "application/json");
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_EQ(r->get_header_value("X-Tracer-Decision"), "handled");
    EXPECT_EQ(r->get_header_value("Content-Type").rfind("text/event-stream", 0), 0u);
    std::vector<json> ev = testing::sse_events(r->body);
    ASSERT_GE(ev.size(), 4u) << r->body;
    EXPECT_EQ(ev.back(), "[DONE]");
    EXPECT_EQ(streamed_text(ev), p.surrogate(handled));
    EXPECT_EQ(ev[0]["object"], "chat.completion.chunk");
    EXPECT_EQ(ev[ev.size() - (usage ? 3 : 2)]["choices"][0]["finish_reason"], "stop");
    if (usage) {
      EXPECT_GT(ev[ev.size() - 2]["usage"]["total_tokens"].get<int>(), 0);
    }
    EXPECT_EQ(llm.calls(), calls);

    // Deferred: the LLM's own stream, relayed; its assembled answer becomes the trace.
    const double before = recorded(*c);
    r = c->Post("/v1/chat/completions", chat(deferred, kPrompt, extra), "application/json");
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_EQ(r->get_header_value("X-Tracer-Decision"), "deferred");
    EXPECT_EQ(r->get_header_value("Content-Type").rfind("text/event-stream", 0), 0u);
    ev = testing::sse_events(r->body);
    EXPECT_EQ(streamed_text(ev), "llm:" + deferred);
    EXPECT_EQ(ev.back(), "[DONE]");
    EXPECT_EQ(usage, ev[ev.size() - 2].contains("usage")) << r->body;
    EXPECT_EQ(llm.calls(), calls + 1);
    EXPECT_TRUE(json::parse(llm.last_body())["stream"].get<bool>());
    EXPECT_TRUE(eventually([&] { return recorded(*c) == before + 1; }, 5));
  }
  // Relayed as it arrives: the first piece reaches the client long before the last is written.
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/chat/completions";
  // A client that accepts gzip (the OpenAI SDKs do): compressing the relay would hold the
  // events back until the end.
  req.headers = {{"OpenAI-Test-Chunk-Delay-Ms", "250"},
                 {"Content-Type", "application/json"},
                 {"Accept-Encoding", "gzip, deflate"}};
  req.body = chat(deferred, kPrompt, {{"stream", true}});
  const auto t0 = testing::Clock::now();
  double first = -1;
  std::string got;
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    if (first < 0 && std::string(data, n).find("llm:") != std::string::npos)
      first = testing::seconds_since(t0);
    got.append(data, n);
    return true;
  };
  auto streamed = c->send(req);
  ASSERT_TRUE(streamed);
  const double total = testing::seconds_since(t0);
  EXPECT_GE(total, 0.95);  // 4 events, each 250 ms after the previous one
  EXPECT_GT(first, 0);
  // The first content event is the second one: two more follow it, 0.5 s later.
  EXPECT_LT(first, total - 0.25) << "first content at " << first << " s of " << total;
  EXPECT_EQ(streamed_text(testing::sse_events(got)), "llm:" + deferred);

  // The streamed answer's text is what the trace holds ("llm:..." is not a policy label).
  rs.stop();
  auto rows =
      testing::run_cli("traces export --db " + tmp.file("traces.db") + " --include-unknown");
  ASSERT_EQ(rows.exit_code, 0) << rows.err;
  EXPECT_NE(rows.out.find("llm:" + json(deferred).get<std::string>()), std::string::npos)
      << rows.out;
}

// A client that leaves a relayed stream while the LLM is between two pieces ends the relay and
// the upstream call at once (not at the LLM's next piece, 2 s later); that is counted as
// client_cancelled, not as an upstream failure, and records no trace.
TEST_F(ProxyProtocol, AClientLeavingAStreamCancelsTheUpstreamCall) {
  RunningServer rs(options());
  auto c = rs.client();
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/chat/completions";
  req.headers = {{"OpenAI-Test-Chunk-Delay-Ms", "2000"}, {"Content-Type", "application/json"}};
  req.body = chat(policy_->deferred.at(0), kPrompt, {{"stream", true}});
  req.content_receiver = [](const char*, size_t, uint64_t, uint64_t) {
    return false;  // leaves after the first piece
  };
  c->send(req);
  const auto left = testing::Clock::now();
  std::string m;
  ASSERT_TRUE(eventually([&] {
    m = rs.client()->Get("/metrics")->body;
    return metric(m, R"(tracer_upstream_requests_total{outcome="client_cancelled"})") == 1;
  })) << m;
  EXPECT_LT(testing::seconds_since(left), 1.5);  // well before the LLM's next piece
  EXPECT_EQ(metric(m, R"(tracer_upstream_requests_total{outcome="unreachable"})"), 0);
  EXPECT_EQ(metric(m, "tracer_inflight_requests"), 1);  // this /metrics request only
  rs.stop();
  auto rows =
      testing::run_cli("traces export --db " + tmp.file("traces.db") + " --include-unknown");
  EXPECT_EQ(rows.out.find(json(policy_->deferred.at(0)).dump()), std::string::npos) << rows.out;
}

// A streamed request is held to the same rules as a plain one when the upstream fails: a 5xx is
// retried then 502, a 4xx comes back as the upstream wrote it, and a stream cut short by
// --upstream-timeout ends broken (no final chunk), never as a complete answer.
TEST_F(ProxyProtocol, StreamedFailuresAreNotMistakenForAnswers) {
  Policy& p = *policy_;
  serve::ServeOptions o = options();
  o.upstream_timeout_s = 0.5;
  o.upstream_retries = 2;
  o.upstream_backoff_ms = 1;
  RunningServer rs(o);
  auto c = rs.client();
  const std::string body = chat(p.deferred.at(0), kPrompt, {{"stream", true}});
  int calls = llm.calls();
  auto r =
      c->Post("/v1/chat/completions", {{"OpenAI-Test-Status", "503"}}, body, "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 502) << r->body;
  EXPECT_EQ(llm.calls(), calls + 3);  // retried twice
  calls = llm.calls();
  r = c->Post("/v1/chat/completions", {{"OpenAI-Test-Status", "400"}}, body, "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(json::parse(r->body)["error"]["message"], "test status");  // the upstream's own
  EXPECT_EQ(llm.calls(), calls + 1);
  // Events 700 ms apart against a 0.5 s read timeout: cut after the role chunk.
  r = c->Post("/v1/chat/completions", {{"OpenAI-Test-Chunk-Delay-Ms", "700"}}, body,
              "application/json");
  // The client's read fails (no terminating chunk): it cannot take the part for the whole.
  EXPECT_FALSE(r) << "a stream cut short looked complete: " << r->body;
}

// The answer must obey the request's own limits: a label that a stop sequence or max_tokens
// would cut is left to the LLM.
TEST_F(ProxyProtocol, StopSequencesAndMaxTokensThatWouldCutTheLabelAreDeferred) {
  Policy& p = *policy_;
  RunningServer rs(options());
  auto c = rs.client();
  const std::string& text = p.handled.at(0);
  const std::string label = p.surrogate(text);
  struct Case {
    json extra;
    std::string decision;
  };
  for (const Case& k : std::vector<Case>{
           {{{"stop", label.substr(1, 2)}}, "deferred"},
           {{{"stop", json::array({"\n\n", label.substr(0, 1)})}}, "deferred"},
           {{{"stop", "\n"}}, "handled"},
           {{{"max_tokens", 1}}, "deferred"},
           {{{"max_completion_tokens", 2}}, "deferred"},
           {{{"max_tokens", 256}}, "handled"},
       }) {
    auto r = c->Post("/v1/chat/completions", chat(text, kPrompt, k.extra), "application/json");
    ASSERT_EQ(r->status, 200) << k.extra.dump() << r->body;
    EXPECT_EQ(r->get_header_value("X-Tracer-Decision"), k.decision) << k.extra.dump();
  }
  EXPECT_EQ(
      c->Post("/v1/chat/completions", chat(text, kPrompt, {{"max_tokens", -1}}), "application/json")
          ->status,
      400);
}

TEST_F(ProxyProtocol, OtherOpenAiPathsReachTheLlm) {
  RunningServer rs(options());
  auto c = rs.client();
  auto r = c->Get("/v1/models?limit=2");
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->get_header_value("X-Tracer-Decision"), "passthrough");
  EXPECT_EQ(json::parse(r->body)["target"], "/v1/models?limit=2");
  r = c->Post("/v1/embeddings", R"({"model": "e", "input": "hello"})", "application/json");
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(json::parse(r->body)["body"], R"({"model": "e", "input": "hello"})");
  r = c->Delete("/v1/files/abc");
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(json::parse(r->body)["method"], "DELETE");
  r = c->Get("/v1/teapot");  // the upstream's status and body come back as they are
  EXPECT_EQ(r->status, 418);
  r = c->Get("/v1/gone");  // even an empty body: not replaced by tracer's own 404
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(r->body, "");
  EXPECT_EQ(r->get_header_value("X-Tracer-Upstream-Status"), "404");
  EXPECT_EQ(llm.other_calls(), 5);
  EXPECT_FALSE(r->get_header_value("X-Tracer-Policy-Version").empty());
  // Dot segments could leave /v1/ upstream: refused.
  for (const char* path : {"/v1/../etc/passwd", "/v1/%2e%2e/x", "/v1/a/./b"})
    EXPECT_EQ(c->Get(path)->status, 400) << path;
  EXPECT_EQ(llm.other_calls(), 5);
  // The chat completion's query string reaches the upstream (Azure's api-version).
  r = c->Post("/v1/chat/completions?api-version=2024-06-01", chat(policy_->deferred.at(0)),
              "application/json");
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(llm.last_target(), "/v1/chat/completions?api-version=2024-06-01");
  // The chat path without /v1 (some clients' base URL) is the chat endpoint.
  r = c->Post("/chat/completions", chat(policy_->handled.at(0)), "application/json");
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->get_header_value("X-Tracer-Decision"), "handled");
  // tracer's own paths keep their methods.
  r = c->Get("/v1/route");
  EXPECT_EQ(r->status, 405) << r->body;
  EXPECT_EQ(llm.other_calls(), 5);
  auto m = c->Get("/metrics");
  EXPECT_EQ(metric(m->body, R"(tracer_proxy_passthrough_total{why="endpoint"})"), 5);

  // Errors keep OpenAI's shape.
  r = c->Post("/v1/chat/completions", "{", "application/json");
  ASSERT_EQ(r->status, 400);
  EXPECT_FALSE(r->get_header_value("X-Tracer-Policy-Version").empty());
  json e = json::parse(r->body)["error"];
  for (const char* k : {"message", "type", "param", "code"}) EXPECT_TRUE(e.contains(k)) << k;

  // Without --upstream there is nothing to pass to.
  serve::ServeOptions plain = options();
  plain.upstream.clear();
  plain.trace_db.clear();
  RunningServer api(plain);
  EXPECT_EQ(api.client()->Get("/v1/models")->status, 404);
}

}  // namespace
}  // namespace tracer
