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

bool AuditMonitor::record(bool agreed, AuditSource source) {
  std::lock_guard<std::mutex> lock(mu_);
  if (n_ == INT_MAX) return tripped();  // the bounds count in int; billions of rows say enough
  ++n_;
  k_ += agreed ? 1 : 0;
  ++by_source_[static_cast<int>(source)];
  if (tripped() || n_ != next_look_rows_) return tripped();
  const int look = next_look_++;
  next_look_rows_ = std::min<int64_t>(next_look(n_), INT_MAX);
  last_look_ = look;
  last_n_ = n_;
  last_k_ = k_;
  // The bound can only be below alpha when the live agreement is: skip the arithmetic otherwise.
  // CP upper(n, k, c) < alpha  <=>  P(Bin(n, alpha) <= k) < 1 - c, one tail instead of a
  // bisection; P(X <= k) under alpha is P(n - X >= n - k) under 1 - alpha.
  if (static_cast<double>(k_) < alpha_ * n_ &&
      binomial_upper_tail(n_, n_ - k_, 1 - alpha_) < 1 - look_confidence(look, delta_)) {
    tripped_at_ = n_;
    tripped_.store(true, std::memory_order_release);
  }
  if (sink_) sink_(snapshot_locked());
  return tripped();
}

void AuditMonitor::count_unusable(int64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  unusable_ += n;
}

void AuditMonitor::count_dropped(int64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  dropped_ += n;
}

void AuditMonitor::on_look(std::function<void(const AuditSnapshot&)> sink) {
  std::lock_guard<std::mutex> lock(mu_);
  sink_ = std::move(sink);
}

AuditSnapshot AuditMonitor::snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return snapshot_locked();
}

AuditSnapshot AuditMonitor::snapshot_locked() const {
  AuditSnapshot s;
  s.rows = n_;
  s.agreed = k_;
  s.next_look = next_look_;
  s.last_look = last_look_;
  s.last_rows = last_n_;
  s.last_agreed = last_k_;
  s.tripped = tripped();
  s.tripped_at_rows = tripped_at_;
  s.shadow_rows = by_source_[0];
  s.feedback_rows = by_source_[1];
  s.unusable = unusable_;
  s.dropped = dropped_;
  return s;
}

void AuditMonitor::restore(const AuditSnapshot& s) {
  std::lock_guard<std::mutex> lock(mu_);
  if (n_ != 0 || tripped())
    throw InputError("an audit state can only be restored before any row is recorded");
  // from_json checked the counts against the look schedule of this min_rows.
  n_ = static_cast<int>(s.rows);
  k_ = static_cast<int>(s.agreed);
  next_look_ = s.next_look;
  next_look_rows_ = look_rows(s.next_look, opt_.min_rows);
  last_look_ = s.last_look;
  last_n_ = static_cast<int>(s.last_rows);
  last_k_ = static_cast<int>(s.last_agreed);
  tripped_at_ = static_cast<int>(s.tripped_at_rows);
  by_source_[0] = s.shadow_rows;
  by_source_[1] = s.feedback_rows;
  unusable_ = s.unusable;
  dropped_ = s.dropped;
  restored_ = s.rows;
  bound_look_ = -2;
  tripped_.store(s.tripped, std::memory_order_release);
}

nlohmann::json AuditSnapshot::to_json() const {
  return {{"rows", rows},
          {"agreed", agreed},
          {"next_look", next_look},
          {"last_look", last_look},
          {"last_rows", last_rows},
          {"last_agreed", last_agreed},
          {"tripped", tripped},
          {"tripped_at_rows", tripped_at_rows},
          {"shadow_rows", shadow_rows},
          {"feedback_rows", feedback_rows},
          {"unusable", unusable},
          {"dropped", dropped}};
}

AuditSnapshot AuditSnapshot::from_json(const nlohmann::json& j, int min_rows) {
  if (!j.is_object()) throw InputError("the audit state is not a JSON object");
  auto count = [&j](const char* key, int64_t lo, int64_t hi) -> int64_t {
    auto it = j.find(key);
    if (it == j.end() || !it->is_number_integer())
      throw InputError(std::string("the audit state has no integer \"") + key + "\"");
    if (it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
      throw InputError(std::string("the audit state's \"") + key + "\" is " +
                       std::to_string(it->get<uint64_t>()) + ", out of range");
    const int64_t v = it->get<int64_t>();
    if (v < lo || v > hi)
      throw InputError(std::string("the audit state's \"") + key + "\" is " + std::to_string(v) +
                       ", outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return v;
  };
  AuditSnapshot s;
  s.rows = count("rows", 0, INT_MAX);
  s.agreed = count("agreed", 0, s.rows);
  s.next_look = static_cast<int>(count("next_look", 0, 10000));
  s.last_look = static_cast<int>(count("last_look", -1, s.next_look - 1));
  s.last_rows = count("last_rows", 0, s.rows);
  s.last_agreed = count("last_agreed", 0, s.last_rows);
  auto tripped = j.find("tripped");
  if (tripped == j.end() || !tripped->is_boolean())
    throw InputError("the audit state has no boolean \"tripped\"");
  s.tripped = tripped->get<bool>();
  s.tripped_at_rows = count("tripped_at_rows", 0, s.rows);
  s.shadow_rows = count("shadow_rows", 0, s.rows);
  s.feedback_rows = count("feedback_rows", 0, s.rows);
  s.unusable = count("unusable", 0, INT64_MAX);
  s.dropped = count("dropped", 0, INT64_MAX);
  // The counts must sit on the look schedule of this min_rows: looks 0 .. next_look - 1 taken,
  // the last at last_rows rows, and the next one still ahead.
  const bool looks_fit =
      s.last_look == s.next_look - 1 &&
      (s.last_look < 0 ? s.last_rows == 0
                       : s.last_rows == AuditMonitor::look_rows(s.last_look, min_rows)) &&
      (s.tripped || s.rows < AuditMonitor::look_rows(s.next_look, min_rows)) &&
      s.shadow_rows + s.feedback_rows == s.rows && s.tripped == (s.tripped_at_rows > 0) &&
      (!s.tripped || s.tripped_at_rows == s.last_rows);
  if (!looks_fit)
    throw InputError("the audit state's counts do not fit the look schedule of --audit-min-rows " +
                     std::to_string(min_rows));
  return s;
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
  s.checked_agreed = last_look_ < 0 ? 0 : last_k_;
  s.next_check_rows = next_look_rows_;
  s.tripped = tripped();
  s.tripped_at_rows = tripped_at_;
  s.shadow_rows = by_source_[0];
  s.feedback_rows = by_source_[1];
  s.unusable = unusable_;
  s.dropped = dropped_;
  s.restored_rows = restored_;
  return s;
}

}  // namespace tracer
