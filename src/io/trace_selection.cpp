#include "io/trace_selection.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>

#include "util/error.hpp"
#include "util/time_text.hpp"

namespace tracer {

int64_t trace_time_ms(const Trace& t) {
  if (t.metadata.find("\"time_ms\"") == std::string::npos) return INT64_MIN;
  const auto m = nlohmann::json::parse(t.metadata, nullptr, false);
  if (!m.is_object()) return INT64_MIN;
  const auto it = m.find("time_ms");
  if (it == m.end() || !it->is_number_integer()) return INT64_MIN;
  return it->get<int64_t>();
}

std::string SelectionReport::summary(const TraceSelection& s) const {
  std::string out = "kept " + std::to_string(kept) + " of " + std::to_string(read) + " traces";
  std::string why;
  auto add = [&](const std::string& part) { why += (why.empty() ? ": " : ", ") + part; };
  if (surrogate > 0)
    add(std::to_string(surrogate) +
        " answers of the surrogate itself (decision handled, not audited: not the LLM's label)");
  if (older > 0)
    add(std::to_string(older) + " recorded before " +
        format_utc_timestamp(s.since_ms / 1000 - (s.since_ms % 1000 < 0 ? 1 : 0)));
  if (undated > 0) add(std::to_string(undated) + " without a time (metadata.time_ms)");
  if (capped > 0)
    add(std::to_string(capped) + " over --max-traces " + std::to_string(s.max_traces) +
        " (a uniform random sample is kept)");
  return out + why;
}

namespace {

// Keeps `want` of the indices in `idx` (a uniform random sample), in their original order.
void sample_in_place(std::vector<size_t>& idx, size_t want, std::mt19937_64& rng) {
  if (want >= idx.size()) return;
  std::vector<size_t> pick = idx;
  std::shuffle(pick.begin(), pick.end(), rng);
  pick.resize(want);
  std::sort(pick.begin(), pick.end());
  idx = std::move(pick);
}

void keep_only(TraceSet& set, const std::vector<size_t>& kept) {
  std::vector<Trace> traces;
  std::vector<int> y;
  traces.reserve(kept.size());
  for (size_t i : kept) {
    traces.push_back(std::move(set.traces[i]));
    y.push_back(set.y[i]);
  }
  set.traces = std::move(traces);
  set.y = std::move(y);
  // Labels no kept trace carries would be classes without a single example.
  drop_unused_labels(set);
}

}  // namespace

void drop_unused_labels(TraceSet& set) {
  std::vector<uint8_t> used(set.labels.size(), 0);
  for (int v : set.y) used[static_cast<size_t>(v)] = 1;
  std::vector<int> remap(set.labels.size(), -1);
  std::vector<std::string> labels;
  for (size_t l = 0; l < set.labels.size(); ++l)
    if (used[l]) {
      remap[l] = static_cast<int>(labels.size());
      labels.push_back(set.labels[l]);
    }
  if (labels.size() == set.labels.size()) return;
  for (int& v : set.y) v = remap[static_cast<size_t>(v)];
  set.labels = std::move(labels);
}

SelectionReport select_traces(TraceSet& set, const TraceSelection& s) {
  SelectionReport r;
  r.read = set.size();
  std::vector<size_t> represents, train_only;
  for (size_t i = 0; i < set.size(); ++i) {
    if (is_surrogate_answer(set.traces[i])) {
      ++r.surrogate;
      continue;
    }
    if (s.since_ms != INT64_MIN) {
      const int64_t t = trace_time_ms(set.traces[i]);
      if (t == INT64_MIN) {
        ++r.undated;
        continue;
      }
      if (t < s.since_ms) {
        ++r.older;
        continue;
      }
    }
    (represents_traffic(set.traces[i]) ? represents : train_only).push_back(i);
  }
  const size_t in_window = represents.size() + train_only.size();
  if (s.max_traces > 0 && in_window > s.max_traces) {
    std::mt19937_64 rng(s.seed ^ 0x63617073ULL);
    // Largest remainder: the two groups keep their shares of the cap.
    const size_t want_rep = static_cast<size_t>(
        std::llround(double(s.max_traces) * double(represents.size()) / double(in_window)));
    sample_in_place(represents, std::min(want_rep, represents.size()), rng);
    sample_in_place(train_only, s.max_traces - represents.size(), rng);
  }
  std::vector<size_t> kept;
  kept.reserve(represents.size() + train_only.size());
  std::merge(represents.begin(), represents.end(), train_only.begin(), train_only.end(),
             std::back_inserter(kept));
  r.kept = kept.size();
  r.capped = in_window - r.kept;
  if (r.kept == 0)
    throw InputError("no traces left to fit on: " + r.summary(s) +
                     "; widen --window, or pass dated traces (a trace store export keeps each "
                     "trace's time in metadata.time_ms)");
  if (r.kept < r.read) keep_only(set, kept);
  return r;
}

}  // namespace tracer
