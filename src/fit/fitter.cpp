// fit_policy as named stages: units → split → cross-fit (featurize + zoo) → rare labels →
// acceptors → plan (select only) → certify (calibrate) → frontier → policy → manifest.
#include "fit/fitter.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "fit/cross_fit.hpp"
#include "fit/describe.hpp"
#include "fit/plan.hpp"
#include "gate/bounds.hpp"
#include "models/ensemble.hpp"
#include "util/error.hpp"

namespace tracer {
namespace {

void validate(const FitOptions& o) {
  auto in_open_unit = [](double v) { return std::isfinite(v) && v > 0 && v < 1; };
  if (!in_open_unit(o.target)) throw InputError("--target must be a number in (0, 1)");
  if (!in_open_unit(o.delta)) throw InputError("--delta must be a number in (0, 1)");
  if (!(std::isfinite(o.min_coverage) && o.min_coverage >= 0 && o.min_coverage <= 1))
    throw InputError("--min-coverage must be a number in [0, 1]");
  if (!(std::isfinite(o.ood_quantile) && o.ood_quantile >= 0 && o.ood_quantile <= 0.5))
    throw InputError("--ood-quantile must be a number in [0, 0.5]");
  if (o.min_rows < 1) throw InputError("--min-rows must be at least 1");
  for (double t : o.frontier_targets)
    if (!in_open_unit(t)) throw InputError("frontier targets must be numbers in (0, 1)");
  if (o.fractions) validate_fractions(*o.fractions);
}

// Stage 1: distinct inputs and the split of them.
struct Units {
  TraceUnits units;
  SplitPlan plan;
  UnitSplit split;
};

Units split_stage(const TraceSet& set, const FitOptions& o) {
  if (set.labels.size() < 2)
    throw InputError("the traces hold " + std::to_string(set.labels.size()) +
                     " teacher label; a classifier needs at least two");
  Units u;
  u.units = group_units(set, *make_featurizer(o.featurizer), o.seed);
  u.plan = plan_split(u.units.size(), o.fractions ? &*o.fractions : nullptr, o.folds);
  u.split = split_units(u.units, u.plan, o.seed);
  const size_t n_cal = u.split.calibrate.size();
  if (n_cal < static_cast<size_t>(o.min_rows) || u.split.pool.size() < 10) {
    std::string dup;
    if (u.units.duplicate_traces > 0)
      dup = fmt::format(" ({} of the {} traces repeat an input already seen)",
                        u.units.duplicate_traces, set.size());
    if (u.units.train_only_units > 0 && u.split.pool.size() >= 10)
      throw InputError(fmt::format(
          "too few traces that stand for traffic to certify anything: of {} distinct inputs, "
          "{} are only in recorded deferred traffic (not a sample of traffic, so they train "
          "but cannot calibrate), which leaves {} for calibration, and a test needs at least "
          "--min-rows {}; add traces sampled from traffic (your LLM's log), or run `tracer "
          "serve --audit-share` so the proxy records a uniform sample (docs/trace_store.md, "
          "\"Which traces certify a refit\")",
          u.units.size(), u.units.train_only_units, n_cal, o.min_rows));
    throw InputError(fmt::format(
        "too few distinct inputs to certify anything: {} distinct inputs{} leave {} for "
        "calibration, and a test needs at least --min-rows {}; collect traces of more distinct "
        "requests (a few hundred at least)",
        u.units.size(), dup, n_cal, o.min_rows));
  }
  return u;
}

// Labels the deployed surrogate saw too few distinct inputs of to answer.
std::vector<uint8_t> rare_label_mask(const std::vector<size_t>& train_counts, size_t min_per) {
  std::vector<uint8_t> rare(train_counts.size(), 0);
  for (size_t c = 0; c < rare.size(); ++c) rare[c] = train_counts[c] < min_per;
  return rare;
}

// Acceptors and OOD gates per candidate; rows predicted as a rare label are never accepted.
std::vector<ScoredStage> score_stages(const CrossFitResult& cf, std::span<const uint8_t> rare,
                                      const FitOptions& o) {
  const int K = static_cast<int>(rare.size());
  std::vector<ScoredStage> stages;
  std::vector<uint8_t> all_rows(cf.sel.size(), 1);
  for (size_t c = 0; c < cf.zoo.size(); ++c) {
    const Candidate& cand = cf.zoo[c];
    if (!cand.model) continue;
    ScoredStage st = score_stage(cand, c, K, cf.sel, cf.cal, all_rows, o.seed,
                                 o.ood ? &cf.centroids : nullptr, o.ood_quantile);
    for (size_t i = 0; i < cf.sel.size(); ++i)
      st.sel_ood[i] |= rare[static_cast<size_t>(cand.select_pred[i])];
    for (size_t i = 0; i < cf.cal.size(); ++i)
      st.cal_ood[i] |= rare[static_cast<size_t>(cand.calib_pred[i])];
    // The threshold grid of every walk of a stage starts once, for the user's target, at the
    // fewest calibrate rows that can pass at all; each plan's walk design picks where to start.
    st.first_rows = std::max(o.min_rows, min_rows_to_certify(o.target, o.delta));
    stages.push_back(std::move(st));
  }
  return stages;
}

// The router's policy from the certified plan.
Policy assemble_policy(CrossFitResult& cf, const Choice& best, const WalkResult& cert,
                       bool deployed, std::vector<uint8_t> rare,
                       const std::vector<std::string>& labels) {
  Policy p;
  p.featurizer = std::move(cf.featurizer);
  p.labels = labels;
  p.rare_labels = std::move(rare);
  p.method = deployed ? best.plan.method : Method::kNone;
  if (deployed && p.method == Method::kL2D &&
      cert.step + 1 == static_cast<int>(best.plan.steps.size()))
    p.method = Method::kGlobal;  // certified down to accepting every in-distribution input
  const ScoredStage& s1 = *best.plan.s1;
  p.ood = s1.ood;
  p.stage1.acceptor = s1.acceptor;
  p.stage1.label_prior = s1.label_prior;
  p.stage1.threshold = deployed ? cert.gate.tau1 : 1.f;
  if (deployed && p.method == Method::kRSB) {
    if (std::isfinite(cert.gate.tau2)) {
      p.stage2.acceptor = best.plan.s2->acceptor;
      p.stage2.label_prior = best.plan.s2->label_prior;
      p.stage2.threshold = cert.gate.tau2;
    } else {
      p.method = Method::kL2D;  // stage 2 certified nothing beyond stage 1
    }
  }
  return p;
}

// Every distinct input of the traces, keyed as the router keys them, with the label the LLM gave
// in at least `target` of its copies (-1: none did): see Policy::known_inputs.
void attach_known_inputs(Policy& p, const TraceSet& set, const TraceUnits& units, double target) {
  std::vector<std::pair<uint64_t, int32_t>> known;
  known.reserve(units.size());
  for (size_t u = 0; u < units.size(); ++u) {
    int32_t agreeing = -1;
    for (const auto& [label, n] : units.label_counts[u])
      if (n >= target * units.copies[u]) agreeing = label;
    known.emplace_back(known_input_key(*p.featurizer, set.traces[units.first[u]].input), agreeing);
  }
  std::sort(known.begin(), known.end());
  // Two inputs normalising apart but hashing alike (about 1 in 10^11 pairs at 50,000 inputs):
  // keep the first's label unless they differ, then no label agrees.
  p.known_inputs.clear();
  p.known_labels.clear();
  for (const auto& [key, label] : known) {
    if (!p.known_inputs.empty() && p.known_inputs.back() == key) {
      if (p.known_labels.back() != label) p.known_labels.back() = -1;
      continue;
    }
    p.known_inputs.push_back(key);
    p.known_labels.push_back(label);
  }
}

// One line for the progress log: what the memory tier found.
std::string memory_summary(const MemoryCertificate& m) {
  if (!m.certified) return m.reason;
  const MemoryStep& s = m.steps[static_cast<size_t>(m.served_step)];
  return fmt::format(
      "{} remembered inputs answer {:.1f}% of held-out traces; self-consistency {:.4f} (bound "
      "{:.4f}) on {} held-out repeats",
      m.keys.size(), 100 * m.hit_share(), double(s.agreed) / double(s.hits), s.bound, s.hits);
}

// The served memory table into the policy, its certificate into manifest.json → memory. The
// options recorded for a refit are the user's (the gate's delta is the user's minus the memory's
// share).
void attach_memory(FitResult& r, MemoryCertificate memory, const FitOptions& user,
                   bool gate_deployed) {
  r.policy.memory_inputs = memory.keys;
  r.policy.memory_labels = memory.labels;
  r.manifest["options"] = fit_options_json(user);
  r.manifest["memory"] = memory.to_json();
  if (memory.certified) {
    r.manifest["gate"]["guarantee"] = fmt::format(
        "on traffic like these traces, the answers tracer gives ({}) agree with the LLM at least "
        "{:g}% of the time, with probability at least {:g}% (memory tier: delta {:.4g}{})",
        gate_deployed ? "remembered LLM answers to repeated requests, surrogate answers to the rest"
                      : "remembered LLM answers to repeated requests; the surrogate certified "
                        "nothing",
        user.target * 100, (1 - user.delta) * 100, memory.delta,
        gate_deployed ? fmt::format("; surrogate gate: delta {:.4g}", user.delta - memory.delta)
                      : std::string());
  }
  r.memory = std::move(memory);
  r.deployed = gate_deployed || r.memory.certified;
}

// Every calibrate row's decision under the deployed policy (held out: nothing was fit or chosen
// on it); the per-label table and the qualitative report are computed from these rows.
std::vector<HeldOutDecision> held_out_decisions(const CrossFitResult& cf, const TraceUnits& units,
                                                const Policy& p, const Choice& best,
                                                bool deployed) {
  const int K = static_cast<int>(p.labels.size());
  const ScoredStage& s1 = *best.plan.s1;
  const auto& c1 = cf.zoo[s1.candidate];
  std::vector<HeldOutDecision> rows(cf.cal.size());
  for (size_t i = 0; i < cf.cal.size(); ++i) {
    HeldOutDecision& d = rows[i];
    d.trace = units.first[cf.cal_units[i]];
    d.teacher = cf.cal.y[i];
    std::span<const float> probs(c1.calib_probs.data() + i * K, K);
    d.predicted = c1.calib_pred[i];
    d.probability = probs[d.predicted];
    d.runner_up = d.predicted == 0 ? 1 : 0;
    for (int c = 0; c < K; ++c)
      if (c != d.predicted && probs[c] > probs[d.runner_up]) d.runner_up = c;
    d.score = s1.cal_score[i];
    if (!deployed) {
      d.reason = DeferReason::kNoPolicy;
    } else if (s1.cal_ood[i] && !p.is_rare(d.predicted)) {
      d.reason = DeferReason::kOutOfDistribution;
    } else if (p.is_rare(d.predicted)) {
      d.reason = DeferReason::kRareLabel;
    } else if (p.method == Method::kGlobal || s1.cal_score[i] >= p.stage1.threshold) {
      d.handled = true;
    } else if (p.method == Method::kRSB && best.plan.s2->cal_score[i] >= p.stage2.threshold) {
      d.handled = true;
      d.stage = 2;
      d.predicted = cf.zoo[best.plan.s2->candidate].calib_pred[i];
      d.score = best.plan.s2->cal_score[i];
    } else {
      d.reason = DeferReason::kBelowThreshold;
    }
  }
  return rows;
}

FitResult fit_gate(const TraceSet& set, const FitOptions& user, const FitOptions& o, Units u,
                   MemoryCertificate memory, Stopwatch total_time, Progress& progress) {
  const int K = static_cast<int>(set.labels.size());
  FitDescription desc;

  auto names = o.zoo.empty() ? default_zoo(o.trees) : o.zoo;
  progress.step(
      u.split.folds >= 2
          ? fmt::format("fitting {} surrogates, {}-fold cross-fitted on {} inputs", names.size(),
                        u.split.folds, u.split.pool.size())
          : fmt::format("fitting {} surrogates on {} inputs", names.size(), u.split.pool.size()));
  Stopwatch sw;
  // Known limits are checked before any training, not found after it.
  size_t ensemble_members = o.ensemble_members;
  if (ensemble_members >= 2 && set.labels.size() > static_cast<size_t>(kMaxEnsembleClasses)) {
    const std::string why = fmt::format("it combines at most {} labels and the traces have {}",
                                        kMaxEnsembleClasses, set.labels.size());
    progress.note("ensemble skipped: " + why);
    desc.skipped.push_back({{"name", "ensemble"}, {"reason", why}});
    ensemble_members = 0;
  }
  CrossFitOptions cfo{o.featurizer, names, ensemble_members, o.ood, o.seed, o.threads};
  CrossFitResult cf = cross_fit(set, u.units, u.split, cfo, progress);
  for (const auto& c : cf.zoo)
    progress.note(c.model          ? fmt::format("{}: select agreement {:.4f} ({:.2f} s)", c.name,
                                                 c.select_agreement, c.fit_seconds)
                  : c.screened_out ? fmt::format("{}: screened out on the first fold (agreement "
                                                 "{:.4f}; only the best went on)",
                                                 c.name, c.screen_agreement)
                                   : c.name + ": failed: " + c.error);
  const size_t winner = best_candidate(cf.zoo);
  desc.timings["zoo_seconds"] = round4(sw.seconds());

  progress.step("OOD gate and acceptors");
  sw = Stopwatch();
  std::vector<uint8_t> rare = rare_label_mask(cf.train_label_units, o.min_per_label);
  std::vector<ScoredStage> stages = score_stages(cf, rare, o);
  desc.timings["gate_seconds"] = round4(sw.seconds());

  progress.step("choosing the plan on select, certifying on calibrate");
  sw = Stopwatch();
  const WalkParams wp{o.target, o.delta, o.min_rows};
  const PlanContext ctx{stages, cf.zoo, cf.sel, cf.cal, K, o.seed, rare};
  Choice best = choose_plan(ctx, o.methods, wp, winner);
  WalkResult cert = walk_plan(best.plan, cf.zoo, cf.cal, false, wp);
  const bool below_min = cert.certified && cert.coverage < o.min_coverage;
  const bool deployed = cert.certified && !below_min;
  std::vector<double> targets = o.frontier_targets;
  targets.push_back(o.target);
  nlohmann::json frontier =
      walk_frontier(*best.plan.s1, ctx, o.methods, targets, o.delta, o.min_rows);
  desc.timings["certify_seconds"] = round4(sw.seconds());

  FitResult result;
  result.policy = assemble_policy(cf, best, cert, deployed, rare, set.labels);
  attach_known_inputs(result.policy, set, u.units, o.target);
  result.calibrate_rows = held_out_decisions(cf, u.units, result.policy, best, deployed);
  result.train_label_counts = cf.train_label_units;
  const ScoredStage& s1 = *best.plan.s1;
  result.policy.stage1.surrogate = std::move(cf.zoo[s1.candidate].model);
  if (result.policy.method == Method::kRSB)
    result.policy.stage2.surrogate = std::move(cf.zoo[best.plan.s2->candidate].model);

  desc.timings["total_seconds"] = round4(total_time.seconds());
  progress.finish();
  result.manifest = describe_fit(FitFacts{set, o, u.units, u.plan, u.split, cf, best, cert,
                                          deployed, below_min, winner, result},
                                 desc);
  result.frontier =
      nlohmann::json{{"split", "calibrate"}, {"delta", o.delta}, {"rows", std::move(frontier)}};
  attach_memory(result, std::move(memory), user, deployed);
  return result;
}

}  // namespace

FitResult fit_policy(const TraceSet& set, const FitOptions& o, Progress& progress) {
  validate(o);
  Stopwatch total_time;

  progress.step("grouping " + std::to_string(set.size()) +
                " traces into distinct inputs and splitting them");
  Units u = split_stage(set, o);
  // The memory tier is tested on its own held-out traces with its own share of delta (decided
  // from counts only); the surrogate gate is certified with the rest (union bound).
  MemoryCertificate memory = certify_memory(set, u.units, o.target, o.delta, o.memory, o.seed);
  progress.note("memory tier: " + memory_summary(memory));
  FitOptions gate_options = o;
  gate_options.delta = std::round((o.delta - memory.delta) * 1e12) / 1e12;
  return fit_gate(set, o, gate_options, std::move(u), std::move(memory), total_time, progress);
}

}  // namespace tracer
