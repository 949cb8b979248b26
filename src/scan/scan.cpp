#include "scan/scan.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <map>
#include <mutex>
#include <numeric>
#include <random>
#include <thread>
#include <unordered_map>

#include "fit/fitter.hpp"
#include "fit/split.hpp"
#include "gate/bounds.hpp"
#include "models/surrogate.hpp"
#include "runtime/router.hpp"
#include "scan/curve.hpp"
#include "util/error.hpp"

namespace tracer {
namespace {

using nlohmann::json;

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr int kGrid = 100;                 // coverage levels 1%, 2%, ..., 100%
constexpr double kMinCoverage = 0.05;      // `tracer fit --min-coverage` default
constexpr double kMaxLabelMultiple = 100;  // beyond this a label is "unlikely" to get there
constexpr double kHelpfulGain = 0.10;      // the largest multiple must add this much somewhere

double round4(double x) { return std::round(x * 1e4) / 1e4; }

// A held-out input as one refit sees it.
struct Row {
  float score = 0;  // stage-1 acceptor score
  int label = 0;    // the LLM's label (index into the labels)
  int predicted = 0;
};

struct FitData {
  ScanFit summary;
  std::vector<Row> rows;
  std::vector<size_t> train_label_counts;  // distinct inputs per label the deployed models saw
};

struct Job {
  double share;
  int seed;
};

uint64_t mix(uint64_t a, uint64_t b) {
  uint64_t x = a ^ (b + 0x9e3779b97f4a7c15ULL + (a << 6) + (a >> 2));
  x ^= x >> 31;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 29;
  return x;
}

void validate(const ScanOptions& o) {
  if (o.targets.empty()) throw InputError("--targets needs at least one target");
  for (double t : o.targets)
    if (!(t > 0 && t < 1)) throw InputError(fmt::format("target {:g} is not in (0, 1)", t));
  if (!(o.target > 0 && o.target < 1)) throw InputError("--target must be in (0, 1)");
  if (!(o.delta > 0 && o.delta < 1)) throw InputError("--delta must be in (0, 1)");
  for (double m : o.multiples)
    if (!(m > 1 && m <= 1000))
      throw InputError(fmt::format("multiple {:g} is not in (1, 1000]", m));
  for (double s : o.shares)
    if (!(s > 0 && s <= 1)) throw InputError(fmt::format("share {:g} is not in (0, 1]", s));
  if (o.seeds < 1 || o.seeds > 20) throw InputError("--seeds must be in 1..20");
  if (o.draws < 20) throw InputError("draws must be at least 20");
  if (!(o.level > 0.5 && o.level < 1)) throw InputError("--level must be in (0.5, 1)");
  if (o.zoo.empty()) throw InputError("--zoo needs at least one surrogate");
  const auto known = surrogate_names();
  for (const auto& z : o.zoo)
    if (std::find(known.begin(), known.end(), z) == known.end()) {
      std::string all;
      for (const auto& k : known) all += (all.empty() ? "" : ", ") + k;
      throw InputError("unknown surrogate '" + z + "' in --zoo (known: " + all + ")");
    }
}

std::vector<double> sorted_unique(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  v.erase(
      std::unique(v.begin(), v.end(), [](double a, double b) { return std::abs(a - b) < 1e-9; }),
      v.end());
  return v;
}

// Certified coverage per target from a frontier (best method, 0 when not certified).
std::vector<double> frontier_coverage(const json& frontier, const std::vector<double>& targets) {
  std::vector<double> out(targets.size(), 0.0);
  for (const auto& r : frontier.value("rows", json::array())) {
    if (!r.value("certified", false)) continue;
    const double t = r.value("target", 0.0);
    for (size_t i = 0; i < targets.size(); ++i)
      if (std::abs(t - targets[i]) < 1e-9) out[i] = std::max(out[i], r.value("coverage", 0.0));
  }
  return out;
}

// The traces with their units (distinct inputs).
struct Prepared {
  const TraceSet& set;
  std::vector<uint32_t> unit_of;   // per trace
  std::vector<size_t> unit_first;  // per unit: its first trace
};

Prepared prepare(const TraceSet& in) {
  Prepared p{in, {}, {}};
  if (in.labels.size() < 2)
    throw InputError("a scan needs traces of at least two labels; the traces have " +
                     std::to_string(in.labels.size()));
  std::unordered_map<std::string_view, uint32_t> ids;
  ids.reserve(in.size() * 2);
  p.unit_of.resize(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    auto [it, fresh] =
        ids.emplace(std::string_view(in.traces[i].input), static_cast<uint32_t>(ids.size()));
    if (fresh) p.unit_first.push_back(i);
    p.unit_of[i] = it->second;
  }
  return p;
}

// A stratified random share of the units (by the label of each unit's first trace), at least
// min(min_per_label, available) units per label.
std::vector<uint8_t> pick_units(const Prepared& p, double share, size_t min_units, uint64_t seed) {
  const size_t U = p.unit_first.size();
  std::vector<uint8_t> in(U, 0);
  if (share >= 1 - 1e-9) {
    std::fill(in.begin(), in.end(), 1);
    return in;
  }
  std::vector<std::vector<uint32_t>> by(p.set.labels.size());
  for (uint32_t u = 0; u < U; ++u) by[p.set.y[p.unit_first[u]]].push_back(u);
  std::mt19937_64 rng(seed);
  for (auto& members : by) {
    std::shuffle(members.begin(), members.end(), rng);
    size_t take = static_cast<size_t>(std::llround(share * double(members.size())));
    take = std::min(members.size(), std::max(take, min_units));
    for (size_t j = 0; j < take; ++j) in[members[j]] = 1;
  }
  return in;
}

FitData run_fit(const Prepared& p, const ScanOptions& o, const Job& job) {
  FitData d;
  ScanFit& s = d.summary;
  s.share = job.share;
  s.seed = job.seed;
  s.certified.assign(o.targets.size(), 0.0);
  Stopwatch sw;
  const bool full = job.share >= 1 - 1e-9;
  const auto in = pick_units(p, job.share, o.min_per_label,
                             mix(o.seed, mix(uint64_t(job.seed) + 1, uint64_t(job.share * 1e6))));
  TraceSet sub;
  sub.labels = p.set.labels;
  sub.embedding_dim = p.set.embedding_dim;
  for (size_t i = 0; i < p.set.size(); ++i)
    if (in[p.unit_of[i]]) sub.traces.push_back(p.set.traces[i]), sub.y.push_back(p.set.y[i]);
  s.traces = sub.size();

  FitOptions fo;
  fo.target = o.target;
  fo.delta = o.delta;
  fo.frontier_targets = o.targets;
  fo.zoo = o.zoo;
  fo.ensemble_members = o.zoo.size() >= 2 ? 2 : 0;
  fo.methods = {Method::kGlobal, Method::kL2D};
  fo.seed = o.seed + static_cast<uint64_t>(job.seed);
  fo.threads = 1;
  fo.min_per_label = o.min_per_label;
  fo.ood_quantile = o.ood_quantile;
  // Shares are refit only for their held-out scores: a small calibrate split must not stop them.
  fo.min_rows = full ? o.min_rows : 5;
  Progress quiet(false);
  FitResult r;
  try {
    r = fit_policy(sub, fo, quiet);
  } catch (const InputError& e) {
    if (!full || fo.min_rows <= 5) throw;
    // Too few traces to certify anything at this size: still score the held-out rows.
    s.error = e.what();
    fo.min_rows = 5;
    r = fit_policy(sub, fo, quiet);
  }
  s.calibrate_rows = r.calibrate_rows.size();
  if (s.error.empty()) s.certified = frontier_coverage(r.frontier, o.targets);
  // An input predicted as a rare label is deferred whatever its score: rank it last.
  for (const auto& h : r.calibrate_rows)
    d.rows.push_back(
        {h.reason == DeferReason::kRareLabel ? -1.f : h.score, h.teacher, h.predicted});
  d.train_label_counts = r.train_label_counts;
  if (!full) {
    Router router(std::move(r.policy), r.manifest);
    RouteScratch scratch = router.make_scratch();
    for (size_t u = 0; u < p.unit_first.size(); ++u) {
      if (in[u]) continue;
      const size_t i = p.unit_first[u];
      const RouteResult rr = router.route(p.set.traces[i].input, scratch);
      d.rows.push_back(
          {rr.reason == DeferReason::kRareLabel ? -1.f : rr.stage1_score, p.set.y[i], rr.label});
    }
  }
  s.held_out = d.rows.size();
  size_t agree = 0;
  for (const auto& row : d.rows) agree += row.label == row.predicted;
  s.held_out_agreement = d.rows.empty() ? 0 : double(agree) / d.rows.size();
  s.seconds = sw.seconds();
  return d;
}

// Per refit, disagreements among its c most confident held-out rows, c on the grid.
struct RankedFit {
  double n = 0;
  std::vector<int> m, k;  // per grid level (1-based index - 1)
};

RankedFit rank_fit(const FitData& f) {
  RankedFit r;
  r.n = double(f.summary.traces);
  std::vector<size_t> order(f.rows.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return f.rows[a].score > f.rows[b].score; });
  std::vector<int> cum(order.size() + 1, 0);
  for (size_t i = 0; i < order.size(); ++i)
    cum[i + 1] = cum[i] + (f.rows[order[i]].label != f.rows[order[i]].predicted);
  const double H = double(order.size());
  for (int j = 1; j <= kGrid; ++j) {
    const int m = std::max(1, static_cast<int>(std::lround(H * j / kGrid)));
    r.m.push_back(m);
    r.k.push_back(cum[std::min<size_t>(m, order.size())]);
  }
  return r;
}

// Agreement among the c most confident inputs, as a learning curve per grid level.
std::vector<LearningCurve> fit_curves(const std::vector<RankedFit>& fits, double level) {
  std::vector<LearningCurve> curves;
  CurveOptions co;
  co.lower = 0, co.upper = 1, co.plateau_min = 0, co.plateau_max = 1;
  co.inverse_variance_weights = true;
  co.prefer_high_plateau = true;
  co.level = level;
  double n_max = 0;
  for (const auto& f : fits) n_max = std::max(n_max, f.n);
  for (int j = 0; j < kGrid; ++j) {
    double M = 0, K = 0;
    for (const auto& f : fits) M += f.m[j], K += f.k[j];
    // Binomial weights from the pooled rate (kept away from 0 so a level where every refit
    // agrees on every row still has finite weights), times n / n_max: learning curves bend
    // (fast few-shot gains, then slower), so the curve follows the largest refits most closely.
    // (On Banking77 and qwen3_8b samples this kept the error of the estimates and widened
    // the intervals to cover 96% of the actual fits, against 93% with binomial weights alone.)
    const double pooled = (M - K + 0.5) / (M + 1);
    const double var = std::max(pooled * (1 - pooled), 1e-4);
    std::vector<CurvePoint> pts;
    for (const auto& f : fits)
      pts.push_back({f.n, double(f.m[j] - f.k[j]) / f.m[j], f.m[j] / var * (f.n / n_max)});
    curves.push_back(fit_learning_curve(pts, co));
  }
  return curves;
}

// Pool-adjacent-violators: the closest non-decreasing sequence (equal weights).
void make_nondecreasing(std::vector<double>& v) {
  std::vector<std::pair<double, int>> blocks;
  for (double x : v) {
    blocks.emplace_back(x, 1);
    while (blocks.size() > 1 && blocks[blocks.size() - 2].first > blocks.back().first) {
      auto [x2, w2] = blocks.back();
      blocks.pop_back();
      auto& [x1, w1] = blocks.back();
      x1 = (x1 * w1 + x2 * w2) / (w1 + w2);
      w1 += w2;
    }
  }
  v.clear();
  for (auto [x, w] : blocks) v.insert(v.end(), w, x);
}

// The disagreement rate of each 1% slice of inputs (most confident first) under one draw of the
// curves: z = 0 is the point curve, z = +-quantile the ends of its interval.
std::vector<double> slice_errors(const std::vector<CurvePrediction>& at, double z, double zq) {
  std::vector<double> cum(kGrid), slice(kGrid);
  for (int j = 0; j < kGrid; ++j) {
    const double e_pt = std::clamp(1 - at[j].value, 1e-6, 1.0);
    const double e_hi = std::clamp(1 - at[j].low, e_pt, 1.0);
    const double e_lo = std::clamp(1 - at[j].high, 1e-6, e_pt);
    const double e =
        z >= 0 ? e_pt * std::pow(e_hi / e_pt, z / zq) : e_pt * std::pow(e_lo / e_pt, -z / zq);
    cum[j] = double(j + 1) / kGrid * std::min(1.0, e);
  }
  double prev = 0;
  for (int j = 0; j < kGrid; ++j) slice[j] = (cum[j] - prev) * kGrid, prev = cum[j];
  make_nondecreasing(slice);
  for (auto& s : slice) s = std::clamp(s, 0.0, 1.0);
  return slice;
}

// The calibration walk of `tracer fit` (fit/gate_search.cpp: design_walk, walk_plan) at one
// size and target: steps every 1% of coverage up to the OOD cap, tested in sequence from a start
// chosen on select, with an optional reserve of delta for the loosest step (fallback procedure).
struct WalkGrid {
  int steps = 0;
  std::vector<int> rows;        // accepted calibrate rows at each step
  std::vector<int> slice_rows;  // rows each step adds
  int floor_rows = 0;           // fewest rows a step is tested on
  // Agreeing rows needed to pass at level delta x {1, 0.8, 0.2} (the walk's possible levels).
  std::vector<int> need_full, need_main, need_reserve;
};

int rows_needed(int m, double alpha, double level) {
  // Smallest k with P(Bin(m, alpha) >= k) <= level; m + 1 when none.
  int lo = 0, hi = m + 1;  // the tail at m + 1 is 0
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (binomial_upper_tail(m, mid, alpha) <= level)
      hi = mid;
    else
      lo = mid + 1;
  }
  return lo;
}

