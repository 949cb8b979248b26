#pragma once
// `tracer fit` as a library call: traces in, a certified (or refused) policy out.
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "fit/memory.hpp"
#include "fit/split.hpp"
#include "io/traces.hpp"
#include "policy/policy.hpp"
#include "runtime/router.hpp"
#include "util/progress.hpp"

namespace tracer {

struct FitOptions {
  double target = 0.95;        // alpha: required agreement with the teacher on handled traffic
  double delta = 0.05;         // allowed probability that the guarantee fails
  double min_coverage = 0.05;  // certified coverage below this is refused
  int min_rows = 30;           // fewest accepted calibration rows a step may be tested on
  std::vector<double> frontier_targets = {0.80, 0.85, 0.90, 0.95, 0.97, 0.99};
  std::vector<std::string> zoo;  // empty: default_zoo(trees)
  bool trees = false;
  size_t ensemble_members = 2;  // also try the average of the best N candidates (0: off)
  std::vector<Method> methods = {Method::kGlobal, Method::kL2D, Method::kRSB};
  // Shares of distinct inputs for train, select, calibrate (--split); unset: chosen from the
  // number of distinct inputs (plan_split: cross-fitting for small trace sets).
  std::optional<SplitFractions> fractions;
  int folds = 0;  // cross-fitting folds (--folds); 0: automatic, 1: one select share
  uint64_t seed = 42;
  int threads = 2;
  // Labels with fewer distinct training inputs than this are not answered by the surrogate:
  // inputs it predicts as such a label are deferred (reason rare_label). Never an error.
  size_t min_per_label = 3;
  std::string featurizer = "tfidf";
  bool ood = true;
  double ood_quantile = 0.03;  // share of in-distribution select rows the OOD gate may flag
  // The memory tier (fit/memory.hpp): answers for inputs the traces already hold, certified
  // with a share of delta when the traces repeat enough to test it.
  MemoryOptions memory;
};

// One calibrate row under the deployed policy (held out: nothing was fit or chosen on it).
struct HeldOutDecision {
  size_t trace = 0;       // index into the TraceSet
  int teacher = 0;        // the LLM's label
  int predicted = 0;      // the answering stage's label
  int runner_up = 0;      // stage 1's second most probable label
  float probability = 0;  // stage 1's top probability
  float score = 0;        // acceptor score of the answering stage
  bool handled = false;
  int stage = 1;
  DeferReason reason = DeferReason::kNone;
};

struct FitResult {
  Policy policy;
  MemoryCertificate memory;
  std::vector<HeldOutDecision> calibrate_rows;
  std::vector<size_t> train_label_counts;  // per label: distinct inputs the deployed models saw
  nlohmann::json manifest;                 // everything but the model section (added when written)
  nlohmann::json frontier;
  bool deployed = false;  // the surrogate gate or the memory tier answers some traffic
};

FitResult fit_policy(const TraceSet& traces, const FitOptions& options, Progress& progress);

// FitOptions as recorded in manifest.json ("options") and qualitative_report.json
// ("fit_options"), threads left out (they do not change the result); and back, so a refit
// (`tracer update`, the report's learning curve) fits exactly as the recorded fit did. When
// `recorded` is null the options are reconstructed from an older manifest (target, delta, zoo,
// split, ...) and its frontier. Throws FormatError when neither can be read.
nlohmann::json fit_options_json(const FitOptions& options);
FitOptions fit_options_from(const nlohmann::json& recorded, const nlohmann::json& manifest,
                            const nlohmann::json& frontier);

// Writes model.bin, frontier.json and manifest.json (last) into `dir`, each atomically, and sets
// the manifest's policy_version and model checksum. A refused fit still writes its manifest
// (deployed: false) and a model that defers everything. `dir` is a version's staging folder
// (policy/versions.hpp): whether it becomes the active policy is decided there.
void write_artifact(const std::string& dir, FitResult& result);

}  // namespace tracer
