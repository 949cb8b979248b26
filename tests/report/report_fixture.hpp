#pragma once
// Small real fits for the report tests: Banking77 subsets, optionally with a hostile label name
// and hostile inputs, fit quickly with a one- or two-surrogate zoo.
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "fit/fitter.hpp"
#include "io/traces.hpp"
#include "report/qualitative.hpp"
#include "test_util.hpp"

namespace tracer::testing {

inline constexpr const char* kHostileLabel = "<script>alert(1)</script>";
inline constexpr const char* kHostileInput = "<img src=x onerror=alert(2)> card & \"quotes\" 'x'";

// The first `per_label` traces of the first `labels` Banking77 labels, as JSONL. With `hostile`,
// the second label is renamed kHostileLabel and a few of its inputs get kHostileInput prepended.
inline std::string banking_subset(int labels, int per_label, bool hostile = false) {
  std::map<std::string, int> seen;
  std::string out;
  for (const auto& line : banking77_lines(labels, per_label)) {
    auto j = nlohmann::json::parse(line);
    const std::string t = j["teacher"];
    const int n = seen[t]++;
    if (hostile && seen.size() == 2) {
      j["teacher"] = kHostileLabel;
      if (n % 4 == 0) j["input"] = std::string(kHostileInput) + " " + j["input"].get<std::string>();
    }
    out += j.dump() + "\n";
  }
  return out;
}

inline FitOptions small_fit_options(double target = 0.8) {
  FitOptions fo;
  fo.target = target;
  fo.zoo = sanitized() ? std::vector<std::string>{"complement_nb"}
                       : std::vector<std::string>{"logreg_strong", "complement_nb"};
  fo.threads = 2;
  return fo;
}

struct SmallFit {
  TraceSet set;
  FitOptions options;
  FitResult fit;
};

inline SmallFit fit_jsonl(const TempDir& dir, const std::string& jsonl, const FitOptions& fo) {
  const std::string path = dir.file("traces.jsonl");
  write_file(path, jsonl);
  SmallFit s{read_traces(path), fo, {}};
  Progress quiet(false);
  s.fit = fit_policy(s.set, fo, quiet);
  s.fit.manifest["traces"] = {{"path", path}, {"accepted", s.set.size()}, {"skipped", 0}};
  return s;
}

inline ReportOptions report_options(const FitOptions& fo) {
  ReportOptions ro;
  ro.fit = fo;
  return ro;
}

}  // namespace tracer::testing
