#pragma once
// Choosing and certifying the routing gate.
//
// Every method is a nested family of accepted sets indexed by steps (strict → loose), fixed
// from the select split before calibrate labels are looked at:
//   global: one step, accept every in-distribution input;
//   l2d:    accept when stage-1 acceptor score >= tau1, tau1 walking down select quantiles;
//   rsb:    the l2d steps down to tau1_sel (chosen on select), then additionally accept stage-2
//           answers with score >= tau2, tau2 walking down.
// Model, method and stage-2 choice use select only; only the chosen plan is walked on
// calibrate (fixed-sequence testing), so its guarantee is not spent on the choosing.
#include <limits>
#include <optional>
#include <vector>

#include "features/featurizer.hpp"
#include "fit/zoo.hpp"
#include "gate/acceptor.hpp"
#include "gate/certify.hpp"
#include "gate/ood.hpp"
#include "policy/policy.hpp"

namespace tracer {

// One held-out split (select rows scored out of fold, or calibrate), with the
// surrogate-independent OOD signals per row.
struct HeldOut {
  std::vector<int> y;
  std::vector<FeatureStats> stats;
  std::vector<float> known, similarity;
  size_t size() const { return y.size(); }
};

// A candidate surrogate with an acceptor trained on (a subset of) select, scored on both splits,
// and (as a stage 1) its own OOD gate, since the gate reads the surrogate's top-1 probability.
struct ScoredStage {
  size_t candidate = 0;
  Acceptor acceptor;
  std::vector<float> label_prior;
  std::vector<float> sel_score;  // cross-fitted on select (out-of-sample)
  std::vector<float> cal_score;  // the deployed acceptor's scores
  // Where the threshold grid starts, in expected calibrate rows (the fewest that can pass at the
  // user's target); set by the fitter. Where a walk starts is the plan's (Plan::start_rows).
  int first_rows = 0;
  OodGate ood;                            // copy of the shared gate with this stage's reference
  std::vector<uint8_t> sel_ood, cal_ood;  // 1: flagged (never accepted)
};

// `gate`: the shared OOD gate (centroids fitted) to calibrate for this candidate on select, or
// null for no OOD flags (stage 2, or the gate disabled).
ScoredStage score_stage(const Candidate& c, size_t index, int num_classes, const HeldOut& sel,
                        const HeldOut& cal, std::span<const uint8_t> fit_rows, uint64_t seed,
                        const OodGate* gate, double ood_quantile);

struct GateStep {
  float tau1 = 0;
  float tau2 = std::numeric_limits<float>::infinity();  // stage 2 off
};

struct Plan {
  Method method = Method::kNone;
  const ScoredStage* s1 = nullptr;
  const ScoredStage* s2 = nullptr;  // rsb only
  std::vector<GateStep> steps;      // strict → loose
  // The walk's design, chosen on select (design_walk): steps accepting fewer calibrate rows than
  // start_rows are skipped; last_share of delta is reserved for the loosest step (fallback).
  int start_rows = 0;
  double last_share = 0;
};

struct WalkResult {
  bool certified = false;
  int step = -1;  // index of the loosest passed step
  GateStep gate;
  int n = 0, k = 0;
  double coverage = 0, agreement = 0, lower_bound = 0;
  std::vector<CertifyStep> trace;
};

struct WalkParams {
  double alpha = 0.95, delta = 0.05;
  int min_rows = 30;
};

// Per row of a split, under a plan: the first (strictest) step that accepts the row, -1 when
// none does (flagged OOD or rare, or below every step); and whether the answering stage's label
// agrees with the row's teacher label. The steps' accepted sets are nested, so a row accepted at
// step j is accepted, by the same stage, at every later step.
struct Acceptance {
  std::vector<int> first_step;
  std::vector<uint8_t> agree;
};
Acceptance plan_acceptance(const Plan& plan, const std::vector<Candidate>& zoo,
                           const HeldOut& split, bool on_select);

// How to walk a plan's steps on calibrate, chosen on select only: where the walk starts (steps
// accepting fewer calibrate rows are skipped) and the share of delta the loosest step holds in
// reserve (the fallback procedure of walk_steps). Each design is scored by its expected
// certified coverage over `draws` bootstrap samples of calibrate's size drawn from the select
// rows: a start too strict wastes rows on a test that barely passes, one too loose starts where
// agreement is already near the target; a noisy small first step ends the walk before it
// begins.
struct WalkDesign {
  int start_rows = 0;
  double last_share = 0;
  double expected_coverage = 0;
  double refusal_rate = 0;  // share of simulated calibrate samples that certified nothing
};
WalkDesign design_walk(const Plan& plan, const std::vector<Candidate>& zoo, const HeldOut& sel,
                       size_t cal_size, const WalkParams& params, uint64_t seed, int draws = 64);

// The walk of a plan on one split (select for the dry run, calibrate to certify), with the
// plan's design: steps of an l2d/rsb plan that accept fewer rows than plan.start_rows (scaled to
// this split) are skipped, not tested; a global plan's single step is always tested at delta.
WalkResult walk_plan(const Plan& plan, const std::vector<Candidate>& zoo, const HeldOut& split,
                     bool on_select, const WalkParams& params);

// Thresholds (strict → loose, as floats so the router compares exactly the same numbers) from
// the select scores of in-distribution rows; see threshold_sequence().
std::vector<float> select_thresholds(std::span<const float> select_scores,
                                     std::span<const uint8_t> select_ood, size_t calib_size,
                                     int min_first_rows);

// Size of the first step of the walk, in expected calibrate rows, from select only: the
// smallest top-scored region whose select agreement (its one-sided 95% lower bound) would pass
// at (alpha, delta) with power 0.9 at its calibrate size, and never below
// 1.5 × min_rows_to_certify. A first step too small to pass ends the walk before it starts.
int first_step_rows(std::span<const float> select_scores, std::span<const uint8_t> select_agree,
                    std::span<const uint8_t> select_ood, size_t calib_size, double alpha,
                    double delta, int min_rows);

}  // namespace tracer
