#include "runtime/audit.hpp"

#include <algorithm>
#include <climits>
#include <cmath>
#include <string>

#include "gate/bounds.hpp"
#include "util/error.hpp"

namespace tracer {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

AuditMonitor::AuditMonitor(double alpha, double delta, AuditOptions options)
    : alpha_(alpha), delta_(delta), opt_(options) {
  if (!(alpha > 0 && alpha < 1))
    throw InputError(
        "the audit needs the policy's target agreement strictly between 0 and 1, "
        "got " +
        std::to_string(alpha) + "; refit the policy with `tracer fit --target`");
  if (!(delta > 0 && delta < 1))
    throw InputError("the audit needs the policy's delta strictly between 0 and 1, got " +
                     std::to_string(delta) + "; refit the policy with `tracer fit --delta`");
  if (!(opt_.share >= 0 && opt_.share <= 1))
    throw InputError(
        "--audit-share must be between 0 and 1 (e.g. 0.02 audits 2% of handled "
        "requests), got " +
        std::to_string(opt_.share));
  if (opt_.min_rows < 1)
    throw InputError("--audit-min-rows must be >= 1, got " + std::to_string(opt_.min_rows));
  next_look_rows_ = look_rows(0, opt_.min_rows);
}

namespace {

// The look after one at n rows: 25% more rows, at least one more.
int64_t next_look(int64_t n) {
  return std::max<int64_t>(n + 1, static_cast<int64_t>(std::ceil(1.25 * static_cast<double>(n))));
}

}  // namespace

int64_t AuditMonitor::look_rows(int look, int min_rows) {
  int64_t n = std::max(min_rows, 1);
  for (int j = 0; j < look && n < INT_MAX; ++j) n = next_look(n);
  return std::min<int64_t>(n, INT_MAX);
}

double AuditMonitor::look_confidence(int look, double delta) {
  const double j = std::max(look, 0);
  return 1 - delta / ((j + 1) * (j + 2));
}

bool AuditMonitor::should_audit() {
  if (opt_.share <= 0) return false;
  uint64_t i = requests_.fetch_add(1, std::memory_order_relaxed);
  // 53 random bits as a uniform double in [0, 1).
  double u = static_cast<double>(splitmix64(opt_.seed ^ splitmix64(i)) >> 11) * 0x1.0p-53;
  return u < opt_.share;
}

bool AuditMonitor::record(bool agreed) {
  std::lock_guard<std::mutex> lock(mu_);
  if (n_ == INT_MAX) return tripped();  // the bounds count in int; billions of rows say enough
  ++n_;
  k_ += agreed ? 1 : 0;
  if (tripped() || n_ != next_look_rows_) return tripped();
  const int look = next_look_++;
  next_look_rows_ = std::min<int64_t>(next_look(n_), INT_MAX);
  last_look_ = look;
  last_n_ = n_;
  last_k_ = k_;
  // The bound can only be below alpha when the live agreement is: skip the arithmetic otherwise.
  if (static_cast<double>(k_) >= alpha_ * n_) return false;
  // CP upper(n, k, c) < alpha  <=>  P(Bin(n, alpha) <= k) < 1 - c, one tail instead of a
  // bisection; P(X <= k) under alpha is P(n - X >= n - k) under 1 - alpha.
  double p_value = binomial_upper_tail(n_, n_ - k_, 1 - alpha_);
  if (p_value < 1 - look_confidence(look, delta_)) {
    tripped_at_ = n_;
    tripped_.store(true, std::memory_order_release);
  }
  return tripped();
}

AuditState AuditMonitor::state() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (bound_look_ != last_look_) {
    confidence_ = look_confidence(std::max(last_look_, 0), delta_);
    upper_ = last_look_ < 0 ? 1 : clopper_pearson_upper(last_n_, last_k_, confidence_);
    bound_look_ = last_look_;
  }
  AuditState s;
  s.alpha = alpha_;
  s.delta = delta_;
  s.share = opt_.share;
  s.min_rows = opt_.min_rows;
  s.rows = n_;
  s.agreed = k_;
  s.agreement = n_ > 0 ? static_cast<double>(k_) / n_ : 0;
  s.upper_bound = upper_;
  s.confidence = confidence_;
  s.checked_rows = last_look_ < 0 ? 0 : last_n_;
  s.next_check_rows = next_look_rows_;
  s.tripped = tripped();
  s.tripped_at_rows = tripped_at_;
  return s;
}

}  // namespace tracer
