#include "io/trace_store.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "io/traces.hpp"
#include "test_util.hpp"
#include "util/error.hpp"
#include "util/sha256.hpp"

namespace tracer {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;
using tracer::testing::TempDir;
using tracer::testing::write_file;
using namespace std::chrono_literals;

// Options where nothing commits unless a full batch is queued or flush() is called.
TraceStoreOptions manual(size_t batch_rows, size_t max_queue_rows = 100000) {
  TraceStoreOptions o;
  o.batch_rows = batch_rows;
  o.flush_interval_ms = 600000;
  o.max_queue_rows = max_queue_rows;
  return o;
}

StoredTrace trace(const std::string& input, const std::string& teacher, int64_t time_ms = 1000) {
  StoredTrace t;
  t.time_ms = time_ms;
  t.input = input;
  t.teacher = teacher;
  t.source = "proxy";
  t.policy_version = "v1";
  t.decision = "deferred";
  return t;
}

std::vector<json> export_lines(TraceStore& store, bool include_unknown = false) {
  std::stringstream ss;
  TraceStore::ExportOptions o;
  o.include_unknown = include_unknown;
  const size_t n = store.export_jsonl(ss, o);
  std::vector<json> lines;
  std::string line;
  while (std::getline(ss, line)) lines.push_back(json::parse(line));
  EXPECT_EQ(lines.size(), n);
  return lines;
}

// Polls until count() reaches `want` (the writer commits asynchronously); returns the last count.
int64_t wait_for_count(TraceStore& store, int64_t want) {
  int64_t n = store.count();
  for (auto deadline = std::chrono::steady_clock::now() + 10s;
       n < want && std::chrono::steady_clock::now() < deadline; n = store.count()) {
    std::this_thread::sleep_for(2ms);
  }
  return n;
}

// A direct SQLite connection, for checks below the store's interface.
struct RawDb {
  explicit RawDb(const std::string& path) { EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK); }
  ~RawDb() { sqlite3_close(db); }
  RawDb(const RawDb&) = delete;
  RawDb& operator=(const RawDb&) = delete;
  std::vector<std::string> column(const std::string& sql) {
    std::vector<std::string> out;
    sqlite3_stmt* s = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr), SQLITE_OK) << sql;
    while (s && sqlite3_step(s) == SQLITE_ROW) {
      const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
      out.emplace_back(p ? p : "");
    }
    sqlite3_finalize(s);
    return out;
  }
  void exec(const std::string& sql) {
    EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK)
        << sql << ": " << sqlite3_errmsg(db);
  }
  sqlite3* db = nullptr;
};

TEST(TraceStore, RoundTripKeepsEveryField) {
  TempDir dir;
  TraceStore store(dir.file("t.db"));
  StoredTrace a = trace("where is my card?", "card_arrival", 1700000000123);
  a.decision = "handled";
  store.append(a);
  store.append(trace("héllo \"quoted\"\nnewline", "greeting", 1700000000456));
  store.flush();
  EXPECT_EQ(store.count(), 2);
  auto lines = export_lines(store);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0]["input"], "where is my card?");
  EXPECT_EQ(lines[0]["teacher"], "card_arrival");
  EXPECT_EQ(lines[0]["id"], 1);
  EXPECT_EQ(lines[0]["metadata"]["time_ms"], 1700000000123);
  EXPECT_EQ(lines[0]["metadata"]["source"], "proxy");
  EXPECT_EQ(lines[0]["metadata"]["policy_version"], "v1");
  EXPECT_EQ(lines[0]["metadata"]["decision"], "handled");
  EXPECT_FALSE(lines[0].contains("label_known"));
  EXPECT_EQ(lines[1]["input"], "héllo \"quoted\"\nnewline");
  EXPECT_EQ(lines[1]["id"], 2);
  EXPECT_EQ(store.path(), dir.file("t.db"));
}

