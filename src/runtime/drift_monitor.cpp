#include "runtime/drift_monitor.hpp"

#include <fmt/format.h>

#include <bit>
#include <limits>

#include "util/error.hpp"

namespace tracer {
namespace {

constexpr uint64_t kTagBits = 30, kTagMask = (uint64_t{1} << kTagBits) - 1;
constexpr uint64_t kHandled = 1, kOod = 2;

// The tag of row i: i + 1 modulo 2^30 (0 marks a slot never written). A stale slot could carry
// the same tag only if a writer stalled for a billion rows.
uint64_t tag_of(uint64_t row) {
  uint64_t t = (row + 1) & kTagMask;
  return t == 0 ? 1 : t;
}

}  // namespace

DriftMonitor::DriftMonitor(DriftReference ref, DriftOptions options)
    : ref_(std::move(ref)), opt_(options) {
  if (!(opt_.level > 0 && opt_.level < 1))
    throw InputError(
        fmt::format("the drift level must be strictly between 0 and 1 (got {})", opt_.level));
  if (opt_.window < 1 || opt_.window > (std::numeric_limits<uint32_t>::max() >> 4))
    throw InputError("the drift window must hold between 1 and 268,435,455 routed inputs");
  if (opt_.min_rows < 1 || opt_.min_rows > opt_.window)
    throw InputError(fmt::format(
        "the drift check's first look needs between 1 and --drift-window ({}) routed inputs "
        "(got {})",
        opt_.window, opt_.min_rows));
  ring_ = std::vector<std::atomic<uint64_t>>(2 * opt_.window);
}

double DriftMonitor::look_level(int64_t look, double level) {
  const double k = static_cast<double>(std::max<int64_t>(look, 0));
  return level / ((k + 1) * (k + 2));
}

int64_t DriftMonitor::block_begin(int64_t b, const DriftOptions& o) {
  if (b <= 0) return 0;
  return static_cast<int64_t>(o.min_rows) + (b - 1) * static_cast<int64_t>(o.window);
}

uint64_t DriftMonitor::pack(uint64_t row, float score, bool handled, bool ood) {
  return uint64_t{std::bit_cast<uint32_t>(score)} << 32 | tag_of(row) << 2 |
         (handled ? kHandled : 0) | (ood ? kOod : 0);
}

void DriftMonitor::record(float stage1_score, bool handled, bool ood) {
  const uint64_t row = next_.fetch_add(1, std::memory_order_relaxed);
  ring_[row % ring_.size()].store(pack(row, stage1_score, handled, ood), std::memory_order_release);
}

// Copies block b out of the ring; false when one of its rows is not written yet or was already
// overwritten (the look is then tried again at the next poll, or the block is skipped).
bool DriftMonitor::read_block(int64_t b, std::vector<float>& scores, size_t& handled,
                              size_t& ood) const {
  const uint64_t begin = block_begin(b, opt_), end = block_end(b, opt_);
  scores.clear();
  handled = ood = 0;
  for (uint64_t row = begin; row < end; ++row) {
    const uint64_t v = ring_[row % ring_.size()].load(std::memory_order_acquire);
    if (((v >> 2) & kTagMask) != tag_of(row)) return false;
    scores.push_back(std::bit_cast<float>(static_cast<uint32_t>(v >> 32)));
    handled += (v & kHandled) != 0;
    ood += (v & kOod) != 0;
  }
  // A writer that claimed a row of the next lap may have stored over a slot after we read it.
  return next_.load(std::memory_order_acquire) <= begin + ring_.size();
}

DriftReport DriftMonitor::poll() {
  std::lock_guard lock(mu_);
  const int64_t seen = static_cast<int64_t>(next_.load(std::memory_order_acquire));
  if (ref_.empty() || seen < static_cast<int64_t>(opt_.min_rows)) return status();
  // The newest complete block: block_end(b) <= seen.
  const int64_t newest =
      (seen - static_cast<int64_t>(opt_.min_rows)) / static_cast<int64_t>(opt_.window);
  if (newest <= last_block_) return status();
  std::vector<float> scores;
  size_t handled = 0, ood = 0;
  if (!read_block(newest, scores, handled, ood)) return status();
  DriftOptions single = opt_;
  single.window = 0;
  single.min_rows = 1;
  single.level = look_level(looks_, opt_.level);
  last_ = compare_drift(ref_, scores, handled, ood, single);
  last_block_ = newest;
  last_look_level_ = single.level;
  ++looks_;
  if (last_.drift && detected_at_look_ == 0) {
    detected_at_look_ = looks_;
    detected_at_rows_ = block_end(newest, opt_);
    detected_ = last_;
  }
  return status();
}

DriftReport DriftMonitor::status() const {
  DriftReport r = looks_ > 0 ? last_ : DriftReport{};
  r.level = opt_.level;
  r.looks = looks_;
  r.look_level = last_look_level_;
  r.rows_seen = static_cast<int64_t>(next_.load(std::memory_order_relaxed));
  r.reference_handled_share = ref_.handled_share;
  r.reference_ood_share = ref_.ood_share;
  if (!ref_.empty()) r.reference_median = ref_.score_quantiles[ref_.score_quantiles.size() / 2];
  r.next_look_rows = block_end(last_block_ + 1, opt_);
  r.detected_at_look = detected_at_look_;
  r.detected_at_rows = detected_at_rows_;
  if (ref_.empty()) {
    r.message = "no drift reference in this policy's manifest (refit to get one)";
    return r;
  }
  if (looks_ == 0) {
    r.message = fmt::format("collecting: {} of {} routed inputs needed for the first drift look",
                            std::min<int64_t>(r.rows_seen, opt_.min_rows), opt_.min_rows);
    return r;
  }
  r.available = true;
  if (detected_at_look_ > 0) {
    r.drift = true;
    r.message = fmt::format(
        "drift since look {} (the {} routed inputs up to input {}): live inputs score lower than "
        "the calibrate split (KS D = {:.3f}, p = {:.1e} < {:.1e}; handled {:.1f}% vs {:.1f}% "
        "certified). Agreement on handled traffic is likely below the target: audit it "
        "(--audit-share) and refit on recent traces",
        detected_at_look_, detected_.rows, detected_at_rows_, detected_.ks, detected_.p_value,
        detected_.level, 100 * detected_.live_handled_share, 100 * ref_.handled_share);
  } else {
    r.message = fmt::format(
        "no drift in {} look{}: live scores are consistent with the calibrate split (last look: "
        "KS D = {:.3f} on {} inputs, p = {:.2g}, tested at {:.1e})",
        looks_, looks_ == 1 ? "" : "s", last_.ks, last_.rows, last_.p_value, last_look_level_);
  }
  return r;
}

}  // namespace tracer
