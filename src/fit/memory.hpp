#pragma once
// The memory tier: certified answers for requests the LLM has already answered.
//
// Production traffic repeats itself. A request whose normalised text the traces already hold can
// be answered with the LLM's own (majority) label instead of a surrogate's guess; how often such
// a remembered answer agrees with a fresh LLM call is the LLM's self-consistency, which the
// traces measure. The tier is certified like the surrogate gate (docs/statistics.md, "The memory
// tier"):
//
//   1. Every trace (one logged LLM call) is put, at random (seeded), in the memory share M or the
//      held-out share H (`holdout`, default 20%). The table is built from M only: per distinct
//      input its M-majority label and an evidence score a / (n + 1) (a of its n M copies carry
//      that label), ordered by score.
//   2. A held-out trace whose input is in the table is a *hit*: under the usual assumption that
//      logged calls are draws from the traffic, H hits are independent draws of the traffic the
//      table would answer, and a hit agrees when its logged label equals the table's label.
//   3. Nested steps (entries with score >= s, strictest first, fixed from the M side and the hit
//      counts, never from H labels) are tested by fixed-sequence testing at level delta_m with
//      the one-sided Clopper–Pearson bound: the loosest step whose bound is >= alpha, with every
//      stricter step passing too, is served.
//
// With probability >= 1 - delta_m, the served entries' answers agree with a fresh LLM call on at
// least alpha of the traffic that hits them (traffic-weighted: a popular request weighs by its
// traffic). The surrogate gate is certified at delta - delta_m (union bound), so both hold at
// once with probability >= 1 - delta.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "fit/split.hpp"
#include "io/traces.hpp"

namespace tracer {

struct MemoryOptions {
  bool enabled = true;
  double holdout = 0.2;          // share of traces held out to test the table (0, 1)
  double delta_share = 0.2;      // share of the user's delta spent on the memory tier (0, 1)
  size_t max_entries = 1000000;  // size cap: the most-logged inputs are kept (ties: first seen)
};

struct MemoryStep {
  double min_score = 0;  // entries with evidence score >= this
  size_t entries = 0;    // table entries in the step
  size_t hits = 0;       // held-out traces whose input is one of them
  size_t agreed = 0;     // ... whose logged label is the entry's label
  double bound = 0;      // one-sided Clopper–Pearson lower bound of agreed / hits at 1 - delta_m
};

struct MemoryCertificate {
  // False when the traces repeat too little to test anything (decided from counts only, before
  // any held-out label is read): then no delta is spent and the surrogate gate keeps all of it.
  bool active = false;
  bool certified = false;  // a step passed: `keys`/`labels` are served
  double delta = 0;        // delta_m spent (0 when inactive)
  size_t holdout_traces = 0;
  size_t candidates = 0;          // distinct inputs with an M copy (after the size cap)
  size_t min_hits = 0;            // hits a step needs before it can pass at all
  std::vector<MemoryStep> steps;  // tested in order, strictest first
  int served_step = -1;           // index into steps, -1: none
  std::string reason;             // why the tier is inactive or refused (empty when certified)
  std::vector<uint64_t> keys;     // served inputs (known_input_key), ascending
  std::vector<int32_t> labels;    // their remembered labels
  // Share of held-out traces the served table answers: an estimate of the share of traffic
  // answered from memory.
  double hit_share() const;
  nlohmann::json to_json() const;  // manifest.json → memory (keys and labels left out)
};

// Builds and certifies the memory table of `set` (grouped as `units`). Throws InputError on
// options out of range. Deterministic for a given seed.
MemoryCertificate certify_memory(const TraceSet& set, const TraceUnits& units, double target,
                                 double delta, const MemoryOptions& options, uint64_t seed);

}  // namespace tracer