TEST(TraceStore, MissingTimeIsNowAndEmptyTeacherIsUnknown) {
  TempDir dir;
  TraceStore store(dir.file("t.db"));
  const auto before = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  store.append(trace("no time", "a", 0));
  store.append(trace("no label", "", 5));
  store.flush();
  auto lines = export_lines(store, true);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_GE(lines[0]["metadata"]["time_ms"].get<int64_t>(), before);
  EXPECT_LT(lines[0]["metadata"]["time_ms"].get<int64_t>(), before + 600000);
  EXPECT_TRUE(lines[1]["teacher"].is_null());
  EXPECT_EQ(lines[1]["label_known"], false);
  EXPECT_EQ(store.count_between(before, INT64_MAX), 1);
  EXPECT_EQ(store.count_between(0, INT64_MAX), 2);
  EXPECT_EQ(store.count_between(0, before), 1);
}

TEST(TraceStore, UnknownLabelsSkippedUnlessAsked) {
  TempDir dir;
  TraceStore store(dir.file("t.db"));
  store.append(trace("known", "a"));
  StoredTrace u = trace("strange answer", "");
  u.label_known = false;
  u.raw_output = "I think it's about cats";
  store.append(u);
  StoredTrace flagged = trace("out of space", "zebra");  // a label but marked unknown
  flagged.label_known = false;
  flagged.raw_output = "zebra";
  store.append(flagged);
  store.append(trace("   ", "a"));  // blank input: read_traces would reject it
  store.flush();
  EXPECT_EQ(store.count(), 4);

  auto known = export_lines(store);
  ASSERT_EQ(known.size(), 1u);
  EXPECT_EQ(known[0]["input"], "known");

  auto all = export_lines(store, true);
  ASSERT_EQ(all.size(), 4u);
  EXPECT_TRUE(all[1]["teacher"].is_null());
  EXPECT_EQ(all[1]["label_known"], false);
  EXPECT_EQ(all[1]["raw_output"], "I think it's about cats");
  EXPECT_TRUE(all[2]["teacher"].is_null());
  EXPECT_EQ(all[2]["raw_output"], "zebra");
  EXPECT_EQ(all[3]["teacher"], "a");
}

