#include "io/trace_store.hpp"

#include <sqlite3.h>
#include <utf8proc.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stop_token>
#include <string_view>
#include <thread>

#include "io/utf8.hpp"
#include "util/error.hpp"
#include "util/sha256.hpp"

namespace tracer {
namespace {

// PRAGMA user_version of the schema below; bump it (and migrate) when the schema changes.
// 1: the table and its time index. 2: import_key (the identity of imported records) and its
// UNIQUE index; migrate_to_2 upgrades a version-1 store in place. 3: sampled (the row is part
// of the proxy's uniform traffic sample); older rows get 0.
constexpr int kSchemaVersion = 3;
// Each text field must stay far below SQLite's 1e9-byte row limit, so that no queued row can
// make every later batch fail.
constexpr size_t kMaxFieldBytes = size_t{16} << 20;
// Commit attempts while closing before queued rows are given up.
constexpr int kCloseAttempts = 3;
// Longest pause between retries of a failed commit.
constexpr std::chrono::milliseconds kMaxBackoff{1000};

constexpr const char* kCreateSchema = R"sql(
CREATE TABLE IF NOT EXISTS traces (
  id INTEGER PRIMARY KEY,
  time_ms INTEGER NOT NULL,
  input TEXT NOT NULL,
  teacher TEXT NOT NULL,
  label_known INTEGER NOT NULL,
  raw_output TEXT NOT NULL,
  source TEXT NOT NULL,
  policy_version TEXT NOT NULL,
  decision TEXT NOT NULL,
  import_key BLOB,
  sampled INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS traces_time ON traces(time_ms);
)sql";

// NULL keys (recorded traffic) never conflict: SQLite treats NULLs as distinct in a UNIQUE index.
constexpr const char* kCreateImportKeyIndex =
    "CREATE UNIQUE INDEX IF NOT EXISTS traces_import_key ON traces(import_key)";

// A row whose import_key is already stored is skipped (sqlite3_changes() = 0), not an error.
constexpr const char* kInsert =
    "INSERT INTO traces (time_ms, input, teacher, label_known, raw_output, source, "
    "policy_version, decision, import_key, sampled) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT(import_key) DO NOTHING";

struct DbClose {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
using Db = std::unique_ptr<sqlite3, DbClose>;
struct StmtFinalize {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using Stmt = std::unique_ptr<sqlite3_stmt, StmtFinalize>;

std::string db_message(sqlite3* db) { return db ? sqlite3_errmsg(db) : "out of memory"; }

std::string where(const std::string& path) { return "trace store " + path; }

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Runs SQL without results; returns SQLite's message on failure, "" on success.
std::string try_exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) == SQLITE_OK) return {};
  std::string msg = err ? err : db_message(db);
  sqlite3_free(err);
  return msg.empty() ? std::string("unknown SQLite error") : msg;
}

void exec(sqlite3* db, const std::string& path, const char* sql, const char* what) {
  if (auto msg = try_exec(db, sql); !msg.empty())
    throw InputError(where(path) + ": cannot " + what + ": " + msg);
}

Stmt prepare(sqlite3* db, const std::string& path, const char* sql) {
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &raw, nullptr) != SQLITE_OK) {
    Stmt guard(raw);
    throw InputError(where(path) + ": " + db_message(db) +
                     " (is this a trace store written by tracer?)");
  }
  return Stmt(raw);
}

// The single integer a query returns (PRAGMA user_version, COUNT(*), ...).
int64_t query_int(sqlite3* db, const std::string& path, const char* sql, int64_t bind = 0,
                  bool has_bind = false) {
  Stmt s = prepare(db, path, sql);
  if (has_bind) sqlite3_bind_int64(s.get(), 1, bind);
  const int rc = sqlite3_step(s.get());
  if (rc != SQLITE_ROW) throw InputError(where(path) + ": cannot read: " + db_message(db));
  return sqlite3_column_int64(s.get(), 0);
}

