#pragma once
// Train / select / calibrate split: stratified by teacher label, seeded, with exact duplicate
// inputs kept on one side so no text is both learned from and certified on.
#include <cstdint>
#include <string>
#include <vector>

#include "io/traces.hpp"

namespace tracer {

struct SplitFractions {
  double train = 0.7;
  double select = 0.15;
  double calibrate = 0.15;
};

struct Split {
  std::vector<size_t> train, select, calibrate;  // indices into the TraceSet, ascending
};

// Throws InputError if the fractions are not positive or do not sum to 1.
void validate_fractions(const SplitFractions& f);

Split stratified_split(const TraceSet& set, const SplitFractions& fractions, uint64_t seed);

}  // namespace tracer