TEST(TraceStore, ExportIsReadableByReadTraces) {
  TempDir dir;
  TraceStore store(dir.file("t.db"));
  for (int i = 0; i < 30; ++i)
    store.append(trace("text number " + std::to_string(i), i % 3 == 0 ? "x" : "y", 100 + i));
  StoredTrace u = trace("unknown one", "");
  store.append(u);
  store.append(trace("bad utf8 \xff\xfe here", "y", 7));
  store.flush();

  const std::string path = dir.file("export.jsonl");
  {
    std::ofstream out(path);
    EXPECT_EQ(store.export_jsonl(out), 31u);
  }
  TraceSet set = read_traces(path);
  ASSERT_EQ(set.size(), 31u);
  EXPECT_EQ(set.labels, (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(set.traces[0].input, "text number 0");
  EXPECT_EQ(set.traces[0].teacher, "x");
  EXPECT_EQ(set.traces[0].id, "1");
  EXPECT_EQ(json::parse(set.traces[0].metadata)["time_ms"], 100);
  EXPECT_EQ(set.traces[30].input, "bad utf8 \xef\xbf\xbd\xef\xbf\xbd here");  // U+FFFD

  // With unknown labels the file needs skip_invalid, which skips exactly those rows.
  const std::string all = dir.file("all.jsonl");
  {
    std::ofstream out(all);
    TraceStore::ExportOptions o;
    o.include_unknown = true;
    EXPECT_EQ(store.export_jsonl(out, o), 32u);
  }
  EXPECT_THROW(read_traces(all), InputError);
  ReadOptions skip;
  skip.skip_invalid = true;
  ReadReport report;
  EXPECT_EQ(read_traces(all, skip, &report).size(), 31u);
  EXPECT_EQ(report.skipped, 1u);
}

TEST(TraceStore, CommitsFullBatchesWithoutFlush) {
  TempDir dir;
  TraceStore store(dir.file("t.db"), manual(10));
  for (int i = 0; i < 25; ++i) store.append(trace("r" + std::to_string(i), "a"));
  EXPECT_EQ(wait_for_count(store, 20), 20);
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(store.count(), 20);  // the partial batch waits for the interval (10 minutes here)
  store.flush();
  EXPECT_EQ(store.count(), 25);
}

TEST(TraceStore, CommitsPartialBatchAfterInterval) {
  TempDir dir;
  TraceStoreOptions o;
  o.batch_rows = 1000;
  o.flush_interval_ms = 20;
  TraceStore store(dir.file("t.db"), o);
  for (int i = 0; i < 3; ++i) store.append(trace("r" + std::to_string(i), "a"));
  EXPECT_EQ(wait_for_count(store, 3), 3);
}

TEST(TraceStore, FlushCommitsEverythingQueuedBefore) {
  TempDir dir;
  TraceStore store(dir.file("t.db"), manual(1000));
  store.flush();  // nothing queued: returns at once
  EXPECT_EQ(store.count(), 0);
  for (int i = 0; i < 7; ++i) store.append(trace("r" + std::to_string(i), "a"));
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(store.count(), 0);  // neither a full batch nor the interval: still queued
  store.flush();
  EXPECT_EQ(store.count(), 7);
  store.flush();
  EXPECT_EQ(store.count(), 7);
}

TEST(TraceStore, ConcurrentAppendsAllStored) {
  TempDir dir;
  // A small queue so that the appenders also hit back-pressure.
  TraceStoreOptions o;
  o.batch_rows = 50;
  o.flush_interval_ms = 5;
  o.max_queue_rows = 64;
  TraceStore store(dir.file("t.db"), o);
  const int per_thread = testing::sanitized() ? 500 : 3000;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&store, t, per_thread] {
      for (int i = 0; i < per_thread; ++i)
        store.append(trace(std::to_string(t) + ":" + std::to_string(i), "a"));
    });
  }
  for (auto& th : threads) th.join();
  store.flush();
  EXPECT_EQ(store.count(), 4 * per_thread);
  std::set<std::string> seen;
  std::vector<int> next(4, 0);  // each thread's rows are stored in its order
  for (const auto& j : export_lines(store)) {
    const std::string input = j["input"];
    EXPECT_TRUE(seen.insert(input).second) << "duplicate " << input;
    const int t = input[0] - '0';
    ASSERT_GE(t, 0);
    ASSERT_LT(t, 4);
    EXPECT_EQ(input.substr(2), std::to_string(next[t]++));
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(4 * per_thread));
}

TEST(TraceStore, AppendBlocksWhenQueueIsFull) {
  TempDir dir;
  TraceStore store(dir.file("t.db"), manual(100, 2));
  store.append(trace("a", "x"));
  store.append(trace("b", "x"));
  std::atomic<bool> done{false};
  std::thread blocked([&] {
    store.append(trace("c", "x"));
    done = true;
  });
  std::this_thread::sleep_for(50ms);
  EXPECT_FALSE(done.load());  // back-pressure: the queue holds max_queue_rows
  store.flush();              // commits a and b, which makes room for c
  blocked.join();
  EXPECT_TRUE(done.load());
  store.flush();
  EXPECT_EQ(store.count(), 3);
}

TEST(TraceStore, TryAppendDropsWhenQueueIsFull) {
  TempDir dir;
  TraceStore store(dir.file("t.db"), manual(100, 2));
  EXPECT_TRUE(store.try_append(trace("a", "x")));
  EXPECT_TRUE(store.try_append(trace("b", "x")));
  EXPECT_FALSE(store.try_append(trace("c", "x")));
  store.flush();
  EXPECT_TRUE(store.try_append(trace("d", "x")));
  store.flush();
  auto lines = export_lines(store);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[2]["input"], "d");
}