WalkGrid make_grid(size_t n_cal, double alpha, double delta, int min_rows, double cap) {
  WalkGrid g;
  g.steps = std::clamp(static_cast<int>(std::floor(cap * kGrid + 1e-9)), 1, kGrid);
  g.floor_rows = std::max(min_rows, min_rows_to_certify(alpha, delta));
  int prev = 0;
  for (int j = 1; j <= g.steps; ++j) {
    const int m = static_cast<int>(std::lround(double(n_cal) * j / kGrid));
    g.rows.push_back(m);
    g.slice_rows.push_back(m - prev);
    prev = m;
    g.need_full.push_back(rows_needed(m, alpha, delta));
    g.need_main.push_back(rows_needed(m, alpha, 0.8 * delta));
    g.need_reserve.push_back(rows_needed(m, alpha, 0.2 * delta));
  }
  return g;
}

struct Design {
  int start = 0;         // steps accepting fewer calibrate rows are skipped
  bool reserve = false;  // 0.2 of delta kept for the loosest step
};

int draw_binomial(int n, double p, std::mt19937_64& rng) {
  if (n <= 0 || p <= 0) return 0;
  if (p >= 1) return n;
  if (n <= 24) {
    std::uniform_real_distribution<double> u(0, 1);
    int k = 0;
    for (int i = 0; i < n; ++i) k += u(rng) < p;
    return k;
  }
  return std::binomial_distribution<int>(n, p)(rng);
}

