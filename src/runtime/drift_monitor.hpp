#pragma once
// The server's drift check over an endless stream: repeated one-sided KS tests (drift.hpp) of
// the stage-1 acceptor scores of routed inputs against the calibrate split's.
//
// Looks and their levels. Routed inputs are cut into consecutive blocks: the first holds
// `min_rows` inputs, every later one `window`. A look tests one complete block that no look has
// tested before, so no input is tested twice. Look k (k = 0, 1, ...) is tested at level
// level / ((k + 1)(k + 2)); these sum to `level`. By the union bound, when live traffic has the
// calibrate split's distribution, the probability that the monitor ever reports drift is at most
// `level`, however long it runs and however often it is asked (up to the accuracy of the
// asymptotic KS p-value; docs/serve.md has the false alarms measured on a 2-million-request
// stream). The price: later looks need a larger D. With 2,000-input blocks against 2,000
// calibrate rows at level 0.01, the first look reports D >= 0.05, the 1,000th D >= 0.10.
//
// Which block a look tests depends only on when it is asked (poll), never on the scores, and a
// block skipped because no one asked while it was the newest is simply never tested: that keeps
// the bound. Once a look reports drift the report stays drifted (like a tripped audit) for the
// life of the monitor; later looks still update the numbers shown.
#include <atomic>
#include <cstdint>
#include <mutex>
#include <vector>

#include "runtime/drift.hpp"

namespace tracer {

class DriftMonitor {
 public:
  // Throws InputError unless window >= 1, 1 <= min_rows <= window and 0 < level < 1.
  DriftMonitor(DriftReference ref, DriftOptions options);
  DriftMonitor(const DriftMonitor&) = delete;
  DriftMonitor& operator=(const DriftMonitor&) = delete;

  // Records one routed input: one relaxed atomic add and one atomic store, no lock (every
  // request thread calls it).
  void record(float stage1_score, bool handled, bool ood);
  void record(const RouteResult& r) {
    if (r.stage == 0) return;  // answered from memory: not scored (see DriftSample::add)
    record(r.stage1_score, r.handled, r.reason == DeferReason::kOutOfDistribution);
  }
  // Takes a look when a block completed since the last look (sorting one block: O(window log
  // window)), then reports. Cheap otherwise (a lock and a few loads). Thread-safe.
  DriftReport poll();

  // Level of look k (0-based): level / ((k + 1)(k + 2)).
  static double look_level(int64_t look, double level);
  // First row and end of block b: [0, min_rows), then `window` rows each.
  static int64_t block_begin(int64_t b, const DriftOptions& o);
  static int64_t block_end(int64_t b, const DriftOptions& o) { return block_begin(b + 1, o); }

 private:
  // A slot packs one input: score bits (32) | tag of its row (30) | handled | ood.
  static uint64_t pack(uint64_t row, float score, bool handled, bool ood);
  bool read_block(int64_t b, std::vector<float>& scores, size_t& handled, size_t& ood) const;
  DriftReport status() const;

  DriftReference ref_;
  DriftOptions opt_;
  std::vector<std::atomic<uint64_t>> ring_;  // 2 * window slots: the newest complete block
                                             // stays intact while the next one fills
  std::atomic<uint64_t> next_{0};            // rows claimed so far
  mutable std::mutex mu_;                    // guards the fields below (poll)
  int64_t last_block_ = -1;                  // newest block tested
  DriftReport last_;                         // the last look's test (rows, ks, p, shares)
  int64_t looks_ = 0;
  double last_look_level_ = 0;
  int64_t detected_at_look_ = 0, detected_at_rows_ = 0;
  DriftReport detected_;  // the look that found drift
};

}  // namespace tracer
