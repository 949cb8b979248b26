#pragma once
// The trace store: new traces recorded by the proxy (and imports), in SQLite (WAL) at
// `.tracer/traces.db` by default. Writes are queued and committed in batches by a background
// thread, off the request path. See docs/trace_store.md for the schema and the guarantees.
//
// Durability: rows are durable once committed. flush() and the destructor commit everything
// queued before them; after a process crash (kill -9) only rows not yet committed are lost (at
// most the queue plus the one batch being written), and the database is never corrupt. With
// synchronous=NORMAL an OS crash or power loss may also roll back the last few commits.
#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

namespace tracer {

struct StoredTrace {
  int64_t time_ms = 0;          // unix epoch milliseconds; 0 = "now" (filled in by append)
  std::string input;            // the text classified
  std::string teacher;          // the LLM's label ("" when it could not be parsed)
  bool label_known = true;      // false: the LLM answered something outside the label space
                                // (append also sets it false when teacher is empty)
  std::string raw_output;       // the LLM's raw answer text (for unknown labels)
  std::string source;           // "proxy", "import", ...
  std::string policy_version;   // policy that routed it
  std::string decision;         // "handled", "deferred"
};

struct TraceStoreOptions {
  size_t batch_rows = 256;        // commit at most this many rows per transaction
  int flush_interval_ms = 200;    // commit at least this often when rows are queued
  size_t max_queue_rows = 100000; // beyond this, append() blocks (back-pressure)
  int busy_timeout_ms = 5000;     // wait this long for another process holding the write lock
};

class TraceStore {
 public:
  // Opens or creates the database (creating its parent folder and schema). Throws InputError
  // naming the path and SQLite's message on failure, FormatError when the file was written by
  // a newer tracer (schema version too high).
  explicit TraceStore(const std::string& path, TraceStoreOptions options = {});
  ~TraceStore();  // flushes everything queued, then closes (never throws)
  TraceStore(const TraceStore&) = delete;
  TraceStore& operator=(const TraceStore&) = delete;

  // Queues a row; thread-safe; never does I/O on the caller's thread. Back-pressure: when
  // max_queue_rows are waiting (the disk cannot keep up, or commits keep failing), append
  // blocks until the writer makes room. Callers that must never block use try_append.
  void append(StoredTrace t);
  // As append, but returns false at once (dropping the row) instead of blocking on a full queue.
  bool try_append(StoredTrace t);
  // Blocks until every row queued before the call is committed. Throws InputError when a commit
  // fails meanwhile (e.g. disk full); the rows stay queued and are retried.
  void flush();
  int64_t count();                          // committed rows (call flush() first to see your own)
  int64_t count_since(int64_t since_ms);    // committed rows with time_ms >= since_ms
  // Writes committed rows in id order as JSONL trace lines readable by read_traces:
  // {"input","teacher","id":<row id>,"metadata":{"time_ms","source","policy_version","decision"}}.
  // Returns rows written. Rows with unknown labels (or a blank input) are skipped unless
  // include_unknown; then unknown-label rows are written with "teacher": null,
  // "label_known": false and "raw_output", which read_traces rejects unless skip_invalid.
  // llm_labels_only leaves out rows the surrogate answered itself (decision "handled", source
  // other than "audit"): their label is the surrogate's, not the LLM's, so not training data.
  size_t export_jsonl(std::ostream& out, bool include_unknown = false,
                      bool llm_labels_only = false);

  const std::string& path() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tracer
