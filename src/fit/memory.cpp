// certify_memory as named steps: hold out → build the table from M → count hits → steps →
// fixed-sequence walk → served table.
#include "fit/memory.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_set>

#include "gate/bounds.hpp"
#include "util/error.hpp"

namespace tracer {
namespace {

void validate(const MemoryOptions& o, double target, double delta) {
  auto in_open_unit = [](double v) { return std::isfinite(v) && v > 0 && v < 1; };
  if (!in_open_unit(o.holdout)) throw InputError("--memory-holdout must be a number in (0, 1)");
  if (!in_open_unit(o.delta_share))
    throw InputError("--memory-delta-share must be a number in (0, 1)");
  if (o.max_entries < 1) throw InputError("--memory-max-entries must be at least 1");
  if (!in_open_unit(target) || !in_open_unit(delta))
    throw InputError("the memory tier needs a target and a delta in (0, 1)");
}

// A uniform number in [0, 1) for trace i: SplitMix64 of (seed, i), so the share a trace lands
// in does not depend on the others.
double uniform_of(uint64_t seed, uint64_t i) {
  uint64_t z = seed * 0x9e3779b97f4a7c15ULL + (i + 1) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  return double(z >> 11) * 0x1.0p-53;
}

// Which traces count as LLM calls for the memory tier: not a second record of a call already
// logged (same non-empty `id` and same input), and not an input that normalises to nothing
// (punctuation only: its key would stand for every such request).
std::vector<uint8_t> calls_of(const TraceSet& set, const TraceUnits& units) {
  std::vector<uint8_t> used(set.size(), 1);
  std::unordered_set<std::string> ids;
  for (size_t i = 0; i < set.size(); ++i) {
    const Trace& t = set.traces[i];
    if (units.blank[units.unit_of_trace[i]]) used[i] = 0;
    if (!t.id.empty() && !ids.insert(t.id + '\x1f' + t.input).second) used[i] = 0;
  }
  return used;
}

// Per unit, what the memory share M says about it.
struct Entry {
  size_t unit = 0;
  uint32_t copies = 0;          // M copies
  uint32_t agreeing = 0;        // M copies with the majority label
  int32_t label = -1;           // M-majority label (ties: seen first in M); -1: no M copy
  size_t hits = 0, agreed = 0;  // held-out traces of this unit, and those with `label`
  double score() const { return double(agreeing) / double(copies + 1); }
};

std::vector<Entry> build_table(const TraceSet& set, const TraceUnits& units,
                               const std::vector<uint8_t>& used,
                               const std::vector<uint8_t>& held_out) {
  std::vector<Entry> e(units.size());
  std::vector<std::vector<std::pair<int, uint32_t>>> counts(units.size());
  for (size_t i = 0; i < set.size(); ++i) {
    if (held_out[i] || !used[i]) continue;
    const size_t u = units.unit_of_trace[i];
    auto& c = counts[u];
    auto it = std::find_if(c.begin(), c.end(), [&](auto& p) { return p.first == set.y[i]; });
    if (it == c.end())
      c.emplace_back(set.y[i], 1);
    else
      ++it->second;
  }
  for (size_t u = 0; u < units.size(); ++u) {
    e[u].unit = u;
    for (const auto& [label, n] : counts[u]) {
      e[u].copies += n;
      if (n > e[u].agreeing) e[u].agreeing = n, e[u].label = label;  // first maximum wins
    }
  }
  return e;
}

// The candidates (inputs with an M copy), at most `cap` of them: the most-logged first.
std::vector<Entry> candidates_of(std::vector<Entry> table, size_t cap) {
  std::erase_if(table, [](const Entry& e) { return e.copies == 0; });
  if (table.size() > cap) {
    std::stable_sort(table.begin(), table.end(),
                     [](const Entry& a, const Entry& b) { return a.copies > b.copies; });
    table.resize(cap);
  }
  // Strictest first: evidence score, then more copies; ties keep the unit order.
  std::stable_sort(table.begin(), table.end(), [](const Entry& a, const Entry& b) {
    if (a.score() != b.score()) return a.score() > b.score();
    return a.copies > b.copies;
  });
  return table;
}

// Nested steps over the ordered candidates, cut where the score changes. The first step holds a
// quarter of all hits (and at least the hits a pass needs): a walk must pass its first step, and
// a first step of a few dozen hits fails on noise where a larger one of the same agreement would
// pass. Each later step adds at least 5% of all hits, so a long tail of tiny steps cannot stop
// the walk on one unlucky hit. Uses hit counts only, never held-out labels.
std::vector<MemoryStep> steps_of(const std::vector<Entry>& c, size_t total_hits, size_t min_hits) {
  std::vector<MemoryStep> steps;
  const size_t first = std::max(min_hits, (total_hits + 3) / 4);
  const size_t stride = std::max<size_t>(1, (total_hits * 5 + 99) / 100);
  size_t hits = 0, agreed = 0, last = 0;
  for (size_t i = 0; i < c.size(); ++i) {
    hits += c[i].hits;
    agreed += c[i].agreed;
    const bool group_end = i + 1 == c.size() || c[i + 1].score() != c[i].score();
    if (!group_end || hits < first) continue;
    if (!steps.empty() && hits - last < stride && i + 1 != c.size()) continue;
    steps.push_back({c[i].score(), i + 1, hits, agreed, 0});
    last = hits;
  }
  return steps;
}

}  // namespace

double MemoryCertificate::hit_share() const {
  if (served_step < 0 || holdout_traces == 0) return 0;
  return double(steps[static_cast<size_t>(served_step)].hits) / double(holdout_traces);
}

nlohmann::json MemoryCertificate::to_json() const {
  nlohmann::json j{{"active", active},         {"certified", certified},
                   {"delta", delta},           {"holdout_traces", holdout_traces},
                   {"candidates", candidates}, {"min_hits", min_hits},
                   {"entries", keys.size()}};
  if (!reason.empty()) j["reason"] = reason;
  auto round4 = [](double v) { return std::round(v * 1e4) / 1e4; };
  if (served_step >= 0) {
    const MemoryStep& s = steps[static_cast<size_t>(served_step)];
    j["hits"] = s.hits;
    j["agreed"] = s.agreed;
    j["self_consistency"] = round4(double(s.agreed) / double(s.hits));
    j["bound"] = round4(s.bound);
    j["min_score"] = round4(s.min_score);
    j["hit_share"] = round4(hit_share());
  }
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& s : steps)
    rows.push_back({{"min_score", round4(s.min_score)},
                    {"entries", s.entries},
                    {"hits", s.hits},
                    {"agreed", s.agreed},
                    {"bound", round4(s.bound)}});
  j["steps"] = std::move(rows);
  return j;
}