// One calibrate sample: cumulative agreeing rows at each step, from the slices' error rates.
void draw_sample(const WalkGrid& g, const std::vector<double>& slice, std::mt19937_64& rng,
                 std::vector<int>& agree) {
  agree.resize(g.steps);
  int k = 0;
  for (int j = 0; j < g.steps; ++j) {
    k += draw_binomial(g.slice_rows[j], 1 - slice[j], rng);
    agree[j] = k;
  }
}

// The fallback walk on one sample (walk_steps with a reserve): the first tested step gets
// delta (1 - reserve), a passed step hands its level on, the loosest step adds the reserve.
// Returns the certified coverage (the loosest passed step), or 0.
double walk(const WalkGrid& g, const Design& d, const std::vector<int>& agree) {
  const double share = d.reserve && g.steps >= 2 ? 0.2 : 0.0;
  bool first = true, passed = false;
  double carried = 0;
  int last = -1;
  for (int j = 0; j < g.steps; ++j) {
    if (g.rows[j] < d.start || g.rows[j] < g.floor_rows) continue;
    const bool loosest = j + 1 == g.steps;
    double level = (loosest ? share : 0.0) + (first ? 1 - share : 0.0) + (passed ? carried : 0.0);
    first = false;
    if (level <= 1e-12) {
      passed = false;
      continue;
    }
    const int need = level > 0.9   ? g.need_full[j]
                     : level > 0.5 ? g.need_main[j]
                                   : g.need_reserve[j];
    passed = agree[j] >= need;
    carried = level;
    if (passed) last = j;
  }
  return last >= 0 ? double(last + 1) / kGrid : 0.0;
}

