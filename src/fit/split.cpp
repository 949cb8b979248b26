#include "fit/split.hpp"

#include <algorithm>
#include <cmath>
#include <random>
#include <unordered_map>

#include "util/error.hpp"

namespace tracer {

void validate_fractions(const SplitFractions& f) {
  if (f.train <= 0 || f.select <= 0 || f.calibrate <= 0)
    throw InputError("split fractions must all be positive (train, select, calibrate)");
  if (std::abs(f.train + f.select + f.calibrate - 1.0) > 1e-6)
    throw InputError("split fractions must sum to 1 (got train " + std::to_string(f.train) +
                     " + select " + std::to_string(f.select) + " + calibrate " +
                     std::to_string(f.calibrate) + ")");
}

Split stratified_split(const TraceSet& set, const SplitFractions& fractions, uint64_t seed) {
  validate_fractions(fractions);
  // Group exact duplicate inputs; a group is stratified by the label of its first occurrence.
  std::unordered_map<std::string_view, size_t> group_of;
  std::vector<std::vector<size_t>> groups;
  for (size_t i = 0; i < set.size(); ++i) {
    auto [it, inserted] = group_of.try_emplace(set.traces[i].input, groups.size());
    if (inserted) groups.emplace_back();
    groups[it->second].push_back(i);
  }
  std::vector<std::vector<size_t>> by_label(set.labels.size());
  for (size_t g = 0; g < groups.size(); ++g) by_label[set.y[groups[g].front()]].push_back(g);

  std::mt19937_64 rng(seed);
  Split split;
  for (auto& label_groups : by_label) {
    std::shuffle(label_groups.begin(), label_groups.end(), rng);
    size_t total = 0;
    for (size_t g : label_groups) total += groups[g].size();
    // Fill calibrate and select first to their quota (rounded), the rest goes to train, so that
    // small labels still get held-out rows when they have at least three traces.
    size_t want_cal = static_cast<size_t>(std::lround(total * fractions.calibrate));
    size_t want_sel = static_cast<size_t>(std::lround(total * fractions.select));
    if (total >= 3) {
      want_cal = std::max<size_t>(want_cal, 1);
      want_sel = std::max<size_t>(want_sel, 1);
    }
    size_t n_cal = 0, n_sel = 0, n_train = 0;
    for (size_t g : label_groups) {
      auto& members = groups[g];
      std::vector<size_t>* dest;
      // Keep at least one group for training whenever the label has one to spare.
      if (n_train == 0 && &g == &label_groups.back()) {
        dest = &split.train;
      } else if (n_cal < want_cal) {
        dest = &split.calibrate;
        n_cal += members.size();
      } else if (n_sel < want_sel) {
        dest = &split.select;
        n_sel += members.size();
      } else {
        dest = &split.train;
      }
      if (dest == &split.train) n_train += members.size();
      dest->insert(dest->end(), members.begin(), members.end());
    }
  }
  std::sort(split.train.begin(), split.train.end());
  std::sort(split.select.begin(), split.select.end());
  std::sort(split.calibrate.begin(), split.calibrate.end());
  return split;
}

}  // namespace tracer
