#pragma once
// Units of evidence and the train / select / calibrate split.
//
// A unit is one distinct input after the featurizer's normalisation (docs/statistics.md,
// "Units of evidence"): copies of one request never count as independent evidence, and never
// land on two sides of the split. Calibrate is a simple random sample of units, drawn first and
// not stratified, so it is exchangeable with fresh distinct inputs by construction. The rest (the
// pool) trains the surrogates and chooses the plan, either by K-fold cross-fitting (every pool
// unit is scored once out of fold) or, with K = 1, through one held-out select share.
#include <cstdint>
#include <string>
#include <vector>

#include "features/featurizer.hpp"
#include "io/traces.hpp"

namespace tracer {

struct SplitFractions {
  double train = 0.7;
  double select = 0.15;
  double calibrate = 0.15;
};

// Throws InputError if the fractions are not positive and finite or do not sum to 1.
void validate_fractions(const SplitFractions& f);

struct TraceUnits {
  std::vector<size_t> first;  // per unit: index of its first trace in the TraceSet
  std::vector<uint32_t> copies;
  // The label the surrogates train on: the unit's most frequent teacher label (ties: the one
  // seen first).
  std::vector<int> majority;
  // The label the unit is scored on (select, calibrate): the label of one of its copies drawn
  // uniformly at random (seeded). A fresh LLM call on this input answers like a random copy, so
  // the surrogate's agreement with the drawn label has exactly the expected value of its
  // agreement with a fresh call, and the binomial test on units stays exact.
  std::vector<int> drawn;
  // Per unit: (teacher label, copies with it), in order of first appearance.
  std::vector<std::vector<std::pair<int, uint32_t>>> label_counts;
  std::vector<uint32_t> unit_of_trace;  // per trace of the TraceSet: its unit
  std::vector<uint64_t> key;            // per unit: fnv1a64 of its normalisation (known_input_key)
  std::vector<uint8_t> blank;  // per unit: 1 when its normalisation is empty (punctuation only)
  // Per trace: 1 when it stands for traffic and may certify (represents_traffic); per unit: 1
  // when any of its traces does. Calibrate and the memory tier's held-out share draw only from
  // these; the others train.
  std::vector<uint8_t> trace_represents;
  std::vector<uint8_t> unit_represents;
  size_t train_only_traces = 0;  // traces that do not stand for traffic
  size_t train_only_units = 0;   // units none of whose traces does
  size_t duplicate_traces = 0;   // traces beyond the first copy of their unit
  size_t conflicting_units = 0;  // units whose copies carry more than one teacher label
  size_t size() const { return first.size(); }
};

// Groups `set` by normalize(input). Deterministic for a given seed.
TraceUnits group_units(const TraceSet& set, const Featurizer& normalizer, uint64_t seed);

struct SplitPlan {
  double calibrate = 0.15;  // share of units
  double select = 0.15;     // share of units held out for select when folds == 1
  int folds = 1;            // 1: one select share; >= 2: K-fold cross-fitting of the pool
  bool automatic = true;    // chosen from the number of units (not given by the user)
};

// Pools of up to this many units are cross-fitted by default (K folds cost K + 1 zoo fits).
inline constexpr size_t kCrossFitMaxUnits = 4000;

// The default plan for `units` distinct inputs: small pools are cross-fitted with 5 folds and
// give calibrate 30%; larger ones hold out select 15% and calibrate 25%. `user` (from --split)
// overrides the shares with folds = 1; `folds` > 0 overrides the number of folds.
SplitPlan plan_split(size_t units, const SplitFractions* user, int folds);

struct UnitSplit {
  std::vector<size_t> calibrate;  // unit indices, ascending
  std::vector<size_t> pool;       // unit indices, ascending (train and select)
  // Per pool position: the fold whose model scores this unit out of fold (0..folds-1), or -1
  // for a unit only trained on (folds == 1: the train share).
  std::vector<int> fold;
  int folds = 1;
};

// Draws calibrate as a simple random sample of round(share × units) units among those that
// stand for traffic (unit_represents; all of them when they are fewer; at least one when there
// are three units or more, and never more than leaves two in the pool), then deals the pool's units
// into folds stratified by majority label. With one fold, select takes about `select / (1 -
// calibrate)` of each label's pool units; a label with fewer than three pool units keeps them all
// for training.
UnitSplit split_units(const TraceUnits& units, const SplitPlan& plan, uint64_t seed);

}  // namespace tracer
