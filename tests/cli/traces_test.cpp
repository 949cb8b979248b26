// End-to-end: `tracer traces import|count|export` through the real binary.
#include "io/traces.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "io/trace_store.hpp"
#include "test_util.hpp"

namespace tracer {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using testing::read_file;
using testing::run_cli;
using testing::TempDir;
using testing::write_file;

std::string q(const std::string& s) { return "'" + s + "'"; }

std::vector<json> jsonl(const std::string& text) {
  std::vector<json> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(json::parse(line));
  return out;
}

// Six traces over two labels; one carries metadata from an earlier export.
std::string small_traces(const TempDir& dir) {
  const std::string path = dir.file("small.jsonl");
  write_file(path, R"({"input": "where is my card", "teacher": "card_arrival"})"
                   "\n"
                   R"({"input": "card still not here", "teacher": "card_arrival", "metadata": )"
                   R"({"time_ms": 1700000000000, "policy_version": "p7", "decision": "handled"}})"
                   "\n"
                   R"({"text": "top up failed", "label": "top_up_failed"})"
                   "\n\n"
                   R"({"input": "why did my top up fail", "teacher": "top_up_failed", "id": 9})"
                   "\n"
                   R"({"input": "my card has not arrived", "teacher": "card_arrival"})"
                   "\n"
                   R"({"input": "top-up declined", "teacher": "top_up_failed"})"
                   "\n");
  return path;
}

TEST(CliTraces, ImportCountExportRoundTrip) {
  TempDir dir;
  const std::string db = dir.file("store/traces.db");
  auto imp = run_cli("traces import " + q(small_traces(dir)) + " --db " + q(db));
  ASSERT_EQ(imp.exit_code, 0) << imp.err;
  EXPECT_THAT(imp.err, HasSubstr("imported 6 traces"));
  EXPECT_THAT(imp.err, HasSubstr("6 new, 0 already in the store (6 stored)"));

  auto count = run_cli("traces count --db " + q(db));
  ASSERT_EQ(count.exit_code, 0) << count.err;
  EXPECT_EQ(count.out, "6\n");
  auto recent = run_cli("traces count --since-ms 1700000000001 --db " + q(db));
  ASSERT_EQ(recent.exit_code, 0) << recent.err;
  EXPECT_EQ(recent.out, "5\n");  // the trace with an old time_ms kept it

  const std::string out = dir.file("export.jsonl");
  auto exp = run_cli("traces export --db " + q(db) + " -o " + q(out));
  ASSERT_EQ(exp.exit_code, 0) << exp.err;
  EXPECT_THAT(exp.err, HasSubstr("exported 6 of the 6"));
  EXPECT_FALSE(std::filesystem::exists(out + ".tmp"));
  auto lines = jsonl(read_file(out));
  ASSERT_EQ(lines.size(), 6u);
  EXPECT_EQ(lines[0]["input"], "where is my card");
  EXPECT_EQ(lines[0]["teacher"], "card_arrival");
  EXPECT_EQ(lines[0]["metadata"]["source"], "import");
  EXPECT_EQ(lines[1]["metadata"]["time_ms"], 1700000000000);
  EXPECT_EQ(lines[1]["metadata"]["policy_version"], "p7");
  EXPECT_EQ(lines[1]["metadata"]["decision"], "handled");
  EXPECT_EQ(lines[2]["input"], "top up failed");
  EXPECT_EQ(lines[2]["teacher"], "top_up_failed");

  // The export is a trace file: tracer's reader accepts it, and it re-imports unchanged.
  TraceSet set = read_traces(out);
  EXPECT_EQ(set.size(), 6u);
  EXPECT_EQ(set.labels, (std::vector<std::string>{"card_arrival", "top_up_failed"}));
  const std::string db2 = dir.file("second.db");
  auto again = run_cli("traces import " + q(out) + " --db " + q(db2));
  ASSERT_EQ(again.exit_code, 0) << again.err;
  auto stdout_export = run_cli("traces export --db " + q(db2));
  ASSERT_EQ(stdout_export.exit_code, 0) << stdout_export.err;
  auto relines = jsonl(stdout_export.out);
  ASSERT_EQ(relines.size(), lines.size());
  for (size_t i = 0; i < lines.size(); ++i) {
    EXPECT_EQ(relines[i]["input"], lines[i]["input"]);
    EXPECT_EQ(relines[i]["teacher"], lines[i]["teacher"]);
    EXPECT_EQ(relines[i]["metadata"], lines[i]["metadata"]);
  }

  // Its own export re-imported into a store adds nothing: those rows are there already.
  auto own = run_cli("traces import " + q(out) + " --db " + q(db));
  ASSERT_EQ(own.exit_code, 0) << own.err;
  EXPECT_THAT(own.err, HasSubstr("0 new, 6 already in the store (6 stored)"));
  EXPECT_EQ(run_cli("traces count --db " + q(db)).out, "6\n");
}

// --since / --until: relative durations, dates and ISO-8601 times select a half-open range;
// "sampled" survives export and import.
TEST(CliTraces, ExportAndCountTakeATimeRange) {
  TempDir dir;
  const std::string file = dir.file("dated.jsonl");
  // 2023-11-14T22:13:20Z, one day later, and one trace recorded now-ish (no time: import time).
  write_file(file,
             R"({"input": "old one", "teacher": "a", "metadata": {"time_ms": 1700000000000}})"
             "\n"
             R"({"input": "next day", "teacher": "b", "metadata": {"time_ms": 1700086400000, )"
             R"("decision": "deferred", "sampled": true}})"
             "\n"
             R"({"input": "fresh", "teacher": "a"})"
             "\n");
  const std::string db = dir.file("t.db");
  ASSERT_EQ(run_cli("traces import " + q(file) + " --db " + q(db)).exit_code, 0);
  EXPECT_EQ(run_cli("traces count --since 2023-11-15 --db " + q(db)).out, "2\n");
  EXPECT_EQ(run_cli("traces count --since 2023-11-14T22:13:20Z --until 2023-11-15T22:13:20Z "
                    "--db " +
                    q(db))
                .out,
            "1\n");  // [since, until): the second trace is at `until` exactly
  EXPECT_EQ(run_cli("traces count --since 1h --db " + q(db)).out, "1\n");
  EXPECT_EQ(run_cli("traces count --until 2023-11-15T00:13:21+02:00 --db " + q(db)).out, "1\n");
  auto exp = run_cli("traces export --since 2023-11-15 --until 1h --db " + q(db));
  ASSERT_EQ(exp.exit_code, 0) << exp.err;
  auto lines = jsonl(exp.out);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0]["input"], "next day");
  EXPECT_EQ(lines[0]["metadata"]["sampled"], true);
  EXPECT_THAT(exp.err, HasSubstr("exported 1 of the 1 stored traces since 2023-11-15T00:00:00Z"));
  for (const char* bad :
       {"--since 30", "--since yesterday", "--since 2023-02-30", "--since 1h --until 2h"}) {
    auto r = run_cli(std::string("traces export ") + bad + " --db " + q(db));
    EXPECT_EQ(r.exit_code, 2) << bad << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr(std::string(bad).find("until") != std::string::npos
                                     ? "must be before --until"
                                     : "--since takes a time"))
        << bad;
  }
}

