#include "report/qualitative.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <unordered_map>

#include "fit/split.hpp"
#include "gate/bounds.hpp"
#include "report/html.hpp"
#include "report/projection.hpp"
#include "scan/curve.hpp"
#include "util/error.hpp"
#include "util/progress.hpp"

namespace tracer {
namespace {

using nlohmann::json;

double round4(double x) { return std::round(x * 1e4) / 1e4; }

// Held-out counts for any group of calibrate rows (a label, a slice).
struct Tally {
  int rows = 0, handled = 0, agree_handled = 0, agree_all = 0;
  void add(const HeldOutDecision& d) {
    ++rows;
    agree_all += d.predicted == d.teacher;
    if (!d.handled) return;
    ++handled;
    agree_handled += d.predicted == d.teacher;
  }
};

json tally_json(const Tally& t, double confidence) {
  json j{{"rows", t.rows}, {"handled", t.handled}};
  j["coverage"] = t.rows ? round4(double(t.handled) / t.rows) : 0.0;
  j["agreement"] = t.handled ? json(round4(double(t.agree_handled) / t.handled)) : json(nullptr);
  j["lower_bound"] =
      t.handled ? json(round4(clopper_pearson_lower(t.handled, t.agree_handled, confidence)))
                : json(nullptr);
  // The surrogate's answer on every row, handled or not: what it knows before the gate.
  j["surrogate_agreement"] = t.rows ? json(round4(double(t.agree_all) / t.rows)) : json(nullptr);
  return j;
}

// Same thresholds as the manifest's per-label status, named as the report names them.
std::string label_status(const Tally& t) {
  const double cov = t.rows ? double(t.handled) / t.rows : 0;
  return cov >= 0.9 ? "fully_handled" : cov > 0 ? "partly_handled" : "deferred";
}

struct Context {
  const TraceSet& set;
  const FitResult& fit;
  const ReportOptions& o;
  std::vector<size_t> order;  // calibrate row positions in a seeded random order (examples)
};

json example_json(const Context& c, const HeldOutDecision& d, const std::string& why = "") {
  const Trace& t = c.set.traces[d.trace];
  const auto& L = c.set.labels;
  json e{{"input", clip_text(t.input, c.o.max_example_bytes)},
         {"teacher", L[d.teacher]},
         {"predicted", L[d.predicted]},
         {"runner_up", L[d.runner_up]},
         {"probability", round4(d.probability)},
         {"score", round4(d.score)},
         {"handled", d.handled},
         {"line", t.line}};
  if (!t.id.empty()) e["id"] = t.id;
  if (!d.handled) e["reason"] = why.empty() ? reason_name(d.reason) : why;
  return e;
}

// Up to `limit` examples among the rows `keep` accepts, in the seeded order.
template <class Pred>
json pick_examples(const Context& c, size_t limit, Pred keep,
                   const std::function<std::string(const HeldOutDecision&)>& why = {}) {
  json out = json::array();
  for (size_t pos : c.order) {
    if (out.size() >= limit) break;
    const HeldOutDecision& d = c.fit.calibrate_rows[pos];
    if (keep(d)) out.push_back(example_json(c, d, why ? why(d) : std::string()));
  }
  return out;
}

// Distinct training inputs per label, as the fit recorded them.
std::vector<size_t> train_counts(const TraceSet& set, const FitResult& fit, const FitOptions& o,
                                 bool& exact) {
  (void)o;
  exact = fit.train_label_counts.size() == set.labels.size();
  if (exact) return fit.train_label_counts;
  std::vector<size_t> counts = set.label_counts();
  for (auto& c : counts) c = c * 6 / 10;  // an estimate for results built without the counts
  return counts;
}

std::string defer_kind(const HeldOutDecision& d, const std::vector<size_t>& train, size_t rare) {
  if (d.handled) return "";
  switch (d.reason) {
    case DeferReason::kNoPolicy:
      return "no_policy";
    case DeferReason::kOutOfDistribution:
      return "out_of_distribution";
    default:
      break;
  }
  return train[d.teacher] < rare ? "rare_label" : "low_confidence";
}

std::string defer_words(const std::string& kind, size_t rare) {
  if (kind == "low_confidence") return "low confidence: the surrogate hesitated between two labels";
  if (kind == "out_of_distribution") return "out of distribution: the input is unlike the traces";
  if (kind == "rare_label")
    return fmt::format("rare label: the LLM's label had fewer than {} training traces", rare);
  if (kind == "no_policy") return "method refused: nothing was certified, everything is deferred";
  return kind;
}

std::pair<int, int> ordered(int a, int b) { return a < b ? std::pair{a, b} : std::pair{b, a}; }

json per_label_section(const Context& c, const std::vector<size_t>& train, double confidence) {
  const int K = static_cast<int>(c.set.labels.size());
  const auto totals = c.set.label_counts();
  std::vector<Tally> tally(K);
  // confusion[a][b]: rows of teacher a the surrogate labelled b (a != b).
  std::vector<std::map<int, int>> confusion(K);
  for (const auto& d : c.fit.calibrate_rows) {
    tally[d.teacher].add(d);
    if (d.predicted != d.teacher) ++confusion[d.teacher][d.predicted];
  }
  json out = json::array();
  for (int l = 0; l < K; ++l) {
    json row{{"label", c.set.labels[l]},
             {"traces", totals[l]},
             {"train_traces", train[l]},
             {"calibrate_rows", tally[l].rows}};
    row.update(tally_json(tally[l], confidence));
    row.erase("rows");
    row["status"] = label_status(tally[l]);
    // Confusions in both directions, largest first.
    std::map<int, std::pair<int, int>> both;  // other -> (this as other, other as this)
    for (auto [o, n] : confusion[l]) both[o].first += n;
    for (int o = 0; o < K; ++o) {
      auto it = confusion[o].find(l);
      if (o != l && it != confusion[o].end()) both[o].second += it->second;
    }
    std::vector<std::pair<int, std::pair<int, int>>> list(both.begin(), both.end());
    std::stable_sort(list.begin(), list.end(), [](const auto& a, const auto& b) {
      return a.second.first + a.second.second > b.second.first + b.second.second;
    });
    json conf = json::array();
    for (size_t i = 0; i < list.size() && i < 5; ++i)
      conf.push_back({{"label", c.set.labels[list[i].first]},
                      {"count", list[i].second.first + list[i].second.second},
                      {"as_other", list[i].second.first},
                      {"from_other", list[i].second.second}});
    row["confused_with"] = conf;
    row["examples"] = {{"handled", pick_examples(c, c.o.examples,
                                                 [l](const HeldOutDecision& d) {
                                                   return d.teacher == l && d.handled;
                                                 })},
                       {"deferred", pick_examples(c, c.o.examples, [l](const HeldOutDecision& d) {
                          return d.teacher == l && !d.handled;
                        })}};
    out.push_back(row);
  }
  return out;
}

json boundary_section(const Context& c) {
  struct Pair {
    int a_as_b = 0, b_as_a = 0, handled = 0;
  };
  std::map<std::pair<int, int>, Pair> pairs;
  int errors = 0, handled_errors = 0;
  for (const auto& d : c.fit.calibrate_rows) {
    if (d.predicted == d.teacher) continue;
    ++errors;
    handled_errors += d.handled;
    auto key = ordered(d.teacher, d.predicted);
    Pair& p = pairs[key];
    (d.teacher == key.first ? p.a_as_b : p.b_as_a) += 1;
    p.handled += d.handled;
  }
  std::vector<std::pair<std::pair<int, int>, Pair>> list(pairs.begin(), pairs.end());
  std::stable_sort(list.begin(), list.end(), [](const auto& x, const auto& y) {
    return x.second.a_as_b + x.second.b_as_a > y.second.a_as_b + y.second.b_as_a;
  });
  json rows = json::array();
  for (size_t i = 0; i < list.size() && i < c.o.top_pairs; ++i) {
    auto [a, b] = list[i].first;
    const Pair& p = list[i].second;
    const int count = p.a_as_b + p.b_as_a;
    rows.push_back({{"a", c.set.labels[a]},
                    {"b", c.set.labels[b]},
                    {"count", count},
                    {"a_as_b", p.a_as_b},
                    {"b_as_a", p.b_as_a},
                    {"handled", p.handled},  // confusions the gate let through (answered, wrongly)
                    {"share_of_errors", errors ? round4(double(count) / errors) : 0.0},
                    {"examples_a", pick_examples(c, c.o.examples,
                                                 [a, b](const HeldOutDecision& d) {
                                                   return d.teacher == a && d.predicted == b;
                                                 })},
                    {"examples_b", pick_examples(c, c.o.examples, [a, b](const HeldOutDecision& d) {
                       return d.teacher == b && d.predicted == a;
                     })}});
  }
  return json{{"errors", errors},
              {"handled_errors", handled_errors},
              {"distinct_pairs", pairs.size()},
              {"pairs", rows}};
}

json defer_section(const Context& c, const std::vector<size_t>& train) {
  const size_t rare = c.o.rare_label_train_traces;
  std::map<std::string, int> counts;
  std::map<std::pair<int, int>, int> low_pairs;
  int deferred = 0;
  for (const auto& d : c.fit.calibrate_rows) {
    std::string kind = defer_kind(d, train, rare);
    if (kind.empty()) continue;
    ++deferred;
    ++counts[kind];
    if (kind == "low_confidence") ++low_pairs[ordered(d.predicted, d.runner_up)];
  }
  auto why = [&](const HeldOutDecision& d) { return defer_kind(d, train, rare); };
  json reasons = json::array();
  for (const char* kind : {"low_confidence", "out_of_distribution", "rare_label", "no_policy"}) {
    const int n = counts.count(kind) ? counts[kind] : 0;
    const std::string k = kind;
    reasons.push_back(
        {{"reason", k},
         {"description", defer_words(k, rare)},
         {"count", n},
         {"share", deferred ? round4(double(n) / deferred) : 0.0},
         {"examples", pick_examples(
                          c, n ? c.o.examples : 0,
                          [&](const HeldOutDecision& d) { return why(d) == k; }, why)}});
  }
  std::vector<std::pair<std::pair<int, int>, int>> list(low_pairs.begin(), low_pairs.end());
  std::stable_sort(list.begin(), list.end(),
                   [](const auto& x, const auto& y) { return x.second > y.second; });
  json pairs = json::array();
  for (size_t i = 0; i < list.size() && i < c.o.top_pairs; ++i) {
    auto [a, b] = list[i].first;
    pairs.push_back({{"a", c.set.labels[a]},
                     {"b", c.set.labels[b]},
                     {"count", list[i].second},
                     {"share", deferred ? round4(double(list[i].second) / deferred) : 0.0},
                     {"examples", pick_examples(
                                      c, c.o.examples,
                                      [&, a, b](const HeldOutDecision& d) {
                                        return why(d) == "low_confidence" &&
                                               ordered(d.predicted, d.runner_up) == std::pair{a, b};
                                      },
                                      why)}});
  }
  const size_t rows = c.fit.calibrate_rows.size();
  return json{{"rows", rows},
              {"deferred", deferred},
              {"deferred_share", rows ? round4(double(deferred) / rows) : 0.0},
              {"rare_label_train_traces", rare},
              {"reasons", reasons},
              {"low_confidence_pairs", pairs}};
}

size_t word_count(std::string_view s) {
  size_t n = 0;
  bool in_word = false;
  for (unsigned char ch : s) {
    const bool space = ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
    if (!space && !in_word) ++n;
    in_word = !space;
  }
  return n;
}

json slices_section(const Context& c, double confidence) {
  struct Slice {
    std::string id, name, group;
    std::function<bool(std::string_view)> has;
  };
  auto words_between = [](size_t lo, size_t hi) {
    return [lo, hi](std::string_view s) {
      size_t w = word_count(s);
      return w >= lo && w <= hi;
    };
  };
  auto contains_any = [](std::string chars) {
    return [chars](std::string_view s) { return s.find_first_of(chars) != s.npos; };
  };
  const std::vector<Slice> slices = {
      {"length_1_5", "1-5 words", "length", words_between(0, 5)},
      {"length_6_10", "6-10 words", "length", words_between(6, 10)},
      {"length_11_20", "11-20 words", "length", words_between(11, 20)},
      {"length_21_40", "21-40 words", "length", words_between(21, 40)},
      {"length_41_plus", "41+ words", "length", words_between(41, SIZE_MAX)},
      {"digits", "contains digits", "content", contains_any("0123456789")},
      {"question", "contains a question mark", "content", contains_any("?")},
      {"exclamation", "contains an exclamation mark", "content", contains_any("!")},
      {"non_ascii", "non-ASCII characters (accents, other scripts, emoji)", "content",
       [](std::string_view s) {
         return std::any_of(s.begin(), s.end(), [](char ch) { return ch & 0x80; });
       }},
      {"url_or_email", "contains a URL or e-mail address", "content",
       [](std::string_view s) {
         return s.find("http") != s.npos || s.find("www.") != s.npos || s.find('@') != s.npos;
       }},
  };
  std::vector<Tally> tally(slices.size());
  Tally all;
  for (const auto& d : c.fit.calibrate_rows) {
    all.add(d);
    const std::string& text = c.set.traces[d.trace].input;
    for (size_t s = 0; s < slices.size(); ++s)
      if (slices[s].has(text)) tally[s].add(d);
  }
  json out = json::array();
  json total{{"id", "all"}, {"name", "all calibrate rows"}, {"group", "all"}};
  total.update(tally_json(all, confidence));
  total["share"] = 1.0;
  out.push_back(total);
  for (size_t s = 0; s < slices.size(); ++s) {
    if (tally[s].rows == 0) continue;
    json row{{"id", slices[s].id}, {"name", slices[s].name}, {"group", slices[s].group}};
    row.update(tally_json(tally[s], confidence));
    row["share"] = all.rows ? round4(double(tally[s].rows) / all.rows) : 0.0;
    out.push_back(row);
  }
  return out;
}

json map_section(const Context& c) {
  const auto& rows = c.fit.calibrate_rows;
  if (!c.fit.policy.featurizer) return json{{"available", false}, {"reason", "no featurizer"}};
  // A seeded subsample keeps the HTML small on large calibrate splits.
  std::vector<size_t> pick(c.order.begin(),
                           c.order.begin() + std::min(c.order.size(), c.o.max_map_points));
  std::sort(pick.begin(), pick.end());
  SparseMatrix X(c.fit.policy.featurizer->dim());
  try {
    SparseVector v;
    for (size_t pos : pick) {
      c.fit.policy.featurizer->transform(c.set.traces[rows[pos].trace].input, v);
      X.add_row(v.row());
    }
  } catch (const std::exception& e) {
    return json{{"available", false}, {"reason", std::string("cannot featurize: ") + e.what()}};
  }
  Projection2D p = pca_2d(X, c.o.fit.seed);
  // Compact rows: [x, y, teacher index, predicted index, handled].
  json pts = json::array();
  for (size_t i = 0; i < pick.size(); ++i) {
    const auto& d = rows[pick[i]];
    pts.push_back({round4(p.points[i][0]), round4(p.points[i][1]), d.teacher, d.predicted,
                   d.handled ? 1 : 0});
  }
  return json{{"available", true},
              {"method", "pca"},
              {"explained_variance", {round4(p.explained[0]), round4(p.explained[1])}},
              {"rows", rows.size()},
              {"shown", pick.size()},
              {"columns", {"x", "y", "teacher", "predicted", "handled"}},
              {"points", pts}};
}

json frontier_section(const json& frontier) {
  json out = json::array();
  if (!frontier.contains("rows")) return out;
  for (const auto& r : frontier["rows"])
    out.push_back({{"method", r.value("method", "")},
                   {"target", r.value("target", 0.0)},
                   {"available", r.value("available", false)},
                   {"certified", r.value("certified", false)},
                   {"coverage", r.value("coverage", 0.0)}});
  return out;
}

// Nested stratified subsets: per label, a seeded shuffle; a share takes its first part (at
// least min_per_label traces when the label has them), kept in file order.
std::vector<size_t> curve_subset(const TraceSet& set, double share, size_t min_per_label,
                                 uint64_t seed) {
  std::vector<std::vector<size_t>> by_label(set.labels.size());
  for (size_t i = 0; i < set.size(); ++i) by_label[set.y[i]].push_back(i);
  std::mt19937_64 rng(seed ^ 0x9e3779b97f4a7c15ULL);
  std::vector<size_t> out;
  for (auto& members : by_label) {
    std::shuffle(members.begin(), members.end(), rng);
    size_t take = static_cast<size_t>(std::ceil(share * double(members.size()) - 1e-9));
    take = std::min(members.size(), std::max(take, min_per_label));
    out.insert(out.end(), members.begin(), members.begin() + take);
  }
  std::sort(out.begin(), out.end());
  return out;
}

json estimate4(const CurvePrediction& p) {
  return json{{"value", round4(p.value)}, {"low", round4(p.low)}, {"high", round4(p.high)}};
}

// Whether more traces would help, from a saturating curve y(n) = plateau - b * n^-g fitted to
// every refit (src/scan/curve.hpp, the same fit `tracer scan` uses): its extrapolation stays in
// [0, 1], never falls with more traces, and comes with an 80% interval (the curves the points
// cannot rule out). A straight line in log(traces) through a few refused (0%) points and one
// certified point used to promise gains of 70+ points per doubling.
json curve_assessment(const json& points, bool deployed, double target) {
  std::vector<CurvePoint> cov, agree;
  double n = 0, cov_now = 0, agree_now = 0;
  for (const auto& p : points) {
    if (p.contains("error")) continue;
    const double x = p["traces"].get<double>();
    cov.push_back({x, p["coverage"].get<double>(), 1.0});
    if (p["surrogate_agreement"].is_number())
      agree.push_back({x, p["surrogate_agreement"].get<double>(), 1.0});
    if (x >= n) {
      n = x, cov_now = p["coverage"].get<double>();
      agree_now = p["surrogate_agreement"].is_number() ? p["surrogate_agreement"].get<double>() : 0;
    }
  }
  json a;
  if (cov.size() < 3) {
    a["status"] = "unknown";
    a["message"] = "too few successful refits to tell whether more traces would help";
    return a;
  }
  CurveOptions co;
  co.min_sd = 0.02;  // refits of one pipeline scatter by a few points of coverage
  co.level = 0.8;
  a["traces"] = n;
  a["points_used"] = cov.size();
  a["model"] = "y(n) = plateau - b * n^-g, weighted least squares; intervals: 80% profile region";
  if (deployed) {
    const LearningCurve c = fit_learning_curve(cov, co);
    const CurvePrediction here = c.at(n), twice = c.at(2 * n);
    // The gain of a doubling on the fitted curve, added to the policy's own coverage.
    const double gain = std::max(0.0, twice.value - here.value);
    const double gain_lo = std::max(0.0, twice.low - here.value);
    const double gain_hi = std::clamp(twice.high - here.value, gain, 1.0 - cov_now);
    CurvePrediction proj{std::min(1.0, cov_now + gain), std::min(1.0, cov_now + gain_lo),
                         std::min(1.0, cov_now + gain_hi)};
    a["coverage_gain_per_doubling"] = round4(gain);
    a["coverage_gain_interval"] = {round4(gain_lo), round4(gain_hi)};
    a["coverage_at_double"] = estimate4(proj);
    a["plateau"] = round4(c.plateau());
    if (gain >= 0.01 && cov_now < 0.995) {
      a["status"] = "rising";
      std::string tail;
      const double step = std::min(0.05, 1.0 - cov_now);
      const double need = c.traces_for(here.value + step);
      if (std::isfinite(need) && need > n) {
        const auto more = static_cast<long long>(std::ceil(need - n));
        a["more_traces_for_gain"] = {{"gain", round4(step)}, {"traces", more}};
        tail = fmt::format("; roughly {} more traces (same kind) for +{:.0f} points", more,
                           step * 100);
      } else {
        tail = fmt::format("; the fitted curve levels off near {:.0f}%", c.plateau() * 100);
      }
      a["message"] = fmt::format(
          "coverage is still rising: doubling the traces would add about {:.1f} points of "
          "certified coverage (80% interval {:.1f} to {:.1f}), to about {:.0f}%{}",
          gain * 100, gain_lo * 100, gain_hi * 100, proj.value * 100, tail);
    } else {
      a["status"] = "plateau";
      a["message"] = fmt::format(
          "coverage has plateaued (about {:+.1f} points per doubling of the traces, 80% interval "
          "{:.1f} to {:.1f}): more traces of the same kind will not raise it much; a stronger "
          "featurizer or surrogate might",
          gain * 100, gain_lo * 100, gain_hi * 100);
    }
    return a;
  }
  if (agree.size() < 3) {
    a["status"] = "unknown";
    a["message"] =
        "too few refits report the surrogate's agreement to tell whether more traces "
        "would help";
    return a;
  }
  const LearningCurve c = fit_learning_curve(agree, co);
  const CurvePrediction here = c.at(n), twice = c.at(2 * n);
  const double ab = std::max(0.0, twice.value - here.value);
  a["surrogate_agreement_gain_per_doubling"] = round4(ab);
  a["surrogate_agreement_at_double"] = estimate4(twice);
  a["plateau"] = round4(c.plateau());
  const double need = c.traces_for(target);
  const double times = need / n;
  if (agree_now >= target) {
    a["status"] = "rising";
    a["message"] = fmt::format(
        "nothing certifies yet, although the surrogate agrees with the LLM {:.1f}% of the time: "
        "too few calibrate rows to prove the target {:g}; more traces of the same kind would "
        "let it certify",
        agree_now * 100, target);
  } else if (std::isfinite(times) && times <= 16 && ab >= 0.005) {
    a["status"] = "rising";
    a["message"] = fmt::format(
        "nothing certifies yet, but the surrogate's agreement rises about {:.1f} points per "
        "doubling of the traces (80% interval {:.0f}% to {:.0f}% at twice the traces); reaching "
        "the target {:g} would take roughly {:.0f}x the traces if the fitted curve holds",
        ab * 100, twice.low * 100, twice.high * 100, target, std::max(1.0, times));
  } else {
    a["status"] = "plateau";
    a["message"] = fmt::format(
        "nothing certifies, and the surrogate's agreement grows too slowly ({:+.1f} points per "
        "doubling of the traces; its fitted curve levels off near {:.0f}%) to reach the target "
        "{:g}: more traces of the same kind are unlikely to help; lower the target or use a "
        "stronger featurizer",
        ab * 100, c.plateau() * 100, target);
  }
  return a;
}

// The surrogates the reported policy runs on: its stage-1 (an ensemble expands to its members,
// the best by select agreement, as add_ensemble picks them) and its rsb stage 2.
std::vector<std::string> pipeline_zoo(const json& m, size_t ensemble_members) {
  std::vector<std::string> names;
  auto add = [&](const std::string& n) {
    if (!n.empty() && std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
  };
  auto expand = [&](const std::string& n) {
    if (n != "ensemble") return add(n);
    std::vector<std::pair<double, std::string>> ok;
    for (const auto& c : m.value("zoo", json::array()))
      if (!c.contains("error") && c.value("name", "") != "ensemble")
        ok.emplace_back(c.value("select_agreement", 0.0), c.value("name", ""));
    std::stable_sort(ok.begin(), ok.end(),
                     [](const auto& a, const auto& b) { return a.first > b.first; });
    for (size_t i = 0; i < ok.size() && i < ensemble_members; ++i) add(ok[i].second);
  };
  const json& g = m.value("gate", json::object());
  expand(g.value("stage1", json::object()).value("surrogate", std::string()));
  if (g.contains("stage2")) expand(g["stage2"].value("surrogate", std::string()));
  if (names.empty()) expand(m.value("surrogate", json::object()).value("name", std::string()));
  return names;
}

}  // namespace

json learning_curve_assessment(const json& points, bool deployed, double target) {
  return curve_assessment(points, deployed, target);
}

std::string clip_text(std::string_view text, size_t max_bytes) {
  std::string out;
  size_t cut = text.size();
  if (text.size() > max_bytes) {
    cut = max_bytes;
    // Back up to the start of a UTF-8 sequence so the cut never splits a character.
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  }
  out.reserve(cut + 3);
  for (size_t i = 0; i < cut; ++i) {
    const char ch = text[i];
    out.push_back(ch == '\n' || ch == '\r' || ch == '\t' ? ' ' : ch);
  }
  if (cut < text.size()) out += "\u2026";
  return out;
}

// The memory tier's sentence for the headline ("" when it answers nothing).
std::string memory_sentence(const json& m) {
  const json mem = m.value("memory", json::object());
  if (!mem.is_object() || !mem.value("certified", false)) return "";
  return fmt::format(
      " Before any surrogate runs, the memory tier answers requests the traces repeat with the "
      "LLM's own remembered label: about {:.1f}% of traffic (the LLM agreed with its remembered "
      "answer on {:.2f}% of held-out repeats; lowest plausible {:.2f}%).",
      mem.value("hit_share", 0.0) * 100, mem.value("self_consistency", 0.0) * 100,
      mem.value("bound", 0.0) * 100);
}

json report_headline(const json& m, const json& frontier) {
  json h;
  const std::string memory = memory_sentence(m);
  const json& g = m.at("gate");
  const bool deployed = g.value("deployed", false);
  const double target = g.value("target", 0.0), delta = g.value("delta", 0.05);
  h["deployed"] = deployed;
  if (deployed) {
    const json& c = g.at("certified");
    const double cov = c.value("coverage", 0.0);
    h["verdict"] =
        fmt::format("Certified: the surrogate answers {:.1f}% of traffic itself", cov * 100);
    h["explanation"] = fmt::format(
        "On traffic like these traces, the surrogate ({}, method {}) answers {:.1f}% of inputs "
        "and sends the other {:.1f}% to the LLM. On the inputs it answers, it agrees with the "
        "LLM at least {:g}% of the time, with {:g}% confidence. This was measured on {} held-out "
        "traces that played no part in training or choosing the policy: it answered {} of them "
        "and agreed with the LLM on {} ({:.2f}%; {:.2f}% is the lowest agreement consistent "
        "with that sample).",
        g.at("stage1").value("surrogate", std::string("?")), g.value("method", "?"), cov * 100,
        (1 - cov) * 100, target * 100, (1 - delta) * 100, c.value("rows", 0),
        c.value("accepted", 0), c.value("agreeing", 0), c.value("agreement", 0.0) * 100,
        c.value("lower_bound", 0.0) * 100);
    h["explanation"] = h["explanation"].get<std::string>() + memory;
    h["advice"] = "";
    return h;
  }
  const json r = g.value("refusal", json::object());
  h["verdict"] = memory.empty()
                     ? "Not deployed: every input goes to the LLM"
                     : fmt::format(
                           "Memory tier only: remembered LLM answers cover about {:.1f}% "
                           "of traffic; every other input goes to the LLM",
                           m["memory"].value("hit_share", 0.0) * 100);
  std::string why = fmt::format(
      "tracer could not prove that the surrogate agrees with the LLM at least {:g}% of the time "
      "on any share of traffic (with {:g}% confidence), so it refused to deploy it",
      target * 100, (1 - delta) * 100);
  // The generic reason repeats the sentence above; other reasons (min coverage) add to it.
  const std::string reason = r.value("reason", std::string());
  if (!reason.empty() && reason.rfind("no share of traffic", 0) != 0) why += " (" + reason + ")";
  why += ".";
  if (r.value("surrogate_agreement_on_calibrate", json()).is_number()) {
    why += fmt::format(
        " On held-out traces the best surrogate agrees with the LLM {:.1f}% of the time "
        "(lowest plausible: {:.1f}%), short of the {:g}% target",
        r["surrogate_agreement_on_calibrate"].get<double>() * 100,
        r.value("surrogate_lower_bound_on_calibrate", 0.0) * 100, target * 100);
    // A baseline in plain words: always answering the most common label.
    double most = 0, total = 0;
    for (const auto& l : m.value("per_label", json::array())) {
      const double n = l.value("calibrate_rows", 0.0);
      most = std::max(most, n), total += n;
    }
    if (total > 0)
      why += fmt::format(
          "; always answering the most common label would agree {:.1f}% of the "
          "time",
          100 * most / total);
    why += ".";
  }
  h["explanation"] = why + memory;
  std::string advice = r.value("advice", std::string());
  // The highest lower target the select split expects to certify. Only the select dry run
  // (never the calibrate walk) picks the suggestion: a target chosen on calibrate results and
  // then certified on the same calibrate inputs (same --seed) would spend delta twice.
  double best_t = -1, best_cov = 0;
  std::string best_m;
  for (const auto& row : frontier.value("rows", json::array())) {
    const double t = row.value("target", 0.0), cov = row.value("select_coverage", 0.0);
    if (cov <= 0 || t >= target) continue;
    if (t > best_t || (t == best_t && cov > best_cov))
      best_t = t, best_cov = cov, best_m = row.value("method", "");
  }
  if (best_t > 0)
    advice += fmt::format(
        "{}At a target of {:g} the select split estimates the {} method would certify about "
        "{:.1f}% of traffic (tracer fit --target {:g}; the estimate comes from select, not from "
        "the calibrate inputs that will certify it).",
        advice.empty() ? "" : ". ", best_t, best_m, best_cov * 100, best_t);
  h["advice"] = advice;
  return h;
}

json build_learning_curve(const TraceSet& set, const json& manifest, const json& per_label,
                          const ReportOptions& o) {
  Stopwatch total;
  std::vector<double> shares;
  for (double s : o.curve_shares)
    if (s > 0 && s <= 1) shares.push_back(s);
  shares.push_back(1.0);
  std::sort(shares.begin(), shares.end());
  shares.erase(std::unique(shares.begin(), shares.end(),
                           [](double a, double b) { return std::abs(a - b) < 1e-9; }),
               shares.end());
  const size_t K = set.labels.size();
  const auto counts = set.label_counts();
  FitOptions fo = o.fit;
  if (!o.curve_full_zoo) {
    auto names = pipeline_zoo(manifest, fo.ensemble_members);
    if (!names.empty()) fo.zoo = names;
  }
  json points = json::array();
  // per-label coverage at each point (null when the point has no rows of the label)
  std::vector<json> label_cov(K, json::array());
  for (double share : shares) {
    json p{{"share", share}};
    if (share >= 1.0 - 1e-9) {
      // The reported policy itself: no refit.
      const json& g = manifest.at("gate");
      const json& c = g.at("certified");
      p["traces"] = set.size();
      p["deployed"] = g.value("deployed", false);
      p["coverage"] = p["deployed"].get<bool>() ? c.value("coverage", 0.0) : 0.0;
      p["agreement"] = c.value("agreement", 0.0);
      p["lower_bound"] = c.value("lower_bound", 0.0);
      p["calibrate_rows"] = c.value("rows", 0);
      p["surrogate"] = manifest.at("surrogate").value("name", "");
      p["surrogate_agreement"] = manifest.at("surrogate").value("select_agreement", json(nullptr));
      p["seconds"] = 0.0;
      std::map<std::string, double> by_name;
      for (const auto& r : per_label) by_name[r.value("label", "")] = r.value("coverage", 0.0);
      for (size_t l = 0; l < K; ++l) {
        auto it = by_name.find(set.labels[l]);
        label_cov[l].push_back(it == by_name.end() ? json(nullptr) : json(it->second));
      }
      points.push_back(p);
      continue;
    }
    auto pick = curve_subset(set, share, fo.min_per_label, fo.seed);
    TraceSet sub;
    sub.labels = set.labels;
    sub.embedding_dim = set.embedding_dim;
    sub.traces.reserve(pick.size());
    for (size_t i : pick) sub.traces.push_back(set.traces[i]), sub.y.push_back(set.y[i]);
    p["traces"] = sub.size();
    if (o.note)
      o.note(fmt::format("learning curve: refit on {:.0f}% ({} traces)", share * 100, sub.size()));
    Stopwatch sw;
    try {
      Progress quiet(false);
      FitResult r = fit_policy(sub, fo, quiet);
      const json& g = r.manifest["gate"];
      p["deployed"] = r.deployed;
      p["coverage"] = r.deployed ? g["certified"].value("coverage", 0.0) : 0.0;
      p["agreement"] = g["certified"].value("agreement", 0.0);
      p["lower_bound"] = g["certified"].value("lower_bound", 0.0);
      p["calibrate_rows"] = r.calibrate_rows.size();
      p["surrogate"] = r.manifest["surrogate"].value("name", "");
      // The surrogate's own agreement (select split): after a refusal it shows whether more
      // traces could ever certify.
      p["surrogate_agreement"] = r.manifest["surrogate"].value("select_agreement", json(nullptr));
      std::vector<Tally> t(K);
      for (const auto& d : r.calibrate_rows) t[d.teacher].add(d);
      for (size_t l = 0; l < K; ++l)
        label_cov[l].push_back(t[l].rows ? json(round4(double(t[l].handled) / t[l].rows))
                                         : json(nullptr));
    } catch (const InputError& e) {
      p["error"] = e.what();
      for (size_t l = 0; l < K; ++l) label_cov[l].push_back(nullptr);
    }
    p["seconds"] = round4(sw.seconds());
    points.push_back(p);
  }
  const bool deployed = manifest.at("gate").value("deployed", false);
  const double target = manifest.at("gate").value("target", 0.95);
  json out{{"split", "calibrate"},
           {"target", target},
           {"zoo", fo.zoo.empty() ? json("default") : json(fo.zoo)},
           {"points", points},
           {"assessment", curve_assessment(points, deployed, target)}};

  // Labels that need traces: low coverage now and few traces.
  std::vector<size_t> sorted_counts = counts;
  std::sort(sorted_counts.begin(), sorted_counts.end());
  const size_t median = sorted_counts.empty() ? 0 : sorted_counts[sorted_counts.size() / 2];
  const double overall = points.back().value("coverage", 0.0);
  json labels = json::array(), needing = json::array();
  std::vector<std::pair<double, json>> need;
  for (size_t l = 0; l < K; ++l) {
    labels.push_back({{"label", set.labels[l]}, {"traces", counts[l]}, {"coverage", label_cov[l]}});
    const json& last = label_cov[l].back();
    if (!last.is_number()) continue;
    const double cov = last.get<double>();
    // Trend: last point against the mean of the middle of the curve (per-label rows are few).
    double mid = 0;
    int nmid = 0;
    for (size_t i = label_cov[l].size() / 2; i + 1 < label_cov[l].size(); ++i)
      if (label_cov[l][i].is_number()) mid += label_cov[l][i].get<double>(), ++nmid;
    json row{{"label", set.labels[l]}, {"traces", counts[l]}, {"coverage", cov}};
    row["trend"] = nmid ? json(round4(cov - mid / nmid)) : json(nullptr);
    if (deployed && cov < std::max(0.5, 0.75 * overall) && counts[l] <= median)
      need.emplace_back(cov, row);
  }
  std::stable_sort(need.begin(), need.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [cov, row] : need) needing.push_back(row);
  out["labels"] = labels;
  out["labels_needing_traces"] = needing;
  out["median_label_traces"] = median;
  out["seconds"] = round4(total.seconds());
  return out;
}

json build_qualitative_report(const TraceSet& set, const FitResult& fit, const ReportOptions& o) {
  Stopwatch sw;
  const size_t K = set.labels.size();
  if (K == 0 || (!fit.policy.labels.empty() && fit.policy.labels != set.labels))
    throw InputError(
        "the traces given to the report are not the ones the policy was fit on "
        "(label sets differ)");
  // A calibrate row is scored on the label of one copy of its input drawn at random, so its
  // label is the first copy's or that of another copy of the same (normalised) input.
  std::unordered_map<std::string, std::vector<int>> labels_of_input;  // built on first need
  auto some_copy_has = [&](size_t trace, int label) {
    if (!fit.policy.featurizer) return false;
    const Featurizer& f = *fit.policy.featurizer;
    if (labels_of_input.empty())
      for (size_t i = 0; i < set.size(); ++i)
        labels_of_input[f.normalize(set.traces[i].input)].push_back(set.y[i]);
    const auto& l = labels_of_input[f.normalize(set.traces[trace].input)];
    return std::find(l.begin(), l.end(), label) != l.end();
  };
  for (const auto& d : fit.calibrate_rows)
    if (d.trace >= set.size() || d.teacher < 0 || static_cast<size_t>(d.teacher) >= K ||
        static_cast<size_t>(d.predicted) >= K || static_cast<size_t>(d.runner_up) >= K ||
        (set.y[d.trace] != d.teacher && !some_copy_has(d.trace, d.teacher)))
      throw InputError(
          "the traces given to the report are not the ones the policy was fit on "
          "(calibrate rows do not match)");
  Context c{set, fit, o, {}};
  c.order.resize(fit.calibrate_rows.size());
  std::iota(c.order.begin(), c.order.end(), size_t{0});
  std::mt19937_64 rng(o.fit.seed);
  std::shuffle(c.order.begin(), c.order.end(), rng);

  const double delta = fit.manifest.contains("gate")
                           ? fit.manifest["gate"].value("delta", o.fit.delta)
                           : o.fit.delta;
  const double confidence = 1 - delta;
  bool exact = false;
  const auto train = train_counts(set, fit, o.fit, exact);

  json q;
  q["format"] = "tracer-qualitative-report";
  q["format_version"] = 1;
  q["split"] = "calibrate";
  q["note"] =
      "every number is computed on the held-out calibrate rows (nothing was fit or "
      "chosen on them) under the deployed policy";
  q["policy_version"] = fit.manifest.value("policy_version", "");
  q["confidence"] = confidence;
  q["fit_options"] = fit_options_json(o.fit);
  q["train_traces_exact"] = exact;
  q["headline"] = report_headline(fit.manifest, fit.frontier);
  {
    Tally all;
    for (const auto& d : fit.calibrate_rows) all.add(d);
    json t = tally_json(all, confidence);
    t["traces"] = set.size();
    t["labels"] = K;
    q["totals"] = t;
  }
  q["per_label"] = per_label_section(c, train, confidence);
  q["boundary_pairs"] = boundary_section(c);
  q["defer_reasons"] = defer_section(c, train);
  q["slices"] = slices_section(c, confidence);
  q["frontier"] = frontier_section(fit.frontier);
  q["map"] = map_section(c);
  q["report_seconds"] = round4(sw.seconds());
  if (o.learning_curve)
    q["learning_curve"] = build_learning_curve(set, fit.manifest, q["per_label"], o);
  return q;
}

void write_report_files(const std::string& dir, const TraceSet& set, const FitResult& fit,
                        const ReportOptions& o) {
  namespace fs = std::filesystem;
  ReportInputs in;
  in.qualitative = build_qualitative_report(set, fit, o);
  in.manifest = fit.manifest;
  in.frontier = fit.frontier;
  in.history = read_history(dir);
  std::error_code ec;
  fs::create_directories(dir, ec);
  write_file_atomic((fs::path(dir) / "qualitative_report.json").string(),
                    in.qualitative.dump(1) + "\n");
  write_file_atomic((fs::path(dir) / "report.html").string(), render_report_html(in));
}

}  // namespace tracer
