// End-to-end: run the real `tracer` binary on real files, as a user would.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "test_util.hpp"

namespace tracer {
namespace {

using nlohmann::json;
using testing::read_file;
using testing::run_cli;
using testing::TempDir;
using testing::write_file;

// A Banking77 subset: the first `per_label` traces of the first `labels` labels.
std::string banking_subset(const TempDir& dir, int labels, int per_label) {
  std::string out;
  for (const auto& line : testing::banking77_lines(labels, per_label)) out += line + "\n";
  std::string path = dir.file("traces.jsonl");
  write_file(path, out);
  return path;
}

std::string fast_zoo() { return testing::sanitized() ? " --zoo logreg_strong,complement_nb" : ""; }

TEST(CliFitPredict, FitWritesArtifactAndPredictRoutes) {
  TempDir dir;
  std::string traces = banking_subset(dir, 10, 80);
  std::string out = dir.file("policy");
  auto fit = run_cli("fit " + traces + " -o " + out + " --target 0.9 --quiet" + fast_zoo());
  ASSERT_TRUE(fit.exit_code == 0 || fit.exit_code == 4) << fit.err;
  json m = json::parse(read_file(out + "/manifest.json"));
  EXPECT_EQ(m["labels"].size(), 10u);
  EXPECT_EQ(m["featurizer"]["kind"], "tfidf");
  EXPECT_FALSE(m["zoo"].empty());
  for (const auto& c : m["zoo"]) {
    EXPECT_TRUE(c.contains("fit_seconds"));
    EXPECT_TRUE(c.contains("select_agreement") || c.contains("error") ||
                c.contains("screened_out"));
  }
  EXPECT_TRUE(m["gate"].contains("deployed"));
  EXPECT_GT(m["model"]["bytes"].get<long>(), 0);
  json f = json::parse(read_file(out + "/frontier.json"));
  EXPECT_FALSE(f["rows"].empty());

  auto one = run_cli("predict " + out + " 'my card has not arrived yet'");
  ASSERT_EQ(one.exit_code, 0) << one.err;
  json r = json::parse(one.out);
  EXPECT_TRUE(r["label"].is_string());
  EXPECT_GE(r["probability"].get<double>(), 0.0);
  EXPECT_LE(r["probability"].get<double>(), 1.0);
  EXPECT_TRUE(r["decision"] == "handled" || r["decision"] == "deferred");
  EXPECT_TRUE(r.contains("accept_score"));

  // --input keeps order and echoes ids.
  std::string in = dir.file("in.jsonl");
  write_file(in,
             "{\"id\": 1, \"input\": \"card arrival\"}\n\n{\"id\": \"b\", \"text\": \"exchange "
             "rate\"}\n\"plain string\"\n");
  auto many = run_cli("predict " + out + " --input " + in + " -o " + dir.file("out.jsonl"));
  ASSERT_EQ(many.exit_code, 0) << many.err;
  std::istringstream lines(read_file(dir.file("out.jsonl")));
  std::vector<json> rows;
  for (std::string l; std::getline(lines, l);) rows.push_back(json::parse(l));
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0]["id"], 1);
  EXPECT_EQ(rows[1]["id"], "b");
  EXPECT_FALSE(rows[2].contains("id"));
}

TEST(CliFitPredict, BadTraceFileIsRejectedNamingTheLine) {
  TempDir dir;
  std::string path = dir.file("bad.jsonl");
  write_file(path, "{\"input\": \"a\", \"teacher\": \"x\"}\n{\"input\": \"b\"}\n");
  auto r = run_cli("fit " + path + " -o " + dir.file("p") + " --quiet");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find(":2"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--skip-invalid"), std::string::npos) << r.err;
}

TEST(CliFitPredict, CorruptedModelIsAClearError) {
  TempDir dir;
  std::string traces = banking_subset(dir, 4, 60);
  std::string out = dir.file("policy");
  auto fit = run_cli("fit " + traces + " -o " + out + " --quiet --zoo complement_nb");
  ASSERT_TRUE(fit.exit_code == 0 || fit.exit_code == 4) << fit.err;
  std::string model = read_file(out + "/model.bin");
  model[model.size() / 2] ^= 0x5a;
  write_file(out + "/model.bin", model);
  auto r = run_cli("predict " + out + " 'hello'");
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find("checksum"), std::string::npos) << r.err;
  write_file(out + "/model.bin", "garbage");
  r = run_cli("predict " + out + " 'hello'");
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find("not a tracer model file"), std::string::npos) << r.err;
}

