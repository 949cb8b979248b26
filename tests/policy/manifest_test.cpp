// manifest.json and frontier.json read back with the right syntax and the wrong shape: every
// damaged field is a FormatError naming the file and the field (exit 3 on the command line).
#include "policy/manifest.hpp"

#include <gtest/gtest.h>

#include "test_util.hpp"
#include "util/error.hpp"

namespace tracer {
namespace {

using nlohmann::json;

json good_manifest() {
  return json::parse(R"({
    "policy_version": "2026-11-30T00:00:00Z-abcd1234", "created_at": "2026-11-30T00:00:00Z",
    "format": "tracer-policy", "tracer_version": "0.1.0",
    "featurizer": {"fingerprint": "tfidf:abc", "kind": "tfidf"},
    "gate": {"target": 0.9, "delta": 0.05, "deployed": true},
    "model": {"file": "model.bin", "checksum": "0123456789abcdef"},
    "options": {}, "ood": {},
    "drift": {"score_quantiles": [0.1, 0.5, 0.9], "rows": 300, "handled_share": 0.8,
              "ood_share": 0.03}, "split": {}, "units": {}, "surrogate": {},
    "timings": {}, "traces": {}, "labels": ["a", "b"], "per_label": [], "rare_labels": [],
    "zoo": []})");
}

// The error for `m`, or "" when it passes.
std::string error_of(const json& m) {
  try {
    check_manifest(m, "P/manifest.json");
  } catch (const FormatError& e) {
    return e.what();
  }
  return "";
}

TEST(Manifest, AGoodManifestAndOldOnesWithoutOptionalSectionsPass) {
  EXPECT_EQ(error_of(good_manifest()), "");
  json minimal =
      json::parse(R"({"policy_version": "v", "featurizer": {"fingerprint": "f"}, "gate": {}})");
  EXPECT_EQ(error_of(minimal), "");
}

TEST(Manifest, EveryDamagedFieldIsNamed) {
  EXPECT_NE(error_of(json::array()).find("must hold a JSON object, found an array"),
            std::string::npos);
  EXPECT_NE(error_of("text").find("found a string"), std::string::npos);
  struct Case {
    const char* pointer;  // the field to damage
    json value;           // nullptr: remove it
    const char* named;
  };
  const std::vector<Case> cases = {
      {"/policy_version", nullptr, "\"policy_version\" is missing"},
      {"/policy_version", 7, "\"policy_version\" must be a string, found a number"},
      {"/policy_version", "", "\"policy_version\" is empty"},
      {"/featurizer", "tfidf", "\"featurizer\" must be an object, found a string"},
      {"/featurizer/fingerprint", nullptr, "\"featurizer.fingerprint\" is missing"},
      {"/gate", nullptr, "\"gate\" is missing"},
      {"/gate", json::array(), "\"gate\" must be an object, found an array"},
      {"/gate/target", "0.9", "\"gate.target\" must be a number strictly between 0 and 1"},
      {"/gate/target", 1.5, "\"gate.target\""},
      {"/gate/delta", 0, "\"gate.delta\""},
      {"/gate/delta", json(), "\"gate.delta\""},
      {"/model", "model.bin", "\"model\" must be an object"},
      {"/model/checksum", 12, "\"model.checksum\" must be a string"},
      {"/options", json::array(), "\"options\" must be an object"},
      {"/drift", 1, "\"drift\" must be an object"},
      {"/drift/score_quantiles", "0.1", "\"drift.score_quantiles\" must be an array"},
      {"/drift/score_quantiles", json::array(), "\"drift.score_quantiles\" is empty"},
      {"/drift/score_quantiles", json::parse("[0.9, 0.1]"), "ascending"},
      {"/drift/score_quantiles", json::parse("[0.1, 3]"), "in [0, 1]"},
      {"/drift/score_quantiles", json::parse("[0.1, \"x\"]"), "drift.score_quantiles"},
      {"/drift/rows", 0, "\"drift.rows\" must be a positive count"},
      {"/drift/rows", -5, "\"drift.rows\""},
      {"/drift/handled_share", 7, "\"drift.handled_share\" must be a share"},
      {"/units", true, "\"units\" must be an object, found a boolean"},
      {"/labels", "a,b", "\"labels\" must be an array"},
      {"/rare_labels", json::object(), "\"rare_labels\" must be an array, found an object"},
      {"/zoo", json(), "\"zoo\" must be an array, found null"},
      {"/created_at", 2026, "\"created_at\" must be a string"},
  };
  for (const auto& c : cases) {
    json m = good_manifest();
    const json::json_pointer ptr(c.pointer);
    if (c.value.is_null() && std::string(c.named).find("null") == std::string::npos &&
        std::string(c.pointer) != "/gate/delta")
      m[ptr.parent_pointer()].erase(ptr.back());
    else
      m[ptr] = c.value;
    const std::string e = error_of(m);
    EXPECT_NE(e.find("P/manifest.json"), std::string::npos) << c.pointer << ": " << e;
    EXPECT_NE(e.find(c.named), std::string::npos) << c.pointer << ": " << e;
    EXPECT_NE(e.find("refit"), std::string::npos) << c.pointer << ": " << e;
  }
}

TEST(Manifest, FrontierShape) {
  EXPECT_NO_THROW(check_frontier(json::parse(R"({"rows": [{"target": 0.9}]})"), "F"));
  EXPECT_NO_THROW(check_frontier(json::object(), "F"));
  EXPECT_THROW(check_frontier(json::array(), "F"), FormatError);
  EXPECT_THROW(check_frontier(json::parse(R"({"rows": {}})"), "F"), FormatError);
  try {
    check_frontier(json::parse(R"({"rows": [{}, 3]})"), "P/frontier.json");
    ADD_FAILURE() << "accepted a number as a frontier row";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("\"rows[1]\""), std::string::npos) << e.what();
  }
}

// On the command line: predict, report and update name the file and exit 3.
TEST(Manifest, CommandsExitThreeNamingTheFile) {
  testing::TempDir dir;
  std::string traces;
  for (const auto& l : testing::banking77_lines(5, 40)) traces += l + "\n";
  testing::write_file(dir.file("t.jsonl"), traces);
  const std::string policy = dir.file("policy");
  auto fit = testing::run_cli("fit " + dir.file("t.jsonl") + " -o " + policy +
                              " --quiet --no-report --target 0.8 --zoo logreg_strong");
  ASSERT_TRUE(fit.exit_code == 0 || fit.exit_code == 4) << fit.err;
  const std::string manifest = policy + "/manifest.json";
  const std::string saved = testing::read_file(manifest);
  for (const std::string& damaged : {std::string("[]"), std::string(R"({"gate": "x"})")}) {
    testing::write_file(manifest, damaged);
    for (const std::string& cmd :
         {"predict " + policy + " hello", "report " + policy, "update " + policy + " --quiet"}) {
      auto r = testing::run_cli(cmd);
      EXPECT_EQ(r.exit_code, 3) << cmd << " on " << damaged << ": " << r.err;
      // The file read is the active version's (policy/versions/N/manifest.json).
      EXPECT_NE(r.err.find(policy + "/versions/1/manifest.json"), std::string::npos)
          << cmd << ": " << r.err;
      EXPECT_EQ(r.err.find("json.exception"), std::string::npos) << cmd << ": " << r.err;
    }
  }
  testing::write_file(manifest, saved);
  testing::write_file(policy + "/frontier.json", "[1]");
  auto r = testing::run_cli("report " + policy);
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("frontier.json"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace tracer