TEST(TraceStore, ReopenKeepsRowsAndDestructorFlushes) {
  TempDir dir;
  const std::string path = dir.file("t.db");
  {
    TraceStore store(path, manual(1000));
    for (int i = 0; i < 42; ++i) store.append(trace("r" + std::to_string(i), "a"));
  }  // no flush(): the destructor commits the queue
  {
    TraceStore store(path);
    EXPECT_EQ(store.count(), 42);
    store.append(trace("more", "b"));
  }
  TraceStore store(path);
  EXPECT_EQ(store.count(), 43);
  auto lines = export_lines(store);
  EXPECT_EQ(lines.back()["input"], "more");
  EXPECT_EQ(lines.back()["id"], 43);
}

TEST(TraceStore, SchemaVersionWalAndTimeIndex) {
  TempDir dir;
  const std::string path = dir.file("t.db");
  { TraceStore store(path); }
  {
    RawDb raw(path);
    EXPECT_EQ(raw.column("PRAGMA user_version"), std::vector<std::string>{"3"});
    EXPECT_EQ(raw.column("PRAGMA journal_mode"), std::vector<std::string>{"wal"});
    EXPECT_EQ(raw.column("SELECT name FROM sqlite_schema WHERE type='index' AND "
                         "tbl_name='traces' ORDER BY name"),
              (std::vector<std::string>{"traces_import_key", "traces_time"}));
    EXPECT_EQ(raw.column("SELECT \"unique\" FROM pragma_index_list('traces') WHERE "
                         "name = 'traces_import_key'"),
              std::vector<std::string>{"1"});
    raw.exec("PRAGMA user_version = 99");
  }
  try {
    TraceStore store(path);
    FAIL() << "a store with a newer schema version opened";
  } catch (const FormatError& e) {
    EXPECT_THAT(e.what(), HasSubstr(path));
    EXPECT_THAT(e.what(), HasSubstr("99"));
  }
}

// A line of an imported file without metadata.
ImportedLine line(std::string_view input, std::string_view teacher, std::string_view id = "") {
  ImportedLine l;
  l.id = id;
  l.input = input;
  l.teacher = teacher;
  return l;
}

StoredTrace imported(const std::string& input, const std::string& teacher, uint64_t copy = 0,
                     const std::string& id = "") {
  StoredTrace t = trace(input, teacher);
  t.source = "import";
  t.import_key = import_key(line(input, teacher, id), copy);
  return t;
}

TEST(TraceStore, AnImportKeyIsStoredOnceRecordedTrafficAlways) {
  TempDir dir;
  const std::string path = dir.file("t.db");
  {
    TraceStore store(path, manual(1000));
    store.append(imported("where is my card", "card_arrival"));
    store.append(imported("where is my card", "card_arrival"));  // same batch
    store.flush();
    store.append(imported("where is my card", "card_arrival"));  // a later batch
    // The proxy recorded the same question twice: real traffic, no key, both kept.
    store.append(trace("where is my card", "card_arrival", 2000));
    store.append(trace("where is my card", "card_arrival", 3000));
    store.flush();
    EXPECT_EQ(store.count(), 3);
    EXPECT_EQ(store.already_stored(), 2u);
    // The second copy of a line in one file is a record of its own.
    store.append(imported("where is my card", "card_arrival", 1));
    store.flush();
    EXPECT_EQ(store.count(), 4);
    EXPECT_EQ(store.already_stored(), 2u);
  }
  TraceStore store(path);  // the keys persist
  EXPECT_EQ(store.already_stored(), 0u);
  store.append(imported("where is my card", "card_arrival", 1));
  store.append(imported("where is my card", "card_arrival", 0, "req-7"));  // another request id
  store.flush();
  EXPECT_EQ(store.count(), 5);
  EXPECT_EQ(store.already_stored(), 1u);
  auto lines = export_lines(store);
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_EQ(lines[1]["metadata"]["source"], "proxy");
  EXPECT_EQ(lines[2]["metadata"]["source"], "proxy");
  EXPECT_EQ(lines[4]["metadata"]["source"], "import");
}

