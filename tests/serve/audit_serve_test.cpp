// End-to-end shadow audit: an in-process ApiServer on a loopback port (the audit flags are
// ServeOptions fields), real HTTP clients, and an OpenAI-compatible stand-in for the LLM that
// agrees or disagrees with the surrogate on purpose.
#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>

#include "io/trace_store.hpp"
#include "runtime/router.hpp"
#include "serve/http.hpp"
#include "serve/server.hpp"
#include "serve_test_util.hpp"
#include "test_util.hpp"

namespace tracer {
namespace {

using nlohmann::json;
using testing::answer_of;
using testing::body;
using testing::chat_body;
using testing::Clock;
using testing::eventually;
using testing::FakeLlm;
using testing::metric;
using testing::options_error;
using testing::read_file;
using testing::run_cli;
using testing::RunningServer;
using testing::seconds_since;
using testing::TempDir;
using testing::write_file;

// One Banking77 policy (10 labels) shared by the suite; fitting it is the slow part.
using Policy = testing::RoutedPolicy;

class AuditServe : public testing::SharedPolicySuite<Policy> {};

serve::ServeOptions options(const Policy& p) {
  serve::ServeOptions o;
  o.policy_dir = p.path;
  o.port = 0;
  o.threads = 8;
  return o;
}

// Proxies to `llm` and audits every handled request (share 1), first look at 20 rows. Serves a
// copy of the policy in `tmp`: the audit saves its state beside the policy it serves.
serve::ServeOptions audited_options(const Policy& p, const FakeLlm& llm, const TempDir& tmp) {
  serve::ServeOptions o = options(p);
  o.policy_dir = tmp.file("policy");
  std::filesystem::copy(p.path, o.policy_dir, std::filesystem::copy_options::recursive);
  o.upstream = llm.url();
  o.trace_db = tmp.file("traces.db");
  o.audit.share = 1;
  o.audit.min_rows = 20;
  return o;
}

TEST_F(AuditServe, DisagreeingLlmTripsTheAuditAndEverythingIsDeferred) {
  Policy& p = *policy_;
  ASSERT_GE(p.handled.size(), 40u);
  FakeLlm llm([&p](const std::string& text) { return p.other_label(text); });
  TempDir tmp;
  serve::ServeOptions o = audited_options(p, llm, tmp);
  RunningServer rs(o);
  auto c = rs.client();

  // Every handled request is answered by the surrogate at once and audited in the background;
  // 0 agreeing rows out of min_rows trips at the first look.
  for (size_t i = 0; i < 20; ++i) {
    auto r = c->Post("/v1/chat/completions", chat_body(p.handled[i]), "application/json");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_EQ(r->get_header_value("X-Tracer-Decision"), "handled");
    EXPECT_EQ(answer_of(r), p.surrogate(p.handled[i]));
  }
  json a;
  ASSERT_TRUE(eventually([&] {
    a = body(c->Get("/v1/audit"));
    return a["tripped"] == true;
  })) << a.dump();
  EXPECT_EQ(a["enabled"], true);
  EXPECT_EQ(a["policy_version"], p.version());
  EXPECT_DOUBLE_EQ(a["alpha"].get<double>(), 0.95);
  EXPECT_DOUBLE_EQ(a["share"].get<double>(), 1.0);
  EXPECT_EQ(a["agreed"], 0);
  EXPECT_EQ(a["tripped_at_rows"], 20);  // 0 of 20 agree: trips at the first look
  EXPECT_LT(a["upper_bound"].get<double>(), 0.95);
  EXPECT_NE(a["message"].get<std::string>().find("reload"), std::string::npos);

  // Now every decision is deferred with reason "audit", on every endpoint.
  const std::string& text = p.handled[30];
  json d = body(c->Post("/v1/route", json{{"text", text}}.dump(), "application/json"));
  EXPECT_EQ(d["decision"], "deferred");
  EXPECT_EQ(d["reason"], "audit");
  EXPECT_EQ(d["label"], p.surrogate(text));
  json b = body(c->Post("/v1/route/batch", json{{"texts", {p.handled[31], p.deferred[0]}}}.dump(),
                        "application/json"));
  for (const auto& res : b["results"]) {
    EXPECT_EQ(res["decision"], "deferred");
    EXPECT_EQ(res["reason"], "audit");
  }
  int calls_before = llm.calls();
  auto chat = c->Post("/v1/chat/completions", chat_body(text), "application/json");
  ASSERT_EQ(chat->status, 200) << chat->body;
  EXPECT_EQ(chat->get_header_value("X-Tracer-Decision"), "deferred");
  EXPECT_EQ(chat->get_header_value("X-Tracer-Reason"), "audit");
  EXPECT_EQ(answer_of(chat), p.other_label(text));  // the LLM answered
  EXPECT_EQ(llm.calls(), calls_before + 1);         // once: deferred requests are not audited
  EXPECT_EQ(body(c->Get("/healthz"))["audit_tripped"], true);

  std::string mt = c->Get("/metrics")->body;
  EXPECT_EQ(metric(mt, "tracer_audit_tripped"), 1) << mt;
  EXPECT_DOUBLE_EQ(metric(mt, "tracer_audit_target"), 0.95) << mt;
  EXPECT_GE(metric(mt, "tracer_audit_rows"), 20) << mt;
  EXPECT_EQ(metric(mt, "tracer_audit_agreed_rows"), 0) << mt;
  EXPECT_EQ(metric(mt, R"(tracer_audit_requests_total{source="shadow",outcome="agreed"})"), 0)
      << mt;
  EXPECT_EQ(metric(mt, R"(tracer_audit_requests_total{source="shadow",outcome="disagreed"})"),
            metric(mt, "tracer_audit_rows"))
      << mt;
  EXPECT_EQ(metric(mt, R"(tracer_decisions_total{decision="deferred",reason="audit"})"), 4) << mt;

  // Reloading the same policy keeps it tripped: only a refit re-certifies.
  auto same = body(c->Post("/v1/admin/reload", "", "application/json"));
  EXPECT_EQ(same["reloaded"], true);
  EXPECT_EQ(body(c->Get("/v1/audit"))["tripped"], true);
  EXPECT_EQ(body(c->Post("/v1/route", json{{"text", text}}.dump(), "application/json"))["reason"],
            "audit");

  // The audits' LLM answers are traces like any other (source "audit"), flushed at stop.
  int64_t audited = static_cast<int64_t>(metric(mt, "tracer_audit_rows"));
  rs.stop();
  TraceStore store(o.trace_db);
  std::stringstream out;
  TraceStore::ExportOptions eo;
  eo.include_unknown = true;
  store.export_jsonl(out, eo);
  int64_t from_audit = 0, from_deferred = 0;
  for (std::string line; std::getline(out, line);) {
    json t = json::parse(line);
    // Audits are in the traffic sample; so is a request deferred while the audit is tripped
    // (the policy then defers everything: a census of traffic).
    EXPECT_EQ(t["metadata"].value("sampled", false), true) << line;
    if (t["metadata"]["source"] == "audit") {
      ++from_audit;
      EXPECT_EQ(t["metadata"]["decision"], "handled");
      EXPECT_EQ(t["teacher"], p.other_label(t["input"]));
    } else {
      ++from_deferred;
    }
  }
  EXPECT_EQ(from_audit, audited);
  EXPECT_EQ(from_deferred, 1);
}

TEST_F(AuditServe, AgreeingLlmDoesNotTripAndAuditsAreBounded) {
  Policy& p = *policy_;
  ASSERT_GE(p.handled.size(), 60u);
  FakeLlm llm([&p](const std::string& text) { return p.surrogate(text); });
  TempDir tmp;
  serve::ServeOptions o = audited_options(p, llm, tmp);
  o.audit_concurrency = 1;
  o.audit_queue = 2;
  RunningServer rs(o);
  auto c = rs.client();

  for (size_t i = 0; i < 50; ++i) {
    auto r = c->Post("/v1/chat/completions", chat_body(p.handled[i]), "application/json");
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_EQ(r->get_header_value("X-Tracer-Decision"), "handled");
    // One at a time so the single audit worker keeps up.
    ASSERT_TRUE(eventually([&] { return llm.calls() == static_cast<int>(i + 1); }));
  }
  json a;
  ASSERT_TRUE(eventually([&] {
    a = body(c->Get("/v1/audit"));
    return a["rows"] == 50;
  })) << a.dump();
  EXPECT_EQ(a["agreed"], 50);
  EXPECT_EQ(a["tripped"], false);
  EXPECT_DOUBLE_EQ(a["agreement"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(a["upper_bound"].get<double>(), 1.0);

  // A slow LLM never slows the handled answers down, and the audit backlog is bounded: with one
  // worker and a queue of 2, a burst of 8 leaves 1 running + 2 queued and drops the rest.
  httplib::Headers slow{{"OpenAI-Test-Delay-Ms", "1000"}};
  auto first = c->Post("/v1/chat/completions", slow, chat_body(p.handled[50]), "application/json");
  ASSERT_EQ(first->status, 200) << first->body;
  ASSERT_TRUE(eventually([&] { return llm.calls() == 51; }));  // the worker is busy now
  auto t0 = Clock::now();
  for (size_t i = 51; i < 58; ++i) {
    auto r = c->Post("/v1/chat/completions", slow, chat_body(p.handled[i]), "application/json");
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_EQ(r->get_header_value("X-Tracer-Decision"), "handled");
  }
  EXPECT_LT(seconds_since(t0), 0.8);  // each audit alone takes 1 s
  ASSERT_TRUE(eventually([&] { return body(c->Get("/v1/audit"))["rows"] == 53; }));
  std::string mt = c->Get("/metrics")->body;
  EXPECT_EQ(metric(mt, R"(tracer_audit_requests_total{source="shadow",outcome="agreed"})"), 53)
      << mt;
  EXPECT_EQ(metric(mt, R"(tracer_audit_requests_total{source="shadow",outcome="dropped"})"), 5)
      << mt;
  EXPECT_EQ(metric(mt, "tracer_audit_rows"), 53) << mt;
  EXPECT_EQ(metric(mt, "tracer_audit_agreed_rows"), 53) << mt;
  EXPECT_EQ(metric(mt, "tracer_audit_tripped"), 0) << mt;
  EXPECT_EQ(metric(mt, R"(tracer_decisions_total{decision="handled"})"), 58) << mt;
  EXPECT_EQ(metric(mt, R"(tracer_decisions_total{decision="deferred",reason="audit"})"), 0) << mt;
  EXPECT_EQ(metric(mt, R"(tracer_upstream_requests_total{outcome="ok"})"), 53) << mt;
  EXPECT_EQ(metric(mt, "tracer_audit_lost_rows"), 5) << mt;
  EXPECT_EQ(llm.calls(), 53);
  // The policy's audit state says what its sample lost, and where the rows came from.
  json st = body(c->Get("/v1/audit"));
  EXPECT_EQ(st["dropped"], 5) << st.dump();
  EXPECT_EQ(st["unusable"], 0) << st.dump();
  EXPECT_EQ(st["shadow_rows"], 53) << st.dump();
  EXPECT_EQ(st["feedback_rows"], 0) << st.dump();
}

TEST_F(AuditServe, FeedbackEndpointTripsAndARefitRecovers) {
  Policy& p = *policy_;
  ASSERT_GE(p.handled.size(), 40u);
  ASSERT_FALSE(p.deferred.empty());
  // Served from a copy: the refit below must not change the suite's policy.
  TempDir tmp;
  std::string folder = tmp.file("policy");
  std::filesystem::copy(p.path, folder, std::filesystem::copy_options::recursive);
  serve::ServeOptions o = options(p);
  o.policy_dir = folder;
  o.audit.min_rows = 30;
  RunningServer rs(o);
  auto c = rs.client();
  auto post = [&](const std::string& text, const std::string& label) {
    return c->Post("/v1/audit", json{{"text", text}, {"label", label}, {"id", 7}}.dump(),
                   "application/json");
  };

  json fresh = body(c->Get("/v1/audit"));
  EXPECT_EQ(fresh["rows"], 0);
  EXPECT_EQ(fresh["tripped"], false);
  EXPECT_DOUBLE_EQ(fresh["share"].get<double>(), 0.0);  // feedback needs no proxy sampling

  // Agreement and disagreement on handled texts are recorded; deferred texts are not.
  json agree = body(post(p.handled[0], p.surrogate(p.handled[0])));
  EXPECT_EQ(agree["recorded"], true);
  EXPECT_EQ(agree["agreed"], true);
  EXPECT_EQ(agree["decision"], "handled");
  EXPECT_EQ(agree["id"], 7);
  EXPECT_EQ(agree["audit"]["rows"], 1);
  json skip = body(post(p.deferred[0], "card_arrival"));
  EXPECT_EQ(skip["recorded"], false);
  EXPECT_EQ(skip["decision"], "deferred");
  EXPECT_TRUE(skip["reason"].is_string());
  EXPECT_EQ(skip["audit"]["rows"], 1);
  json bad = body(post(p.handled[1], p.other_label(p.handled[1])));
  EXPECT_EQ(bad["agreed"], false);
  EXPECT_EQ(bad["audit"]["rows"], 2);
  EXPECT_EQ(bad["audit"]["agreed"], 1);

  auto missing = c->Post("/v1/audit", R"({"text": "hi"})", "application/json");
  EXPECT_EQ(missing->status, 400);
  EXPECT_NE(missing->body.find("label"), std::string::npos);
  EXPECT_EQ(c->Post("/v1/audit", R"({"text": "hi", "label": "  "})", "application/json")->status,
            400);
  EXPECT_EQ(c->Put("/v1/audit", "{}", "application/json")->status, 405);

  // The LLM keeps disagreeing: the audit trips and /v1/route defers with reason "audit".
  size_t i = 2;
  for (; i < p.handled.size() && !body(c->Get("/v1/audit"))["tripped"].get<bool>(); ++i)
    post(p.handled[i], p.other_label(p.handled[i]));
  json a = body(c->Get("/v1/audit"));
  ASSERT_EQ(a["tripped"], true) << a.dump();
  EXPECT_GE(a["tripped_at_rows"].get<int>(), 30);
  EXPECT_LE(a["tripped_at_rows"].get<int>(), 32);
  EXPECT_EQ(a["feedback_rows"], a["rows"]) << a.dump();  // counted apart from shadow rows
  EXPECT_EQ(a["shadow_rows"], 0) << a.dump();
  json d = body(c->Post("/v1/route", json{{"text", p.handled[0]}}.dump(), "application/json"));
  EXPECT_EQ(d["decision"], "deferred");
  EXPECT_EQ(d["reason"], "audit");
  std::string mt = c->Get("/metrics")->body;
  EXPECT_EQ(metric(mt, "tracer_audit_tripped"), 1) << mt;
  EXPECT_EQ(metric(mt, "tracer_audit_rows"), a["rows"].get<double>()) << mt;
  EXPECT_EQ(metric(mt, "tracer_audit_agreed_rows"), 1) << mt;
  EXPECT_EQ(metric(mt, R"(tracer_audit_requests_total{source="feedback",outcome="not_handled"})"),
            1)
      << mt;
  EXPECT_EQ(metric(mt, R"(tracer_requests_total{endpoint="/v1/audit",status="400"})"), 2) << mt;

  // Recovery: refit into the served folder (a new policy version) and reload.
  auto refit = p.fit(folder, "0.9");
  ASSERT_TRUE(refit.exit_code == 0 || refit.exit_code == 4) << refit.err;
  json r = body(c->Post("/v1/admin/reload", "", "application/json"));
  ASSERT_EQ(r["reloaded"], true) << r.dump();
  ASSERT_NE(r["policy_version"], p.version());
  json after = body(c->Get("/v1/audit"));
  EXPECT_EQ(after["tripped"], false);
  EXPECT_EQ(after["rows"], 0);
  EXPECT_EQ(after["policy_version"], r["policy_version"]);
  EXPECT_DOUBLE_EQ(after["alpha"].get<double>(), 0.9);
  EXPECT_EQ(body(c->Get("/healthz"))["audit_tripped"], false);
  json routed = body(c->Post("/v1/route", json{{"text", p.handled[0]}}.dump(), "application/json"));
  EXPECT_NE(routed.value("reason", ""), "audit");
}

// The audit state lives beside the policy: a trip saved at its look survives a restart (and a
// different --audit-min-rows), a malformed state file is reported and ignored, and a new policy
// version starts over.
TEST_F(AuditServe, ATripSurvivesARestartUntilANewVersion) {
  Policy& p = *policy_;
  TempDir tmp;
  std::string folder = tmp.file("policy");
  std::filesystem::copy(p.path, folder, std::filesystem::copy_options::recursive);
  const std::string state = folder + "/audit_state.json";
  serve::ServeOptions o = options(p);
  o.policy_dir = folder;
  o.audit.min_rows = 20;
  json tripped;
  {
    RunningServer rs(o);
    auto c = rs.client();
    for (size_t i = 0; i < 20; ++i)
      c->Post("/v1/audit",
              json{{"text", p.handled[i]}, {"label", p.other_label(p.handled[i])}}.dump(),
              "application/json");
    tripped = body(c->Get("/v1/audit"));
    ASSERT_EQ(tripped["tripped"], true) << tripped.dump();
    // Saved at the look that tripped, while the server runs (a kill -9 now loses nothing).
    ASSERT_TRUE(std::filesystem::exists(state));
    json saved = json::parse(read_file(state));
    EXPECT_EQ(saved["policy_version"], p.version());
    EXPECT_EQ(saved["state"]["tripped"], true);
    EXPECT_EQ(saved["state"]["rows"], 20);
    // Two more rows after the look: saved when the server stops.
    for (size_t i = 20; i < 22; ++i)
      c->Post("/v1/audit",
              json{{"text", p.handled[i]}, {"label", p.other_label(p.handled[i])}}.dump(),
              "application/json");
  }
  EXPECT_EQ(json::parse(read_file(state))["state"]["rows"], 22);

  // A restart resumes it, even with another --audit-min-rows.
  o.audit.min_rows = 50;
  {
    ::testing::internal::CaptureStderr();
    RunningServer rs(o);
    auto c = rs.client();
    json a = body(c->Get("/v1/audit"));
    std::string err = ::testing::internal::GetCapturedStderr();
    EXPECT_EQ(a["tripped"], true) << a.dump();
    EXPECT_EQ(a["rows"], 22);
    EXPECT_EQ(a["restored_rows"], 22);
    EXPECT_EQ(a["min_rows"], 20);  // the saved schedule, not the flag
    EXPECT_EQ(a["tripped_at_rows"], tripped["tripped_at_rows"]);
    EXPECT_NE(err.find("resumed"), std::string::npos) << err;
    EXPECT_NE(err.find("keeps --audit-min-rows 20"), std::string::npos) << err;
    json d = body(c->Post("/v1/route", json{{"text", p.handled[0]}}.dump(), "application/json"));
    EXPECT_EQ(d["reason"], "audit");
    EXPECT_EQ(body(c->Get("/healthz"))["audit_tripped"], true);
  }

  // A malformed state file is reported and the audit starts over.
  write_file(state,
             R"({"format": "tracer-audit-state", "format_version": 1, "policy_version": ")" +
                 p.version() +
                 R"(", "alpha": 0.95, "delta": 0.05, "min_rows": 20, "state": {"rows": -3}})");
  {
    ::testing::internal::CaptureStderr();
    RunningServer rs(o);
    auto c = rs.client();
    json a = body(c->Get("/v1/audit"));
    std::string err = ::testing::internal::GetCapturedStderr();
    EXPECT_EQ(a["tripped"], false) << a.dump();
    EXPECT_EQ(a["rows"], 0);
    EXPECT_NE(err.find("audit_state.json"), std::string::npos) << err;
    EXPECT_NE(err.find("\"rows\""), std::string::npos) << err;
  }

  // A state saved for another version is not this version's.
  json other = json::parse(R"({"format": "tracer-audit-state", "format_version": 1,
    "policy_version": "someone-else", "alpha": 0.95, "delta": 0.05, "min_rows": 20,
    "state": {"rows": 20, "agreed": 0, "next_look": 1, "last_look": 0, "last_rows": 20,
              "last_agreed": 0, "tripped": true, "tripped_at_rows": 20, "shadow_rows": 0,
              "feedback_rows": 20, "unusable": 0, "dropped": 0}})");
  write_file(state, other.dump());
  {
    RunningServer rs(o);
    EXPECT_EQ(body(rs.client()->Get("/v1/audit"))["tripped"], false);
  }
}

TEST(AuditServeFlags, BadAuditOptionsAreClearErrors) {
  TempDir dir;
  std::string out;
  for (const auto& l : testing::banking77_lines(4, 60)) out += l + "\n";
  write_file(dir.file("train.jsonl"), out);
  auto r = run_cli("fit " + dir.file("train.jsonl") + " -o " + dir.file("policy") +
                   " --quiet --zoo complement_nb");
  ASSERT_TRUE(r.exit_code == 0 || r.exit_code == 4) << r.err;
  serve::ServeOptions o;
  o.policy_dir = dir.file("policy");
  o.port = 0;
  o.audit.share = 0.1;  // no upstream
  EXPECT_NE(options_error(o).find("--upstream"), std::string::npos);
  o.upstream = "http://127.0.0.1:9";
  o.trace_db = dir.file("traces.db");
  o.audit.share = 1.5;
  EXPECT_NE(options_error(o).find("--audit-share"), std::string::npos);
  o.audit.share = 0.1;
  o.audit.min_rows = 0;
  EXPECT_NE(options_error(o).find("--audit-min-rows"), std::string::npos);
  o.audit.min_rows = 50;
  o.audit_concurrency = 0;
  EXPECT_NE(options_error(o).find("--audit-concurrency"), std::string::npos);
  o.audit_concurrency = 2;
  EXPECT_EQ(options_error(o), "");
}

}  // namespace
}  // namespace tracer