// design_walk: about 30 candidate starts x {no reserve, reserve}, each scored by its certified
// coverage over simulated samples of the calibrate size; the most expected coverage among the
// designs whose refusal rate is within 5 points of the safest.
Design choose_design(const WalkGrid& g, const std::vector<double>& slice, std::mt19937_64& rng,
                     int sims) {
  std::vector<int> starts;
  const int stride = std::max(1, g.steps / 30);
  for (int j = 0; j < g.steps; j += stride) {
    const int r = g.rows[j];
    if (r >= g.floor_rows && (starts.empty() || r > starts.back())) starts.push_back(r);
  }
  if (starts.empty()) starts.push_back(g.floor_rows);
  std::vector<Design> designs;
  for (int st : starts) designs.push_back({st, false}), designs.push_back({st, true});
  std::vector<double> total(designs.size(), 0);
  std::vector<int> refusals(designs.size(), 0);
  std::vector<int> agree;
  for (int s = 0; s < sims; ++s) {
    draw_sample(g, slice, rng, agree);
    for (size_t d = 0; d < designs.size(); ++d) {
      const double c = walk(g, designs[d], agree);
      total[d] += c;
      refusals[d] += c == 0;
    }
  }
  const int least = *std::min_element(refusals.begin(), refusals.end());
  size_t arg = designs.size();
  for (size_t d = 0; d < designs.size(); ++d) {
    if (double(refusals[d] - least) / sims > 0.05) continue;
    if (arg == designs.size() || total[d] > total[arg] + 1e-9) arg = d;
  }
  return designs[arg];
}

double quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double pos = q * double(v.size() - 1);
  const size_t i = static_cast<size_t>(std::floor(pos));
  const double f = pos - double(i);
  return i + 1 < v.size() ? v[i] * (1 - f) + v[i + 1] * f : v[i];
}

std::string pct(double x) {
  x = std::clamp(x, 0.0, 1.0);
  return fmt::format("{:.0f}%", x * 100);
}

std::string count(double n) {
  if (!std::isfinite(n)) return "inf";
  const long long v = std::llround(n);
  std::string s = std::to_string(v), out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i > 0 && (s.size() - i) % 3 == 0) out += ',';
    out += s[i];
  }
  return out;
}

// Rounds a count of traces needed to two significant digits (it is an estimate).
double round_needed(double n) {
  if (!std::isfinite(n) || n <= 0) return n;
  const double mag = std::pow(10.0, std::max(0.0, std::floor(std::log10(n)) - 1));
  return std::ceil(n / mag) * mag;
}

std::string interval(const ScanEstimate& e) {
  if (e.high - e.low < 0.005) return pct(e.value);
  return fmt::format("{} ({:.0f}-{})", pct(e.value), std::clamp(e.low, 0.0, 1.0) * 100,
                     pct(e.high));
}

json estimate_json(const ScanEstimate& e) {
  return json{{"value", round4(e.value)}, {"low", round4(e.low)}, {"high", round4(e.high)}};
}

std::string fmt_target(double t) { return fmt::format("{:g}", t); }

}  // namespace

