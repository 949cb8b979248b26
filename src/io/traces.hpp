#pragma once
// Trace ingestion: JSONL and CSV files of (input text, teacher label) pairs.
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace tracer {

struct Trace {
  std::string id;       // optional `id` field; empty when absent
  std::string input;    // the text the LLM classified (`input`, or `text`/`query`/`prompt`)
  std::string teacher;  // the LLM's label (`teacher`, or `label`/`output`)
  std::optional<std::string> gold;  // human label, reporting only
  std::vector<float> embedding;     // optional precomputed vector
  std::string metadata;             // optional `metadata`, kept as compact JSON text
  size_t line = 0;  // 1-based line number in the source file (CSV: line the record starts on)
};

struct ReadOptions {
  bool skip_invalid = false;           // skip bad lines instead of rejecting the file
  size_t max_input_bytes = 64 * 1024;  // longer inputs are rejected as invalid
  size_t max_label_bytes = 256;
  size_t max_errors_reported = 10;  // how many reasons to keep for the message/report
  // A JSONL line or CSV record longer than this is rejected as invalid without being held in
  // memory, so one pathological line cannot exhaust memory. 16 MiB fits a 64 KiB input plus a
  // several-thousand-wide embedding many times over.
  size_t max_line_bytes = size_t{16} << 20;
};

struct ReadReport {
  std::string path;
  size_t lines = 0;  // physical lines (JSONL) or records (CSV) seen, including blank lines
  size_t accepted = 0;
  size_t skipped = 0;               // invalid lines skipped (only with skip_invalid)
  std::vector<std::string> errors;  // first max_errors_reported reasons, "FILE:LINE: reason"
};

// Streams a trace file record by record (constant memory besides the current record).
// The format is chosen by extension: .jsonl/.json/.ndjson → JSONL, .csv → CSV.
// Without skip_invalid, the first pass still reads the whole file so that the error lists every
// bad line (up to max_errors_reported) and throws InputError; `sink` may then have been called
// for earlier good records.
void stream_traces(const std::string& path, const ReadOptions& options,
                   const std::function<void(Trace&&)>& sink, ReadReport* report = nullptr);

// A whole trace file in memory, with labels indexed.
struct TraceSet {
  std::vector<Trace> traces;
  std::vector<std::string> labels;  // sorted label names; y[i] indexes into this
  std::vector<int> y;
  size_t embedding_dim = 0;  // 0 when traces carry no embedding

  size_t size() const { return traces.size(); }
  std::vector<size_t> label_counts() const;
};

// Reads and validates a file: all-or-nothing unless skip_invalid. Also checks that embeddings
// (when present) all have one width. Throws InputError with file and line on any problem.
TraceSet read_traces(const std::string& path, const ReadOptions& options = {},
                     ReadReport* report = nullptr);

// Several files read as one set (all-or-nothing per file unless skip_invalid); `report`, when
// given, sums the counts and collects every file's errors. Embeddings must have one width across
// the files. Throws InputError when `paths` is empty.
TraceSet read_trace_files(const std::vector<std::string>& paths, const ReadOptions& options = {},
                          ReadReport* report = nullptr);

// Whether a trace is a draw from the traffic the guarantee is about, so that it may certify
// (docs/trace_store.md, "Which traces certify a refit"). A trace without metadata, or whose
// metadata has no "decision", is (the user's own log). A trace the proxy recorded (metadata
// "decision": "deferred" or "handled") is only when its metadata says "sampled": true — it drew
// the audit coin, so it belongs to a uniform sample of traffic. The other recorded traces are
// the deferred, hard requests (or the surrogate's own answers): not a sample of traffic, so
// they train only.
bool represents_traffic(const Trace& t);

// Whether a trace is the surrogate's own answer recorded by the proxy (metadata decision
// "handled", source not "audit", not sampled): its label is not the LLM's, so it is never
// trained or certified on (fits leave it out and say how many).
bool is_surrogate_answer(const Trace& t);

// Checks the label space is learnable: at least 2 labels, and every label has at least
// `min_per_label` traces. Throws InputError naming the offending labels and counts.
void check_label_counts(const TraceSet& set, size_t min_per_label);

}  // namespace tracer
