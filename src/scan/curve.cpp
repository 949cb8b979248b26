#include "scan/curve.hpp"

#include <algorithm>
#include <cmath>
#include <set>

namespace tracer {
namespace {

struct Fit {
  double plateau = 0, scale = 0, sse = std::numeric_limits<double>::infinity();
};

// Weighted sums over the points for one exponent (t = (n / n_ref)^-exponent).
struct Sums {
  std::vector<double> t;
  double w = 0, wt = 0, wy = 0, wtt = 0, wty = 0, wyy = 0;
};

Sums sums_for(std::span<const CurvePoint> pts, double n_ref, double g) {
  Sums s;
  s.t.reserve(pts.size());
  for (const auto& p : pts) {
    const double t = std::pow(p.n / n_ref, -g);
    s.t.push_back(t);
    s.w += p.weight, s.wt += p.weight * t, s.wy += p.weight * p.y;
    s.wtt += p.weight * t * t, s.wty += p.weight * t * p.y, s.wyy += p.weight * p.y * p.y;
  }
  return s;
}

// Residual sum of squares of y = P - b t.
double sse_of(const Sums& s, double P, double b) {
  // sum w (y - P + b t)^2 expanded, clamped at 0 against rounding.
  const double v =
      s.wyy + P * P * s.w + b * b * s.wtt - 2 * P * s.wy + 2 * b * s.wty - 2 * P * b * s.wt;
  return std::max(0.0, v);
}

// Scale minimising the residuals for a fixed plateau, unconstrained in sign.
double free_scale(const Sums& s, double P) { return s.wtt > 0 ? (P * s.wt - s.wty) / s.wtt : 0.0; }

// Best plateau and scale for one exponent, with plateau in [lo, hi] and scale >= 0.
Fit best_for(const Sums& s, double lo, double hi) {
  Fit f;
  const double tm = s.wt / s.w, ym = s.wy / s.w;
  const double stt = s.wtt - s.w * tm * tm, sty = s.wty - s.w * tm * ym;
  double b = stt > 1e-300 ? -sty / stt : 0.0;
  double P = ym + b * tm;
  if (b < 0) {
    b = 0;
    P = std::clamp(ym, lo, hi);
  } else if (P > hi || P < lo) {
    P = std::clamp(P, lo, hi);
    b = std::max(0.0, free_scale(s, P));
  }
  f.plateau = P, f.scale = b, f.sse = sse_of(s, P, b);
  return f;
}

}  // namespace

double normal_quantile_two_sided(double level) {
  level = std::clamp(level, 1e-9, 1 - 1e-12);
  // Solve erfc(z / sqrt 2) = 1 - level by bisection (monotone, no tables needed).
  const double tail = 1 - level;
  double lo = 0, hi = 40;
  for (int i = 0; i < 200; ++i) {
    const double mid = 0.5 * (lo + hi);
    (std::erfc(mid / std::sqrt(2.0)) > tail ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

LearningCurve fit_learning_curve(std::span<const CurvePoint> points, const CurveOptions& o) {
  LearningCurve c;
  c.o_ = o;
  if (c.o_.lower > c.o_.upper) std::swap(c.o_.lower, c.o_.upper);
  const double lo = std::clamp(std::min(o.plateau_min, o.plateau_max), c.o_.lower, c.o_.upper);
  const double hi = std::clamp(std::max(o.plateau_min, o.plateau_max), c.o_.lower, c.o_.upper);
  c.o_.plateau_min = lo, c.o_.plateau_max = hi;
  std::vector<CurvePoint> pts;
  for (const auto& p : points)
    if (p.n > 0 && std::isfinite(p.n) && std::isfinite(p.y) && std::isfinite(p.weight) &&
        p.weight > 0)
      pts.push_back(p);
  c.points_ = pts.size();
  double w = 0, wy = 0, n_ref = 0;
  std::set<double> distinct;
  for (const auto& p : pts) w += p.weight, wy += p.weight * p.y, n_ref = std::max(n_ref, p.n);
  for (const auto& p : pts) distinct.insert(p.n);
  c.mean_ = w > 0 ? wy / w : 0.5 * (c.o_.lower + c.o_.upper);
  c.n_ref_ = n_ref > 0 ? n_ref : 1;
  if (distinct.size() < 2) return c;

  // Exponent grid, log-spaced.
  const double g0 = std::max(1e-3, std::min(o.exponent_min, o.exponent_max));
  const double g1 = std::max(g0, std::max(o.exponent_min, o.exponent_max));
  constexpr int kExponents = 48, kPlateaus = 48;
  std::vector<double> exps;
  for (int i = 0; i < kExponents; ++i)
    exps.push_back(g0 * std::pow(g1 / g0, kExponents == 1 ? 0.0 : double(i) / (kExponents - 1)));
  std::vector<Sums> sums;
  for (double g : exps) sums.push_back(sums_for(pts, c.n_ref_, g));

  Fit best;
  size_t best_g = 0;
  std::vector<Fit> per_g(exps.size());
  for (size_t i = 0; i < exps.size(); ++i) {
    per_g[i] = best_for(sums[i], lo, hi);
    if (per_g[i].sse < best.sse) best = per_g[i], best_g = i;
  }
  const double df = double(pts.size()) - 3;
  const double per_df = best.sse / std::max(1.0, df);
  if (o.inverse_variance_weights)
    c.sigma2_ = df > 0 ? std::max(1.0, per_df) : 1.0;
  else
    c.sigma2_ = std::max(per_df, o.min_sd * o.min_sd * w / double(pts.size()));
  const double z = normal_quantile_two_sided(o.level);
  const double thr = best.sse + c.sigma2_ * z * z;

  c.fitted_ = true;
  c.plateau_ = best.plateau, c.scale_ = best.scale, c.exponent_ = exps[best_g];
  if (o.prefer_high_plateau) {
    Fit top;
    size_t top_g = 0;
    for (size_t i = 0; i < exps.size(); ++i) {
      const double b = std::max(0.0, free_scale(sums[i], hi));
      const double e = sse_of(sums[i], hi, b);
      if (e < top.sse) top = Fit{hi, b, e}, top_g = i;
    }
    if (top.sse <= thr) c.plateau_ = top.plateau, c.scale_ = top.scale, c.exponent_ = exps[top_g];
  }

  // The plausible region: for each exponent and plateau on the grids (plus the exponent's own
  // best plateau), the scales whose residuals stay under the threshold.
  for (size_t i = 0; i < exps.size(); ++i) {
    const Sums& s = sums[i];
    if (s.wtt <= 0) continue;
    std::vector<double> plateaus;
    for (int k = 0; k < kPlateaus; ++k)
      plateaus.push_back(lo + (hi - lo) * (kPlateaus == 1 ? 1.0 : double(k) / (kPlateaus - 1)));
    plateaus.push_back(per_g[i].plateau);
    for (double P : plateaus) {
      const double b = free_scale(s, P);
      const double e = sse_of(s, P, b);
      if (e > thr) continue;
      const double h = std::sqrt((thr - e) / s.wtt);
      if (b + h < 0) continue;
      c.plausible_.push_back({P, exps[i], std::max(0.0, b - h), b + h});
    }
  }
  return c;
}

CurvePrediction LearningCurve::at(double n) const {
  auto clamp = [&](double v) { return std::clamp(v, o_.lower, o_.upper); };
  CurvePrediction p;
  if (!fitted_ || !(n > 0)) {
    p.value = clamp(mean_);
    p.low = o_.lower, p.high = o_.upper;
    return p;
  }
  const double x = n / n_ref_;
  p.value = clamp(plateau_ - scale_ * std::pow(x, -exponent_));
  p.low = p.high = p.value;
  for (const auto& m : plausible_) {
    const double t = std::pow(x, -m.exponent);
    p.low = std::min(p.low, clamp(m.plateau - m.scale_hi * t));
    p.high = std::max(p.high, clamp(m.plateau - m.scale_lo * t));
  }
  return p;
}

double LearningCurve::traces_for(double y) const {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  if (!fitted_) return mean_ >= y ? 0.0 : kInf;
  if (scale_ <= 0) return plateau_ >= y ? 0.0 : kInf;
  if (plateau_ <= y) return kInf;
  // plateau - scale * (n / n_ref)^-g = y  <=>  n = n_ref * ((plateau - y) / scale)^(-1/g)
  return n_ref_ * std::pow((plateau_ - y) / scale_, -1.0 / exponent_);
}

}  // namespace tracer