ScanResult scan_traces(const TraceSet& input, const ScanOptions& options, Progress& progress) {
  validate(options);
  Stopwatch total;
  ScanResult res;
  res.options = options;
  ScanOptions& o = res.options;
  o.targets = sorted_unique(o.targets);
  o.multiples = sorted_unique(o.multiples);
  o.shares = sorted_unique(o.shares);
  if (o.shares.back() < 1 - 1e-9) o.shares.push_back(1.0);
  o.threads = std::max(1, o.threads);
  const size_t T = o.targets.size();

  const Prepared p = prepare(input);
  res.traces = input.size();
  res.distinct_inputs = p.unit_first.size();
  res.labels = input.labels.size();

  // 1. Refits, largest first (they take longest), in parallel.
  std::vector<Job> jobs;
  for (auto it = o.shares.rbegin(); it != o.shares.rend(); ++it)
    for (int s = 0; s < o.seeds; ++s) jobs.push_back({*it, s});
  progress.step(fmt::format("refitting {} on {} share(s) x {} seed(s) of {} distinct inputs",
                            fmt::join(o.zoo, ","), o.shares.size(), o.seeds, p.unit_first.size()));
  std::vector<FitData> done(jobs.size());
  std::vector<std::string> failures(jobs.size());
  {
    std::atomic<size_t> next{0};
    std::mutex mu;
    auto worker = [&] {
      for (size_t i; (i = next.fetch_add(1)) < jobs.size();) {
        try {
          done[i] = run_fit(p, o, jobs[i]);
        } catch (const InputError& e) {
          failures[i] = e.what();
        }
        std::lock_guard lock(mu);
        const Job& j = jobs[i];
        if (failures[i].empty())
          progress.note(
              fmt::format("{:.0f}% seed {}: {} traces, {} held out, agreement {:.3f} "
                          "({:.2f} s)",
                          j.share * 100, j.seed, done[i].summary.traces, done[i].summary.held_out,
                          done[i].summary.held_out_agreement, done[i].summary.seconds));
        else
          progress.note(
              fmt::format("{:.0f}% seed {}: failed: {}", j.share * 100, j.seed, failures[i]));
      }
    };
    const int n_threads = std::min<int>(o.threads, static_cast<int>(jobs.size()));
    std::vector<std::jthread> pool;
    for (int t = 0; t < n_threads; ++t) pool.emplace_back(worker);
  }
  std::vector<RankedFit> ranked;
  std::vector<const FitData*> usable;
  double cal_share = 0;
  int full_fits = 0;
  std::vector<std::vector<double>> observed(T);
  for (size_t i = 0; i < jobs.size(); ++i) {
    if (!failures[i].empty()) {
      // A full-size refit that fails is what `tracer fit` would say: the scan cannot go on.
      if (jobs[i].share >= 1 - 1e-9) throw InputError(failures[i]);
      ScanFit f;
      f.share = jobs[i].share, f.seed = jobs[i].seed, f.error = failures[i];
      res.fits.push_back(f);
      continue;
    }
    res.fits.push_back(done[i].summary);
    if (done[i].rows.size() < 20) continue;
    ranked.push_back(rank_fit(done[i]));
    usable.push_back(&done[i]);
    if (jobs[i].share >= 1 - 1e-9) {
      ++full_fits;
      cal_share +=
          double(done[i].summary.calibrate_rows) / std::max<size_t>(1, done[i].summary.traces);
      for (size_t t = 0; t < T; ++t) observed[t].push_back(done[i].summary.certified[t]);
    }
  }
  if (full_fits == 0) throw InputError("no full-size refit produced held-out rows");
  res.calibrate_share = cal_share / full_fits;
  for (size_t t = 0; t < T; ++t) {
    const auto& v = observed[t];
    res.observed_now.push_back({quantile(v, 0.5), *std::min_element(v.begin(), v.end()),
                                *std::max_element(v.begin(), v.end())});
  }

  // 2. Learning curves per coverage level.
  progress.step("fitting learning curves and simulating the calibration walk");
  const auto curves = fit_curves(ranked, o.level);
  const double n_now = double(p.set.size());
  std::vector<double> multiples = {1.0};
  multiples.insert(multiples.end(), o.multiples.begin(), o.multiples.end());
  const double zq = normal_quantile_two_sided(o.level);
  const double cap = 1 - o.ood_quantile;

  // 3. Simulated walks: one curve draw per draw index (shared across sizes and targets, so the
  // sizes are compared on the same draws), and one calibrate sample per size and target.
  std::mt19937_64 zrng(mix(o.seed, 0x5ca9));
  std::normal_distribution<double> normal(0, 1);
  std::vector<double> zs(o.draws);
  for (auto& z : zs) z = normal(zrng);
  // The fitter designs its walk on select, an estimate of the curve it then meets on calibrate:
  // here each draw is walked with the design made for the nearest of a few curve draws.
  const std::vector<double> zgrid = {-2.5, -2, -1.5, -1, -0.5, 0, 0.5, 1, 1.5, 2, 2.5};
  auto nearest = [&](double z) {
    size_t b = 0;
    for (size_t i = 1; i < zgrid.size(); ++i)
      if (std::abs(zgrid[i] - z) < std::abs(zgrid[b] - z)) b = i;
    return b;
  };
  const double u_ratio = double(p.unit_first.size()) / std::max<size_t>(1, p.set.size());
  for (double mult : multiples) {
    ScanHorizon h;
    h.multiple = mult;
    h.traces = static_cast<size_t>(std::llround(mult * double(res.traces)));
    const double N = mult * n_now;
    if (mult == 1) {
      h.calibrate = static_cast<size_t>(std::llround(res.calibrate_share * N));
    } else {
      // The split `tracer fit` would choose for that many distinct inputs.
      const auto units = static_cast<size_t>(std::llround(N * u_ratio));
      h.calibrate =
          static_cast<size_t>(std::llround(plan_split(units, nullptr, 0).calibrate * units));
    }
    std::vector<CurvePrediction> at(kGrid);
    for (int j = 0; j < kGrid; ++j) at[j] = curves[j].at(N);
    const CurvePrediction all = at[kGrid - 1];
    h.agreement = {all.value, all.low, all.high};
    std::vector<std::vector<double>> slices(o.draws), zslices(zgrid.size());
    for (int d = 0; d < o.draws; ++d) slices[d] = slice_errors(at, zs[d], zq);
    for (size_t b = 0; b < zgrid.size(); ++b) zslices[b] = slice_errors(at, zgrid[b], zq);
    for (size_t t = 0; t < T; ++t) {
      const WalkGrid g = make_grid(h.calibrate, o.targets[t], o.delta, o.min_rows, cap);
      std::vector<Design> designs(zgrid.size());
      std::mt19937_64 drng(mix(o.seed, uint64_t(t) + 991));
      for (size_t b = 0; b < zgrid.size(); ++b) designs[b] = choose_design(g, zslices[b], drng, 48);
      std::vector<double> cov(o.draws);
      std::vector<int> agree;
      for (int d = 0; d < o.draws; ++d) {
        std::mt19937_64 rng(mix(mix(o.seed, uint64_t(d) + 1), uint64_t(t) + 77));
        draw_sample(g, slices[d], rng, agree);
        cov[d] = walk(g, designs[nearest(zs[d])], agree);
      }
      h.coverage.push_back(
          {quantile(cov, 0.5), quantile(cov, (1 - o.level) / 2), quantile(cov, (1 + o.level) / 2)});
    }
    res.horizons.push_back(h);
  }
  // Monotone as the certificate is: a looser target certifies at least what a stricter one
  // does, and more traces never certify less (in expectation; draws are shared).
  auto fix = [&](auto get) {
    for (auto& h : res.horizons)
      for (size_t t = T - 1; t-- > 0;)
        get(h.coverage[t]) = std::max(get(h.coverage[t]), get(h.coverage[t + 1]));
    for (size_t i = 1; i < res.horizons.size(); ++i)
      for (size_t t = 0; t < T; ++t)
        get(res.horizons[i].coverage[t]) =
            std::max(get(res.horizons[i].coverage[t]), get(res.horizons[i - 1].coverage[t]));
  };
  fix([](ScanEstimate& e) -> double& { return e.value; });
  fix([](ScanEstimate& e) -> double& { return e.low; });
  fix([](ScanEstimate& e) -> double& { return e.high; });
  for (auto& h : res.horizons)
    for (auto& e : h.coverage) {
      e.value = std::clamp(e.value, 0.0, 1.0);
      e.low = std::clamp(std::min(e.low, e.value), 0.0, 1.0);
      e.high = std::clamp(std::max(e.high, e.value), 0.0, 1.0);
    }

  // 4. Labels: held-out agreement per label, scaled along the overall curve.
  const LearningCurve& overall = curves[kGrid - 1];
  auto err_at = [&](double n) { return std::max(1e-4, 1 - overall.at(n).value); };
  const double e_now = err_at(n_now);
  const size_t K = p.set.labels.size();
  std::vector<double> k_sum(K, 0), m_sum(K, 0), m_eq(K, 0);
  std::vector<std::map<int, int>> wrong(K);
  for (const FitData* f : usable) {
    const double scale = err_at(double(f->summary.traces)) / e_now;
    std::vector<int> m(K, 0), k(K, 0);
    for (const auto& r : f->rows) {
      ++m[r.label];
      if (r.label != r.predicted) ++k[r.label], ++wrong[r.label][r.predicted];
    }
    for (size_t l = 0; l < K; ++l) k_sum[l] += k[l], m_sum[l] += m[l], m_eq[l] += m[l] * scale;
  }
  const auto counts = p.set.label_counts();
  const double conf = (1 + o.level) / 2;
  std::vector<size_t> train_counts;
  for (const FitData* f : usable)
    if (f->summary.share >= 1 - 1e-9) {
      train_counts = f->train_label_counts;
      break;
    }
  for (size_t l = 0; l < K; ++l) {
    ScanLabel row;
    row.label = p.set.labels[l];
    row.traces = counts[l];
    // Rate relative to the overall error, with two pseudo-rows at the overall rate.
    const double ratio = (k_sum[l] + 2 * e_now) / (m_eq[l] * e_now + 2 * e_now);
    const double err = std::min(1.0, ratio * e_now);
    const int meq = static_cast<int>(std::lround(m_eq[l]));
    const int keq = std::min(meq, static_cast<int>(std::lround(k_sum[l])));
    row.agreement.value = 1 - err;
    row.agreement.low = meq > 0 ? 1 - clopper_pearson_upper(meq, keq, conf) : 0.0;
    row.agreement.high = meq > 0 ? 1 - clopper_pearson_lower(meq, keq, conf) : 1.0;
    row.agreement.low = std::clamp(std::min(row.agreement.low, row.agreement.value), 0.0, 1.0);
    row.agreement.high = std::clamp(std::max(row.agreement.high, row.agreement.value), 0.0, 1.0);
    if (!wrong[l].empty()) {
      auto best =
          std::max_element(wrong[l].begin(), wrong[l].end(),
                           [](const auto& a, const auto& b) { return a.second < b.second; });
      row.confused_with = p.set.labels[best->first];
      row.confused_share = m_sum[l] > 0 ? best->second / m_sum[l] : 0;
    }
    const size_t trained = l < train_counts.size() ? train_counts[l] : counts[l];
    if (trained < o.min_per_label) {
      // `tracer fit` does not let the surrogate answer this label (rare_label): it first needs
      // min_per_label distinct training inputs, and then enough to agree.
      row.status = "too_few_traces";
      const double for_rare = std::ceil(double(std::max<size_t>(row.traces, 1)) * o.min_per_label /
                                        double(std::max<size_t>(trained, 1)));
      row.traces_needed = round_needed(std::max(for_rare, double(o.min_per_label)));
    } else if (row.agreement.value >= o.target) {
      row.status = "ok";
      row.traces_needed = 0;
    } else {
      // The overall error must fall by (1 - target) / err of its current value.
      const double y = 1 - e_now * (1 - o.target) / err;
      const double n_needed = overall.traces_for(y);
      const double multiple = n_needed / n_now;
      row.traces_needed = std::isfinite(multiple) ? round_needed(row.traces * multiple) : kInf;
      row.status =
          std::isfinite(multiple) && multiple <= kMaxLabelMultiple ? "needs_traces" : "unlikely";
    }
    res.label_rows.push_back(row);
  }
  auto rank = [](const ScanLabel& r) {
    return r.status == "ok" ? 3 : r.status == "too_few_traces" ? 2 : r.status == "unlikely" ? 0 : 1;
  };
  std::stable_sort(res.label_rows.begin(), res.label_rows.end(),
                   [&](const ScanLabel& a, const ScanLabel& b) {
                     if (rank(a) != rank(b)) return rank(a) < rank(b);
                     if (a.status == "ok") return a.agreement.value < b.agreement.value;
                     if (a.traces_needed != b.traces_needed)
                       return a.traces_needed > b.traces_needed;
                     return a.agreement.value < b.agreement.value;
                   });

  // 5. Verdict.
  size_t ti = 0;
  for (size_t t = 0; t < T; ++t)
    if (std::abs(o.targets[t] - o.target) < std::abs(o.targets[ti] - o.target)) ti = t;
  const ScanHorizon& now = res.horizons.front();
  const ScanHorizon& last = res.horizons.back();
  double max_gain = 0;
  for (size_t t = 0; t < T; ++t) {
    if (now.coverage[t].value >= kMinCoverage || res.observed_now[t].value >= kMinCoverage)
      res.certifiable_now = true;
    if (last.coverage[t].value >= kMinCoverage) res.certifiable_later = true;
    max_gain = std::max(max_gain, last.coverage[t].value - now.coverage[t].value);
  }
  res.more_traces_help = max_gain >= kHelpfulGain;
  const double tgt = o.targets[ti];
  std::vector<std::string>& v = res.verdict;
  {
    const ScanEstimate& e = now.coverage[ti];
    std::string s = fmt::format("Now ({} traces): ", count(double(res.traces)));
    if (e.value >= kMinCoverage)
      s += fmt::format(
          "at target {} a policy would certify about {} of traffic (interval {:.0f}-{})",
          fmt_target(tgt), pct(e.value), e.low * 100, pct(e.high));
    else
      s += fmt::format("at target {} nothing can be certified", fmt_target(tgt));
    // The strictest target that certifies now.
    int best = -1;
    for (size_t t = 0; t < T; ++t)
      if (now.coverage[t].value >= kMinCoverage) best = static_cast<int>(t);
    if (e.value < kMinCoverage && best >= 0)
      s += fmt::format("; the strictest target that certifies is {} (about {})",
                       fmt_target(o.targets[best]), pct(now.coverage[best].value));
    else if (best < 0)
      s += fmt::format("; nothing certifies at any target from {} up", fmt_target(o.targets[0]));
    v.push_back(s + ".");
  }
  if (res.horizons.size() > 1) {
    std::string s = fmt::format("At target {}: ", fmt_target(tgt));
    for (size_t i = 1; i < res.horizons.size(); ++i) {
      const ScanHorizon& h = res.horizons[i];
      s += fmt::format("{}{:g}x the traces ({}) -> {}", i > 1 ? "; " : "", h.multiple,
                       count(double(h.traces)), interval(h.coverage[ti]));
    }
    v.push_back(s + ".");
  }
  {
    const ScanEstimate& a = now.agreement;
    const double gain = overall.at(2 * n_now).value - a.value;
    std::string s = fmt::format(
        "The surrogate agrees with the LLM on {} of held-out traces now (interval {:.0f}-{}), "
        "{:+.1f} points per doubling of the traces",
        pct(a.value), a.low * 100, pct(a.high), gain * 100);
    if (!res.certifiable_later)
      s += fmt::format(
          ". More traces of the same kind are unlikely to help: even {:g}x the traces are not "
          "expected to certify anything at any target from {}; lower the target, merge labels "
          "the surrogate confuses, or use a stronger featurizer",
          last.multiple, fmt_target(o.targets[0]));
    else if (!res.more_traces_help)
      s += fmt::format(
          ". More traces of the same kind help little: {:g}x the traces would add at most {:.0f} "
          "points of coverage at any target",
          last.multiple, max_gain * 100);
    v.push_back(s + ".");
  }
  {
    size_t need = 0, unlikely = 0, few = 0;
    for (const auto& r : res.label_rows) {
      need += r.status == "needs_traces";
      unlikely += r.status == "unlikely";
      few += r.status == "too_few_traces";
    }
    if (need + unlikely + few == 0) {
      v.push_back(
          fmt::format("Every label agrees with the LLM at least {} of the time on held-out "
                      "traces.",
                      pct(o.target)));
    } else {
      std::string s =
          fmt::format("{} of {} labels {} below {} agreement", need + unlikely + few, res.labels,
                      need + unlikely + few == 1 ? "is" : "are", fmt_target(o.target));
      if (need > 0) {
        std::vector<double> n;
        for (const auto& r : res.label_rows)
          if (r.status == "needs_traces") n.push_back(r.traces_needed);
        s += fmt::format("; {} {} about {} traces each (median)", need,
                         need == 1 ? "needs" : "of them need", count(quantile(n, 0.5)));
      }
      if (unlikely > 0)
        s += fmt::format("; {} {} unlikely to get there with more traces of the same kind",
                         unlikely, unlikely == 1 ? "is" : "are");
      if (few > 0)
        s += fmt::format(
            "; {} {} fewer than {} distinct training inputs, so `tracer fit` defers {} (rare "
            "labels)",
            few, few == 1 ? "has" : "have", o.min_per_label, few == 1 ? "it" : "them");
      v.push_back(s + ".");
    }
  }
  progress.finish();
  res.seconds = total.seconds();
  return res;
}