Db open_db(const std::string& path, int flags, int busy_timeout_ms) {
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  Db db(raw);
  if (rc != SQLITE_OK) {
    throw InputError("cannot open " + where(path) + ": " + db_message(raw) +
                     "; check that its folder exists and is writable");
  }
  sqlite3_extended_result_codes(db.get(), 1);
  sqlite3_busy_timeout(db.get(), busy_timeout_ms);
  return db;
}

// WAL for crash safety and readers that never block the writer; NORMAL sync is durable against
// process crashes, which is what the store promises (see the header).
void configure(sqlite3* db, const std::string& path) {
  Stmt s = prepare(db, path, "PRAGMA journal_mode=WAL");
  const int rc = sqlite3_step(s.get());
  if (rc != SQLITE_ROW) throw InputError(where(path) + ": " + db_message(db));
  const auto* mode = reinterpret_cast<const char*>(sqlite3_column_text(s.get(), 0));
  if (mode == nullptr || std::string_view(mode) != "wal") {
    throw InputError(where(path) +
                     ": the file system does not support SQLite's WAL mode "
                     "(journal mode is " +
                     std::string(mode ? mode : "unknown") + "); put the store on a local disk");
  }
  exec(db, path, "PRAGMA synchronous=NORMAL", "set synchronous mode");
}

// Version 1 -> 2: adds import_key and gives the rows imported so far the keys their lines would
// get now, as lines without an `id` or a `time_ms` (version 1 kept neither the id nor whether
// the time came from the line), numbered in row order: a file of such lines imported twice
// before the upgrade holds copies 0 and 1 of each line, and importing it again adds nothing.
// Duplicates already stored stay; nothing is deleted.
void migrate_to_2(sqlite3* db, const std::string& path) {
  exec(db, path, "ALTER TABLE traces ADD COLUMN import_key BLOB", "add the import_key column");
  // Keys first, updates after: a table is not modified while a statement still reads it.
  std::vector<std::pair<int64_t, std::string>> keys;
  {
    Stmt select = prepare(db, path,
                          "SELECT id, input, teacher, policy_version, decision FROM traces "
                          "WHERE source = 'import' ORDER BY id");
    ImportKeyer keyer;
    int rc = SQLITE_ROW;
    while ((rc = sqlite3_step(select.get())) == SQLITE_ROW) {
      const auto text = [&](int col) {
        const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(select.get(), col));
        return std::string_view(p ? p : "",
                                static_cast<size_t>(sqlite3_column_bytes(select.get(), col)));
      };
      ImportedLine line;
      line.input = text(1);
      line.teacher = text(2);
      line.policy_version = text(3);
      line.decision = text(4);
      keys.emplace_back(sqlite3_column_int64(select.get(), 0), keyer.next(line));
    }
    if (rc != SQLITE_DONE)
      throw InputError(where(path) + ": cannot upgrade the schema: " + db_message(db));
  }
  Stmt update = prepare(db, path, "UPDATE traces SET import_key = ? WHERE id = ?");
  for (const auto& [id, key] : keys) {
    sqlite3_reset(update.get());
    sqlite3_bind_blob(update.get(), 1, key.data(), static_cast<int>(key.size()), SQLITE_STATIC);
    sqlite3_bind_int64(update.get(), 2, id);
    if (sqlite3_step(update.get()) != SQLITE_DONE)
      throw InputError(where(path) + ": cannot upgrade the schema: " + db_message(db));
  }
  exec(db, path, kCreateImportKeyIndex, "create the import key index");
}

