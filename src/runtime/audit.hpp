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
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>

namespace tracer {

struct AuditOptions {
  double share = 0;   // fraction of handled requests to audit, in [0, 1]; 0 = off
  int min_rows = 50;  // audited rows before the monitor may trip
  uint64_t seed = 0;  // of the audit sample (deterministic for a given request order)
};

// Where an audited row came from. Shadow rows are a uniform random sample of handled traffic
// (the premise of the guarantee); feedback rows are texts a client chose to send to
// POST /v1/audit, as honest as the client's sample. Both are recorded; they are counted apart.
enum class AuditSource : int { kShadow = 0, kFeedback = 1 };

// Everything needed to resume a monitor where it stopped (persisted beside the policy).
struct AuditSnapshot {
  int64_t rows = 0, agreed = 0;
  int next_look = 0;  // index of the next look
  int last_look = -1;
  int64_t last_rows = 0, last_agreed = 0;  // counts at the last look
  bool tripped = false;
  int64_t tripped_at_rows = 0;
  int64_t shadow_rows = 0, feedback_rows = 0, unusable = 0, dropped = 0;
  nlohmann::json to_json() const;
  // Throws InputError naming the field when a value is missing, of the wrong type or
  // inconsistent (agreed > rows, a look count that the schedule cannot reach, ...).
  static AuditSnapshot from_json(const nlohmann::json& j, int min_rows);
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
  int64_t checked_agreed = 0;  // k at that look
  int64_t next_check_rows = 0;
  bool tripped = false;
  int64_t tripped_at_rows = 0;  // n when it tripped (0: not tripped)
  int64_t shadow_rows = 0;      // of rows: sampled from handled traffic by the proxy
  int64_t feedback_rows = 0;    // of rows: sent by clients to POST /v1/audit
  int64_t unusable = 0;         // shadow audits whose LLM answer held no label (not in rows)
  int64_t dropped = 0;        // shadow audits never sent: the queue was full or the server stopped
  int64_t restored_rows = 0;  // rows resumed from a saved state when the monitor started
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
  bool record(bool agreed, AuditSource source = AuditSource::kShadow);
  // Shadow audits that produced no row: counted so that /v1/audit shows what the sample lost.
  void count_unusable(int64_t n = 1);
  void count_dropped(int64_t n = 1);

  // Called (under the monitor's lock, so keep it short) with the state after every look,
  // including the one that trips: the server persists it there.
  void on_look(std::function<void(const AuditSnapshot&)> sink);
  AuditSnapshot snapshot() const;
  // Resumes from a snapshot taken by a monitor with the same alpha, delta and min_rows; only
  // before any row is recorded. Throws InputError otherwise.
  void restore(const AuditSnapshot& s);
  bool tripped() const { return tripped_.load(std::memory_order_acquire); }
  AuditState state() const;

  // Rows at look j (j >= 0): min_rows, then growing by 25% (at least 1) per look.
  static int64_t look_rows(int look, int min_rows);
  // The one-sided confidence of look j: 1 - δ / ((j + 1)(j + 2)).
  static double look_confidence(int look, double delta);

 private:
  AuditSnapshot snapshot_locked() const;

  double alpha_, delta_;
  AuditOptions opt_;
  std::atomic<uint64_t> requests_{0};
  std::atomic<bool> tripped_{false};
  mutable std::mutex mu_;  // guards the fields below
  int n_ = 0, k_ = 0;
  int tripped_at_ = 0;
  int64_t by_source_[2] = {0, 0};
  int64_t unusable_ = 0, dropped_ = 0, restored_ = 0;
  std::function<void(const AuditSnapshot&)> sink_;
  int next_look_ = 0;            // index of the next look
  int64_t next_look_rows_ = 0;   // rows at which it happens
  int last_look_ = -1;           // index of the last look taken (-1: none yet)
  int last_n_ = 0, last_k_ = 0;  // counts at that look
  // The bound is a bisection (milliseconds): computed when state() asks, cached per look.
  mutable int bound_look_ = -2;
  mutable double upper_ = 1, confidence_ = 0;
};

}  // namespace tracer
