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
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace tracer {

struct StoredTrace {
  int64_t time_ms = 0;         // unix epoch milliseconds; 0 = "now" (filled in by append)
  std::string input;           // the text classified
  std::string teacher;         // the LLM's label ("" when it could not be parsed)
  bool label_known = true;     // false: the LLM answered something outside the label space
                               // (append also sets it false when teacher is empty)
  std::string raw_output;      // the LLM's raw answer text (for unknown labels)
  std::string source;          // "proxy", "import", ...
  std::string policy_version;  // policy that routed it
  std::string decision;        // "handled", "deferred"
  // Part of the proxy's uniform sample of traffic: the request drew the audit coin (probability
  // --audit-share), so it is an audited handled request or a deferred one recorded anyway. These
  // rows, and only these of the recorded traffic, may certify a refit (docs/trace_store.md,
  // "Which traces certify a refit").
  bool sampled = false;
  // The identity of an imported record (import_key()); empty for recorded traffic. A row whose
  // key is already stored is not stored again (counted by already_stored()); rows without a
  // key are always stored, so the LLM's genuinely repeated answers are kept.
  std::string import_key;
};

// What one line of an imported file says about its record: its `id` and everything the store
// keeps from it.
struct ImportedLine {
  std::string_view id;  // its `id` field ("" when it has none)
  std::string_view input;
  std::string_view teacher;
  std::optional<int64_t> time_ms;   // from its metadata (absent: the row gets the import's time)
  std::string_view policy_version;  // from its metadata ("" when not given)
  std::string_view decision;        // from its metadata ("" when not given)
};

// The identity of one imported record: SHA-256 (32 bytes) over the line's fields (length-
// prefixed) and `copy`, the number of earlier lines of the same file with the very same fields.
// Importing a file twice therefore stores it once, while a file that holds a line several times
// stores every copy. See docs/trace_store.md, "Imports are idempotent".
std::string import_key(const ImportedLine& line, uint64_t copy);

class ImportKeyer {
 public:
  std::string next(const ImportedLine& line);

 private:
  std::unordered_map<std::string, uint64_t> copies_;  // by the key of a line's first copy
};

struct TraceStoreOptions {
  size_t batch_rows = 256;         // commit at most this many rows per transaction
  int flush_interval_ms = 200;     // commit at least this often when rows are queued
  size_t max_queue_rows = 100000;  // beyond this, append() blocks (back-pressure)
  int busy_timeout_ms = 5000;      // wait this long for another process holding the write lock
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
  int64_t count();  // committed rows (call flush() first to see your own)
  // Committed rows with since_ms <= time_ms < until_ms (unix epoch milliseconds).
  int64_t count_between(int64_t since_ms, int64_t until_ms);
  // Rows appended since the store was opened that were not stored because a row with their
  // import_key already was (counted when their batch commits; flush() first).
  uint64_t already_stored();
  // Whether committed row `id` holds exactly this time, input, teacher and source: recognises the
  // lines of this store's own export (their "id" is the row id), so re-importing it adds nothing.
  bool has_row(int64_t id, const StoredTrace& t);
  // Writes committed rows in id order as JSONL trace lines readable by read_traces:
  // {"input","teacher","id":<row id>,"metadata":{"time_ms","source","policy_version","decision",
  // "sampled"}} ("sampled" only when true). Returns rows written; see ExportOptions for which.
  using ExportFilter = std::function<bool(const std::string& input, const std::string& teacher)>;
  struct ExportOptions {
    // Rows with unknown labels (or a blank input) are skipped unless include_unknown; then
    // unknown-label rows are written with "teacher": null, "label_known": false and
    // "raw_output", which read_traces rejects unless skip_invalid.
    bool include_unknown = false;
    // Leaves out rows the surrogate answered itself (decision "handled", source other than
    // "audit"): their label is the surrogate's, not the LLM's, so not training data.
    bool llm_labels_only = false;
    int64_t since_ms = INT64_MIN;  // only rows with since_ms <= time_ms < until_ms
    int64_t until_ms = INT64_MAX;
    // When given, asked about every row that would be written (its input and teacher); leaves
    // it out when it returns false.
    ExportFilter keep;
  };
  size_t export_jsonl(std::ostream& out, const ExportOptions& options);
  size_t export_jsonl(std::ostream& out) { return export_jsonl(out, ExportOptions{}); }

  const std::string& path() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tracer
