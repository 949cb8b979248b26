// The proxy driven by the official OpenAI Node client (npm `openai`, installed into
// tests/node/node_modules by scripts/install-deps.sh): plain, streamed, n, tools, embeddings,
// models and an error, as an application would call them (tests/node/openai_client.mjs).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "serve/server.hpp"
#include "serve_test_util.hpp"

namespace tracer {
namespace {

using nlohmann::json;
using testing::FakeLlm;
using testing::RunningServer;
using testing::TempDir;

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

using Policy = testing::RoutedPolicy;

class OpenAiClient : public testing::SharedPolicySuite<Policy> {};

TEST_F(OpenAiClient, OfficialNodeClientAgainstTheProxy) {
  const Policy& p = *policy_;
  ASSERT_FALSE(p.handled.empty());
  ASSERT_FALSE(p.deferred.empty());
  const std::string handled = p.handled[0], deferred = p.deferred[0];
  const std::string handled_label = p.surrogate(handled);
  const std::string dir = testing::source_path("tests/node");
  ASSERT_TRUE(std::filesystem::exists(dir + "/node_modules/openai/package.json"))
      << "the OpenAI Node client is not installed: run scripts/install-deps.sh (it runs `npm ci` "
         "in tests/node)";
  ASSERT_EQ(std::system("node --version >/dev/null 2>&1"), 0) << "node is not on the PATH";

  FakeLlm llm([](const std::string& text) { return "llm:" + text; });
  TempDir tmp;
  serve::ServeOptions o;
  o.policy_dir = p.path;
  o.port = 0;
  o.threads = 8;
  o.upstream = llm.url();
  o.trace_db = tmp.file("traces.db");
  RunningServer rs(o);

  const std::string out = tmp.file("out.json"), err = tmp.file("err.txt");
  const std::string cmd = "node " + shell_quote(dir + "/openai_client.mjs") + " " +
                          shell_quote("http://127.0.0.1:" + std::to_string(rs.port())) + " " +
                          shell_quote(handled) + " " + shell_quote(deferred) + " >" + out + " 2>" +
                          err;
  const int status = std::system(cmd.c_str());
  ASSERT_EQ(status, 0) << testing::read_file(err);
  const json r = json::parse(testing::read_file(out));

  EXPECT_EQ(r["handled"]["decision"], "handled");
  EXPECT_EQ(r["handled"]["contents"], json::array({handled_label}));
  EXPECT_GT(r["handled"]["usage"]["total_tokens"].get<int>(), 0);
  EXPECT_EQ(r["deferred"]["decision"], "deferred");
  EXPECT_EQ(r["deferred"]["contents"], json::array({"llm:" + deferred}));

  EXPECT_EQ(r["stream_handled"]["decision"], "handled");
  EXPECT_EQ(r["stream_handled"]["content"], handled_label);
  EXPECT_EQ(r["stream_handled"]["finish"], "stop");
  EXPECT_GT(r["stream_handled"]["usage"]["total_tokens"].get<int>(), 0);
  EXPECT_EQ(r["stream_deferred"]["decision"], "deferred");
  EXPECT_EQ(r["stream_deferred"]["content"], "llm:" + deferred);
  EXPECT_EQ(r["stream_deferred"]["finish"], "stop");
  EXPECT_EQ(r["stream_deferred"]["usage"]["total_tokens"], 14);  // the LLM's own count

  EXPECT_EQ(r["n3"]["decision"], "deferred");
  EXPECT_EQ(r["n3"]["reason"], "unsupported");
  EXPECT_EQ(r["n3"]["contents"].size(), 3u);
  EXPECT_EQ(r["tools"]["decision"], "deferred");
  EXPECT_EQ(r["tools"]["reason"], "unsupported");

  EXPECT_EQ(r["embeddings"], json({{"count", 1}, {"dims", 3}}));
  EXPECT_EQ(r["models"], json::array({"fake-model"}));
  EXPECT_EQ(r["error"]["status"], 400);
  EXPECT_EQ(r["error"]["type"], "invalid_request_error");
}

}  // namespace
}  // namespace tracer
