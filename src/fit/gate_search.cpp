#include "fit/gate_search.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <random>

#include "gate/bounds.hpp"
#include "gate/ood.hpp"

namespace tracer {
namespace {

// Smoothed per-label agreement of the surrogate's predicted label on the given rows:
// (k_c + kPriorStrength × overall) / (n_c + kPriorStrength).
constexpr double kPriorStrength = 10;

struct PriorCounts {
  std::vector<double> n, k;
  double overall = 0.5;
};

PriorCounts prior_counts(const std::vector<int>& pred, std::span<const int> y,
                         std::span<const uint8_t> rows, int num_classes) {
  PriorCounts c;
  c.n.assign(num_classes, 0);
  c.k.assign(num_classes, 0);
  double tn = 0, tk = 0;
  for (size_t i = 0; i < pred.size(); ++i) {
    if (!rows[i]) continue;
    c.n[pred[i]] += 1;
    c.k[pred[i]] += pred[i] == y[i];
    tn += 1;
    tk += pred[i] == y[i];
  }
  c.overall = tn > 0 ? tk / tn : 0.5;
  return c;
}

std::vector<float> label_prior(const PriorCounts& c) {
  std::vector<float> prior(c.n.size());
  for (size_t l = 0; l < prior.size(); ++l)
    prior[l] =
        static_cast<float>((c.k[l] + kPriorStrength * c.overall) / (c.n[l] + kPriorStrength));
  return prior;
}

// Signals of the select rows with each fitting row's prior computed without the row itself
// (leave-one-out). With the row in its own label's prior, a select row's outcome leaks into its
// own acceptor signal: the acceptor then over-trusts the prior and the select rows' scores rank
// better than fresh inputs', which makes every plan look better on select than on calibrate.
std::vector<Signals> select_signals(const Candidate& c, const HeldOut& sel, int num_classes,
                                    const PriorCounts& counts, std::span<const uint8_t> rows) {
  const std::vector<float> full = label_prior(counts);
  std::vector<float> prior = full;
  std::vector<Signals> sig(sel.size());
  for (size_t i = 0; i < sel.size(); ++i) {
    const int p = c.select_pred[i];
    if (rows[i]) {
      const double agree = p == sel.y[i];
      const double n = counts.n[p] - 1, k = counts.k[p] - agree;
      prior[p] = static_cast<float>((k + kPriorStrength * counts.overall) / (n + kPriorStrength));
    }
    std::span<const float> probs(c.select_probs.data() + i * num_classes, num_classes);
    sig[i] = compute_signals(probs, prior, OodGate::known_fraction(sel.stats[i]),
                             static_cast<float>(sel.stats[i].ngrams));
    prior[p] = full[p];
  }
  return sig;
}

void score_rows(const std::vector<float>& probs, const HeldOut& split, int num_classes,
                const std::vector<float>& prior, const Acceptor& acc, std::vector<float>& out,
                std::vector<Signals>* signals) {
  out.resize(split.size());
  if (signals) signals->resize(split.size());
  for (size_t i = 0; i < split.size(); ++i) {
    std::span<const float> p(probs.data() + i * num_classes, num_classes);
    Signals s = compute_signals(p, prior, OodGate::known_fraction(split.stats[i]),
                                static_cast<float>(split.stats[i].ngrams));
    if (signals) (*signals)[i] = s;
    out[i] = acc.score(s);
  }
}

}  // namespace

ScoredStage score_stage(const Candidate& c, size_t index, int num_classes, const HeldOut& sel,
                        const HeldOut& cal, std::span<const uint8_t> fit_rows, uint64_t seed,
                        const OodGate* gate, double ood_quantile) {
  ScoredStage st;
  st.candidate = index;
  st.sel_ood.assign(sel.size(), 0);
  st.cal_ood.assign(cal.size(), 0);
  if (gate && gate->enabled()) {
    auto top1 = [&](const std::vector<float>& probs, const std::vector<int>& pred, size_t i) {
      return probs[i * num_classes + pred[i]];
    };
    std::vector<float> sel_top1(sel.size());
    for (size_t i = 0; i < sel.size(); ++i) sel_top1[i] = top1(c.select_probs, c.select_pred, i);
    st.ood = *gate;
    st.ood.set_reference(sel.known, sel.similarity, sel_top1, ood_quantile);
    for (size_t i = 0; i < sel.size(); ++i)
      st.sel_ood[i] = st.ood.is_ood(sel.known[i], sel.similarity[i], sel_top1[i]);
    for (size_t i = 0; i < cal.size(); ++i)
      st.cal_ood[i] =
          st.ood.is_ood(cal.known[i], cal.similarity[i], top1(c.calib_probs, c.calib_pred, i));
  }
  const PriorCounts counts = prior_counts(c.select_pred, sel.y, fit_rows, num_classes);
  st.label_prior = label_prior(counts);
  const std::vector<Signals> sig = select_signals(c, sel, num_classes, counts, fit_rows);
  std::vector<Signals> rows;
  std::vector<uint8_t> agree;
  for (size_t i = 0; i < sel.size(); ++i) {
    if (!fit_rows[i]) continue;
    rows.push_back(sig[i]);
    agree.push_back(c.select_pred[i] == sel.y[i]);
  }
  st.acceptor.fit(rows, agree, seed);
  score_rows(c.calib_probs, cal, num_classes, st.label_prior, st.acceptor, st.cal_score, nullptr);
  // Select scores are cross-fitted (each row scored by an acceptor that did not see it): the
  // threshold grid, the first step's size and the dry runs then see out-of-sample scores, not
  // the in-sample ones whose top region agrees better than fresh data will.
  constexpr size_t kFolds = 5;
  st.sel_score.assign(sel.size(), 0.f);
  for (size_t f = 0; f < kFolds; ++f) {
    std::vector<Signals> fold_rows;
    std::vector<uint8_t> fold_agree;
    for (size_t i = 0, j = 0; i < sel.size(); ++i) {
      if (!fit_rows[i]) continue;
      if (j++ % kFolds != f)
        fold_rows.push_back(sig[i]), fold_agree.push_back(c.select_pred[i] == sel.y[i]);
    }
    Acceptor fold;
    fold.fit(fold_rows, fold_agree, seed + f + 1);
    for (size_t i = 0, j = 0; i < sel.size(); ++i) {
      // Rows outside fit_rows get the full acceptor's view from fold 0 (they trained nothing).
      const bool mine = fit_rows[i] ? (j++ % kFolds == f) : f == 0;
      if (mine) st.sel_score[i] = fit_rows[i] ? fold.score(sig[i]) : st.acceptor.score(sig[i]);
    }
  }
  return st;
}

std::vector<float> select_thresholds(std::span<const float> select_scores,
                                     std::span<const uint8_t> select_ood, size_t calib_size,
                                     int min_first_rows) {
  std::vector<float> in_dist;
  for (size_t i = 0; i < select_scores.size(); ++i)
    if (!select_ood[i]) in_dist.push_back(select_scores[i]);
  if (in_dist.empty()) return {};
  // Expected calibrate rows scale with the in-distribution share.
  size_t effective_calib =
      static_cast<size_t>(std::floor(double(calib_size) * in_dist.size() / select_scores.size()));
  auto seq = threshold_sequence(in_dist, effective_calib, min_first_rows);
  const float lowest = *std::min_element(in_dist.begin(), in_dist.end());
  std::vector<float> out;
  for (double t : seq) {
    // Scores are in [0, 1]; the loosest step accepts every in-distribution row.
    float f = std::isfinite(t) ? std::max(static_cast<float>(t), 0.f) : 0.f;
    if (f < lowest) f = 0.f;
    if (out.empty() || f < out.back()) out.push_back(f);
  }
  return out;
}

int first_step_rows(std::span<const float> select_scores, std::span<const uint8_t> select_agree,
                    std::span<const uint8_t> select_ood, size_t calib_size, double alpha,
                    double delta, int min_rows) {
  const int floor_rows =
      std::max(min_rows, static_cast<int>(std::ceil(1.5 * min_rows_to_certify(alpha, delta))));
  std::vector<std::pair<float, uint8_t>> rows;
  for (size_t i = 0; i < select_scores.size(); ++i)
    if (!select_ood[i]) rows.emplace_back(select_scores[i], select_agree[i]);
  if (rows.empty() || calib_size == 0) return floor_rows;
  std::stable_sort(rows.begin(), rows.end(), [](auto& a, auto& b) { return a.first > b.first; });
  const double scale = double(calib_size) / select_scores.size();
  size_t agree = 0;
  // Candidate regions every half percent of select (the power search is not cheap).
  const size_t stride = std::max<size_t>(1, rows.size() / 200);
  for (size_t m = 0; m < rows.size(); ++m) {
    agree += rows[m].second;
    const int cal_rows = static_cast<int>((m + 1) * scale);
    if (cal_rows < floor_rows || ((m + 1) % stride != 0 && m + 1 != rows.size())) continue;
    // Plan for a pessimistic agreement (a one-sided 95% lower bound): a small top region that
    // happens to agree perfectly on select says little about calibrate.
    const double est =
        clopper_pearson_lower(static_cast<int>(m + 1), static_cast<int>(agree), 0.95);
    if (est <= alpha) continue;  // cannot have the power at any size
    const int need = rows_for_power(alpha, delta, est, 0.9, 10 * static_cast<int>(calib_size) + 10);
    if (need > 0 && cal_rows >= need) return cal_rows;
  }
  return floor_rows;  // no region is expected to pass; the walk will most likely refuse
}

Acceptance plan_acceptance(const Plan& plan, const std::vector<Candidate>& zoo,
                           const HeldOut& split, bool on_select) {
  const size_t rows = split.size();
  Acceptance acc;
  acc.first_step.assign(rows, -1);
  acc.agree.assign(rows, 0);
  if (plan.method == Method::kNone || plan.steps.empty()) return acc;
  const auto& s1 = on_select ? plan.s1->sel_score : plan.s1->cal_score;
  const auto& p1 =
      on_select ? zoo[plan.s1->candidate].select_pred : zoo[plan.s1->candidate].calib_pred;
  const std::vector<float>* s2 = nullptr;
  const std::vector<int>* p2 = nullptr;
  if (plan.s2) {
    s2 = on_select ? &plan.s2->sel_score : &plan.s2->cal_score;
    p2 = on_select ? &zoo[plan.s2->candidate].select_pred : &zoo[plan.s2->candidate].calib_pred;
  }
  const auto& blocked = on_select ? plan.s1->sel_ood : plan.s1->cal_ood;
  const int m = static_cast<int>(plan.steps.size());
  for (size_t i = 0; i < rows; ++i) {
    if (blocked[i]) continue;
    for (int j = 0; j < m; ++j) {
      const GateStep& g = plan.steps[static_cast<size_t>(j)];
      if (plan.method == Method::kGlobal || s1[i] >= g.tau1) {
        acc.first_step[i] = j;
        acc.agree[i] = p1[i] == split.y[i];
        break;
      }
      if (s2 && (*s2)[i] >= g.tau2) {
        acc.first_step[i] = j;
        acc.agree[i] = (*p2)[i] == split.y[i];
        break;
      }
    }
  }
  return acc;
}

namespace {

// Accepted (n) and agreeing (k) rows per step from each row's first accepting step.
std::vector<CertifyStep> step_counts(const Plan& plan, const Acceptance& acc) {
  std::vector<CertifyStep> steps(plan.steps.size());
  for (size_t i = 0; i < acc.first_step.size(); ++i) {
    if (acc.first_step[i] < 0) continue;
    auto& st = steps[static_cast<size_t>(acc.first_step[i])];
    ++st.n;
    st.k += acc.agree[i];
  }
  for (size_t j = 1; j < steps.size(); ++j) {
    steps[j].n += steps[j - 1].n;
    steps[j].k += steps[j - 1].k;
  }
  for (size_t j = 0; j < steps.size(); ++j) steps[j].threshold = plan.steps[j].tau1;
  return steps;
}

std::vector<double> fallback_weights(const Plan& plan, size_t steps) {
  if (plan.method == Method::kGlobal || steps < 2 || plan.last_share <= 0) return {};
  std::vector<double> w(steps, 0.0);
  w.back() = plan.last_share;
  return w;
}

int scaled_start(const Plan& plan, size_t rows, int min_rows) {
  if (plan.method == Method::kGlobal) return min_rows;
  const size_t cal_rows = std::max<size_t>(1, plan.s1->cal_score.size());
  return std::max(min_rows, static_cast<int>(plan.start_rows * double(rows) / cal_rows));
}

}  // namespace

WalkDesign design_walk(const Plan& plan, const std::vector<Candidate>& zoo, const HeldOut& sel,
                       size_t cal_size, const WalkParams& params, uint64_t seed, int draws) {
  WalkDesign best;
  const size_t rows = sel.size();
  const size_t m = plan.steps.size();
  if (plan.method == Method::kNone || m == 0 || rows == 0 || cal_size == 0) return best;
  const Acceptance acc = plan_acceptance(plan, zoo, sel, true);
  const int floor_rows = std::max(params.min_rows, min_rows_to_certify(params.alpha, params.delta));
  // Candidate starts: the expected calibrate rows of every grid step (thinned to about 30).
  std::vector<int> starts;
  {
    Plan whole = plan;
    auto full = step_counts(whole, acc);
    const double scale = double(cal_size) / rows;
    const size_t stride = std::max<size_t>(1, m / 30);
    for (size_t j = 0; j < m; j += stride) {
      const int r = static_cast<int>(full[j].n * scale);
      if (r >= floor_rows && (starts.empty() || r > starts.back())) starts.push_back(r);
    }
    if (starts.empty()) starts.push_back(floor_rows);
  }
  const std::array<double, 2> shares = {0.0, 0.2};
  const size_t n_designs = starts.size() * shares.size();
  std::vector<double> total(n_designs, 0.0);
  std::vector<int> refusals(n_designs, 0);
  // Agreement per bin of consecutive steps (at least kBinRows select rows each), drawn from its
  // Jeffreys posterior in every draw: resampling the select rows alone would take a top region
  // that happened to agree perfectly on select for certain, and favour a first step too small
  // to survive one disagreement on calibrate.
  constexpr int kBinRows = 40;
  std::vector<int> bin_of(m, 0);
  std::vector<int> bin_n, bin_k;
  {
    std::vector<int> step_n(m, 0), step_k(m, 0);
    for (size_t i = 0; i < rows; ++i)
      if (acc.first_step[i] >= 0) {
        ++step_n[static_cast<size_t>(acc.first_step[i])];
        step_k[static_cast<size_t>(acc.first_step[i])] += acc.agree[i];
      }
    bin_n.push_back(0);
    bin_k.push_back(0);
    for (size_t j = 0; j < m; ++j) {
      if (bin_n.back() >= kBinRows) bin_n.push_back(0), bin_k.push_back(0);
      bin_of[j] = static_cast<int>(bin_n.size()) - 1;
      bin_n.back() += step_n[j];
      bin_k.back() += step_k[j];
    }
  }
  std::mt19937_64 rng(seed ^ 0x5eedc0ffeeull);
  std::uniform_int_distribution<size_t> pick(0, rows - 1);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  auto beta = [&](double a, double b) {
    std::gamma_distribution<double> ga(a, 1.0), gb(b, 1.0);
    const double x = ga(rng), y = gb(rng);
    return x + y > 0 ? x / (x + y) : 0.5;
  };
  std::vector<double> rate(bin_n.size());
  std::vector<int> hist_n(m), hist_k(m);
  std::vector<double> p(m);
  std::vector<int> n(m);
  for (int b = 0; b < draws; ++b) {
    for (size_t q = 0; q < rate.size(); ++q)
      rate[q] = beta(bin_k[q] + 0.5, bin_n[q] - bin_k[q] + 0.5);
    std::fill(hist_n.begin(), hist_n.end(), 0);
    std::fill(hist_k.begin(), hist_k.end(), 0);
    for (size_t t = 0; t < cal_size; ++t) {
      const size_t i = pick(rng);
      if (acc.first_step[i] < 0) continue;
      const auto j = static_cast<size_t>(acc.first_step[i]);
      ++hist_n[j];
      hist_k[j] += unit(rng) < rate[static_cast<size_t>(bin_of[j])];
    }
    int cn = 0, ck = 0;
    for (size_t j = 0; j < m; ++j) {
      cn += hist_n[j];
      ck += hist_k[j];
      n[j] = cn;
      p[j] = cn >= floor_rows ? binomial_upper_tail(cn, ck, params.alpha) : 1.0;
    }
    for (size_t s = 0; s < starts.size(); ++s) {
      for (size_t h = 0; h < shares.size(); ++h) {
        // The fallback walk of walk_steps on precomputed p-values.
        const double share = m >= 2 ? shares[h] : 0.0;
        bool first = true, prev_passed = false;
        double prev_level = 0;
        int deployed = 0;
        for (size_t j = 0; j < m; ++j) {
          if (n[j] < starts[s] || n[j] < params.min_rows) continue;
          double own = (j + 1 == m) ? share : 0.0;
          if (first) own += 1 - share;
          first = false;
          const double level = own * params.delta + (prev_passed ? prev_level : 0);
          if (level <= 0) {
            if (j + 1 < m) {
              prev_passed = false;
              continue;
            }
          }
          prev_passed = level > 0 && p[j] <= level;
          prev_level = level;
          if (prev_passed) deployed = n[j];
        }
        total[s * shares.size() + h] += double(deployed) / cal_size;
        refusals[s * shares.size() + h] += deployed == 0;
      }
    }
  }
  // The most expected coverage among designs whose chance of certifying nothing is within
  // kRefusalSlack of the safest design's: a start that gambles on one large first test is not
  // worth a refusal a fifth of the time.
  constexpr double kRefusalSlack = 0.05;
  const int least = *std::min_element(refusals.begin(), refusals.end());
  size_t arg = n_designs;
  for (size_t d = 0; d < n_designs; ++d) {
    if (double(refusals[d] - least) / draws > kRefusalSlack) continue;
    if (arg == n_designs || total[d] > total[arg] + 1e-9) arg = d;
  }
  best.start_rows = starts[arg / shares.size()];
  best.last_share = shares[arg % shares.size()];
  best.expected_coverage = total[arg] / draws;
  best.refusal_rate = double(refusals[arg]) / draws;
  return best;
}

WalkResult walk_plan(const Plan& plan, const std::vector<Candidate>& zoo, const HeldOut& split,
                     bool on_select, const WalkParams& params) {
  WalkResult res;
  const size_t rows = split.size();
  if (plan.method == Method::kNone || plan.steps.empty() || rows == 0) return res;
  std::vector<CertifyStep> steps = step_counts(plan, plan_acceptance(plan, zoo, split, on_select));
  // Steps smaller than the planned start are skipped, not tested. Skipping depends on row
  // counts only (no labels), so the sequence stays fixed.
  const int skip_below = scaled_start(plan, rows, params.min_rows);
  const std::vector<double> weights = fallback_weights(plan, steps.size());
  CertifyResult c =
      walk_steps(std::move(steps), rows, params.alpha, params.delta, skip_below, weights);
  res.trace = std::move(c.steps);
  res.certified = c.certified;
  if (res.certified) {
    // The loosest passed step is the last one walked that passed.
    for (int j = static_cast<int>(res.trace.size()) - 1; j >= 0; --j)
      if (res.trace[j].passed) {
        res.step = j;
        break;
      }
    res.gate = plan.steps[res.step];
    res.n = c.n;
    res.k = c.k;
    res.coverage = c.coverage;
    res.agreement = c.agreement;
    res.lower_bound = c.lower_bound;
  }
  return res;
}

}  // namespace tracer
