#pragma once
// Saturating learning curves: y(n) = plateau - scale * n^(-exponent), fitted to a few noisy
// points and extrapolated with an interval that stays inside [lower, upper].
//
// Used by `tracer scan` (agreement among the most confident held-out traces, per coverage level)
// and by the report's learning curve (certified coverage against traces). Every curve of the
// family is non-decreasing in n (scale >= 0, exponent > 0), so predictions never fall as traces
// grow, and every prediction is clamped into [lower, upper] (e.g. [0, 1] for a share).
//
// Fit: weighted least squares, profiled over a grid of exponents (for each exponent the plateau
// and scale have a closed form under their constraints). Interval: every (plateau, exponent,
// scale) whose weighted residual sum of squares is within sigma^2 * chi2_1(level) of the best
// (a profile-likelihood region), where sigma^2 is the residual scatter per unit weight; a
// prediction's interval is the range of y(n) over that region. With few points the region is
// wide (a plateau cannot be told from a curve that keeps improving), and the interval says so.
#include <limits>
#include <span>
#include <vector>

namespace tracer {

struct CurvePoint {
  double n = 0;       // traces (> 0)
  double y = 0;       // the measured value
  double weight = 1;  // relative weight (inverse variance when CurveOptions says so)
};

struct CurveOptions {
  double lower = 0, upper = 1;              // values and predictions are clamped into this range
  double plateau_min = 0, plateau_max = 1;  // range of the asymptote (inside [lower, upper])
  double exponent_min = 0.05, exponent_max = 2.0;
  double level = 0.8;  // two-sided coverage of prediction intervals
  // Weights are inverse variances (binomial counts): the scatter is at least what they imply
  // (dispersion >= 1). Otherwise it is estimated from the residuals and never taken below
  // min_sd (in units of y) per unit weight.
  bool inverse_variance_weights = false;
  double min_sd = 0.01;
  // The point estimate is the best curve with plateau = plateau_max (one that keeps improving)
  // whenever the data cannot tell it from the best fit; otherwise the best fit.
  bool prefer_high_plateau = false;
};

struct CurvePrediction {
  double value = 0, low = 0, high = 0;  // lower <= low <= value <= high <= upper
};

class LearningCurve {
 public:
  // False when the points span fewer than two distinct n: predictions are then the weighted
  // mean with the interval [lower, upper] (nothing is known about the trend).
  bool fitted() const { return fitted_; }
  // The point curve: y(n) = plateau - scale * (n / reference_n)^-exponent, where reference_n
  // is the largest n fitted.
  double plateau() const { return plateau_; }
  double scale() const { return scale_; }
  double exponent() const { return exponent_; }
  double reference_n() const { return n_ref_; }
  // Residual scatter per unit weight (sigma^2) and the number of points fitted.
  double dispersion() const { return sigma2_; }
  size_t points() const { return points_; }

  CurvePrediction at(double n) const;
  // The n at which the point curve reaches y: 0 when the curve is flat at or above y,
  // infinity when it never does (its plateau is below y).
  double traces_for(double y) const;

 private:
  friend LearningCurve fit_learning_curve(std::span<const CurvePoint>, const CurveOptions&);
  struct Member {  // one plausible curve shape, with the range of scales that stays plausible
    double plateau, exponent, scale_lo, scale_hi;
  };
  bool fitted_ = false;
  double plateau_ = 0, scale_ = 0, exponent_ = 1;
  double sigma2_ = 0, mean_ = 0;
  double n_ref_ = 1;  // the largest n fitted: scale is relative to it
  size_t points_ = 0;
  CurveOptions o_;
  std::vector<Member> plausible_;
};

// Points with n <= 0 or non-finite values are ignored. Throws nothing.
LearningCurve fit_learning_curve(std::span<const CurvePoint> points, const CurveOptions& options);

// Two-sided standard normal quantile for a central `level` (0.8 -> 1.2816).
double normal_quantile_two_sided(double level);

}  // namespace tracer
