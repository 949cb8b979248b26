#include "runtime/drift.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "util/error.hpp"

namespace tracer {
namespace {

float clean(float s) { return std::isfinite(s) ? s : 0.f; }

}  // namespace

DriftReference DriftReference::from_calibrate(std::span<const float> scores,
                                              std::span<const uint8_t> handled,
                                              std::span<const uint8_t> ood) {
  if (handled.size() != scores.size() || ood.size() != scores.size())
    throw InputError("drift reference: scores, handled and ood flags differ in length");
  DriftReference r;
  r.rows = static_cast<int64_t>(scores.size());
  if (scores.empty()) return r;
  std::vector<float> s(scores.size());
  std::transform(scores.begin(), scores.end(), s.begin(), clean);
  std::sort(s.begin(), s.end());
  const size_t points = std::min(kTablePoints, s.size());
  r.score_quantiles.resize(points);
  for (size_t i = 0; i < points; ++i)
    r.score_quantiles[i] = points == 1 ? s[0] : s[i * (s.size() - 1) / (points - 1)];
  r.handled_share = double(std::count(handled.begin(), handled.end(), 1)) / scores.size();
  r.ood_share = double(std::count(ood.begin(), ood.end(), 1)) / scores.size();
  return r;
}

nlohmann::json DriftReference::to_json() const {
  return {{"statistic", "stage-1 acceptor score"},
          {"rows", rows},
          {"handled_share", handled_share},
          {"ood_share", ood_share},
          {"score_quantiles", score_quantiles}};
}

DriftReference DriftReference::from_json(const nlohmann::json& j) {
  DriftReference r;
  try {
    if (!j.is_object()) return r;
    auto q = j.at("score_quantiles").get<std::vector<float>>();
    if (q.empty() || !std::is_sorted(q.begin(), q.end())) return r;
    for (float v : q)
      if (!std::isfinite(v)) return r;
    r.rows = j.at("rows").get<int64_t>();
    r.handled_share = j.value("handled_share", 0.0);
    r.ood_share = j.value("ood_share", 0.0);
    r.score_quantiles = std::move(q);
  } catch (const nlohmann::json::exception&) {
    return DriftReference{};
  }
  return r;
}

DriftReference DriftReference::from_manifest(const nlohmann::json& manifest) {
  if (!manifest.is_object()) return DriftReference{};
  auto it = manifest.find("drift");
  return it == manifest.end() ? DriftReference{} : from_json(*it);
}

double DriftReference::cdf(double x) const {
  const auto& q = score_quantiles;
  if (q.empty()) return 0;
  if (x < q.front()) return 0;
  if (x >= q.back()) return 1;
  // q[i] is the i/(P-1) quantile: the share <= x is the position of the last q[i] <= x,
  // interpolated towards the next point.
  const size_t hi = std::upper_bound(q.begin(), q.end(), static_cast<float>(x)) - q.begin();
  const size_t lo = hi - 1;
  const double span = double(q[hi]) - q[lo];
  const double frac = span > 0 ? (x - q[lo]) / span : 0;
  return (lo + frac) / double(q.size() - 1);
}

double DriftReference::cdf_upper(double x) const {
  const auto& q = score_quantiles;
  if (q.empty() || x >= q.back()) return q.empty() ? 0 : 1;
  // Every calibrate score <= x lies below the first table point above x, q[hi], whose rank in
  // the sorted calibrate scores is at most hi / (P - 1) of them.
  const size_t hi = std::upper_bound(q.begin(), q.end(), static_cast<float>(x)) - q.begin();
  return static_cast<double>(hi) / static_cast<double>(q.size() - 1);
}

DriftReport compare_drift(const DriftReference& ref, std::span<const float> scores, size_t handled,
                          size_t ood, const DriftOptions& options) {
  DriftReport r;
  r.level = options.level;
  r.rows = static_cast<int64_t>(scores.size());
  r.reference_handled_share = ref.handled_share;
  r.reference_ood_share = ref.ood_share;
  if (!scores.empty()) {
    r.live_handled_share = double(handled) / scores.size();
    r.live_ood_share = double(ood) / scores.size();
  }
  if (ref.empty()) {
    r.message = "no drift reference in this policy's manifest (refit to get one)";
    return r;
  }
  r.reference_median = ref.score_quantiles[ref.score_quantiles.size() / 2];
  if (scores.size() < std::max<size_t>(1, options.min_rows)) {
    r.message = fmt::format("collecting: {} of {} routed inputs needed for a drift check",
                            scores.size(), std::max<size_t>(1, options.min_rows));
    return r;
  }
  std::vector<float> s(scores.begin(), scores.end());
  for (float& v : s) v = clean(v);
  std::sort(s.begin(), s.end());
  r.live_median = s[s.size() / 2];
  const double n = static_cast<double>(s.size());
  double d = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    // F_live just after s[i] (ties: after the last equal value) minus F_ref at s[i].
    if (i + 1 < s.size() && s[i + 1] == s[i]) continue;
    d = std::max(d, (i + 1) / n - ref.cdf_upper(s[i]));
  }
  const double m = static_cast<double>(ref.rows);
  r.available = true;
  r.ks = d;
  r.p_value = std::min(1.0, std::exp(-2 * d * d * n * m / (n + m)));
  r.drift = r.p_value < options.level;
  if (r.drift)
    r.message = fmt::format(
        "drift: live inputs score lower than the calibrate split (KS D = {:.3f}, p = {:.1e}; "
        "handled {:.1f}% vs {:.1f}% certified). Agreement on handled traffic is likely below "
        "the target: audit it (--audit-share) and refit on recent traces",
        d, r.p_value, 100 * r.live_handled_share, 100 * ref.handled_share);
  else
    r.message = fmt::format(
        "no drift: live scores are consistent with the calibrate split (KS D = {:.3f}, "
        "p = {:.2g})",
        d, r.p_value);
  return r;
}

nlohmann::json DriftReport::to_json() const {
  return {{"available", available},
          {"rows", rows},
          {"ks", ks},
          {"p_value", p_value},
          {"level", level},
          {"drift", drift},
          {"live_handled_share", live_handled_share},
          {"reference_handled_share", reference_handled_share},
          {"live_ood_share", live_ood_share},
          {"reference_ood_share", reference_ood_share},
          {"live_median_score", live_median},
          {"reference_median_score", reference_median},
          {"looks", looks},
          {"look_level", look_level},
          {"rows_seen", rows_seen},
          {"next_look_rows", next_look_rows},
          {"detected_at_look", detected_at_look},
          {"detected_at_rows", detected_at_rows},
          {"message", message}};
}

}  // namespace tracer
