// End-to-end drift warning: an in-process ApiServer on a loopback port (the drift flags are
// ServeOptions fields) routing traffic like the traces, then traffic of other topics, over real
// HTTP. Drift must show in /v1/drift, /healthz and /metrics, and never change a decision.
#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include "runtime/router.hpp"
#include "serve/http.hpp"
#include "serve/metrics.hpp"
#include "serve/server.hpp"
#include "serve_test_util.hpp"
#include "test_util.hpp"

namespace tracer {
namespace {

using nlohmann::json;
using testing::body;
using testing::metric;
using testing::options_error;
using testing::read_file;
using testing::run_cli;
using testing::RunningServer;
using testing::TempDir;
using testing::write_file;

// One Banking77 policy (10 labels) shared by the suite, and test texts of its labels (like the
// traces) and of 30 other labels (other topics: what a product change would bring).
struct Policy : testing::BankingPolicy {
  std::vector<std::string> like, unlike;

  Policy() {
    std::set<std::string> others;
    for (const auto& [input, label] : testing::banking77_test()) {
      if (labels.count(label)) {
        like.push_back(input);
      } else if (others.count(label) || others.size() < 30) {
        others.insert(label);
        unlike.push_back(input);
      }
    }
  }
  // The router's own decision, as /v1/route reports it.
  std::pair<std::string, std::string> decision(const std::string& text) const {
    RouteScratch s = router->make_scratch();
    RouteResult r = router->route(text, s);
    return {r.handled ? "handled" : "deferred", r.handled ? "" : reason_name(r.reason)};
  }
};

class DriftServe : public testing::SharedPolicySuite<Policy> {};

serve::ServeOptions options(const std::string& dir) {
  serve::ServeOptions o;
  o.policy_dir = dir;
  o.port = 0;
  o.threads = 4;
  o.drift.window = 300;
  o.drift.min_rows = 200;
  return o;
}

// Routes `texts` in batches of 50; checks each decision is the router's own.
void route_all(httplib::Client& c, const Policy& p, const std::vector<std::string>& texts) {
  for (size_t i = 0; i < texts.size(); i += 50) {
    std::vector<std::string> part(texts.begin() + i,
                                  texts.begin() + std::min(texts.size(), i + 50));
    json b = body(c.Post("/v1/route/batch", json{{"texts", part}}.dump(), "application/json"));
    ASSERT_EQ(b["results"].size(), part.size()) << b.dump();
    for (size_t k = 0; k < part.size(); ++k) {
      auto [decision, reason] = p.decision(part[k]);
      EXPECT_EQ(b["results"][k]["decision"], decision) << part[k];
      EXPECT_EQ(b["results"][k].value("reason", ""), reason) << part[k];
    }
  }
}

TEST_F(DriftServe, TrafficLikeTheTracesShowsNoDrift) {
  Policy& p = *policy_;
  ASSERT_GE(p.like.size(), 300u);
  ASSERT_LT(p.like.size(), 500u);  // one look: the second needs 500 routed inputs
  RunningServer rs(options(p.path));
  auto c = rs.client();

  json fresh = body(c->Get("/v1/drift"));
  EXPECT_EQ(fresh["available"], false);
  EXPECT_EQ(fresh["rows_seen"], 0);
  EXPECT_EQ(fresh["looks"], 0);
  EXPECT_EQ(fresh["policy_version"], p.version());
  EXPECT_NE(fresh["message"].get<std::string>().find("collecting"), std::string::npos)
      << fresh.dump();

  // One text through /v1/route, the rest in batches: both record.
  json one = body(c->Post("/v1/route", json{{"text", p.like[0]}}.dump(), "application/json"));
  EXPECT_EQ(one["decision"], p.decision(p.like[0]).first);
  EXPECT_EQ(body(c->Get("/v1/drift"))["rows_seen"], 1);
  route_all(*c, p, std::vector<std::string>(p.like.begin() + 1, p.like.end()));

  json d = body(c->Get("/v1/drift"));
  EXPECT_EQ(d["available"], true) << d.dump();
  EXPECT_EQ(d["drift"], false) << d.dump();
  // The first look tested the first 200 routed (--drift-min-rows); the next tests 300 more.
  EXPECT_EQ(d["rows_seen"], p.like.size()) << d.dump();
  EXPECT_EQ(d["looks"], 1) << d.dump();
  EXPECT_EQ(d["rows"], 200) << d.dump();
  EXPECT_EQ(d["next_look_rows"], 500) << d.dump();
  EXPECT_EQ(d["window"], 300);
  EXPECT_DOUBLE_EQ(d["level"].get<double>(), 0.01);
  EXPECT_DOUBLE_EQ(d["look_level"].get<double>(), 0.005);
  EXPECT_EQ(d["min_rows"], 200);
  EXPECT_GT(d["p_value"].get<double>(), 0.005) << d.dump();
  EXPECT_GT(d["reference_handled_share"].get<double>(), 0) << d.dump();
  EXPECT_NE(d["message"].get<std::string>().find("no drift"), std::string::npos) << d.dump();
  EXPECT_EQ(body(c->Get("/healthz"))["drift"], false);
  std::string mt = c->Get("/metrics")->body;
  EXPECT_EQ(metric(mt, "tracer_drift_detected"), 0) << mt;
  EXPECT_EQ(metric(mt, "tracer_drift_available"), 1) << mt;
  EXPECT_EQ(metric(mt, "tracer_drift_window_rows"), 200) << mt;
  EXPECT_EQ(metric(mt, "tracer_drift_rows_seen"), p.like.size()) << mt;
  EXPECT_EQ(metric(mt, "tracer_drift_looks"), 1) << mt;
  EXPECT_DOUBLE_EQ(metric(mt, "tracer_drift_ks"), d["ks"].get<double>()) << mt;
  EXPECT_GT(metric(mt, "tracer_drift_p_value"), 0.005) << mt;
}

TEST_F(DriftServe, OtherTopicsRaiseTheWarningButDecisionsAreUnchanged) {
  Policy& p = *policy_;
  ASSERT_GE(p.unlike.size(), 300u);
  // Served from a copy: the refit below must not change the suite's policy.
  TempDir tmp;
  std::string folder = tmp.file("policy");
  std::filesystem::copy(p.path, folder, std::filesystem::copy_options::recursive);
  RunningServer rs(options(folder));
  auto c = rs.client();

  ::testing::internal::CaptureStderr();
  route_all(*c, p, std::vector<std::string>(p.unlike.begin(), p.unlike.begin() + 300));
  json d = body(c->Get("/v1/drift"));
  EXPECT_EQ(d["available"], true) << d.dump();
  EXPECT_EQ(d["drift"], true) << d.dump();
  EXPECT_LT(d["p_value"].get<double>(), 0.005) << d.dump();
  EXPECT_EQ(d["detected_at_look"], 1) << d.dump();
  EXPECT_EQ(d["detected_at_rows"], 200) << d.dump();
  EXPECT_LT(d["live_median_score"].get<double>(), d["reference_median_score"].get<double>());
  EXPECT_NE(d["message"].get<std::string>().find("refit"), std::string::npos) << d.dump();
  std::string mt = c->Get("/metrics")->body;
  EXPECT_EQ(metric(mt, "tracer_drift_detected"), 1) << mt;
  EXPECT_DOUBLE_EQ(metric(mt, "tracer_drift_ks"), d["ks"].get<double>()) << mt;
  EXPECT_LT(metric(mt, "tracer_drift_p_value"), 0.005) << mt;
  EXPECT_EQ(metric(mt, R"(tracer_decisions_total{decision="deferred",reason="audit"})"), 0);
  EXPECT_EQ(body(c->Get("/healthz"))["drift"], true);

  // Still a warning only: decisions stay the router's own (route_all checks them) and the
  // drift does not defer handled texts.
  size_t handled = 0;
  for (size_t i = 0; i < 100; ++i) {
    const std::string& text = p.unlike[i];
    json r = body(c->Post("/v1/route", json{{"text", text}}.dump(), "application/json"));
    EXPECT_EQ(r["decision"], p.decision(text).first) << text;
    handled += r["decision"] == "handled";
  }
  EXPECT_GT(handled, 0u);
  // The warning is logged once for this version, not per request or per look.
  body(c->Get("/v1/drift"));
  std::string err = ::testing::internal::GetCapturedStderr();
  size_t warnings = 0;
  for (size_t at = err.find("warning: policy " + p.version()); at != std::string::npos;
       at = err.find("warning: policy " + p.version(), at + 1))
    ++warnings;
  EXPECT_EQ(warnings, 1u) << err;
  EXPECT_NE(err.find("drift"), std::string::npos) << err;

  // Reloading the same version keeps the window; a refit (a new version) starts a fresh one.
  json same = body(c->Post("/v1/admin/reload", "", "application/json"));
  ASSERT_EQ(same["reloaded"], true) << same.dump();
  EXPECT_EQ(body(c->Get("/v1/drift"))["drift"], true);
  auto refit = p.fit(folder, "0.9");
  ASSERT_TRUE(refit.exit_code == 0 || refit.exit_code == 4) << refit.err;
  json r = body(c->Post("/v1/admin/reload", "", "application/json"));
  ASSERT_EQ(r["reloaded"], true) << r.dump();
  ASSERT_NE(r["policy_version"], p.version());
  json after = body(c->Get("/v1/drift"));
  EXPECT_EQ(after["policy_version"], r["policy_version"]);
  EXPECT_EQ(after["rows_seen"], 0);
  EXPECT_EQ(after["looks"], 0);
  EXPECT_EQ(after["drift"], false);
  EXPECT_EQ(body(c->Get("/healthz"))["drift"], false);
}

TEST_F(DriftServe, ManifestWithoutDriftSectionSaysUnavailable) {
  Policy& p = *policy_;
  TempDir tmp;
  std::string folder = tmp.file("policy");
  std::filesystem::copy(p.path, folder, std::filesystem::copy_options::recursive);
  json m = json::parse(read_file(folder + "/manifest.json"));
  ASSERT_TRUE(m.contains("drift")) << "tracer fit should write a drift reference";
  m.erase("drift");
  write_file(folder + "/manifest.json", m.dump(2));
  RunningServer rs(options(folder));
  auto c = rs.client();

  route_all(*c, p, std::vector<std::string>(p.unlike.begin(), p.unlike.begin() + 250));
  json d = body(c->Get("/v1/drift"));
  EXPECT_EQ(d["available"], false) << d.dump();
  EXPECT_EQ(d["drift"], false) << d.dump();
  EXPECT_NE(d["message"].get<std::string>().find("no drift reference"), std::string::npos)
      << d.dump();
  EXPECT_EQ(body(c->Get("/healthz"))["drift"], false);
  std::string mt = c->Get("/metrics")->body;
  EXPECT_EQ(metric(mt, "tracer_drift_available"), 0) << mt;
  EXPECT_EQ(metric(mt, "tracer_drift_detected"), 0) << mt;
  EXPECT_EQ(metric(mt, "tracer_drift_p_value"), 1) << mt;
  // /v1/drift is GET only and needs the API key like the other status endpoints.
  EXPECT_EQ(c->Post("/v1/drift", "{}", "application/json")->status, 405);
}

TEST_F(DriftServe, EveryRoutingEndpointRecords) {
  Policy& p = *policy_;
  std::string handled;
  for (const auto& t : p.like)
    if (p.decision(t).first == "handled") {
      handled = t;
      break;
    }
  ASSERT_FALSE(handled.empty());
  TempDir tmp;
  serve::ServeOptions o = options(p.path);
  o.upstream = "http://127.0.0.1:9";  // never called: the chat completion below is handled
  o.trace_db = tmp.file("traces.db");
  RunningServer rs(o);
  auto c = rs.client();
  auto rows = [&] { return body(c->Get("/v1/drift"))["rows_seen"].get<int>(); };

  ASSERT_EQ(c->Post("/v1/route", json{{"text", handled}}.dump(), "application/json")->status, 200);
  EXPECT_EQ(rows(), 1);
  ASSERT_EQ(
      c->Post("/v1/route/batch", json{{"texts", {handled, p.unlike[0]}}}.dump(), "application/json")
          ->status,
      200);
  EXPECT_EQ(rows(), 3);
  json chat{{"model", "m"}, {"messages", json::array({{{"role", "user"}, {"content", handled}}})}};
  auto r = c->Post("/v1/chat/completions", chat.dump(), "application/json");
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->get_header_value("X-Tracer-Decision"), "handled");
  EXPECT_EQ(rows(), 4);
  ASSERT_EQ(c->Post("/v1/audit", json{{"text", handled}, {"label", "x"}}.dump(), "application/json")
                ->status,
            200);
  EXPECT_EQ(rows(), 5);
  // Status endpoints do not route.
  c->Get("/healthz");
  c->Get("/metrics");
  EXPECT_EQ(rows(), 5);
}

TEST(DriftMetrics, RendersTheDriftReport) {
  serve::Metrics m;
  DriftReport d;
  d.available = true;
  d.rows = 250;
  d.rows_seen = 700;
  d.looks = 2;
  d.ks = 0.5;
  d.p_value = 1e-20;
  d.drift = true;
  std::string text = m.render("v1", "l2d", 10, nullptr, &d);
  EXPECT_EQ(metric(text, "tracer_drift_available"), 1) << text;
  EXPECT_EQ(metric(text, "tracer_drift_window_rows"), 250) << text;
  EXPECT_EQ(metric(text, "tracer_drift_rows_seen"), 700) << text;
  EXPECT_EQ(metric(text, "tracer_drift_looks"), 2) << text;
  EXPECT_DOUBLE_EQ(metric(text, "tracer_drift_ks"), 0.5) << text;
  EXPECT_DOUBLE_EQ(metric(text, "tracer_drift_p_value"), 1e-20) << text;
  EXPECT_EQ(metric(text, "tracer_drift_detected"), 1) << text;
  EXPECT_NE(text.find("# TYPE tracer_drift_detected gauge"), std::string::npos) << text;
  EXPECT_EQ(m.render("v1", "l2d", 10).find("tracer_drift_"), std::string::npos);
  EXPECT_EQ(serve::endpoint_of("/v1/drift"), serve::Endpoint::kDrift);
}

TEST_F(DriftServe, DriftEndpointNeedsTheApiKey) {
  serve::ServeOptions o = options(policy_->path);
  o.api_key = "secret";
  RunningServer rs(o);
  auto c = rs.client();
  EXPECT_EQ(c->Get("/v1/drift")->status, 401);
  c->set_bearer_token_auth("secret");
  EXPECT_EQ(c->Get("/v1/drift")->status, 200);
}

TEST_F(DriftServe, BadDriftOptionsAreClearErrors) {
  serve::ServeOptions o = options(policy_->path);
  o.drift.window = 0;
  EXPECT_NE(options_error(o).find("--drift-window"), std::string::npos) << options_error(o);
  o.drift.window = 100;
  o.drift.min_rows = 200;
  EXPECT_NE(options_error(o).find("--drift-min-rows"), std::string::npos) << options_error(o);
  o.drift.min_rows = 0;
  EXPECT_NE(options_error(o).find("--drift-min-rows"), std::string::npos) << options_error(o);
  o.drift.min_rows = 50;
  o.drift.level = 0;
  EXPECT_NE(options_error(o).find("--drift-level"), std::string::npos) << options_error(o);
  o.drift.level = 1.5;
  EXPECT_NE(options_error(o).find("--drift-level"), std::string::npos) << options_error(o);
  o.drift.level = 0.01;
  EXPECT_EQ(options_error(o), "");

  // The same through the command line: exit 2 and the flag's name.
  for (const char* bad :
       {"--drift-window 0", "--drift-min-rows 5000", "--drift-level 0", "--drift-level 1"}) {
    auto r = run_cli("serve " + policy_->path + " --port 0 " + bad);
    EXPECT_EQ(r.exit_code, 2) << bad << ": " << r.err;
    EXPECT_NE(r.err.find(std::string(bad).substr(0, std::string(bad).find(' '))), std::string::npos)
        << r.err;
  }
  auto nan = run_cli("serve " + policy_->path + " --port 0 --drift-window lots");
  EXPECT_NE(nan.exit_code, 0);
  EXPECT_NE(nan.err.find("--drift-window"), std::string::npos) << nan.err;
  auto help = run_cli("serve --help");
  for (const char* flag : {"--drift-window", "--drift-min-rows", "--drift-level"})
    EXPECT_NE(help.out.find(flag), std::string::npos) << flag;
  EXPECT_NE(help.out.find("label-free"), std::string::npos) << help.out;
}

}  // namespace
}  // namespace tracer