TEST(CliTraces, ImportingAFileTwiceStoresItOnce) {
  TempDir dir;
  const std::string db = dir.file("t.db");
  const std::string file = dir.file("f.jsonl");
  const std::string lines =
      // The same question twice in one file: two records, both stored.
      R"({"input": "where is my card", "teacher": "card_arrival"})"
      "\n"
      R"({"input": "where is my card", "teacher": "card_arrival"})"
      "\n"
      // Two requests with the same text and label but their own ids: two records.
      R"({"input": "top up failed", "teacher": "top_up_failed", "id": "r1"})"
      "\n"
      R"({"input": "top up failed", "teacher": "top_up_failed", "id": "r2"})"
      "\n";
  write_file(file, lines);
  auto first = run_cli("traces import " + q(file) + " --db " + q(db));
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_THAT(first.err, HasSubstr("4 new, 0 already in the store (4 stored)"));
  auto second = run_cli("traces import " + q(file) + " --db " + q(db));
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_THAT(second.err, HasSubstr("0 new, 4 already in the store (4 stored)"));
  EXPECT_EQ(run_cli("traces count --db " + q(db)).out, "4\n");

  // The file grew: a third copy of the question and a new line are stored, nothing else.
  write_file(file, lines + R"({"input": "where is my card", "teacher": "card_arrival"})"
                           "\n"
                           R"({"input": "top-up declined", "teacher": "top_up_failed"})"
                           "\n");
  auto grown = run_cli("traces import " + q(file) + " --db " + q(db));
  ASSERT_EQ(grown.exit_code, 0) << grown.err;
  EXPECT_THAT(grown.err, HasSubstr("2 new, 4 already in the store (6 stored)"));
  EXPECT_EQ(run_cli("traces count --db " + q(db)).out, "6\n");

  // A different label, time or decision makes a different record: the surrogate's own answer
  // ("handled") must not stand in for the LLM's label of the same text.
  write_file(file, R"({"input": "where is my card", "teacher": "card_delivery"})"
                   "\n"
                   R"({"input": "where is my card", "teacher": "card_arrival", "metadata": )"
                   R"({"time_ms": 1700000000000}})"
                   "\n"
                   R"({"input": "where is my card", "teacher": "card_arrival", "metadata": )"
                   R"({"decision": "handled"}})"
                   "\n");
  auto other = run_cli("traces import " + q(file) + " --db " + q(db));
  EXPECT_THAT(other.err, HasSubstr("3 new, 0 already in the store (9 stored)"));
  auto same = run_cli("traces import " + q(file) + " --db " + q(db));
  EXPECT_THAT(same.err, HasSubstr("0 new, 3 already in the store (9 stored)"));
}