TEST(TraceStore, ImportKeyCoversEveryPartUnambiguously) {
  const ImportedLine base = line("where is my card", "card_arrival");
  const std::string k = import_key(base, 0);
  EXPECT_EQ(k.size(), 32u);
  EXPECT_EQ(k, import_key(line("where is my card", "card_arrival"), 0));
  // Pinned (computed independently with Python's hashlib over the encoding): stores keep these
  // keys, so the encoding must never change silently.
  const auto hex = [](const std::string& key) {
    Sha256::Digest d{};
    std::copy(key.begin(), key.end(), d.begin());
    return Sha256::hex(d);
  };
  EXPECT_EQ(hex(k), "ffecc754a0f46b302946b4becf8612d8060629d22396c5178998acfa156f2bc3");
  ImportedLine full = line("top up failed", "top_up_failed", "r1");
  full.time_ms = 1700000000000;
  full.policy_version = "p7";
  full.decision = "deferred";
  EXPECT_EQ(hex(import_key(full, 2)),
            "d8423acddcd9017ec9c6d21d82fe6c53a8a85981923ad9c72b1e570c839229f2");
  ImportedLine timed = base, timed_later = base, at_zero = base, versioned = base, handled = base;
  timed.time_ms = 1700000000000;
  timed_later.time_ms = 1700000000001;
  at_zero.time_ms = 0;  // a time given as 0 is not the same as no time
  versioned.policy_version = "p7";
  handled.decision = "handled";
  std::set<std::string> keys{k,
                             import_key(line("where is my card", "card_arrival", "1"), 0),
                             import_key(line("where is my card.", "card_arrival"), 0),
                             import_key(line("where is my card", "card_delivery"), 0),
                             import_key(base, 1),
                             import_key(timed, 0),
                             import_key(timed_later, 0),
                             import_key(at_zero, 0),
                             import_key(versioned, 0),
                             import_key(handled, 0),
                             import_key(line("ab", "c"), 0),
                             import_key(line("a", "bc"), 0),
                             import_key(line("b", "c", "a"), 0),
                             import_key(line("ab", "c"), 0x100)};
  EXPECT_EQ(keys.size(), 14u);  // no two alike: every part counts, and fields never run together

  ImportKeyer keyer;
  EXPECT_EQ(keyer.next(line("x", "a")), import_key(line("x", "a"), 0));
  EXPECT_EQ(keyer.next(line("y", "a")), import_key(line("y", "a"), 0));
  EXPECT_EQ(keyer.next(line("x", "a")), import_key(line("x", "a"), 1));
  EXPECT_EQ(keyer.next(line("x", "a", "9")), import_key(line("x", "a", "9"), 0));
  EXPECT_EQ(keyer.next(line("x", "a")), import_key(line("x", "a"), 2));
}