json ScanResult::to_json() const {
  json j;
  j["format"] = "tracer-scan";
  j["format_version"] = 1;
  j["traces"] = traces;
  j["distinct_inputs"] = distinct_inputs;
  j["labels"] = labels;
  j["settings"] = {{"targets", options.targets},  {"target", options.target},
                   {"delta", options.delta},      {"multiples", options.multiples},
                   {"shares", options.shares},    {"seeds", options.seeds},
                   {"zoo", options.zoo},          {"methods", {"global", "l2d"}},
                   {"seed", options.seed},        {"draws", options.draws},
                   {"level", options.level},      {"ood_quantile", options.ood_quantile},
                   {"min_rows", options.min_rows}};
  j["calibrate_share"] = round4(calibrate_share);
  json fits_j = json::array();
  for (const auto& f : fits) {
    json x{{"share", f.share}, {"seed", f.seed}};
    if (!f.error.empty()) x["error"] = f.error;
    if (f.traces > 0) {
      x["traces"] = f.traces;
      x["calibrate_rows"] = f.calibrate_rows;
      x["held_out"] = f.held_out;
      x["held_out_agreement"] = round4(f.held_out_agreement);
      json cert = json::array();
      for (double c : f.certified) cert.push_back(round4(c));
      x["certified"] = cert;
      x["seconds"] = round4(f.seconds);
    }
    fits_j.push_back(x);
  }
  j["fits"] = fits_j;
  json hz = json::array();
  for (const auto& h : horizons) {
    json x{{"multiple", h.multiple},
           {"traces", h.traces},
           {"calibrate_rows", h.calibrate},
           {"surrogate_agreement", estimate_json(h.agreement)}};
    json cov = json::array();
    for (size_t t = 0; t < h.coverage.size(); ++t) {
      json c = estimate_json(h.coverage[t]);
      c["target"] = options.targets[t];
      cov.push_back(c);
    }
    x["coverage"] = cov;
    hz.push_back(x);
  }
  j["horizons"] = hz;
  // The same numbers by target, the way a reader looks them up.
  json by_target = json::array();
  for (size_t t = 0; t < options.targets.size(); ++t) {
    json x{{"target", options.targets[t]}};
    json now = estimate_json(horizons.front().coverage[t]);
    now["observed"] = {{"median", round4(observed_now[t].value)},
                       {"min", round4(observed_now[t].low)},
                       {"max", round4(observed_now[t].high)}};
    x["now"] = now;
    json at = json::array();
    for (size_t i = 1; i < horizons.size(); ++i) {
      json e = estimate_json(horizons[i].coverage[t]);
      e["multiple"] = horizons[i].multiple;
      e["traces"] = horizons[i].traces;
      at.push_back(e);
    }
    x["at"] = at;
    by_target.push_back(x);
  }
  j["targets"] = by_target;
  json lab = json::array();
  for (const auto& r : label_rows) {
    json x{{"label", r.label}, {"traces", r.traces}, {"status", r.status}};
    x["agreement"] = estimate_json(r.agreement);
    x["traces_needed"] = std::isfinite(r.traces_needed) ? json(r.traces_needed) : json(nullptr);
    if (!r.confused_with.empty())
      x["confused_with"] = {{"label", r.confused_with}, {"share", round4(r.confused_share)}};
    lab.push_back(x);
  }
  j["label_rows"] = lab;
  j["certifiable_now"] = certifiable_now;
  j["certifiable_later"] = certifiable_later;
  j["more_traces_help"] = more_traces_help;
  j["verdict"] = verdict;
  j["method"] =
      "refits on shares of the distinct inputs score the inputs they never saw; per coverage "
      "level, agreement among the most confident held-out inputs is fitted as a saturating "
      "learning curve and extrapolated; tracer fit's calibration walk is simulated on draws of "
      "those curves (within their intervals) at each size. value: median; low/high: the "
      "(1-level)/2 and (1+level)/2 quantiles";
  j["seconds"] = round4(seconds);
  return j;
}

