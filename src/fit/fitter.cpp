#include "fit/fitter.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <thread>

#include "fit/gate_search.hpp"
#include "fit/zoo.hpp"
#include "gate/bounds.hpp"
#include "gate/ood.hpp"
#include "runtime/drift.hpp"
#include "util/error.hpp"

namespace tracer {
namespace {

using nlohmann::json;

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

double round4(double x) { return std::round(x * 1e4) / 1e4; }

// Featurizes rows in parallel, keeping order, with per-row stats for the gate.
SparseMatrix featurize(const Featurizer& f, const TraceSet& set, std::span<const size_t> rows,
                       std::vector<FeatureStats>& stats, int threads) {
  const size_t n = rows.size();
  stats.assign(n, {});
  int t_count = std::max(1, std::min<int>(threads, static_cast<int>(n / 256 + 1)));
  std::vector<SparseMatrix> parts(t_count, SparseMatrix(f.dim()));
  {
    std::vector<std::jthread> pool;
    for (int t = 0; t < t_count; ++t) {
      pool.emplace_back([&, t] {
        size_t b = n * t / t_count, e = n * (t + 1) / t_count;
        SparseVector v;
        for (size_t i = b; i < e; ++i) {
          f.transform(set.traces[rows[i]].input, v, &stats[i]);
          parts[t].add_row(v.row());
        }
      });
    }
  }
  SparseMatrix out(f.dim());
  for (auto& p : parts)
    for (size_t i = 0; i < p.rows(); ++i) out.add_row(p.row(i));
  return out;
}

std::vector<int> labels_of(const TraceSet& set, std::span<const size_t> rows) {
  std::vector<int> y(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) y[i] = set.y[rows[i]];
  return y;
}

struct Choice {
  Plan plan;
  WalkResult select_walk;
  std::unique_ptr<ScoredStage> stage2;  // owned here for rsb plans
};

// Builds the best plan of `method` for stage-1 candidate `s1` at target alpha (select only).
Choice make_plan(Method method, const ScoredStage& s1, const std::vector<ScoredStage>& stages,
                 const std::vector<Candidate>& zoo, const HeldOut& sel, const HeldOut& cal,
                 const WalkParams& wp, int num_classes, uint64_t seed) {
  Choice ch;
  ch.plan.method = method;
  ch.plan.s1 = &s1;
  if (method == Method::kGlobal) {
    ch.plan.steps = {GateStep{0.f}};
    ch.select_walk = walk_plan(ch.plan, zoo, sel, true, wp);
    return ch;
  }
  // The step grid depends on select and on the user's target only, never on the frontier
  // target being walked: one grid for every target keeps coverage monotone in the target.
  auto taus = select_thresholds(s1.sel_score, s1.sel_ood, cal.size(), s1.first_rows);
  for (float t : taus) ch.plan.steps.push_back(GateStep{t});
  Plan l2d = ch.plan;
  l2d.method = Method::kL2D;
  ch.select_walk = walk_plan(l2d, zoo, sel, true, wp);
  if (method == Method::kL2D) {
    ch.plan.method = Method::kL2D;
    return ch;
  }
  // rsb: stage 1 stops at its select-chosen threshold; a second candidate answers part of the
  // rest. Its acceptor is trained on the select rows stage 1 rejects.
  if (!ch.select_walk.certified || ch.select_walk.step + 1 >= static_cast<int>(taus.size())) {
    ch.plan.method = Method::kNone;  // nothing left for a second stage
    return ch;
  }
  const float tau1 = ch.select_walk.gate.tau1;
  std::vector<uint8_t> residual(sel.size(), 0);
  size_t n_res = 0;
  for (size_t i = 0; i < sel.size(); ++i)
    if (!s1.sel_ood[i] && s1.sel_score[i] < tau1) residual[i] = 1, ++n_res;
  if (n_res < 100) {
    ch.plan.method = Method::kNone;
    return ch;
  }
  // The second stage: the other candidate that agrees most with the teacher on the residual.
  size_t best = zoo.size();
  double best_acc = -1;
  for (const auto& st : stages) {
    if (st.candidate == s1.candidate) continue;
    const auto& c = zoo[st.candidate];
    size_t k = 0;
    for (size_t i = 0; i < sel.size(); ++i) k += residual[i] && c.select_pred[i] == sel.y[i];
    double acc = double(k) / n_res;
    if (acc > best_acc) best_acc = acc, best = st.candidate;
  }
  if (best == zoo.size()) {
    ch.plan.method = Method::kNone;
    return ch;
  }
  ch.stage2 = std::make_unique<ScoredStage>(
      score_stage(zoo[best], best, num_classes, sel, cal, residual, seed + 1, nullptr, 0));
  std::vector<float> res_scores;
  std::vector<uint8_t> res_ood;
  for (size_t i = 0; i < sel.size(); ++i)
    if (residual[i]) res_scores.push_back(ch.stage2->sel_score[i]), res_ood.push_back(0);
  size_t cal_res = static_cast<size_t>(double(cal.size()) * n_res / sel.size());
  auto taus2 = select_thresholds(res_scores, res_ood, cal_res, 1);
  ch.plan.steps.resize(ch.select_walk.step + 1);
  for (float t2 : taus2) ch.plan.steps.push_back(GateStep{tau1, t2});
  ch.plan.s2 = ch.stage2.get();
  ch.select_walk = walk_plan(ch.plan, zoo, sel, true, wp);
  return ch;
}

json walk_json(const WalkResult& w, size_t rows) {
  return json{{"certified", w.certified},
              {"coverage", round4(w.coverage)},
              {"agreement", round4(w.agreement)},
              {"lower_bound", round4(w.lower_bound)},
              {"accepted", w.n},
              {"agreeing", w.k},
              {"rows", rows}};
}

// How many more traces might let the surrogate's full-traffic agreement certify alpha.
json refusal_json(const WalkResult& best, Method best_method, const HeldOut& cal,
                  const std::vector<Candidate>& zoo, const ScoredStage& s1, const FitOptions& o,
                  size_t total_traces, bool below_min_coverage) {
  size_t n = 0, k = 0;
  for (size_t i = 0; i < cal.size(); ++i) {
    n += 1;
    k += zoo[s1.candidate].calib_pred[i] == cal.y[i];
  }
  double a = n ? double(k) / n : 0;
  json r;
  std::string reason;
  if (below_min_coverage) {
    reason = fmt::format("the certified coverage {:.4f} is below --min-coverage {:g}",
                         best.coverage, o.min_coverage);
  } else {
    reason = fmt::format(
        "no share of traffic could be certified at agreement >= {:g} with "
        "confidence {:g}",
        o.target, 1 - o.delta);
  }
  r["reason"] = reason;
  r["best_method"] = method_name(best_method);
  r["surrogate_agreement_on_calibrate"] = round4(a);
  r["surrogate_lower_bound_on_calibrate"] =
      round4(n ? clopper_pearson_lower(int(n), int(k), 1 - o.delta) : 0);
  r["target"] = o.target;
  if (a > o.target && n > 0) {
    // Calibrate rows needed for the same agreement rate to certify at full coverage.
    size_t need = n;
    while (need < 100000000 &&
           clopper_pearson_lower(int(need), int(std::floor(a * need)), 1 - o.delta) < o.target)
      need = need * 5 / 4 + 1;
    double more = double(need) / o.fractions.calibrate - double(total_traces);
    r["more_traces_needed"] = static_cast<long long>(std::max(0.0, std::ceil(more)));
    r["advice"] =
        "the surrogate agrees often enough but the sample is too small to prove it; "
        "about " +
        std::to_string(static_cast<long long>(std::max(0.0, more))) +
        " more traces would let it certify";
  } else {
    r["more_traces_needed"] = nullptr;
    r["advice"] =
        "the surrogates do not reach the target on any confident subset; more traces "
        "of the same kind are unlikely to help much — lower --target, or use a "
        "stronger featurizer (embeddings)";
  }
  return r;
}

}  // namespace

FitResult fit_policy(const TraceSet& set, const FitOptions& o, Progress& progress) {
  if (!(o.target > 0 && o.target < 1)) throw InputError("--target must be in (0, 1)");
  if (!(o.delta > 0 && o.delta < 1)) throw InputError("--delta must be in (0, 1)");
  if (o.min_rows < 1) throw InputError("--min-rows must be at least 1");
  check_label_counts(set, o.min_per_label);
  const int K = static_cast<int>(set.labels.size());
  Stopwatch total_time;
  json timings;

  progress.step("splitting " + std::to_string(set.size()) + " traces (train/select/calibrate)");
  Split split = stratified_split(set, o.fractions, o.seed);
  if (split.calibrate.size() < static_cast<size_t>(o.min_rows) || split.select.size() < 10)
    throw InputError("too few traces to certify anything: calibrate has " +
                     std::to_string(split.calibrate.size()) + " rows, select " +
                     std::to_string(split.select.size()) + "; collect more traces (a few " +
                     "hundred at least)");

  progress.step("fitting featurizer " + o.featurizer);
  Stopwatch sw;
  auto featurizer = make_featurizer(o.featurizer);
  {
    std::vector<std::string> texts;
    texts.reserve(split.train.size());
    for (size_t i : split.train) texts.push_back(set.traces[i].input);
    featurizer->fit(texts);
  }
  std::vector<FeatureStats> train_stats;
  HeldOut sel, cal;
  SparseMatrix Xtr = featurize(*featurizer, set, split.train, train_stats, o.threads);
  SparseMatrix Xsel = featurize(*featurizer, set, split.select, sel.stats, o.threads);
  SparseMatrix Xcal = featurize(*featurizer, set, split.calibrate, cal.stats, o.threads);
  sel.X = &Xsel;
  cal.X = &Xcal;
  std::vector<int> ytr = labels_of(set, split.train);
  sel.y = labels_of(set, split.select);
  cal.y = labels_of(set, split.calibrate);
  timings["featurize_seconds"] = round4(sw.seconds());

  auto names = o.zoo.empty() ? default_zoo(o.trees) : o.zoo;
  progress.step("fitting " + std::to_string(names.size()) + " surrogates on " +
                std::to_string(split.train.size()) + " traces");
  sw = Stopwatch();
  ZooData zd{&Xtr, ytr, &Xsel, sel.y, &Xcal, K};
  auto zoo = sweep_zoo(names, zd, o.seed, o.threads, [&](const Candidate& c) {
    if (c.model)
      progress.note(c.name + ": select agreement " + std::to_string(round4(c.select_agreement)) +
                    " (" + std::to_string(round4(c.fit_seconds)) + " s)");
    else
      progress.note(c.name + ": failed: " + c.error);
  });
  if (o.ensemble_members >= 2) add_ensemble(zoo, zd, o.ensemble_members);
  size_t winner = best_candidate(zoo);
  timings["zoo_seconds"] = round4(sw.seconds());

  progress.step("OOD gate and acceptors");
  sw = Stopwatch();
  OodGate ood;
  if (o.ood) {
    ood.fit_centroids(Xtr, ytr, K);
    std::vector<float> scratch(K);
    for (HeldOut* h : {&sel, &cal}) {
      for (size_t i = 0; i < h->size(); ++i) {
        h->known.push_back(OodGate::known_fraction(h->stats[i]));
        h->similarity.push_back(ood.similarity(h->X->row(i), scratch));
      }
    }
  }
  std::vector<ScoredStage> stages;
  std::vector<uint8_t> all_rows(sel.size(), 1);
  for (size_t c = 0; c < zoo.size(); ++c)
    if (zoo[c].model)
      stages.push_back(score_stage(zoo[c], c, K, sel, cal, all_rows, o.seed, o.ood ? &ood : nullptr,
                                   o.ood_quantile));
  // The first step of every walk of a stage is sized once, for the user's target.
  for (auto& st : stages) {
    std::vector<uint8_t> agree(sel.size());
    for (size_t i = 0; i < sel.size(); ++i) agree[i] = zoo[st.candidate].select_pred[i] == sel.y[i];
    st.first_rows =
        first_step_rows(st.sel_score, agree, st.sel_ood, cal.size(), o.target, o.delta, o.min_rows);
  }
  timings["gate_seconds"] = round4(sw.seconds());

  progress.step("choosing the plan on select, certifying on calibrate");
  sw = Stopwatch();
  WalkParams wp{o.target, o.delta, o.min_rows};

  // Model and method choice at the user's target, on select only.
  Choice best;
  double best_cov = -1;
  // Plans are compared by the coverage they can be expected to certify on calibrate. A walk
  // (l2d, rsb) degrades step by step when calibrate disagrees with select, so its cross-fitted
  // select dry run is the estimate. Global is one all-or-nothing test: its coverage is
  // discounted by the chance that the test passes on calibrate, and it must beat the best walk
  // by more than kAllOrNothingMargin, since select agreement is optimistic after choosing the
  // surrogate on it (when both exist, the walk ends at global's accepted set anyway).
  constexpr double kAllOrNothingMargin = 0.05;
  for (const auto& st : stages) {
    for (Method m : o.methods) {
      Choice ch = make_plan(m, st, stages, zoo, sel, cal, wp, K, o.seed);
      if (ch.plan.method == Method::kNone) continue;
      double cov = 0;
      if (m == Method::kGlobal) {
        const auto& w = ch.select_walk.trace.front();
        const double a = w.n > 0 ? double(w.k) / w.n : 0;
        const int n_cal =
            static_cast<int>(double(w.n) * cal.size() / std::max<size_t>(1, sel.size()));
        cov = (double(w.n) / sel.size()) * test_power(n_cal, a, o.target, o.delta) -
              kAllOrNothingMargin;
      } else {
        cov = ch.select_walk.certified ? ch.select_walk.coverage : 0;
      }
      // Near-ties (half a grid step) go to the simpler plan: l2d before rsb.
      const bool simpler = best.plan.s1 && m < best.plan.method;
      if (cov > best_cov + (simpler ? -0.005 : 0.005) || !best.plan.s1)
        best_cov = cov, best = std::move(ch);
    }
  }
  if (!best.plan.s1) {  // nothing plannable: fall back to l2d on the winner for the report
    const ScoredStage* s = &stages.front();
    for (const auto& st : stages)
      if (st.candidate == winner) s = &st;
    best = make_plan(Method::kL2D, *s, stages, zoo, sel, cal, wp, K, o.seed);
  }
  WalkResult cert = walk_plan(best.plan, zoo, cal, false, wp);
  const bool below_min = cert.certified && cert.coverage < o.min_coverage;
  const bool deployed = cert.certified && !below_min;

  // Frontier: every method × target, with the chosen stage-1 surrogate, walked on calibrate.
  json frontier = json::array();
  std::vector<double> targets = o.frontier_targets;
  if (std::find(targets.begin(), targets.end(), o.target) == targets.end())
    targets.push_back(o.target);
  std::sort(targets.begin(), targets.end());
  for (Method m : o.methods) {
    for (double t : targets) {
      WalkParams twp{t, o.delta, o.min_rows};
      Choice ch = make_plan(m, *best.plan.s1, stages, zoo, sel, cal, twp, K, o.seed);
      json row{{"method", method_name(m)}, {"target", t}};
      if (ch.plan.method == Method::kNone && m == Method::kRSB) {
        // No second stage at this target (stage 1 alone reaches every input on select, or leaves
        // too little for a second stage): rsb is then l2d, and reporting it as unavailable
        // would make its coverage jump up with a stricter target.
        Choice l2d = make_plan(Method::kL2D, *best.plan.s1, stages, zoo, sel, cal, twp, K, o.seed);
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
        WalkResult w = walk_plan(ch.plan, zoo, cal, false, twp);
        row.update(walk_json(w, cal.size()));
        row["available"] = true;
        row["select_coverage"] = round4(ch.select_walk.certified ? ch.select_walk.coverage : 0);
      }
      frontier.push_back(row);
    }
    // A pipeline certified at a stricter target is certified at a looser one too (agreement >=
    // 0.95 implies >= 0.90), so each row shows the best of its own walk and the stricter rows'.
    // Without this, rsb (whose stage-1 cut depends on the target) or a walk stopped early by a
    // noisy step could show coverage rising with the target.
    const size_t first = frontier.size() - targets.size();
    for (size_t i = frontier.size() - 1; i > first; --i) {
      json& looser = frontier[i - 1];
      const json& stricter = frontier[i];
      if (stricter.value("coverage", 0.0) <= looser.value("coverage", 0.0)) continue;
      const double own_target = looser["target"];
      const json from =
          stricter.contains("from_target") ? stricter["from_target"] : stricter["target"];
      looser = stricter;
      looser["target"] = own_target;
      looser["from_target"] = from;
    }
  }
  timings["certify_seconds"] = round4(sw.seconds());

  // The policy the router will run.
  FitResult result;
  Policy& p = result.policy;
  p.featurizer = std::move(featurizer);
  p.labels = set.labels;
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
  const std::string s1_name = zoo[s1.candidate].name;
  const std::string s2_name =
      p.method == Method::kRSB ? zoo[best.plan.s2->candidate].name : std::string();
  if (p.method == Method::kRSB) p.stage2.surrogate = std::move(zoo[best.plan.s2->candidate].model);
  // Every calibrate row's decision under the deployed policy: the per-label table here and
  // the qualitative report are both computed from these held-out rows.
  std::vector<HeldOutDecision>& rows = result.calibrate_rows;
  rows.resize(cal.size());
  {
    const auto& c1 = zoo[s1.candidate];
    for (size_t i = 0; i < cal.size(); ++i) {
      HeldOutDecision& d = rows[i];
      d.trace = split.calibrate[i];
      d.teacher = cal.y[i];
      std::span<const float> probs(c1.calib_probs.data() + i * K, K);
      d.predicted = c1.calib_pred[i];
      d.probability = probs[d.predicted];
      d.runner_up = d.predicted == 0 ? 1 : 0;
      for (int c = 0; c < K; ++c)
        if (c != d.predicted && probs[c] > probs[d.runner_up]) d.runner_up = c;
      d.score = s1.cal_score[i];
      if (!deployed) {
        d.reason = DeferReason::kNoPolicy;
      } else if (s1.cal_ood[i]) {
        d.reason = DeferReason::kOutOfDistribution;
      } else if (p.method == Method::kGlobal || s1.cal_score[i] >= p.stage1.threshold) {
        d.handled = true;
      } else if (p.method == Method::kRSB && best.plan.s2->cal_score[i] >= p.stage2.threshold) {
        d.handled = true;
        d.stage = 2;
        d.predicted = zoo[best.plan.s2->candidate].calib_pred[i];
        d.score = best.plan.s2->cal_score[i];
      } else {
        d.reason = DeferReason::kBelowThreshold;
      }
    }
  }
  json per_label = json::array();
  {
    std::vector<int> n(K, 0), acc(K, 0), agr(K, 0);
    for (const auto& d : rows) {
      ++n[d.teacher];
      if (!d.handled) continue;
      ++acc[d.teacher];
      agr[d.teacher] += d.predicted == d.teacher;
    }
    for (int c = 0; c < K; ++c) {
      double cov = n[c] ? double(acc[c]) / n[c] : 0;
      json row{{"label", set.labels[c]},
               {"calibrate_rows", n[c]},
               {"coverage", round4(cov)},
               {"handled", acc[c]}};
      row["agreement"] = acc[c] ? json(round4(double(agr[c]) / acc[c])) : json(nullptr);
      row["lower_bound"] =
          acc[c] ? json(round4(clopper_pearson_lower(acc[c], agr[c], 1 - o.delta))) : json(nullptr);
      row["status"] = cov >= 0.9 ? "handled" : cov > 0 ? "partly_handled" : "deferred";
      per_label.push_back(row);
    }
  }
  p.stage1.surrogate = std::move(zoo[s1.candidate].model);

  json m;
  m["format"] = "tracer-policy";
  m["format_version"] = kModelFormatVersion;
  m["tracer_version"] = TRACER_VERSION;
  m["created_at"] = utc_now();
  m["labels"] = set.labels;
  m["featurizer"] = {{"kind", p.featurizer->kind()},
                     {"fingerprint", p.featurizer->fingerprint()},
                     {"description", p.featurizer->describe()},
                     {"dim", p.featurizer->dim()}};
  m["options"] = fit_options_json(o);
  m["split"] = {{"seed", o.seed},
                {"train", split.train.size()},
                {"select", split.select.size()},
                {"calibrate", split.calibrate.size()}};
  json zj = json::array();
  for (const auto& c : zoo) {
    json row{{"name", c.name}, {"fit_seconds", round4(c.fit_seconds)}};
    if (c.error.empty())
      row["select_agreement"] = round4(c.select_agreement);
    else
      row["error"] = c.error;
    zj.push_back(row);
  }
  m["zoo"] = zj;
  m["surrogate"] = {{"name", s1_name},
                    {"select_agreement", round4(zoo[s1.candidate].select_agreement)},
                    {"best_by_select_agreement", zoo[winner].name}};
  json gate;
  gate["deployed"] = deployed;
  gate["method"] = method_name(p.method);
  gate["chosen_method"] = method_name(best.plan.method);
  gate["target"] = o.target;
  gate["delta"] = o.delta;
  gate["min_rows"] = o.min_rows;
  gate["min_coverage"] = o.min_coverage;
  gate["guarantee"] =
      deployed ? fmt::format(
                     "on traffic like these traces, the surrogate's answers agree with the "
                     "teacher at least {:g}% of the time, with probability at least {:g}%",
                     o.target * 100, (1 - o.delta) * 100)
               : "nothing deployed: every input is deferred to the LLM";
  gate["certified"] = walk_json(cert, cal.size());
  gate["select_estimate"] = walk_json(best.select_walk, sel.size());
  gate["stage1"] = {{"surrogate", s1_name},
                    {"threshold", p.stage1.threshold},
                    {"acceptor_fallback", p.stage1.acceptor.is_fallback()}};
  if (p.method == Method::kRSB)
    gate["stage2"] = {{"surrogate", s2_name}, {"threshold", p.stage2.threshold}};
  json steps = json::array();
  for (const auto& s : cert.trace)
    steps.push_back({{"threshold", s.threshold},
                     {"n", s.n},
                     {"k", s.k},
                     {"p_value", s.p_value},
                     {"passed", s.passed}});
  gate["calibrate_walk"] = steps;
  if (!deployed)
    gate["refusal"] = refusal_json(cert, best.plan.method, cal, zoo, s1, o, set.size(), below_min);
  m["gate"] = gate;
  size_t sel_flag = std::count(s1.sel_ood.begin(), s1.sel_ood.end(), 1);
  size_t cal_flag = std::count(s1.cal_ood.begin(), s1.cal_ood.end(), 1);
  m["ood"] = {{"enabled", p.ood.enabled()},
              {"quantile", p.ood.quantile()},
              {"score_threshold", p.ood.threshold()},
              {"select_flagged", round4(sel.size() ? double(sel_flag) / sel.size() : 0)},
              {"calibrate_flagged", round4(cal.size() ? double(cal_flag) / cal.size() : 0)}};
  {
    std::vector<uint8_t> handled(rows.size());
    for (size_t i = 0; i < rows.size(); ++i) handled[i] = rows[i].handled;
    m["drift"] = DriftReference::from_calibrate(s1.cal_score, handled, s1.cal_ood).to_json();
  }
  m["per_label"] = per_label;
  m["per_label_split"] = "calibrate";
  timings["total_seconds"] = round4(total_time.seconds());
  m["timings"] = timings;
  progress.finish();

  result.manifest = std::move(m);
  result.frontier = json{{"split", "calibrate"}, {"delta", o.delta}, {"rows", frontier}};
  result.deployed = deployed;
  return result;
}

json fit_options_json(const FitOptions& o) {
  json methods = json::array();
  for (Method m : o.methods) methods.push_back(method_name(m));
  return json{{"target", o.target},
              {"delta", o.delta},
              {"min_coverage", o.min_coverage},
              {"min_rows", o.min_rows},
              {"frontier_targets", o.frontier_targets},
              {"zoo", o.zoo},
              {"trees", o.trees},
              {"ensemble_members", o.ensemble_members},
              {"methods", methods},
              {"fractions", {o.fractions.train, o.fractions.select, o.fractions.calibrate}},
              {"seed", o.seed},
              {"min_per_label", o.min_per_label},
              {"featurizer", o.featurizer},
              {"ood", o.ood},
              {"ood_quantile", o.ood_quantile}};
}

FitOptions fit_options_from(const json& rec, const json& m, const json& frontier) {
  FitOptions o;
  try {
    if (rec.is_object()) {
      o.target = rec.at("target");
      o.delta = rec.at("delta");
      o.min_coverage = rec.at("min_coverage");
      o.min_rows = rec.at("min_rows");
      o.frontier_targets = rec.at("frontier_targets").get<std::vector<double>>();
      o.zoo = rec.at("zoo").get<std::vector<std::string>>();
      o.trees = rec.at("trees");
      o.ensemble_members = rec.value("ensemble_members", o.ensemble_members);
      o.methods.clear();
      for (const auto& name : rec.at("methods")) o.methods.push_back(parse_method(name));
      auto f = rec.at("fractions").get<std::vector<double>>();
      if (f.size() != 3) throw FormatError("fit_options.fractions needs three numbers");
      o.fractions = {f[0], f[1], f[2]};
      o.seed = rec.at("seed");
      o.min_per_label = rec.at("min_per_label");
      o.featurizer = rec.at("featurizer");
      o.ood = rec.at("ood");
      o.ood_quantile = rec.at("ood_quantile");
      return o;
    }
    // Older folders: rebuild what the manifest and frontier record.
    const json& g = m.at("gate");
    o.target = g.at("target");
    o.delta = g.at("delta");
    o.min_rows = g.value("min_rows", o.min_rows);
    o.min_coverage = g.value("min_coverage", o.min_coverage);
    o.seed = m.at("split").value("seed", o.seed);
    const double tr = m["split"].value("train", 0.0), se = m["split"].value("select", 0.0),
                 ca = m["split"].value("calibrate", 0.0);
    if (tr + se + ca > 0) {
      const double total = tr + se + ca;
      o.fractions = {1.0 - se / total - ca / total, se / total, ca / total};
    }
    o.zoo.clear();
    for (const auto& c : m.value("zoo", json::array())) o.zoo.push_back(c.at("name"));
    o.featurizer = m.at("featurizer").value("kind", o.featurizer);
    o.ood = m.value("ood", json::object()).value("enabled", true);
    std::vector<Method> methods;
    std::vector<double> targets;
    for (const auto& r : frontier.value("rows", json::array())) {
      Method mm = parse_method(r.at("method"));
      if (std::find(methods.begin(), methods.end(), mm) == methods.end()) methods.push_back(mm);
      double t = r.at("target");
      if (std::find(targets.begin(), targets.end(), t) == targets.end()) targets.push_back(t);
    }
    if (!methods.empty()) o.methods = methods;
    if (!targets.empty()) o.frontier_targets = targets;
  } catch (const json::exception& e) {
    throw FormatError(std::string("cannot read the fit options from the policy folder (") +
                      e.what() + "); refit with `tracer fit`");
  } catch (const InputError& e) {  // e.g. an unknown method name
    throw FormatError(std::string("the policy folder records invalid fit options (") + e.what() +
                      "); refit with `tracer fit`");
  }
  return o;
}

void write_artifact(const std::string& dir, FitResult& r) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (!fs::is_directory(dir))
    throw InputError("cannot create the output folder " + dir + (ec ? ": " + ec.message() : ""));
  std::string model = encode_policy(r.policy);
  std::string sum = checksum_hex(fnv1a64(model));
  r.manifest["policy_version"] =
      r.manifest.value("created_at", std::string()) + "-" + sum.substr(0, 8);
  r.manifest["model"] = {{"file", "model.bin"}, {"bytes", model.size()}, {"checksum", sum}};
  r.policy.policy_version = r.manifest["policy_version"];

  json history = json::array();
  auto hist_path = (fs::path(dir) / "history.json").string();
  if (fs::exists(hist_path)) {
    try {
      history = json::parse(read_whole_file(hist_path));
      if (!history.is_array()) history = json::array();
    } catch (const json::exception&) {
      history = json::array();  // an unreadable history is replaced rather than blocking a fit
    }
  }
  const json& g = r.manifest["gate"];
  history.push_back({{"policy_version", r.manifest["policy_version"]},
                     {"created_at", r.manifest["created_at"]},
                     {"deployed", g["deployed"]},
                     {"method", g["method"]},
                     {"target", g["target"]},
                     {"coverage", g["certified"]["coverage"]},
                     {"agreement", g["certified"]["agreement"]},
                     {"lower_bound", g["certified"]["lower_bound"]}});

  write_file_atomic((fs::path(dir) / "model.bin").string(), model);
  write_file_atomic((fs::path(dir) / "frontier.json").string(), r.frontier.dump(2) + "\n");
  write_file_atomic(hist_path, history.dump(2) + "\n");
  write_file_atomic((fs::path(dir) / "manifest.json").string(), r.manifest.dump(2) + "\n");
}

}  // namespace tracer