void create_schema(sqlite3* db, const std::string& path) {
  exec(db, path, "BEGIN IMMEDIATE", "lock for schema creation");
  const int64_t version = query_int(db, path, "PRAGMA user_version");
  if (version > kSchemaVersion) {
    throw FormatError(where(path) + " has schema version " + std::to_string(version) +
                      ", newer than this tracer understands (" + std::to_string(kSchemaVersion) +
                      "); upgrade tracer");
  }
  if (version == 0) {
    const int64_t others =
        query_int(db, path,
                  "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name <> 'traces' "
                  "AND name NOT LIKE 'sqlite_%'");
    if (others > 0) {
      throw InputError(where(path) +
                       " is a SQLite database of something else (it has other "
                       "tables); give a new file name");
    }
    exec(db, path, kCreateSchema, "create the schema");
    exec(db, path, kCreateImportKeyIndex, "create the import key index");
  } else {
    if (version == 1) migrate_to_2(db, path);
    if (version <= 2)
      exec(db, path, "ALTER TABLE traces ADD COLUMN sampled INTEGER NOT NULL DEFAULT 0",
           "add the sampled column");
  }
  if (version < kSchemaVersion) {
    const std::string set_version = "PRAGMA user_version = " + std::to_string(kSchemaVersion);
    exec(db, path, set_version.c_str(), "set the schema version");
  }
  exec(db, path, "COMMIT", "commit the schema");
}

void put_u64(Sha256& h, uint64_t v) {
  char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>(v >> (8 * i));
  h.update(std::string_view(b, 8));
}

// Length-prefixed, so that no two different (id, input, teacher) split into the same bytes.
void put_field(Sha256& h, std::string_view v) {
  put_u64(h, v.size());
  h.update(v);
}

std::string column_text(sqlite3_stmt* s, int col) {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, col));
  return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(s, col))) : std::string();
}

// Rejects rows SQLite would refuse, on the caller's thread, so no row can wedge the writer.
void check_size(const StoredTrace& t, const std::string& path) {
  for (const std::string* f :
       {&t.input, &t.teacher, &t.raw_output, &t.source, &t.policy_version, &t.decision}) {
    if (f->size() > kMaxFieldBytes) {
      throw InputError(where(path) + ": a trace field is " + std::to_string(f->size()) +
                       " bytes, over the limit of " + std::to_string(kMaxFieldBytes) + " bytes");
    }
  }
}

}  // namespace

std::string import_key(const ImportedLine& line, uint64_t copy) {
  Sha256 h;
  h.update("tracer import key v1");
  put_field(h, line.id);
  put_field(h, line.input);
  put_field(h, line.teacher);
  put_u64(h, line.time_ms.has_value());
  if (line.time_ms) put_u64(h, static_cast<uint64_t>(*line.time_ms));
  put_field(h, line.policy_version);
  put_field(h, line.decision);
  put_u64(h, copy);
  const Sha256::Digest d = h.finish();
  return std::string(reinterpret_cast<const char*>(d.data()), d.size());
}

std::string ImportKeyer::next(const ImportedLine& line) {
  std::string first = import_key(line, 0);
  const uint64_t copy = copies_[first]++;
  return copy == 0 ? first : import_key(line, copy);
}

struct TraceStore::Impl {
  std::string path;
  TraceStoreOptions options;
  Db writer;    // used only by the writer thread once it runs
  Stmt insert;  // prepared once, reused for every row
  std::mutex read_mu;
  Db reader;  // count() and export_jsonl(), from any thread; sees committed rows only

  std::mutex mu;                        // guards everything below
  std::condition_variable_any work_cv;  // wakes the writer (full batch, flush, stop)
  std::condition_variable done_cv;      // a commit succeeded or failed (for flush)
  std::condition_variable space_cv;     // the queue has room again (for append)
  std::deque<StoredTrace> queue;
  uint64_t queued_total = 0;     // rows ever queued
  uint64_t committed_total = 0;  // rows ever committed (FIFO: the first committed_total queued)
  uint64_t flush_target = 0;     // commit without waiting while committed_total < flush_target
  uint64_t flush_requests = 0;   // flush() calls that found rows to wait for
  uint64_t failures = 0;         // failed commits so far
  uint64_t already_total = 0;    // committed batches' rows skipped for an import_key stored before
  std::string last_error;
  std::jthread thread;