TEST(CliFitPredict, ARefusalKeepsTheActivePolicyUnlessPromotedAndThenDefersEverything) {
  TempDir dir;
  std::string good = banking_subset(dir, 5, 80);
  std::string out = dir.file("policy");
  auto fit = run_cli("fit " + good + " -o " + out + " --quiet --target 0.8" + fast_zoo());
  ASSERT_EQ(fit.exit_code, 0) << fit.err;
  const json first = json::parse(read_file(out + "/manifest.json"));
  // Same texts, random labels: nothing can be certified.
  std::istringstream in(read_file(good));
  std::mt19937 rng(5);
  std::string noise;
  for (std::string l; std::getline(in, l);) {
    auto j = json::parse(l);
    j["teacher"] = "L" + std::to_string(rng() % 3);
    noise += j.dump() + "\n";
  }
  std::string bad = dir.file("noise.jsonl");
  write_file(bad, noise);
  auto refit = run_cli("fit " + bad + " -o " + out + " --target 0.95" + fast_zoo());
  EXPECT_EQ(refit.exit_code, 4) << refit.out << refit.err;
  EXPECT_NE(refit.out.find("REFUSED"), std::string::npos) << refit.out;
  // Written as version 2, not activated: version 1 keeps answering.
  EXPECT_NE(refit.out.find("version 2 is NOT active, version 1 stays active"), std::string::npos)
      << refit.out;
  const json kept = json::parse(read_file(out + "/versions/2/manifest.json"));
  EXPECT_FALSE(kept["gate"]["deployed"].get<bool>());
  EXPECT_FALSE(kept["version"]["activated"].get<bool>());
  EXPECT_EQ(json::parse(read_file(out + "/manifest.json"))["policy_version"],
            first["policy_version"]);
  json h = json::parse(read_file(out + "/history.json"));
  ASSERT_EQ(h.size(), 2u);
  EXPECT_FALSE(h[1]["activated"].get<bool>());
  EXPECT_NE(h[1]["reason"].get<std::string>().find("nothing was certified"), std::string::npos);

  // Promoted anyway, the refused policy replaces the stale one and defers everything.
  auto forced =
      run_cli("fit " + bad + " -o " + out + " --quiet --target 0.95 --promote always" + fast_zoo());
  EXPECT_EQ(forced.exit_code, 4) << forced.err;
  json m = json::parse(read_file(out + "/manifest.json"));
  EXPECT_FALSE(m["gate"]["deployed"].get<bool>());
  EXPECT_TRUE(m["gate"]["refusal"]["reason"].is_string());
  EXPECT_EQ(m["version"]["number"], 3);
  auto r = run_cli("predict " + out + " 'my card has not arrived'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json d = json::parse(r.out);
  EXPECT_EQ(d["decision"], "deferred");
  EXPECT_EQ(d["reason"], "no_policy");
}

TEST(CliFitPredict, HelpExplainsCommandsAndFlags) {
  auto top = run_cli("--help");
  EXPECT_EQ(top.exit_code, 0);
  for (const char* cmd : {"fit", "predict", "demo"})
    EXPECT_NE(top.out.find(cmd), std::string::npos);
  auto fit = run_cli("fit --help");
  for (const char* flag : {"--target", "--delta", "--skip-invalid", "--trees", "--zoo", "--quiet"})
    EXPECT_NE(fit.out.find(flag), std::string::npos) << flag;
  auto pred = run_cli("predict --help");
  EXPECT_NE(pred.out.find("--input"), std::string::npos);
}

}  // namespace
}  // namespace tracer

namespace tracer {
namespace {

// An input logged with different labels (LLM sampling) is scored on a randomly drawn copy's
// label: the report written with the fit must accept that label, not only the first copy's.
TEST(CliFitPredict, ConflictingCopiesStillGetTheirReport) {
  testing::TempDir dir;
  auto lines = testing::banking77_lines(8, 60);
  std::string traces;
  for (const auto& l : lines) traces += l + "\n";
  for (size_t i = 0; i < 30; ++i) {  // 30 inputs logged again with another label
    auto j = nlohmann::json::parse(lines[i * 7]);
    j["teacher"] = nlohmann::json::parse(lines[(i * 7 + 200) % lines.size()])["teacher"];
    traces += j.dump() + "\n";
  }
  testing::write_file(dir.file("t.jsonl"), traces);
  auto r = testing::run_cli("fit " + dir.file("t.jsonl") + " -o " + dir.file("p") +
                            " --target 0.8 --quiet --zoo logreg_strong");
  ASSERT_TRUE(r.exit_code == 0 || r.exit_code == 4) << r.err;
  EXPECT_EQ(r.err.find("report failed"), std::string::npos) << r.err;
  EXPECT_TRUE(std::filesystem::exists(dir.file("p") + "/report.html")) << r.err;
  EXPECT_TRUE(std::filesystem::exists(dir.file("p") + "/qualitative_report.json")) << r.err;
}

}  // namespace
}  // namespace tracer
