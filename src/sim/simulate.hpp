#pragma once
// `tracer simulate`: the flywheel replayed offline. A labelled trace file stands for the LLM:
// its texts are the traffic (shuffled, seeded), its labels the LLM's answers. Day 0 fits on the
// first K traces; every later day the active policy routes that day's traffic, the requests it
// defers (and the audited ones) get the file's label and become recorded traces, exactly as
// `tracer serve --upstream --audit-share` records them, and an update at the end of the day
// refits and promotes by the rule of `tracer update` (policy/versions.hpp). docs/simulate.md.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "fit/fitter.hpp"
#include "io/traces.hpp"
#include "policy/versions.hpp"
#include "util/progress.hpp"

namespace tracer {

struct SimulationOptions {
  int days = 10;              // days of traffic after the seed, >= 1
  size_t seed_traces = 500;   // K: traces of the day-0 fit (the first K of the shuffled file)
  double audit_share = 0.05;  // shadow-audit share of handled requests, in [0, 1]
  int audit_min_rows = 50;    // audited rows before the audit may trip
  uint64_t seed = 42;         // shuffle, audit coin, label flip
  FitOptions fit;             // target, delta, zoo, ... of every fit
  PromotionRule promotion{PromotionRule::Mode::kAuto, 0.0};  // as `tracer update`
  int window_days = 0;    // refit on the last W days of traces only (0: all)
  // Once the audit trips on day D, refit on the traces recorded from day D on only (as an
  // operator runs `tracer update --window` after a trip): the older labels may be stale.
  bool window_after_trip = false;
  size_t max_traces = 0;  // cap on traces per fit (0: none)
  // Label-flip stress test: from day flip_day on, the LLM answers flip_labels labels (chosen at
  // random, seeded) differently: each as the next of them, in a cycle. 0: no flip.
  int flip_labels = 0;
  int flip_day = 0;
};

struct SimulatedDay {
  int day = 0;
  int served_by = 0;           // the version active during the day (0: none: all deferred)
  size_t traces_before = 0;    // traces recorded so far (seed included) when the day starts
  size_t traffic = 0;          // requests that day
  size_t handled = 0;          // answered by the policy (surrogate or memory)
  size_t agreed = 0;           // of those, equal to the LLM's label
  size_t audited = 0;          // handled and also sent to the LLM (shadow audit)
  size_t deferred = 0;         // sent to the LLM
  bool audit_tripped = false;  // the audit tripped during the day (the rest was deferred)
  // The update at the end of the day.
  int version = 0;  // written
  bool certified = false;
  double version_share = 0;  // its handled share (memory + gate coverage, on calibrate)
  bool promoted = false;
  std::string reason;  // why promoted or kept
  size_t fit_traces = 0;
  double fit_seconds = 0;

  double coverage() const { return traffic ? double(handled) / double(traffic) : 0; }
  double agreement() const { return handled ? double(agreed) / double(handled) : 1; }
  size_t llm_calls() const { return deferred + audited; }
};

struct SimulationResult {
  std::vector<SimulatedDay> days;  // day 0 is the seed fit (no traffic)
  std::vector<std::string> flipped_labels;
  double target = 0;
  nlohmann::json to_json(const SimulationOptions& o) const;
};

// Throws InputError on options out of range, or when the file has too few traces for the seed
// and the days.
// `on_day`, when given, is called as each day ends (day 0: the seed fit), for live output.
SimulationResult simulate(const TraceSet& data, const SimulationOptions& options,
                          Progress& progress,
                          const std::function<void(const SimulatedDay&)>& on_day = {});

}  // namespace tracer