  // One transaction for the batch. Returns SQLite's message on failure ("" on success); the
  // transaction is then rolled back and nothing of the batch is stored.
  // `skipped` receives the rows not stored because their import_key already was.
  std::string write_batch(const std::vector<StoredTrace>& rows, uint64_t& skipped) {
    skipped = 0;
    sqlite3* db = writer.get();
    if (auto msg = try_exec(db, "BEGIN IMMEDIATE"); !msg.empty()) return msg;
    sqlite3_stmt* s = insert.get();
    for (const StoredTrace& t : rows) {
      sqlite3_reset(s);
      sqlite3_bind_int64(s, 1, t.time_ms);
      int col = 2;
      auto bind_text = [&](const std::string& v) {
        sqlite3_bind_text(s, col++, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
      };
      bind_text(t.input);
      bind_text(t.teacher);
      sqlite3_bind_int(s, col++, t.label_known ? 1 : 0);
      bind_text(t.raw_output);
      bind_text(t.source);
      bind_text(t.policy_version);
      bind_text(t.decision);
      if (t.import_key.empty()) {
        sqlite3_bind_null(s, col++);
      } else {
        sqlite3_bind_blob(s, col++, t.import_key.data(), static_cast<int>(t.import_key.size()),
                          SQLITE_STATIC);
      }
      sqlite3_bind_int(s, col++, t.sampled ? 1 : 0);
      if (sqlite3_step(s) != SQLITE_DONE) {
        std::string msg = db_message(db);
        sqlite3_reset(s);
        try_exec(db, "ROLLBACK");
        return msg;
      }
      skipped += sqlite3_changes(db) == 0;
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);  // SQLITE_STATIC: do not keep pointers into rows being freed
    if (auto msg = try_exec(db, "COMMIT"); !msg.empty()) {
      try_exec(db, "ROLLBACK");
      return msg;
    }
    return {};
  }

  void run(const std::stop_token& stop) {
    const auto interval = std::chrono::milliseconds(options.flush_interval_ms);
    std::vector<StoredTrace> batch;
    batch.reserve(options.batch_rows);
    int close_failures = 0;
    std::unique_lock lock(mu);
    while (true) {
      if (!stop.stop_requested()) {
        work_cv.wait_for(lock, stop, interval, [&] {
          return queue.size() >= options.batch_rows || flush_target > committed_total;
        });
      }
      if (queue.empty()) {
        if (stop.stop_requested()) return;
        continue;
      }
      const size_t n = std::min(queue.size(), options.batch_rows);
      for (size_t i = 0; i < n; ++i) {
        batch.push_back(std::move(queue.front()));
        queue.pop_front();
      }
      space_cv.notify_all();
      lock.unlock();
      uint64_t skipped = 0;
      std::string error = write_batch(batch, skipped);
      lock.lock();
      if (error.empty()) {
        committed_total += n;
        already_total += skipped;
        batch.clear();
        done_cv.notify_all();
        continue;
      }
      // Keep the rows, in order, for the next attempt.
      for (auto it = batch.rbegin(); it != batch.rend(); ++it) queue.push_front(std::move(*it));
      batch.clear();
      ++failures;
      last_error = std::move(error);
      done_cv.notify_all();
      if (stop.stop_requested()) {
        if (++close_failures >= kCloseAttempts) {
          std::cerr << "tracer: " << where(path) << ": lost " << queue.size()
                    << " queued traces on close: " << last_error << "\n";
          queue.clear();
          return;
        }
        lock.unlock();
        std::this_thread::sleep_for(std::min(interval, kMaxBackoff));
        lock.lock();
      } else {
        // Back off instead of spinning on a failing disk; a new flush() or a stop cuts it short.
        const uint64_t requests = flush_requests;
        work_cv.wait_for(lock, stop, std::min(interval, kMaxBackoff),
                         [&] { return flush_requests != requests; });
      }
    }
  }
};

TraceStore::TraceStore(const std::string& path, TraceStoreOptions options)
    : impl_(std::make_unique<Impl>()) {
  if (options.batch_rows == 0 || options.max_queue_rows == 0 || options.flush_interval_ms <= 0 ||
      options.busy_timeout_ms < 0) {
    throw InputError(where(path) +
                     ": batch_rows, max_queue_rows and flush_interval_ms must be "
                     "positive");
  }
  impl_->path = path;
  impl_->options = options;
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    if (ec) {
      throw InputError("cannot create the folder " + parent.string() + " for " + where(path) +
                       ": " + ec.message());
    }
  }
  impl_->writer =
      open_db(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, options.busy_timeout_ms);
  sqlite3* db = impl_->writer.get();
  configure(db, path);
  create_schema(db, path);
  impl_->insert = prepare(db, path, kInsert);
  impl_->reader = open_db(path, SQLITE_OPEN_READONLY, options.busy_timeout_ms);
  impl_->thread = std::jthread([impl = impl_.get()](std::stop_token stop) { impl->run(stop); });
}

