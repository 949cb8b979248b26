#pragma once
// The shadow audit: a small random share of handled traffic is also answered by the LLM, and
// the live agreement of the surrogate with it is tracked. When the agreement is shown to be
// below the policy's target α, the monitor trips and the server defers everything (fail safe)
// until a new policy is loaded.
//
// The test is anytime-valid: it looks at the audited rows at fixed counts n_0 = min_rows,
// n_{j+1} = max(n_j + 1, ceil(1.25 n_j)), and look j spends δ / ((j + 1)(j + 2)) of the error
// budget (these sum to δ). Hence, if the true agreement on handled traffic is at least α, the
// monitor trips with probability at most δ over its whole life, however long it runs. Looking
// at geometrically spaced counts rather than after every row spends far less of δ per look: at
// 3,000 audited rows the bound is taken at about 3.6 standard errors instead of 5, so about half
// as many labels detect the same shortfall, at the cost of waiting up to 25% more rows.
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
  // One-sided Clopper–Pearson upper bound on the agreement at `confidence`, as tested at the
  // last look (`checked_rows` rows; 1 before the first look); the monitor trips when it falls
  // below alpha. The next look is at `next_check_rows`.
  double upper_bound = 1;
  double confidence = 0;
  int64_t checked_rows = 0;
  int64_t next_check_rows = 0;
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

  // Rows at look j (j >= 0): min_rows, then growing by 25% (at least 1) per look.
  static int64_t look_rows(int look, int min_rows);
  // The one-sided confidence of look j: 1 - δ / ((j + 1)(j + 2)).
  static double look_confidence(int look, double delta);

 private:
  double alpha_, delta_;
  AuditOptions opt_;
  std::atomic<uint64_t> requests_{0};
  std::atomic<bool> tripped_{false};
  mutable std::mutex mu_;  // guards the fields below
  int n_ = 0, k_ = 0;
  int tripped_at_ = 0;
  int next_look_ = 0;            // index of the next look
  int64_t next_look_rows_ = 0;   // rows at which it happens
  int last_look_ = -1;           // index of the last look taken (-1: none yet)
  int last_n_ = 0, last_k_ = 0;  // counts at that look
  // The bound is a bisection (milliseconds): computed when state() asks, cached per look.
  mutable int bound_look_ = -2;
  mutable double upper_ = 1, confidence_ = 0;
};

}  // namespace tracer
