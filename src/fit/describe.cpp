#include "fit/describe.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <ctime>

#include "gate/bounds.hpp"
#include "runtime/drift.hpp"
#include "util/time_text.hpp"

namespace tracer {
namespace {

using nlohmann::json;

json units_json(const FitFacts& f) {
  const Policy& p = f.result.policy;
  const auto no_agreeing = std::count(p.known_labels.begin(), p.known_labels.end(), -1);
  return json{{"traces", f.set.size()},
              {"distinct_inputs", f.units.size()},
              {"duplicate_traces", f.units.duplicate_traces},
              {"conflicting_inputs", f.units.conflicting_units},
              {"train_only",
               {{"traces", f.units.train_only_traces},
                {"inputs", f.units.train_only_units},
                {"rule",
                 "traces the proxy recorded (metadata decision deferred/handled) stand for "
                 "traffic only when their metadata says sampled: true (they drew the audit "
                 "coin); the others are deferred, harder requests, not a sample of traffic, "
                 "so they train the surrogates and never calibrate or test the memory tier"}}},
              {"known_inputs",
               {{"inputs", p.known_inputs.size()},
                {"without_agreeing_label", no_agreeing},
                {"rule",
                 "a routed input equal (after normalisation) to a traced one is deferred "
                 "(known_disagreement) when the surrogate's label is not the one the LLM gave "
                 "in at least the target share of its traced answers"}}},
              {"rule",
               "one unit of evidence per distinct input (after the featurizer's "
               "normalisation); training uses each input's majority label, select and "
               "calibrate score it on the label of one copy drawn at random"}};
}

json split_json(const FitFacts& f) {
  size_t select = 0;
  for (int fold : f.split.fold) select += f.split.folds >= 2 || fold == 0;
  return json{{"seed", f.options.seed},
              {"unit", "distinct input"},
              {"train", f.cross_fit.train_units},
              {"select", select},
              {"calibrate", f.split.calibrate.size()},
              {"folds", f.split.folds},
              {"automatic", f.plan.automatic},
              {"calibrate_share", round4(f.plan.calibrate)},
              {"select_rows", f.split.folds >= 2 ? "out-of-fold over every training input"
                                                 : "a held-out share of the inputs"}};
}

json rare_labels_json(const FitFacts& f) {
  json out = json::array();
  const auto& counts = f.cross_fit.train_label_units;
  for (size_t c = 0; c < counts.size(); ++c) {
    if (counts[c] >= f.options.min_per_label) continue;
    // Distinct inputs of the label in all the traces (any split).
    out.push_back({{"label", f.set.labels[c]},
                   {"training_inputs", counts[c]},
                   {"needs", f.options.min_per_label - counts[c]}});
  }
  return out;
}

json per_label_json(const FitFacts& f) {
  const int K = static_cast<int>(f.set.labels.size());
  const auto& rows = f.result.calibrate_rows;
  std::vector<int> n(K, 0), acc(K, 0), agr(K, 0);
  for (const auto& d : rows) {
    ++n[d.teacher];
    if (!d.handled) continue;
    ++acc[d.teacher];
    agr[d.teacher] += d.predicted == d.teacher;
  }
  json per_label = json::array();
  for (int c = 0; c < K; ++c) {
    const double cov = n[c] ? double(acc[c]) / n[c] : 0;
    json row{{"label", f.set.labels[c]},
             {"calibrate_rows", n[c]},
             {"training_inputs", f.cross_fit.train_label_units[c]},
             {"coverage", round4(cov)},
             {"handled", acc[c]}};
    row["agreement"] = acc[c] ? json(round4(double(agr[c]) / acc[c])) : json(nullptr);
    row["lower_bound"] =
        acc[c] ? json(round4(clopper_pearson_lower(acc[c], agr[c], 1 - f.options.delta)))
               : json(nullptr);
    row["status"] = f.result.policy.is_rare(c) ? "rare"
                    : cov >= 0.9               ? "handled"
                    : cov > 0                  ? "partly_handled"
                                               : "deferred";
    per_label.push_back(row);
  }
  return per_label;
}

json gate_json(const FitFacts& f) {
  const FitOptions& o = f.options;
  const Policy& p = f.result.policy;
  const auto& zoo = f.cross_fit.zoo;
  json gate;
  gate["deployed"] = f.deployed;
  gate["method"] = method_name(p.method);
  gate["chosen_method"] = method_name(f.best.plan.method);
  gate["target"] = o.target;
  gate["delta"] = o.delta;
  gate["min_rows"] = o.min_rows;
  gate["min_coverage"] = o.min_coverage;
  gate["guarantee"] =
      f.deployed ? fmt::format(
                       "on traffic like these traces (distinct inputs), the surrogate's answers "
                       "agree with the teacher at least {:g}% of the time, with probability at "
                       "least {:g}%",
                       o.target * 100, (1 - o.delta) * 100)
                 : "nothing deployed: every input is deferred to the LLM";
  gate["certified"] = walk_json(f.cert, f.cross_fit.cal.size());
  gate["select_estimate"] = walk_json(f.best.select_walk, f.cross_fit.sel.size());
  gate["walk_design"] = {{"start_inputs", f.best.plan.start_rows},
                         {"last_step_share", f.best.plan.last_share},
                         {"simulated_coverage", round4(f.best.design.expected_coverage)},
                         {"simulated_refusal_rate", round4(f.best.design.refusal_rate)}};
  gate["stage1"] = {{"surrogate", zoo[f.best.plan.s1->candidate].name},
                    {"threshold", p.stage1.threshold},
                    {"acceptor_fallback", p.stage1.acceptor.is_fallback()}};
  if (p.method == Method::kRSB)
    gate["stage2"] = {{"surrogate", zoo[f.best.plan.s2->candidate].name},
                      {"threshold", p.stage2.threshold}};
  json steps = json::array();
  for (const auto& s : f.cert.trace)
    steps.push_back({{"threshold", s.threshold},
                     {"n", s.n},
                     {"k", s.k},
                     {"p_value", s.p_value},
                     {"level", s.level},
                     {"passed", s.passed}});
  gate["calibrate_walk"] = steps;
  if (!f.deployed) gate["refusal"] = refusal_json(f);
  return gate;
}

}  // namespace

json refusal_json(const FitFacts& f) {
  const FitOptions& o = f.options;
  const auto& cal = f.cross_fit.cal;
  const ScoredStage& s1 = *f.best.plan.s1;
  const auto& c1 = f.cross_fit.zoo[s1.candidate];
  int n = 0, k = 0;
  for (size_t i = 0; i < cal.size(); ++i) {
    if (s1.cal_ood[i]) continue;
    ++n;
    k += c1.calib_pred[i] == cal.y[i];
  }
  const double a = n ? double(k) / n : 0;
  json r;
  r["reason"] = f.below_min_coverage
                    ? fmt::format("the certified coverage {:.4f} is below --min-coverage {:g}",
                                  f.cert.coverage, o.min_coverage)
                    : fmt::format(
                          "no share of traffic could be certified at agreement >= {:g} with "
                          "confidence {:g}",
                          o.target, 1 - o.delta);
  r["best_method"] = method_name(f.best.plan.method);
  r["in_scope_calibrate_inputs"] = n;
  r["surrogate_agreement_on_calibrate"] = round4(a);
  r["surrogate_lower_bound_on_calibrate"] =
      round4(n ? clopper_pearson_lower(n, k, 1 - o.delta) : 0);
  r["target"] = o.target;
  const double single_p = n ? binomial_upper_tail(n, k, o.target) : 1;
  r["single_test_p_value"] = single_p;
  if (a > o.target && n > 0) {
    // Distinct inputs needed for the same agreement to pass one test of all in-scope inputs;
    // the range uses the agreement's two-sided 90% interval (a lower end at or under the target
    // means more traces may never be enough).
    auto rows_needed = [&](double agreement) -> double {
      if (agreement <= o.target) return INFINITY;
      const int need =
          rows_for_power(o.target, o.delta, std::min(agreement, 0.999999), 0.5, 100000000);
      return need < 0 ? INFINITY : double(need);
    };
    const double in_scope = double(n) / std::max<size_t>(1, cal.size());
    const double per_unit = f.plan.calibrate * in_scope;  // calibrate rows per distinct input
    auto more_inputs = [&](double rows) {
      return std::isfinite(rows) ? std::max(0.0, rows / per_unit - double(f.units.size()))
                                 : INFINITY;
    };
    const double mid = more_inputs(rows_needed(a));
    const double lo = more_inputs(rows_needed(clopper_pearson_upper(n, k, 0.95)));
    const double hi = more_inputs(rows_needed(clopper_pearson_lower(n, k, 0.95)));
    if (single_p <= o.delta) {
      r["more_traces_needed"] = 0;
      r["advice"] = fmt::format(
          "one test of every in-scope input would pass here ({} of {} agree, p = {:.3g}), but "
          "the chosen {} walk stopped on a noisy step before reaching it; this fit's calibrate "
          "labels have now been seen, so do not refit on them with another option: collect "
          "fresh traces and refit (with a new --seed), or use --methods global",
          k, n, single_p, method_name(f.best.plan.method));
    } else if (mid == 0) {
      r["more_traces_needed"] = 0;
      r["advice"] = fmt::format(
          "the surrogate agrees {:.1f}% on in-scope inputs, just above the target, and the "
          "test could not separate it from {:g}; more traces help only if the agreement holds",
          a * 100, o.target);
    } else {
      auto words = [](double v) {
        return std::isfinite(v) ? fmt::format("{:.0f}", std::ceil(v)) : std::string("unbounded");
      };
      r["more_traces_needed"] = std::isfinite(mid) ? json(std::ceil(mid)) : json(nullptr);
      r["more_traces_range"] = {std::isfinite(lo) ? json(std::ceil(lo)) : json(nullptr),
                                std::isfinite(hi) ? json(std::ceil(hi)) : json(nullptr)};
      r["advice"] = fmt::format(
          "the surrogate agrees {:.1f}% on in-scope inputs, above the target, but the sample is "
          "too small to prove it: about {} more distinct inputs (90% range {} to {}) would let "
          "a test of all of them pass, if the agreement holds",
          a * 100, words(mid), words(lo), words(hi));
    }
  } else {
    r["more_traces_needed"] = nullptr;
    r["advice"] = fmt::format(
        "the surrogates agree {:.1f}% on in-scope inputs and do not reach the target on any "
        "confident subset; more traces of the same kind are unlikely to help much: lower "
        "--target",
        a * 100);
  }
  return r;
}

json describe_fit(const FitFacts& f, const FitDescription& extra) {
  const FitOptions& o = f.options;
  const Policy& p = f.result.policy;
  const auto& zoo = f.cross_fit.zoo;
  json m;
  m["format"] = "tracer-policy";
  m["format_version"] = kModelFormatVersion;
  m["tracer_version"] = TRACER_VERSION;
  m["created_at"] = utc_now();
  m["labels"] = f.set.labels;
  m["featurizer"] = {{"kind", p.featurizer->kind()},
                     {"fingerprint", p.featurizer->fingerprint()},
                     {"description", p.featurizer->describe()},
                     {"dim", p.featurizer->dim()}};
  m["options"] = fit_options_json(o);
  m["units"] = units_json(f);
  m["split"] = split_json(f);
  m["rare_labels"] = rare_labels_json(f);
  json zj = json::array();
  for (const auto& c : zoo) {
    json row{{"name", c.name}, {"fit_seconds", round4(c.fit_seconds)}};
    if (c.screened_out) {
      row["screened_out"] = true;
      row["first_fold_agreement"] = round4(c.screen_agreement);
    } else if (c.error.empty()) {
      row["select_agreement"] = round4(c.select_agreement);
    } else {
      row["error"] = c.error;
    }
    zj.push_back(row);
  }
  m["zoo"] = zj;
  if (!extra.skipped.empty()) m["zoo_skipped"] = extra.skipped;
  const auto& s1 = *f.best.plan.s1;
  m["surrogate"] = {{"name", zoo[s1.candidate].name},
                    {"select_agreement", round4(zoo[s1.candidate].select_agreement)},
                    {"best_by_select_agreement", zoo[f.winner].name}};
  m["gate"] = gate_json(f);
  const auto sel_flag = std::count(s1.sel_ood.begin(), s1.sel_ood.end(), 1);
  const auto cal_flag = std::count(s1.cal_ood.begin(), s1.cal_ood.end(), 1);
  const auto& sel = f.cross_fit.sel;
  const auto& cal = f.cross_fit.cal;
  m["ood"] = {{"enabled", p.ood.enabled()},
              {"quantile", p.ood.quantile()},
              {"score_threshold", p.ood.threshold()},
              {"select_flagged", round4(sel.size() ? double(sel_flag) / sel.size() : 0)},
              {"calibrate_flagged", round4(cal.size() ? double(cal_flag) / cal.size() : 0)}};
  {
    const auto& rows = f.result.calibrate_rows;
    std::vector<uint8_t> handled(rows.size());
    for (size_t i = 0; i < rows.size(); ++i) handled[i] = rows[i].handled;
    m["drift"] = DriftReference::from_calibrate(s1.cal_score, handled, s1.cal_ood).to_json();
  }
  m["per_label"] = per_label_json(f);
  m["per_label_split"] = "calibrate";
  m["timings"] = extra.timings;
  return m;
}

}  // namespace tracer