TraceStore::~TraceStore() {
  if (!impl_) return;
  impl_->thread.request_stop();  // the writer drains the queue before it returns
  if (impl_->thread.joinable()) impl_->thread.join();
}

void TraceStore::append(StoredTrace t) {
  check_size(t, impl_->path);
  if (t.time_ms == 0) t.time_ms = now_ms();
  if (t.teacher.empty()) t.label_known = false;
  Impl& s = *impl_;
  std::unique_lock lock(s.mu);
  s.space_cv.wait(lock, [&] { return s.queue.size() < s.options.max_queue_rows; });
  s.queue.push_back(std::move(t));
  ++s.queued_total;
  if (s.queue.size() == s.options.batch_rows) s.work_cv.notify_one();
}

bool TraceStore::try_append(StoredTrace t) {
  check_size(t, impl_->path);
  if (t.time_ms == 0) t.time_ms = now_ms();
  if (t.teacher.empty()) t.label_known = false;
  Impl& s = *impl_;
  std::lock_guard lock(s.mu);
  if (s.queue.size() >= s.options.max_queue_rows) return false;
  s.queue.push_back(std::move(t));
  ++s.queued_total;
  if (s.queue.size() == s.options.batch_rows) s.work_cv.notify_one();
  return true;
}

void TraceStore::flush() {
  Impl& s = *impl_;
  std::unique_lock lock(s.mu);
  const uint64_t target = s.queued_total;
  if (s.committed_total >= target) return;
  const uint64_t failures = s.failures;
  s.flush_target = std::max(s.flush_target, target);
  ++s.flush_requests;
  s.work_cv.notify_one();
  s.done_cv.wait(lock, [&] { return s.committed_total >= target || s.failures != failures; });
  if (s.committed_total < target) {
    throw InputError(where(s.path) + ": cannot commit queued traces: " + s.last_error +
                     "; they stay queued and are retried");
  }
}

int64_t TraceStore::count() {
  std::lock_guard lock(impl_->read_mu);
  return query_int(impl_->reader.get(), impl_->path, "SELECT COUNT(*) FROM traces");
}

int64_t TraceStore::count_between(int64_t since_ms, int64_t until_ms) {
  std::lock_guard lock(impl_->read_mu);
  sqlite3* db = impl_->reader.get();
  Stmt s =
      prepare(db, impl_->path, "SELECT COUNT(*) FROM traces WHERE time_ms >= ? AND time_ms < ?");
  sqlite3_bind_int64(s.get(), 1, since_ms);
  sqlite3_bind_int64(s.get(), 2, until_ms);
  if (sqlite3_step(s.get()) != SQLITE_ROW)
    throw InputError(where(impl_->path) + ": cannot read: " + db_message(db));
  return sqlite3_column_int64(s.get(), 0);
}