TEST(TraceStore, MigratesAVersion1StoreThatHoldsDuplicateImports) {
  TempDir dir;
  const std::string path = dir.file("t.db");
  {
    // A store written by schema version 1, where a file of two lines was imported twice and
    // the proxy recorded one question twice.
    RawDb raw(path);
    raw.exec(R"sql(
      CREATE TABLE traces (id INTEGER PRIMARY KEY, time_ms INTEGER NOT NULL,
        input TEXT NOT NULL, teacher TEXT NOT NULL, label_known INTEGER NOT NULL,
        raw_output TEXT NOT NULL, source TEXT NOT NULL, policy_version TEXT NOT NULL,
        decision TEXT NOT NULL);
      CREATE INDEX traces_time ON traces(time_ms);
      PRAGMA user_version = 1;)sql");
    for (int round = 0; round < 2; ++round) {
      raw.exec(
          "INSERT INTO traces VALUES (NULL, 1, 'where is my card', 'card_arrival', 1, '', "
          "'import', '', '')");
      raw.exec(
          "INSERT INTO traces VALUES (NULL, 1, 'top up failed', 'top_up_failed', 1, '', "
          "'import', '', '')");
      raw.exec(
          "INSERT INTO traces VALUES (NULL, 5, 'where is my card', 'card_arrival', 1, '', "
          "'proxy', 'v1', 'deferred')");
    }
  }
  {
    TraceStore store(path);  // opens, upgrades, keeps every row
    EXPECT_EQ(store.count(), 6);
    // Importing the file again adds nothing: its lines are copy 0 of the rows imported first,
    // and the second import's rows hold copy 1.
    ImportKeyer keyer;
    for (const char* input : {"where is my card", "top up failed"}) {
      StoredTrace t = imported(input, input[0] == 'w' ? "card_arrival" : "top_up_failed");
      t.import_key = keyer.next(line(t.input, t.teacher));
      store.append(t);
    }
    store.flush();
    EXPECT_EQ(store.count(), 6);
    EXPECT_EQ(store.already_stored(), 2u);
    // A file that holds the line three times adds the third copy only.
    for (uint64_t copy = 0; copy < 3; ++copy)
      store.append(imported("where is my card", "card_arrival", copy));
    store.flush();
    EXPECT_EQ(store.count(), 7);
    EXPECT_EQ(store.already_stored(), 4u);
  }
  RawDb raw(path);
  EXPECT_EQ(raw.column("PRAGMA user_version"), std::vector<std::string>{"3"});
  EXPECT_EQ(raw.column("PRAGMA integrity_check"), std::vector<std::string>{"ok"});
  EXPECT_EQ(raw.column("SELECT source || ':' || (import_key IS NULL) || sampled FROM traces "
                       "ORDER BY id"),
            (std::vector<std::string>{"import:00", "import:00", "proxy:10", "import:00",
                                      "import:00", "proxy:10", "import:00"}));
  { TraceStore again(path); }  // version 3 opens without migrating again
  EXPECT_EQ(raw.column("SELECT COUNT(*) FROM traces"), std::vector<std::string>{"7"});
}

TEST(TraceStore, HasRowRecognisesExactlyOneStoredRow) {
  TempDir dir;
  TraceStore store(dir.file("t.db"));
  store.append(trace("where is my card", "card_arrival", 1234));
  store.flush();
  StoredTrace same = trace("where is my card", "card_arrival", 1234);
  EXPECT_TRUE(store.has_row(1, same));
  EXPECT_FALSE(store.has_row(2, same));
  StoredTrace other = same;
  other.time_ms = 1235;
  EXPECT_FALSE(store.has_row(1, other));
  other = same;
  other.source = "import";
  EXPECT_FALSE(store.has_row(1, other));
  other = same;
  other.teacher = "card_delivery";
  EXPECT_FALSE(store.has_row(1, other));
}

TEST(TraceStore, ExportFilterLeavesRowsOut) {
  TempDir dir;
  TraceStore store(dir.file("t.db"));
  for (const char* label : {"a", "b", "a", "c"}) store.append(trace("x", label));
  store.flush();
  std::stringstream ss;
  std::vector<std::string> asked;
  TraceStore::ExportOptions o;
  o.keep = [&](const std::string& input, const std::string& teacher) {
    asked.push_back(input + "/" + teacher);
    return teacher != "a";
  };
  const size_t n = store.export_jsonl(ss, o);
  EXPECT_EQ(n, 2u);
  EXPECT_EQ(asked, (std::vector<std::string>{"x/a", "x/b", "x/a", "x/c"}));
  const std::string text = ss.str();
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 2);
}

TEST(TraceStore, MigratesAVersion2StoreAddingSampled) {
  TempDir dir;
  const std::string path = dir.file("t.db");
  {
    TraceStore store(path);
    store.append(trace("a", "x", 10));
  }
  {
    // Turn it back into what schema version 2 wrote: no sampled column.
    RawDb raw(path);
    raw.exec("ALTER TABLE traces DROP COLUMN sampled; PRAGMA user_version = 2;");
  }
  TraceStore store(path);
  StoredTrace t = trace("b", "x", 20);
  t.sampled = true;
  store.append(t);
  store.flush();
  auto lines = export_lines(store);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_FALSE(lines[0]["metadata"].contains("sampled"));  // older rows are not in the sample
  EXPECT_EQ(lines[1]["metadata"]["sampled"], true);
  RawDb raw(path);
  EXPECT_EQ(raw.column("PRAGMA user_version"), std::vector<std::string>{"3"});
}

