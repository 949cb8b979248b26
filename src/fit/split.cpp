#include "fit/split.hpp"

#include <algorithm>
#include <cmath>
#include <random>
#include <unordered_map>

#include "policy/policy.hpp"
#include "util/error.hpp"

namespace tracer {
namespace {

uint64_t mix64(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

uint64_t hash_key(std::string_view key, uint64_t seed) {
  uint64_t h = 0xcbf29ce484222325ull ^ mix64(seed + 0x9e3779b97f4a7c15ull);
  for (char c : key) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
  return mix64(h);
}

}  // namespace

void validate_fractions(const SplitFractions& f) {
  for (double v : {f.train, f.select, f.calibrate})
    if (!std::isfinite(v) || v <= 0)
      throw InputError("split fractions must all be positive numbers (train, select, calibrate)");
  if (std::abs(f.train + f.select + f.calibrate - 1.0) > 1e-6)
    throw InputError("split fractions must sum to 1 (got train " + std::to_string(f.train) +
                     " + select " + std::to_string(f.select) + " + calibrate " +
                     std::to_string(f.calibrate) + ")");
}

TraceUnits group_units(const TraceSet& set, const Featurizer& normalizer, uint64_t seed) {
  TraceUnits u;
  std::unordered_map<std::string, size_t> unit_of;
  std::vector<std::string> keys;
  // Per unit: teacher label counts in order of first appearance.
  std::vector<std::vector<std::pair<int, uint32_t>>> counts;
  for (size_t i = 0; i < set.size(); ++i) {
    std::string key = normalizer.normalize(set.traces[i].input);
    auto [it, inserted] = unit_of.try_emplace(key, u.first.size());
    if (inserted) {
      u.first.push_back(i);
      u.copies.push_back(0);
      counts.emplace_back();
      keys.push_back(std::move(key));
    } else {
      ++u.duplicate_traces;
    }
    const size_t unit = it->second;
    u.unit_of_trace.push_back(static_cast<uint32_t>(unit));
    const bool represents = represents_traffic(set.traces[i]);
    u.trace_represents.push_back(represents);
    u.train_only_traces += !represents;
    if (inserted) u.unit_represents.push_back(0);
    u.unit_represents[unit] |= represents;
    ++u.copies[unit];
    auto& c = counts[unit];
    auto hit = std::find_if(c.begin(), c.end(), [&](auto& p) { return p.first == set.y[i]; });
    if (hit == c.end())
      c.emplace_back(set.y[i], 1);
    else
      ++hit->second;
  }
  u.majority.resize(u.size());
  u.drawn.resize(u.size());
  u.key.resize(u.size());
  u.blank.resize(u.size());
  for (size_t k = 0; k < u.size(); ++k) {
    const auto& c = counts[k];
    u.key[k] = fnv1a64(keys[k]);
    u.blank[k] = keys[k].find_first_not_of(' ') == std::string::npos;
    u.conflicting_units += c.size() > 1;
    u.majority[k] = std::max_element(c.begin(), c.end(), [](auto& a, auto& b) {
                      return a.second < b.second;  // first maximum wins: seen first
                    })->first;
    // The draw depends on the unit's key and label shares only (not on how many times the file
    // repeats it, nor on its position), so repeating every line k times draws the same labels.
    const double r = double(hash_key(keys[k], seed) >> 11) * 0x1.0p-53;
    double cum = 0;
    u.drawn[k] = c.back().first;
    for (const auto& [label, n] : c) {
      cum += double(n) / u.copies[k];
      if (r < cum) {
        u.drawn[k] = label;
        break;
      }
    }
  }
  u.label_counts = std::move(counts);
  for (uint8_t r : u.unit_represents) u.train_only_units += !r;
  return u;
}

SplitPlan plan_split(size_t units, const SplitFractions* user, int folds) {
  SplitPlan p;
  if (user) {
    validate_fractions(*user);
    p.calibrate = user->calibrate;
    p.select = user->select;
    p.folds = 1;
    p.automatic = false;
  } else if (units <= kCrossFitMaxUnits) {
    p.calibrate = 0.30;
    p.select = 0;
    p.folds = 5;
  } else {
    p.calibrate = 0.25;
    p.select = 0.15;
    p.folds = 1;
  }
  if (folds > 0) {
    if (folds > 20) throw InputError("--folds must be between 1 and 20 (0: automatic)");
    p.folds = folds;
    p.automatic = false;
    if (folds == 1 && p.select <= 0) p.select = 0.15;
  }
  return p;
}

UnitSplit split_units(const TraceUnits& units, const SplitPlan& plan, uint64_t seed) {
  if (!(plan.calibrate > 0 && plan.calibrate < 1))
    throw InputError("the calibrate share must be in (0, 1)");
  if (plan.folds < 1) throw InputError("the number of folds must be at least 1");
  const size_t n = units.size();
  std::mt19937_64 rng(seed);
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), rng);

  UnitSplit s;
  s.folds = plan.folds;
  // Calibrate: the first n_cal units of the shuffled order that stand for traffic (with every
  // unit representative, simply the first n_cal units).
  // Calibrate holds as many units as it would if every unit stood for traffic, drawn from
  // those that do (all of them when they are fewer): the train-only units supply training data,
  // so the representative ones are best spent on the test.
  const size_t n_rep = n - units.train_only_units;
  size_t n_cal = static_cast<size_t>(std::llround(double(n) * plan.calibrate));
  if (n >= 3) n_cal = std::clamp<size_t>(n_cal, 1, n - 2);
  n_cal = std::min(n_cal, n_rep);
  const bool all_represent = units.unit_represents.size() != n || n_rep == n;
  for (size_t u : order) {
    const bool eligible = all_represent || units.unit_represents[u];
    (eligible && s.calibrate.size() < n_cal ? s.calibrate : s.pool).push_back(u);
  }
  std::sort(s.calibrate.begin(), s.calibrate.end());

  // Deal the pool into folds, label by label in the shuffled order (stratified by the label the
  // surrogates train on). The fold counter runs on across labels so small labels spread out.
  std::vector<std::vector<size_t>> by_label;
  for (size_t u : s.pool) {
    const auto l = static_cast<size_t>(units.majority[u]);
    if (l >= by_label.size()) by_label.resize(l + 1);
    by_label[l].push_back(u);
  }
  std::unordered_map<size_t, int> fold_of;
  size_t dealt = 0;
  const double select_share = plan.select / (1 - plan.calibrate);
  for (const auto& members : by_label) {
    if (plan.folds >= 2) {
      for (size_t u : members) fold_of[u] = static_cast<int>(dealt++ % plan.folds);
      continue;
    }
    size_t n_sel = 0;
    if (members.size() >= 3)
      n_sel = std::clamp<size_t>(
          static_cast<size_t>(std::llround(double(members.size()) * select_share)), 1,
          members.size() - 1);
    for (size_t j = 0; j < members.size(); ++j) fold_of[members[j]] = j < n_sel ? 0 : -1;
  }
  std::sort(s.pool.begin(), s.pool.end());
  s.fold.reserve(s.pool.size());
  for (size_t u : s.pool) s.fold.push_back(fold_of[u]);
  return s;
}

}  // namespace tracer