uint64_t TraceStore::already_stored() {
  std::lock_guard lock(impl_->mu);
  return impl_->already_total;
}

bool TraceStore::has_row(int64_t id, const StoredTrace& t) {
  std::lock_guard lock(impl_->read_mu);
  sqlite3* db = impl_->reader.get();
  Stmt s = prepare(db, impl_->path,
                   "SELECT 1 FROM traces WHERE id = ? AND time_ms = ? AND input = ? AND "
                   "teacher = ? AND source = ?");
  sqlite3_bind_int64(s.get(), 1, id);
  sqlite3_bind_int64(s.get(), 2, t.time_ms);
  sqlite3_bind_text(s.get(), 3, t.input.data(), static_cast<int>(t.input.size()), SQLITE_STATIC);
  sqlite3_bind_text(s.get(), 4, t.teacher.data(), static_cast<int>(t.teacher.size()),
                    SQLITE_STATIC);
  sqlite3_bind_text(s.get(), 5, t.source.data(), static_cast<int>(t.source.size()), SQLITE_STATIC);
  const int rc = sqlite3_step(s.get());
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    throw InputError(where(impl_->path) + ": cannot read: " + db_message(db));
  return rc == SQLITE_ROW;
}

size_t TraceStore::export_jsonl(std::ostream& out, const ExportOptions& o) {
  using Json = nlohmann::ordered_json;
  std::lock_guard lock(impl_->read_mu);
  sqlite3* db = impl_->reader.get();
  Stmt s = prepare(db, impl_->path,
                   "SELECT id, time_ms, input, teacher, label_known, raw_output, source, "
                   "policy_version, decision, sampled FROM traces "
                   "WHERE time_ms >= ? AND time_ms < ? ORDER BY id");
  sqlite3_bind_int64(s.get(), 1, o.since_ms);
  sqlite3_bind_int64(s.get(), 2, o.until_ms);
  size_t written = 0;
  int rc = SQLITE_ROW;
  while ((rc = sqlite3_step(s.get())) == SQLITE_ROW) {
    std::string input = column_text(s.get(), 2);
    std::string teacher = column_text(s.get(), 3);
    const bool known = sqlite3_column_int(s.get(), 4) != 0 && !is_blank_text(teacher);
    if (!o.include_unknown && (!known || is_blank_text(input))) continue;
    std::string source = column_text(s.get(), 6), decision = column_text(s.get(), 8);
    if (o.llm_labels_only && decision == "handled" && source != "audit") continue;
    if (o.keep && !o.keep(input, teacher)) continue;
    Json j;
    j["input"] = std::move(input);
    if (known) {
      j["teacher"] = std::move(teacher);
    } else {
      j["teacher"] = nullptr;
      j["label_known"] = false;
      j["raw_output"] = column_text(s.get(), 5);
    }
    j["id"] = sqlite3_column_int64(s.get(), 0);
    j["metadata"] = Json{{"time_ms", sqlite3_column_int64(s.get(), 1)},
                         {"source", std::move(source)},
                         {"policy_version", column_text(s.get(), 7)},
                         {"decision", std::move(decision)}};
    if (sqlite3_column_int(s.get(), 9) != 0) j["metadata"]["sampled"] = true;
    // Invalid UTF-8 (from a misbehaving client) becomes U+FFFD rather than failing the export.
    out << j.dump(-1, ' ', false, Json::error_handler_t::replace) << '\n';
    ++written;
  }
  if (rc != SQLITE_DONE) {
    throw InputError(where(impl_->path) + ": cannot read rows: " + db_message(db));
  }
  out.flush();
  if (!out) throw InputError(where(impl_->path) + ": failed writing the export");
  return written;
}

const std::string& TraceStore::path() const { return impl_->path; }

}  // namespace tracer