TEST(TraceStore, ExportAndCountTakeAHalfOpenTimeRange) {
  TempDir dir;
  TraceStore store(dir.file("t.db"));
  for (int64_t t : {100, 200, 300, 400}) store.append(trace("q" + std::to_string(t), "x", t));
  store.flush();
  EXPECT_EQ(store.count_between(200, 400), 2);
  std::stringstream ss;
  TraceStore::ExportOptions o;
  o.since_ms = 200;
  o.until_ms = 400;
  EXPECT_EQ(store.export_jsonl(ss, o), 2u);
  EXPECT_THAT(ss.str(), HasSubstr("q200"));
  EXPECT_THAT(ss.str(), HasSubstr("q300"));
  EXPECT_THAT(ss.str(), Not(HasSubstr("q400")));
}

TEST(TraceStore, TimeQueriesUseTheIndex) {
  TempDir dir;
  const std::string path = dir.file("t.db");
  { TraceStore store(path); }
  RawDb raw(path);
  sqlite3_stmt* s = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(raw.db,
                               "EXPLAIN QUERY PLAN SELECT COUNT(*) FROM traces WHERE time_ms >= 5",
                               -1, &s, nullptr),
            SQLITE_OK);
  std::string plan;
  while (sqlite3_step(s) == SQLITE_ROW)
    plan += reinterpret_cast<const char*>(sqlite3_column_text(s, 3));
  sqlite3_finalize(s);
  EXPECT_THAT(plan, HasSubstr("traces_time"));
}

TEST(TraceStore, UnusablePathsAreInputErrorsNamingThePath) {
  TempDir dir;
  // The path is a folder: SQLite cannot open it.
  try {
    TraceStore store(dir.path().string());
    FAIL() << "opened a folder as a database";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr(dir.path().string()));
    EXPECT_THAT(e.what(), HasSubstr("unable to open database file"));
  }
  // The parent "folder" is a file: it cannot be created.
  write_file(dir.file("plain"), "not a folder");
  const std::string under_file = dir.file("plain") + "/traces.db";
  try {
    TraceStore store(under_file);
    FAIL() << "created a database under a regular file";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr(under_file));
  }
  // Not a database at all.
  write_file(dir.file("text.db"), std::string(4096, 'x'));
  try {
    TraceStore store(dir.file("text.db"));
    FAIL() << "opened a text file as a database";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr(dir.file("text.db")));
    EXPECT_THAT(e.what(), HasSubstr("not a database"));
  }
}

TEST(TraceStore, RefusesAnotherApplicationsDatabase) {
  TempDir dir;
  const std::string path = dir.file("other.db");
  {
    RawDb raw(path);
    raw.exec("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)");
  }
  EXPECT_THROW(TraceStore store(path), InputError);
  RawDb raw(path);
  EXPECT_TRUE(raw.column("SELECT name FROM sqlite_schema WHERE name='traces'").empty());
}

TEST(TraceStore, CreatesMissingParentFolders) {
  TempDir dir;
  const std::string path = dir.file("a/b/traces.db");
  TraceStore store(path);
  store.append(trace("x", "y"));
  store.flush();
  EXPECT_EQ(store.count(), 1);
}

TEST(TraceStore, RejectsOversizedFieldsOnTheCallersThread) {
  TempDir dir;
  TraceStore store(dir.file("t.db"));
  StoredTrace big = trace(std::string((size_t{16} << 20) + 1, 'a'), "x");
  EXPECT_THROW(store.append(big), InputError);
  EXPECT_THROW(store.try_append(big), InputError);
  store.append(trace("fine", "x"));
  store.flush();
  EXPECT_EQ(store.count(), 1);
}

