#pragma once
// The trace store: new traces recorded by the proxy (and imports), in SQLite (WAL) at
// `.tracer/traces.db` by default. Writes are queued and committed in batches by a background
// thread, off the request path.
#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

namespace tracer {

struct StoredTrace {
  int64_t time_ms = 0;          // unix epoch milliseconds
  std::string input;            // the text classified
  std::string teacher;          // the LLM's label ("" when it could not be parsed)
  bool label_known = true;      // false: the LLM answered something outside the label space
  std::string raw_output;       // the LLM's raw answer text (for unknown labels)
  std::string source;           // "proxy", "import", ...
  std::string policy_version;   // policy that routed it
  std::string decision;         // "handled", "deferred"
};

struct TraceStoreOptions {
  size_t batch_rows = 256;        // commit at most this many rows per transaction
  int flush_interval_ms = 200;    // commit at least this often when rows are queued
  size_t max_queue_rows = 100000; // beyond this, append() blocks (back-pressure)
};

class TraceStore {
 public:
  // Opens or creates the database (and its schema). Throws InputError with the path on failure.
  explicit TraceStore(const std::string& path, TraceStoreOptions options = {});
  ~TraceStore();  // flushes everything queued, then closes
  TraceStore(const TraceStore&) = delete;
  TraceStore& operator=(const TraceStore&) = delete;

  void append(StoredTrace t);  // queues; thread-safe; never does I/O on the caller's thread
  void flush();                // blocks until every row queued before the call is committed
  int64_t count();             // committed rows
  // Writes committed rows as JSONL trace lines ({"input","teacher",...}); returns rows written.
  // Rows with unknown labels are skipped unless include_unknown.
  size_t export_jsonl(std::ostream& out, bool include_unknown = false);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tracer