std::string ScanResult::to_text(size_t max_labels) const {
  std::string s;
  s += fmt::format(
      "tracer scan: {} traces ({} distinct inputs), {} labels; {} refits of {} on {} of the "
      "inputs, {:.1f} s\n\n",
      count(double(traces)), count(double(distinct_inputs)), labels, fits.size(),
      fmt::join(options.zoo, ","),
      [&] {
        std::string out;
        for (double sh : options.shares) out += (out.empty() ? "" : "/") + pct(sh);
        return out;
      }(),
      seconds);
  s += fmt::format(
      "Certified coverage (share of traffic the surrogate may answer itself), median and "
      "{:.0f}% interval:\n",
      options.level * 100);
  std::string head = fmt::format("{:<8}{:<16}", "target", "fit now");
  for (const auto& h : horizons)
    head += fmt::format("{:<20}", h.multiple == 1
                                      ? fmt::format("now ({})", count(h.traces))
                                      : fmt::format("{:g}x ({})", h.multiple, count(h.traces)));
  s += head + "\n";
  for (size_t t = 0; t < options.targets.size(); ++t) {
    const ScanEstimate& ob = observed_now[t];
    std::string line = fmt::format("{:<8}{:<16}", fmt_target(options.targets[t]),
                                   ob.high - ob.low < 0.005 ? pct(ob.value) : interval(ob));
    for (const auto& h : horizons) line += fmt::format("{:<20}", interval(h.coverage[t]));
    s += line + "\n";
  }
  s += fmt::format(
      "('fit now': the frontier of the full-size refits (fit at target {}), median (min-max) over "
      "{} seeds. Other columns: estimates for `tracer fit --target <row>` on that many traces of "
      "the same kind; the whole zoo often certifies a few points more than {}.)\n\n",
      fmt_target(options.target), options.seeds, fmt::join(options.zoo, ","));
  std::string agr = "Surrogate agreement with the LLM on held-out traces:";
  for (const auto& h : horizons)
    agr += fmt::format(" {} {}{}", h.multiple == 1 ? "now" : fmt::format("{:g}x", h.multiple),
                       interval(h.agreement), &h == &horizons.back() ? "" : ";");
  s += agr + "\n\n";
  for (const auto& line : verdict) s += line + "\n";
  std::vector<const ScanLabel*> shown;
  for (const auto& r : label_rows)
    if (r.status != "ok") shown.push_back(&r);
  if (!shown.empty()) {
    s += fmt::format("\nLabels below {} agreement with the LLM on held-out traces ({} of {}):\n",
                     fmt_target(options.target), shown.size(), labels);
    s += fmt::format("  {:<34}{:>7}  {:<18}{:<16}{}\n", "label", "traces", "agreement",
                     "traces needed", "most confused with");
    for (size_t i = 0; i < shown.size() && i < max_labels; ++i) {
      const ScanLabel& r = *shown[i];
      std::string need = r.status == "needs_traces"     ? "~" + count(r.traces_needed)
                         : r.status == "unlikely"       ? "unlikely"
                         : r.status == "too_few_traces" ? ">= " + count(r.traces_needed) + " (rare)"
                                                        : "";
      std::string label = r.label.size() > 32 ? r.label.substr(0, 31) + "~" : r.label;
      std::string conf = r.confused_with.empty()
                             ? ""
                             : fmt::format("{} ({})", r.confused_with, pct(r.confused_share));
      s += fmt::format("  {:<34}{:>7}  {:<18}{:<16}{}\n", label, r.traces, interval(r.agreement),
                       need, conf);
    }
    if (shown.size() > max_labels)
      s += fmt::format("  ... and {} more (--json lists every label)\n", shown.size() - max_labels);
  }
  return s;
}

}  // namespace tracer