TEST(CliTraces, RecordedRepeatsAreKeptThroughExportAndImport) {
  TempDir dir;
  const std::string db = dir.file("t.db");
  {
    // The proxy asked the LLM the same question twice, at different times: real traffic.
    TraceStore store(db);
    for (int64_t t : {1700000000000, 1700000005000}) {
      StoredTrace row;
      row.time_ms = t;
      row.input = "where is my card";
      row.teacher = "card_arrival";
      row.source = "proxy";
      row.policy_version = "p1";
      row.decision = "deferred";
      store.append(row);
    }
  }
  // An imported file with the same question is a record of its own (source "import").
  const std::string file = dir.file("f.jsonl");
  write_file(file, R"({"input": "where is my card", "teacher": "card_arrival"})"
                   "\n");
  auto imp = run_cli("traces import " + q(file) + " --db " + q(db));
  ASSERT_EQ(imp.exit_code, 0) << imp.err;
  EXPECT_THAT(imp.err, HasSubstr("1 new, 0 already in the store (3 stored)"));

  // The store's export names its rows: re-imported into the same store it adds nothing.
  const std::string out = dir.file("export.jsonl");
  ASSERT_EQ(run_cli("traces export --db " + q(db) + " -o " + q(out)).exit_code, 0);
  auto own = run_cli("traces import " + q(out) + " --db " + q(db));
  ASSERT_EQ(own.exit_code, 0) << own.err;
  EXPECT_THAT(own.err, HasSubstr("0 new, 3 already in the store (3 stored)"));

  // Into another store: both recorded copies are kept, once however often it is imported.
  const std::string db2 = dir.file("t2.db");
  auto moved = run_cli("traces import " + q(out) + " --db " + q(db2));
  ASSERT_EQ(moved.exit_code, 0) << moved.err;
  EXPECT_THAT(moved.err, HasSubstr("3 new, 0 already in the store (3 stored)"));
  auto again = run_cli("traces import " + q(out) + " --db " + q(db2));
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_THAT(again.err, HasSubstr("0 new, 3 already in the store (3 stored)"));
  auto lines = jsonl(run_cli("traces export --db " + q(db2)).out);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0]["metadata"]["time_ms"], 1700000000000);
  EXPECT_EQ(lines[1]["metadata"]["time_ms"], 1700000005000);
  for (const auto& l : lines) EXPECT_EQ(l["input"], "where is my card");
}

TEST(CliTraces, InvalidImportStoresNothingUnlessSkipping) {
  TempDir dir;
  const std::string file = dir.file("bad.jsonl");
  write_file(file, R"({"input": "fine", "teacher": "a"})"
                   "\n"
                   R"({"input": "no label"})"
                   "\n"
                   R"({"input": "also fine", "teacher": "b"})"
                   "\n");
  const std::string db = dir.file("t.db");
  auto bad = run_cli("traces import " + q(file) + " --db " + q(db));
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, HasSubstr("bad.jsonl:2"));
  EXPECT_FALSE(std::filesystem::exists(db));

  auto skip = run_cli("traces import " + q(file) + " --skip-invalid --db " + q(db));
  ASSERT_EQ(skip.exit_code, 0) << skip.err;
  EXPECT_THAT(skip.err, HasSubstr("skipped 1"));
  EXPECT_EQ(run_cli("traces count --db " + q(db)).out, "2\n");
}

TEST(CliTraces, ErrorsNameThePath) {
  TempDir dir;
  const std::string missing = dir.file("nope.db");
  auto count = run_cli("traces count --db " + q(missing));
  EXPECT_EQ(count.exit_code, 2);
  EXPECT_THAT(count.err, HasSubstr(missing));
  EXPECT_FALSE(std::filesystem::exists(missing));  // reading never creates a store
  auto exp = run_cli("traces export --db " + q(missing));
  EXPECT_EQ(exp.exit_code, 2);

  write_file(dir.file("plain"), "a file, not a folder");
  const std::string unwritable = dir.file("plain") + "/traces.db";
  auto imp = run_cli("traces import " + q(small_traces(dir)) + " --db " + q(unwritable));
  EXPECT_EQ(imp.exit_code, 2);
  EXPECT_THAT(imp.err, HasSubstr(unwritable));

  write_file(dir.file("text.db"), std::string(4096, 'x'));
  auto notdb = run_cli("traces count --db " + q(dir.file("text.db")));
  EXPECT_EQ(notdb.exit_code, 2);
  EXPECT_THAT(notdb.err, HasSubstr("not a database"));
}

TEST(CliTraces, HelpDescribesSubcommandsAndFlags) {
  auto top = run_cli("traces --help");
  EXPECT_EQ(top.exit_code, 0);
  for (const char* word : {"export", "count", "import"}) EXPECT_THAT(top.out, HasSubstr(word));
  auto exp = run_cli("traces export --help");
  EXPECT_EQ(exp.exit_code, 0);
  for (const char* flag : {"--db", "--output", "--include-unknown", ".tracer/traces.db"})
    EXPECT_THAT(exp.out, HasSubstr(flag));
  auto imp = run_cli("traces import --help");
  EXPECT_THAT(imp.out, HasSubstr("--skip-invalid"));
  auto none = run_cli("traces");
  EXPECT_NE(none.exit_code, 0);
}

}  // namespace
}  // namespace tracer
