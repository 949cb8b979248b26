#pragma once
// manifest.json from a finished fit: what was split, fit, chosen and certified, and why a refusal
// refused (with advice that never promises the impossible).
#include <nlohmann/json.hpp>

#include "fit/cross_fit.hpp"
#include "fit/fitter.hpp"
#include "fit/plan.hpp"

namespace tracer {

struct FitFacts {
  const TraceSet& set;
  const FitOptions& options;
  const TraceUnits& units;
  const SplitPlan& plan;
  const UnitSplit& split;
  const CrossFitResult& cross_fit;
  const Choice& best;
  const WalkResult& cert;
  bool deployed = false;
  bool below_min_coverage = false;
  size_t winner = 0;        // candidate with the best select agreement
  const FitResult& result;  // policy (without surrogates moved yet is fine) and calibrate rows
};

struct FitDescription {
  nlohmann::json timings = nlohmann::json::object();
  // Candidates left out before training because a known limit rules them out:
  // [{"name", "reason"}], written to manifest.json → zoo_skipped.
  nlohmann::json skipped = nlohmann::json::array();
};

// Everything but the model section (added when written).
nlohmann::json describe_fit(const FitFacts& facts, const FitDescription& extra);

// Why nothing was certified, and what would help: the surrogate's agreement over all in-scope
// calibrate units, whether a single test of all of them would pass, and, when the agreement is
// above the target, how many more distinct inputs the same agreement would need to certify (an
// estimate with its uncertainty, never negative).
nlohmann::json refusal_json(const FitFacts& facts);

}  // namespace tracer
