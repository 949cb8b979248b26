#include "fit/plan.hpp"

#include <algorithm>
#include <cmath>

#include "gate/bounds.hpp"

namespace tracer {

using nlohmann::json;

double round4(double x) { return std::round(x * 1e4) / 1e4; }

json walk_json(const WalkResult& w, size_t rows) {
  return json{{"certified", w.certified},
              {"coverage", round4(w.coverage)},
              {"agreement", round4(w.agreement)},
              {"lower_bound", round4(w.lower_bound)},
              {"accepted", w.n},
              {"agreeing", w.k},
              {"rows", rows}};
}

namespace {

// Chooses the plan's walk design on select, then dry-runs it there.
void design(Plan& plan, Choice& ch, const PlanContext& ctx, const WalkParams& wp) {
  const WalkDesign d = design_walk(plan, ctx.zoo, ctx.sel, ctx.cal.size(), wp, ctx.seed);
  plan.start_rows = d.start_rows;
  plan.last_share = d.last_share;
  ch.expected_coverage = d.expected_coverage;
  ch.design = d;
  ch.select_walk = walk_plan(plan, ctx.zoo, ctx.sel, true, wp);
}

Choice none_left(Choice ch) {
  ch.plan.method = Method::kNone;
  return ch;
}

// Rows whose stage-2 label is too rare to answer are never accepted by stage 2 either.
void block_rare(ScoredStage& st, const Candidate& c, std::span<const uint8_t> rare) {
  if (rare.empty()) return;
  for (size_t i = 0; i < st.sel_score.size(); ++i)
    if (rare[static_cast<size_t>(c.select_pred[i])]) st.sel_score[i] = -1.f;
  for (size_t i = 0; i < st.cal_score.size(); ++i)
    if (rare[static_cast<size_t>(c.calib_pred[i])]) st.cal_score[i] = -1.f;
}

}  // namespace

Choice make_plan(Method method, const ScoredStage& s1, const PlanContext& ctx,
                 const WalkParams& wp) {
  const HeldOut& sel = ctx.sel;
  Choice ch;
  ch.plan.method = method;
  ch.plan.s1 = &s1;
  if (method == Method::kGlobal) {
    ch.plan.steps = {GateStep{0.f}};
    ch.select_walk = walk_plan(ch.plan, ctx.zoo, sel, true, wp);
    return ch;
  }
  // The step grid depends on select and on the user's target only, never on the frontier
  // target being walked: one grid for every target keeps coverage monotone in the target.
  auto taus = select_thresholds(s1.sel_score, s1.sel_ood, ctx.cal.size(), s1.first_rows);
  for (float t : taus) ch.plan.steps.push_back(GateStep{t});
  Plan l2d = ch.plan;
  l2d.method = Method::kL2D;
  design(l2d, ch, ctx, wp);
  ch.plan.start_rows = l2d.start_rows;
  ch.plan.last_share = l2d.last_share;
  if (method == Method::kL2D) {
    ch.plan.method = Method::kL2D;
    return ch;
  }
  // rsb: stage 1 stops at its select-chosen threshold; a second candidate answers part of the
  // rest. Its acceptor is trained on the select rows stage 1 rejects.
  if (!ch.select_walk.certified || ch.select_walk.step + 1 >= static_cast<int>(taus.size()))
    return none_left(std::move(ch));
  const float tau1 = ch.select_walk.gate.tau1;
  std::vector<uint8_t> residual(sel.size(), 0);
  size_t n_res = 0;
  for (size_t i = 0; i < sel.size(); ++i)
    if (!s1.sel_ood[i] && s1.sel_score[i] < tau1) residual[i] = 1, ++n_res;
  if (n_res < 100) return none_left(std::move(ch));
  // The second stage: the other candidate that agrees most with the teacher on the residual.
  size_t best = ctx.zoo.size();
  double best_acc = -1;
  for (const auto& st : ctx.stages) {
    if (st.candidate == s1.candidate) continue;
    const auto& c = ctx.zoo[st.candidate];
    size_t k = 0;
    for (size_t i = 0; i < sel.size(); ++i) k += residual[i] && c.select_pred[i] == sel.y[i];
    const double acc = double(k) / n_res;
    if (acc > best_acc) best_acc = acc, best = st.candidate;
  }
  if (best == ctx.zoo.size()) return none_left(std::move(ch));
  ch.stage2 = std::make_unique<ScoredStage>(score_stage(
      ctx.zoo[best], best, ctx.num_classes, sel, ctx.cal, residual, ctx.seed + 1, nullptr, 0));
  block_rare(*ch.stage2, ctx.zoo[best], ctx.rare);
  std::vector<float> res_scores;
  std::vector<uint8_t> res_ood;
  for (size_t i = 0; i < sel.size(); ++i)
    if (residual[i]) res_scores.push_back(ch.stage2->sel_score[i]), res_ood.push_back(0);
  const auto cal_res = static_cast<size_t>(double(ctx.cal.size()) * n_res / sel.size());
  auto taus2 = select_thresholds(res_scores, res_ood, cal_res, 1);
  ch.plan.steps.resize(ch.select_walk.step + 1);
  for (float t2 : taus2) ch.plan.steps.push_back(GateStep{tau1, std::max(t2, 0.f)});
  ch.plan.s2 = ch.stage2.get();
  design(ch.plan, ch, ctx, wp);
  return ch;
}

Choice choose_plan(const PlanContext& ctx, std::span<const Method> methods, const WalkParams& wp,
                   size_t fallback_candidate) {
  const HeldOut& sel = ctx.sel;
  Choice best;
  double best_cov = -1;
  // Plans are compared by the coverage they can be expected to certify on calibrate. A walk
  // (l2d, rsb) degrades step by step when calibrate disagrees with select, so its out-of-fold
  // select dry run is the estimate. Global is one all-or-nothing test: its coverage is
  // discounted by the chance that the test passes on calibrate, and it must beat the best walk
  // by more than kAllOrNothingMargin, since select agreement is optimistic after choosing the
  // surrogate on it (when both exist, the walk ends at global's accepted set anyway).
  constexpr double kAllOrNothingMargin = 0.05;
  for (const auto& st : ctx.stages) {
    for (Method m : methods) {
      Choice ch = make_plan(m, st, ctx, wp);
      if (ch.plan.method == Method::kNone) continue;
      double cov = 0;
      if (m == Method::kGlobal) {
        const auto& w = ch.select_walk.trace.front();
        const double a = w.n > 0 ? double(w.k) / w.n : 0;
        const int n_cal =
            static_cast<int>(double(w.n) * ctx.cal.size() / std::max<size_t>(1, sel.size()));
        cov = (double(w.n) / sel.size()) * test_power(n_cal, a, wp.alpha, wp.delta) -
              kAllOrNothingMargin;
      } else {
        cov = ch.expected_coverage;
      }
      // Near-ties (half a grid step) go to the simpler plan: l2d before rsb.
      const bool simpler = best.plan.s1 && m < best.plan.method;
      if (cov > best_cov + (simpler ? -0.005 : 0.005) || !best.plan.s1)
        best_cov = cov, best = std::move(ch);
    }
  }
  if (!best.plan.s1) {  // nothing plannable: l2d on the fallback candidate, for the report
    const ScoredStage* s = &ctx.stages.front();
    for (const auto& st : ctx.stages)
      if (st.candidate == fallback_candidate) s = &st;
    best = make_plan(Method::kL2D, *s, ctx, wp);
  }
  return best;
}

json walk_frontier(const ScoredStage& s1, const PlanContext& ctx, std::span<const Method> methods,
                   std::vector<double> targets, double delta, int min_rows) {
  std::sort(targets.begin(), targets.end());
  targets.erase(std::unique(targets.begin(), targets.end()), targets.end());
  json frontier = json::array();
  for (Method m : methods) {
    for (double t : targets) {
      const WalkParams twp{t, delta, min_rows};
      Choice ch = make_plan(m, s1, ctx, twp);
      json row{{"method", method_name(m)}, {"target", t}};
      if (ch.plan.method == Method::kNone && m == Method::kRSB) {
        // No second stage at this target (stage 1 alone reaches every input on select, or leaves
        // too little for a second stage): rsb is then l2d.
        Choice l2d = make_plan(Method::kL2D, s1, ctx, twp);
        if (l2d.select_walk.certified) {
          ch = std::move(l2d);
          row["same_as"] = "l2d";
        }
      }
      if (ch.plan.method == Method::kNone) {
        row["available"] = false;
        row["certified"] = false;
        row["coverage"] = 0.0;
      } else {
        const WalkResult w = walk_plan(ch.plan, ctx.zoo, ctx.cal, false, twp);
        row.update(walk_json(w, ctx.cal.size()));
        row["available"] = true;
        row["select_coverage"] = round4(ch.select_walk.certified ? ch.select_walk.coverage : 0);
      }
      frontier.push_back(row);
    }
  }
  return frontier;
}

}  // namespace tracer
