#pragma once
// Plans: a method (global, l2d, rsb) with its stage(s) and its fixed step sequence, built and
// compared on select only; and the frontier (every method × target walked on calibrate).
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <vector>

#include "fit/gate_search.hpp"
#include "fit/zoo.hpp"

namespace tracer {

// What every plan is built from: the scored stage-1 candidates, the zoo's cached predictions,
// both held-out splits, and the labels too rare to answer (1: never accepted when predicted).
struct PlanContext {
  const std::vector<ScoredStage>& stages;
  const std::vector<Candidate>& zoo;
  const HeldOut& sel;
  const HeldOut& cal;
  int num_classes = 0;
  uint64_t seed = 0;
  std::span<const uint8_t> rare;
};

struct Choice {
  Plan plan;
  WalkResult select_walk;               // the dry run on select
  WalkDesign design;                    // start, reserve, simulated coverage and refusal rate
  double expected_coverage = 0;         // the walk design's expected coverage on calibrate
  std::unique_ptr<ScoredStage> stage2;  // owned here for rsb plans
};

// Builds the plan of `method` for stage-1 candidate `s1` at target alpha (select only). The plan's
// method is kNone when the method has nothing to offer (rsb without a residual to answer).
Choice make_plan(Method method, const ScoredStage& s1, const PlanContext& ctx,
                 const WalkParams& wp);

// The plan expected to certify the most coverage on calibrate, over every stage-1 candidate and
// every allowed method, judged on select only. `fallback_candidate` is the stage used for an l2d
// plan when nothing is plannable (so the refusal can still be explained).
Choice choose_plan(const PlanContext& ctx, std::span<const Method> methods, const WalkParams& wp,
                   size_t fallback_candidate);

// Every method × target walked on calibrate with stage 1 = `s1`. Each row is its own walk (no
// row borrows another's result: choosing the best of several walks after seeing calibrate would
// spend delta more than once); rsb rows without a second stage are the l2d walk ("same_as").
nlohmann::json walk_frontier(const ScoredStage& s1, const PlanContext& ctx,
                             std::span<const Method> methods, std::vector<double> targets,
                             double delta, int min_rows);

nlohmann::json walk_json(const WalkResult& w, size_t rows);
double round4(double x);

}  // namespace tracer
