#pragma once
// The shadow audit: a small random share of handled traffic is also answered by the LLM, and
// the live agreement of the surrogate with it is tracked. When the agreement is shown to be
// below the policy's target α, the monitor trips and the server defers everything (fail safe)
// until a new policy is loaded.
//
// The test is anytime-valid: the bound is looked at after every audited row, so each look n
// (n >= min_rows) spends δ·m / (n (n + 1)) of the error budget (m = min_rows; these sum to δ).
// Hence, if the true agreement on handled traffic is at least α, the monitor trips with
// probability at most δ over its whole life, however long it runs.
#include <atomic>
#include <cstdint>
#include <mutex>

namespace tracer {

struct AuditOptions {
  double share = 0;   // fraction of handled requests to audit, in [0, 1]; 0 = off
  int min_rows = 50;  // audited rows before the monitor may trip
  uint64_t seed = 0;  // of the audit sample (deterministic for a given request order)
};

struct AuditState {
  double alpha = 0, delta = 0;  // the policy's target and risk
  double share = 0;
  int min_rows = 0;
  int64_t rows = 0;      // n: audited handled requests with an LLM label
  int64_t agreed = 0;    // k: of them, where the surrogate's label was the LLM's
  double agreement = 0;  // k / n (0 when n == 0)
  // One-sided Clopper–Pearson upper bound on the agreement at `confidence`, the level of the
  // look at max(n, min_rows) rows; the monitor trips when it falls below alpha.
  double upper_bound = 1;
  double confidence = 0;
  bool tripped = false;
  int64_t tripped_at_rows = 0;  // n when it tripped (0: not tripped)
};

class AuditMonitor {
 public:
  // alpha: the policy's target agreement, delta: its risk (both from manifest.json).
  // Throws InputError on values outside (0, 1) or bad options.
  AuditMonitor(double alpha, double delta, AuditOptions options = {});
  AuditMonitor(const AuditMonitor&) = delete;
  AuditMonitor& operator=(const AuditMonitor&) = delete;

  // Whether the next handled request should be audited: a hash of (seed, request number), so
  // the sample is uniform over handled traffic and independent of what the requests say.
  bool should_audit();
  // Records one audited row; returns tripped() after it. Rows keep being counted once tripped.
  bool record(bool agreed);
  bool tripped() const { return tripped_.load(std::memory_order_acquire); }
  AuditState state() const;

  // The one-sided confidence of the look at n rows: 1 - δ·m / (n (n + 1)), m = min_rows.
  static double look_confidence(int64_t n, int min_rows, double delta);

 private:
  double alpha_, delta_;
  AuditOptions opt_;
  std::atomic<uint64_t> requests_{0};
  std::atomic<bool> tripped_{false};
  mutable std::mutex mu_;  // guards the fields below
  int n_ = 0, k_ = 0;
  int tripped_at_ = 0;
  // The bound is a bisection (milliseconds): computed when state() asks, cached per n.
  mutable int bound_n_ = -1;
  mutable double upper_ = 1, confidence_ = 0;
};

}  // namespace tracer
