#pragma once
// Which of the traces read for a refit to fit on: a time window (`tracer update --window 30d`)
// and a cap on their number (`--max-traces`). See docs/versions.md, "Windows and caps".
#include <cstddef>
#include <cstdint>
#include <string>

#include "io/traces.hpp"

namespace tracer {

struct TraceSelection {
  // Keep only traces whose metadata.time_ms (Unix milliseconds, written by the trace store's
  // export) is >= since_ms. INT64_MIN: no window. With a window, traces without a time (the
  // lines of a plain trace file) are left out too: a window asks for recent traces only, and an
  // undated line cannot show that it is recent.
  int64_t since_ms = INT64_MIN;
  // At most this many traces (0: no cap). The kept ones are a uniform random sample without
  // replacement (seeded), drawn separately among the traces that stand for traffic and the
  // train-only ones (io/traces.hpp, represents_traffic) in proportion to their numbers: a
  // random subsample has the same mix of labels, inputs and sources as the whole in expectation,
  // so the traces that certify stay a sample of traffic and the train-only ones keep their share.
  size_t max_traces = 0;
  uint64_t seed = 42;

  bool active() const { return since_ms != INT64_MIN || max_traces > 0; }
};

struct SelectionReport {
  size_t read = 0;
  size_t surrogate = 0;  // left out: the surrogate's own answers (is_surrogate_answer)
  size_t older = 0;      // left out: time_ms before the window
  size_t undated = 0;    // left out: no time_ms, with a window
  size_t capped = 0;     // left out by the cap
  size_t kept = 0;
  // One line for the user, e.g. "kept 4210 of 9000 traces: 1000 before 2026-11-01T00:00:00Z,
  // 3000 without a time (metadata.time_ms), 790 over --max-traces 4210".
  std::string summary(const TraceSelection& s) const;
};

// A trace's metadata.time_ms, or INT64_MIN when it has none.
int64_t trace_time_ms(const Trace& t);

// Removes from set.labels the labels no trace carries, re-indexing y.
void drop_unused_labels(TraceSet& set);

// Applies `s` to `set` in place, and always leaves out the surrogate's own answers (the order of
// the kept traces is kept; labels no kept trace carries are dropped from set.labels and y
// re-indexed). Throws InputError when nothing is left, naming why.
SelectionReport select_traces(TraceSet& set, const TraceSelection& s);

}  // namespace tracer