TEST(TraceStore, RejectsNonsenseOptions) {
  TempDir dir;
  TraceStoreOptions o;
  o.batch_rows = 0;
  EXPECT_THROW(TraceStore(dir.file("t.db"), o), InputError);
}

TEST(TraceStore, FailedCommitIsReportedByFlushAndRetried) {
  TempDir dir;
  const std::string path = dir.file("t.db");
  TraceStoreOptions o = manual(1000);
  o.busy_timeout_ms = 20;
  TraceStore store(path, o);
  RawDb other(path);
  other.exec("BEGIN IMMEDIATE");  // another writer holds the lock
  store.append(trace("a", "x"));
  try {
    store.flush();
    FAIL() << "flush succeeded while the database was locked";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("locked"));
    EXPECT_THAT(e.what(), HasSubstr(path));
  }
  other.exec("COMMIT");
  store.append(trace("b", "x"));
  store.flush();  // the failed rows were kept and are committed first, in order
  auto lines = export_lines(store);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0]["input"], "a");
  EXPECT_EQ(lines[1]["input"], "b");
}

// Reads one int64 from `fd`, waiting at most `timeout_ms`; false on EOF, timeout or error.
bool read_count(int fd, int64_t* value, int timeout_ms) {
  char buf[sizeof(int64_t)];
  size_t got = 0;
  while (got < sizeof buf) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return false;
    const ssize_t n = ::read(fd, buf + got, sizeof buf - got);
    if (n <= 0) return false;
    got += static_cast<size_t>(n);
  }
  std::memcpy(value, buf, sizeof buf);
  return true;
}

// Kills and reaps the child whatever happens to the test.
struct ChildGuard {
  pid_t pid;
  ~ChildGuard() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
};

TEST(TraceStoreCrash, KillNineLosesOnlyUncommittedRowsAndNeverCorrupts) {
  TempDir dir;
  const std::string path = dir.file("t.db");
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Child: append forever, reporting each flushed count; the parent kills it mid-stream.
    ::close(fds[0]);
    try {
      TraceStoreOptions o;
      o.batch_rows = 64;
      o.flush_interval_ms = 2;
      TraceStore store(path, o);
      for (int64_t i = 0; i < 5000000; ++i) {
        store.append(trace("row " + std::to_string(i), "a", i + 1));
        if ((i + 1) % 97 == 0) {
          store.flush();
          const int64_t n = i + 1;
          if (::write(fds[1], &n, sizeof n) != static_cast<ssize_t>(sizeof n)) ::_exit(4);
        }
      }
    } catch (...) {
      ::_exit(3);
    }
    ::_exit(0);
  }
  ChildGuard guard{pid};
  ::close(fds[1]);
  const int64_t kill_after = testing::sanitized() ? 1000 : 5000;
  int64_t flushed = 0, n = 0;
  while (flushed < kill_after && read_count(fds[0], &n, 30000)) flushed = n;
  ASSERT_GE(flushed, kill_after) << "the child stopped reporting";
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  while (read_count(fds[0], &n, 30000)) flushed = n;  // counts written before it died
  ::close(fds[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  guard.pid = -1;
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exited with " << WEXITSTATUS(status);
  EXPECT_EQ(WTERMSIG(status), SIGKILL);

  {
    RawDb raw(path);
    EXPECT_EQ(raw.column("PRAGMA integrity_check"), std::vector<std::string>{"ok"});
    // Committed rows are a gapless prefix of what the child appended, covering every
    // flushed row.
    auto inputs = raw.column("SELECT input FROM traces ORDER BY id");
    ASSERT_GE(static_cast<int64_t>(inputs.size()), flushed);
    for (size_t i = 0; i < inputs.size(); ++i) {
      ASSERT_EQ(inputs[i], "row " + std::to_string(i));
    }
  }
  // The store reopens after the crash and keeps working.
  TraceStore store(path);
  const int64_t before = store.count();
  EXPECT_GE(before, flushed);
  store.append(trace("after the crash", "a"));
  store.flush();
  EXPECT_EQ(store.count(), before + 1);
}

}  // namespace
}  // namespace tracer
