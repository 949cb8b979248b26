// The memory tier end to end: `tracer fit` on a log with repeated requests, then the CLI, the
// route API and the proxy answer a logged request from memory (reason "memory"), without a
// surrogate and without calling the LLM.
#include <gtest/gtest.h>

#include "serve_test_util.hpp"

namespace tracer::testing {
namespace {

using nlohmann::json;

struct MemoryFixture {
  TempDir dir;
  std::string traces = dir.file("traces.jsonl");
  std::string policy = dir.file("policy");
  std::map<std::string, std::string> teacher;  // input -> its logged label
  std::vector<std::string> inputs;

  MemoryFixture() {
    // Every logged request three times: a log where traffic repeats itself.
    std::string out;
    for (const auto& line : banking77_lines(6, 40)) {
      json j = json::parse(line);
      teacher[j["input"]] = j["teacher"];
      inputs.push_back(j["input"]);
      for (int k = 0; k < 3; ++k) out += line + "\n";
    }
    write_file(traces, out);
    CommandResult r =
        run_cli("fit " + traces + " -o " + policy + " --target 0.9 --threads 2" + fast_zoo());
    if (r.exit_code != 0) throw std::runtime_error("fit failed: " + r.err);
  }
  json manifest() const { return json::parse(read_file(policy + "/manifest.json")); }
};

TEST(MemoryServe, FitPredictRouteAndProxyAnswerRepeatsFromMemory) {
  MemoryFixture f;
  const json m = f.manifest();
  ASSERT_TRUE(m["memory"]["certified"].get<bool>()) << m["memory"].dump(2);
  EXPECT_GE(m["memory"]["bound"].get<double>(), 0.9);
  EXPECT_EQ(m["memory"]["self_consistency"].get<double>(), 1.0);
  EXPECT_NEAR(m["gate"]["delta"].get<double>() + m["memory"]["delta"].get<double>(), 0.05, 1e-12);
  EXPECT_NE(m["gate"]["guarantee"].get<std::string>().find("remembered"), std::string::npos);
  // The report's headline says what the memory tier answers.
  const json q = json::parse(read_file(f.policy + "/qualitative_report.json"));
  EXPECT_NE(q["headline"]["explanation"].get<std::string>().find("memory tier"), std::string::npos)
      << q["headline"].dump();

  // The summary says so.
  CommandResult fit_again = run_cli("fit " + f.traces + " -o " + f.dir.file("again") +
                                    " --target 0.9 --threads 2 --no-report" + fast_zoo());
  ASSERT_EQ(fit_again.exit_code, 0) << fit_again.err;
  EXPECT_NE(fit_again.out.find("Memory tier (delta"), std::string::npos) << fit_again.out;

  // CLI predict: remembered inputs answer with their logged label, reason memory.
  size_t remembered = 0;
  std::string first_remembered;
  std::string queries;
  for (size_t i = 0; i < 20; ++i) queries += json{{"input", f.inputs[i]}, {"id", i}}.dump() + "\n";
  write_file(f.dir.file("queries.jsonl"), queries);
  CommandResult p = run_cli("predict " + f.policy + " --input " + f.dir.file("queries.jsonl"));
  ASSERT_EQ(p.exit_code, 0) << p.err;
  std::istringstream lines(p.out);
  for (std::string line; std::getline(lines, line);) {
    json d = json::parse(line);
    const std::string& input = f.inputs[d["id"].get<size_t>()];
    if (d.value("reason", "") != "memory") continue;
    ++remembered;
    if (first_remembered.empty()) first_remembered = input;
    EXPECT_EQ(d["decision"], "handled");
    EXPECT_EQ(d["label"], f.teacher.at(input));
  }
  EXPECT_GE(remembered, 18u);  // an input is left out only when all three copies were held out
  ASSERT_FALSE(first_remembered.empty());

  // The route API and the proxy.
  FakeLlm llm(f.teacher);
  serve::ServeOptions o;
  o.policy_dir = f.policy;
  o.port = 0;
  o.threads = 4;
  o.upstream = llm.url();
  o.trace_db = f.dir.file("traces.db");
  RunningServer rs(o);
  auto c = rs.client();
  json d = body(c->Post("/v1/route", json{{"text", first_remembered}}.dump(), "application/json"));
  EXPECT_EQ(d["decision"], "handled");
  EXPECT_EQ(d["reason"], "memory");
  EXPECT_EQ(d["label"], f.teacher.at(first_remembered));
  json never = body(
      c->Post("/v1/route", json{{"text", "zzqx never logged vvkw"}}.dump(), "application/json"));
  EXPECT_NE(never.value("reason", ""), "memory");
  for (const char* blank : {"", "???", "...", " "}) {
    json b = body(c->Post("/v1/route", json{{"text", blank}}.dump(), "application/json"));
    EXPECT_NE(b.value("reason", ""), "memory") << blank;
  }

  auto r = c->Post("/v1/chat/completions", chat_body(first_remembered), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->get_header_value("X-Tracer-Decision"), "handled");
  EXPECT_EQ(r->get_header_value("X-Tracer-Reason"), "memory");
  EXPECT_EQ(answer_of(r), f.teacher.at(first_remembered));
  EXPECT_EQ(json::parse(r->body)["tracer"]["served_by"], "memory");
  EXPECT_EQ(llm.calls(), 0);

  const std::string mt = c->Get("/metrics")->body;
  EXPECT_EQ(metric(mt, "tracer_memory_answers_total"), 2) << mt;
}

// The LLM changed its mind about a remembered request: the shadow audit (proxy) or a client's
// feedback sees it, the entry is evicted, and the request goes through the gate from then on.
TEST(MemoryServe, AStaleRememberedAnswerIsEvictedByTheAuditOrFeedback) {
  MemoryFixture f;
  // Two remembered inputs; the LLM now answers both with another label.
  std::vector<std::string> remembered;
  {
    Router router = Router::load(f.policy);
    RouteScratch s = router.make_scratch();
    for (const auto& in : f.inputs)
      if (remembered.size() < 2 && router.route(in, s).stage == 0) remembered.push_back(in);
  }
  ASSERT_EQ(remembered.size(), 2u);
  std::map<std::string, std::string> changed = f.teacher;
  for (const auto& in : remembered) {
    for (const auto& [text, label] : f.teacher)
      if (label != f.teacher.at(in)) {
        changed[in] = label;
        break;
      }
  }
  FakeLlm llm(changed);
  serve::ServeOptions o;
  o.policy_dir = f.policy;
  o.port = 0;
  o.threads = 4;
  o.upstream = llm.url();
  o.trace_db = f.dir.file("traces.db");
  o.audit.share = 1;  // audit every handled proxy request
  RunningServer rs(o);
  auto c = rs.client();

  // Proxy: answered from memory once; the audit's fresh answer evicts the entry.
  auto r = c->Post("/v1/chat/completions", chat_body(remembered[0]), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->get_header_value("X-Tracer-Reason"), "memory");
  ASSERT_TRUE(eventually(
      [&] { return metric(c->Get("/metrics")->body, "tracer_memory_evictions_total") == 1; }));
  json again = body(c->Post("/v1/route", json{{"text", remembered[0]}}.dump(), "application/json"));
  EXPECT_NE(again.value("reason", ""), "memory") << again.dump();

  // Feedback: a client reports the LLM's new label for the other one.
  json fb = body(c->Post("/v1/audit",
                         json{{"text", remembered[1]}, {"label", changed[remembered[1]]}}.dump(),
                         "application/json"));
  EXPECT_EQ(fb["evicted"], true) << fb.dump();
  EXPECT_EQ(fb["answered_by"], "memory") << fb.dump();
  json after = body(c->Post("/v1/route", json{{"text", remembered[1]}}.dump(), "application/json"));
  EXPECT_NE(after.value("reason", ""), "memory") << after.dump();
  const std::string mt = c->Get("/metrics")->body;
  EXPECT_EQ(metric(mt, "tracer_memory_evictions_total"), 2) << mt;
  const json mem = json::parse(read_file(f.policy + "/manifest.json"))["memory"];
  EXPECT_EQ(metric(mt, "tracer_memory_entries"), mem["entries"].get<double>() - 2) << mt;
}

// --memory-ttl: remembered answers are used until the fit is that old, then not at all.
TEST(MemoryServe, RememberedAnswersExpireAfterTheTtl) {
  MemoryFixture f;
  std::string remembered;
  {
    Router router = Router::load(f.policy);
    RouteScratch s = router.make_scratch();
    for (const auto& in : f.inputs)
      if (remembered.empty() && router.route(in, s).stage == 0) remembered = in;
  }
  ASSERT_FALSE(remembered.empty());
  for (int64_t ttl : {int64_t{7 * 86400}, int64_t{1}}) {
    serve::ServeOptions o;
    o.policy_dir = f.policy;
    o.port = 0;
    o.threads = 2;
    o.memory.ttl_s = ttl;
    if (ttl == 1) std::this_thread::sleep_for(std::chrono::milliseconds(1100));
    RunningServer rs(o);
    auto c = rs.client();
    json d = body(c->Post("/v1/route", json{{"text", remembered}}.dump(), "application/json"));
    const bool fresh = ttl > 1;
    EXPECT_EQ(d.value("reason", "") == "memory", fresh) << ttl << ": " << d.dump();
    EXPECT_EQ(metric(c->Get("/metrics")->body, "tracer_memory_expired"), fresh ? 0 : 1);
  }
  CommandResult bad = run_cli("serve " + f.policy + " --port 0 --memory-ttl 7days");
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  EXPECT_NE(bad.err.find("--memory-ttl"), std::string::npos) << bad.err;
}

TEST(MemoryServe, OffLeavesTheWholeDeltaToTheGate) {
  TempDir dir;
  std::string out;
  for (const auto& line : banking77_lines(6, 40))
    for (int k = 0; k < 3; ++k) out += line + "\n";
  write_file(dir.file("t.jsonl"), out);
  CommandResult r = run_cli("fit " + dir.file("t.jsonl") + " -o " + dir.file("p") +
                            " --memory off --no-report --threads 2" + fast_zoo());
  ASSERT_TRUE(r.exit_code == 0 || r.exit_code == 4) << r.err;
  json m = json::parse(read_file(dir.file("p/manifest.json")));
  EXPECT_FALSE(m["memory"]["active"].get<bool>());
  EXPECT_EQ(m["gate"]["delta"].get<double>(), 0.05);
  EXPECT_EQ(m["options"]["memory"]["enabled"], false);
  CommandResult bad =
      run_cli("fit " + dir.file("t.jsonl") + " -o " + dir.file("q") + " --memory sometimes");
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  CommandResult nan =
      run_cli("fit " + dir.file("t.jsonl") + " -o " + dir.file("q") + " --memory-holdout nan");
  EXPECT_EQ(nan.exit_code, 2) << nan.err;
  // One file given twice would log every call twice: refused.
  CommandResult twice =
      run_cli("fit " + dir.file("t.jsonl") + " " + dir.file("t.jsonl") + " -o " + dir.file("q"));
  EXPECT_EQ(twice.exit_code, 2) << twice.err;
  EXPECT_NE(twice.err.find("given twice"), std::string::npos) << twice.err;
}

}  // namespace
}  // namespace tracer::testing