MemoryCertificate certify_memory(const TraceSet& set, const TraceUnits& units, double target,
                                 double delta, const MemoryOptions& o, uint64_t seed) {
  validate(o, target, delta);
  MemoryCertificate m;
  if (!o.enabled) {
    m.reason = "off (--memory off)";
    return m;
  }
  // Rounded to 12 decimals so manifest.json says 0.01, not 0.010000000000000002.
  const double delta_m = std::round(delta * o.delta_share * 1e12) / 1e12;
  m.min_hits = static_cast<size_t>(min_rows_to_certify(target, delta_m));

  // 1. Hold out a share of the traces (one logged call each) at random.
  std::vector<uint8_t> used = calls_of(set, units);
  std::vector<uint8_t> held_out(set.size());
  for (size_t i = 0; i < set.size(); ++i) {
    // Only traces that stand for traffic test the table (a recorded deferred request repeats
    // at its full rate, not at its traffic share); the others only build it.
    const bool represents = units.trace_represents.empty() || units.trace_represents[i];
    held_out[i] = used[i] && represents && uniform_of(seed ^ 0x6d656d6f7279ULL, i) < o.holdout;
    m.holdout_traces += held_out[i];
  }
  // 2. The table from the rest; 3. the held-out hits on it (labels counted, not yet read).
  std::vector<Entry> table = build_table(set, units, used, held_out);
  for (size_t i = 0; i < set.size(); ++i) {
    if (!held_out[i]) continue;
    Entry& e = table[units.unit_of_trace[i]];
    if (e.copies == 0) continue;
    ++e.hits;
    e.agreed += set.y[i] == e.label;
  }
  std::vector<Entry> c = candidates_of(std::move(table), o.max_entries);
  m.candidates = c.size();
  size_t total_hits = 0;
  for (const auto& e : c) total_hits += e.hits;
  if (total_hits < m.min_hits) {
    m.reason = fmt::format(
        "inactive: {} of the {} held-out traces repeat an input of the rest, and testing agreement "
        "{} at delta {:.4g} needs at least {}",
        total_hits, m.holdout_traces, target, delta_m, m.min_hits);
    return m;
  }
  m.active = true;
  m.delta = delta_m;

  // 4. Fixed-sequence walk, strictest first, at delta_m.
  m.steps = steps_of(c, total_hits, m.min_hits);
  for (size_t k = 0; k < m.steps.size(); ++k) {
    MemoryStep& s = m.steps[k];
    s.bound =
        clopper_pearson_lower(static_cast<int>(s.hits), static_cast<int>(s.agreed), 1 - delta_m);
    if (s.bound < target) {
      m.steps.resize(k + 1);  // later steps are never tested
      break;
    }
    m.served_step = static_cast<int>(k);
  }
  if (m.served_step < 0) {
    const MemoryStep& s = m.steps.front();
    m.reason = fmt::format(
        "refused: the LLM's logged answers to the most consistent repeated inputs agree with their "
        "remembered label on {} of {} held-out repeats ({:.3f}, lower bound {:.3f} < target {})",
        s.agreed, s.hits, double(s.agreed) / double(s.hits), s.bound, target);
    return m;
  }
  m.certified = true;

  // 5. The served table, keyed as the router keys inputs; two inputs hashing alike are dropped.
  const MemoryStep& served = m.steps[static_cast<size_t>(m.served_step)];
  std::vector<std::pair<uint64_t, int32_t>> rows;
  rows.reserve(served.entries);
  for (size_t i = 0; i < served.entries; ++i) rows.emplace_back(units.key[c[i].unit], c[i].label);
  std::sort(rows.begin(), rows.end());
  for (size_t i = 0; i < rows.size(); ++i) {
    const bool clash = (i > 0 && rows[i - 1].first == rows[i].first) ||
                       (i + 1 < rows.size() && rows[i + 1].first == rows[i].first);
    if (clash) continue;
    m.keys.push_back(rows[i].first);
    m.labels.push_back(rows[i].second);
  }
  return m;
}

}  // namespace tracer
