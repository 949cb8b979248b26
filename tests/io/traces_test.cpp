#include "io/traces.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "test_util.hpp"
#include "util/error.hpp"

namespace tracer {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using tracer::testing::TempDir;
using tracer::testing::write_file;

// The InputError message read_traces throws, or a test failure when it does not throw.
std::string read_error(const std::string& path, const ReadOptions& options = {},
                       ReadReport* report = nullptr) {
  try {
    read_traces(path, options, report);
  } catch (const InputError& e) {
    return e.what();
  }
  ADD_FAILURE() << "read_traces(" << path << ") did not throw InputError";
  return {};
}

std::string check_error(const TraceSet& set, size_t min_per_label) {
  try {
    check_label_counts(set, min_per_label);
  } catch (const InputError& e) {
    return e.what();
  }
  ADD_FAILURE() << "check_label_counts did not throw InputError";
  return {};
}

ReadOptions skipping() {
  ReadOptions o;
  o.skip_invalid = true;
  return o;
}

// ---------------------------------------------------------------------------------------------
// Every kind of bad line: the message names the file and the line, and says what to fix.

struct BadLineCase {
  std::string name;
  std::string bad_line;  // written as line 3, after two good lines
  std::string expected;  // a phrase the reason must contain
  ReadOptions options = {};
  std::string good = R"("input": "hello there", "teacher": "greet")";  // fields of lines 1-2
};

void PrintTo(const BadLineCase& c, std::ostream* os) { *os << c.name; }

class BadLine : public ::testing::TestWithParam<BadLineCase> {};

TEST_P(BadLine, RejectsFileNamingFileLineAndFix) {
  const auto& c = GetParam();
  TempDir dir;
  const std::string path = dir.file("bad.jsonl");
  write_file(path, "{" + c.good + "}\n{" + c.good + "}\n" + c.bad_line + "\n");
  const std::string msg = read_error(path, c.options);
  EXPECT_THAT(msg, HasSubstr(path + ":3: ")) << msg;
  EXPECT_THAT(msg, HasSubstr(c.expected)) << msg;
  EXPECT_THAT(msg, HasSubstr("1 of 3 lines is invalid")) << msg;
  EXPECT_THAT(msg, HasSubstr("fix these lines or pass --skip-invalid to skip them")) << msg;
  EXPECT_THAT(msg, Not(HasSubstr(path + ":1:"))) << msg;
}

TEST_P(BadLine, SkipInvalidDropsOnlyThatLine) {
  const auto& c = GetParam();
  TempDir dir;
  const std::string path = dir.file("bad.jsonl");
  write_file(path, "{" + c.good + "}\n{" + c.good + "}\n" + c.bad_line + "\n");
  ReadOptions options = c.options;
  options.skip_invalid = true;
  ReadReport report;
  const TraceSet set = read_traces(path, options, &report);
  ASSERT_EQ(set.size(), 2u);
  EXPECT_EQ(set.traces[1].line, 2u);
  EXPECT_EQ(report.lines, 3u);
  EXPECT_EQ(report.accepted, 2u);
  EXPECT_EQ(report.skipped, 1u);
  ASSERT_EQ(report.errors.size(), 1u);
  EXPECT_THAT(report.errors[0], HasSubstr(path + ":3: "));
  EXPECT_THAT(report.errors[0], HasSubstr(c.expected));
}

ReadOptions with_max_input(size_t n) {
  ReadOptions o;
  o.max_input_bytes = n;
  return o;
}
ReadOptions with_max_label(size_t n) {
  ReadOptions o;
  o.max_label_bytes = n;
  return o;
}
ReadOptions with_max_line(size_t n) {
  ReadOptions o;
  o.max_line_bytes = n;
  return o;
}

const std::string kEmbedded = R"("input": "hi", "teacher": "greet", "embedding": [0.5, 1])";

INSTANTIATE_TEST_SUITE_P(
    Traces, BadLine,
    ::testing::Values(
        BadLineCase{"MalformedJson", R"({"input": "x", "teacher": })", "malformed JSON"},
        BadLineCase{"TruncatedJson", R"({"input": "x", "teacher": "a")", "malformed JSON"},
        BadLineCase{"TrailingGarbage", R"({"input": "x", "teacher": "a"} x)", "malformed JSON"},
        BadLineCase{"NumberOverflow", R"({"input": "x", "teacher": "a", "n": 1e999})",
                    "malformed JSON (number overflow parsing '1e999')"},
        BadLineCase{"ArrayNotObject", R"(["x", "a"])", "expected a JSON object, got an array"},
        BadLineCase{"NumberNotObject", "42", "expected a JSON object, got a number"},
        BadLineCase{"MissingInput", R"({"teacher": "a", "inputs": "x"})",
                    R"(no input field; add "input" (or "text", "query" or "prompt"))"},
        BadLineCase{"MissingLabel", R"({"input": "x", "labels": "a"})",
                    R"(no label field; add "teacher" (or "label" or "output"))"},
        BadLineCase{"EmptyInput", R"({"input": "", "teacher": "a"})",
                    R"(input field "input" is empty)"},
        BadLineCase{"WhitespaceInput", R"({"text": " \t\n ", "teacher": "a"})",
                    R"(input field "text" is empty)"},
        BadLineCase{"UnicodeSpaceInput", "{\"input\": \"\u00a0\u3000\", \"teacher\": \"a\"}",
                    R"(input field "input" is empty)"},
        BadLineCase{"EmptyLabel", R"({"input": "x", "teacher": ""})",
                    R"(label field "teacher" is empty; every trace needs the LLM's label)"},
        BadLineCase{"WhitespaceLabel", R"({"input": "x", "output": "   "})",
                    R"(label field "output" is empty)"},
        BadLineCase{"NullLabel", R"({"input": "x", "teacher": null})",
                    R"(label field "teacher" is null; every trace needs the LLM's label as a )"
                    R"(non-empty string)"},
        BadLineCase{"NullInput", R"({"input": null, "teacher": "a"})",
                    R"(input field "input" is null)"},
        BadLineCase{"NumberLabel", R"({"input": "x", "teacher": 3})",
                    R"(label field "teacher" is a number (3), not a string; write it as a JSON )"
                    R"(string, e.g. "teacher": "3")"},
        BadLineCase{"BoolLabel", R"({"input": "x", "label": true})",
                    R"(label field "label" is a boolean (true), not a string)"},
        BadLineCase{"ObjectLabel", R"({"input": "x", "teacher": {"name": "a"}})",
                    R"(label field "teacher" is an object, not a string)"},
        BadLineCase{"NumberInput", R"({"input": 12, "teacher": "a"})",
                    R"(input field "input" is a number (12), not a string)"},
        BadLineCase{"InvalidUtf8Latin1", "{\"input\": \"caf\xe9\", \"teacher\": \"a\"}",
                    "is not valid UTF-8 (bad byte at offset 14)"},
        BadLineCase{"InvalidUtf8Surrogate", "{\"input\": \"x\", \"teacher\": \"\xed\xa0\x80\"}",
                    "is not valid UTF-8"},
        BadLineCase{"InvalidUtf8Overlong", "{\"input\": \"\xc0\xaf\", \"teacher\": \"a\"}",
                    "is not valid UTF-8"},
        BadLineCase{"EmbeddingNotArray",
                    R"({"input": "x", "teacher": "a", "embedding": "0.1 0.2"})",
                    R"("embedding" is a string, not an array of numbers)"},
        BadLineCase{"EmbeddingElementNotNumber",
                    R"({"input": "x", "teacher": "a", "embedding": [0.1, "0.2"]})",
                    R"("embedding"[1] is a string, not a number)"},
        BadLineCase{"EmbeddingEmpty", R"({"input": "x", "teacher": "a", "embedding": []})",
                    R"("embedding" is an empty array)"},
        BadLineCase{"EmbeddingOverflowsFloat",
                    R"({"input": "x", "teacher": "a", "embedding": [1e300]})",
                    "does not fit a 32-bit float"},
        BadLineCase{"EmbeddingWrongWidth",
                    R"({"input": "x", "teacher": "a", "embedding": [1, 2, 3]})",
                    R"("embedding" has 3 numbers but the first trace (line 1) has 2)",
                    {},
                    kEmbedded},
        BadLineCase{"EmbeddingMissingWhenOthersHaveOne",
                    R"({"input": "x", "teacher": "a"})",
                    R"(no "embedding" but the first trace (line 1) has one of width 2)",
                    {},
                    kEmbedded},
        BadLineCase{"EmbeddingWhenOthersHaveNone",
                    R"({"input": "x", "teacher": "a", "embedding": [1]})",
                    "has an \"embedding\" of width 1 but the first trace (line 1) has none"},
        BadLineCase{"InputTooLong", R"({"input": "01234567890", "teacher": "a"})",
                    R"(input field "input" is 11 bytes, over the limit of 10 bytes)",
                    with_max_input(10), R"("input": "0123456789", "teacher": "greet")"},
        BadLineCase{"LabelTooLong", R"({"input": "x", "teacher": "abcdef"})",
                    R"(label field "teacher" is 6 bytes, over the limit of 5 bytes)",
                    with_max_label(5), R"("input": "hello there", "teacher": "greet")"},
        BadLineCase{"LineTooLong",
                    R"({"input": ")" + std::string(200, 'x') + R"(", "teacher": "a"})",
                    "the line is longer than the limit of 100 bytes", with_max_line(100)},
        BadLineCase{"IdNotScalar", R"({"input": "x", "teacher": "a", "id": [1]})",
                    R"("id" is an array; write the id as a string or a number)"},
        BadLineCase{"GoldNotString", R"({"input": "x", "teacher": "a", "gold": 4})",
                    R"("gold" is a number; write the human label as a string)"}),
    [](const ::testing::TestParamInfo<BadLineCase>& info) { return info.param.name; });

// ---------------------------------------------------------------------------------------------
// JSONL fields and aliases.

TEST(ReadTraces, ReadsFieldsAndOptionalValues) {
  TempDir dir;
  const std::string path = dir.file("t.jsonl");
  write_file(path,
             R"({"id": "a-1", "input": "where is my card", "teacher": "card_arrival", )"
             R"("gold": "card_delivery", "metadata": {"b": "x", "a": [1, 2]}, "extra": 5})"
             "\n"
             R"({"id": 17, "input": "hi", "teacher": "greet", "gold": null, "metadata": null})"
             "\n"
             R"({"id": 2.5, "input": "yo", "teacher": "greet", "gold": ""})"
             "\n");
  const TraceSet set = read_traces(path);
  ASSERT_EQ(set.size(), 3u);
  const Trace& a = set.traces[0];
  EXPECT_EQ(a.id, "a-1");
  EXPECT_EQ(a.input, "where is my card");
  EXPECT_EQ(a.teacher, "card_arrival");
  ASSERT_TRUE(a.gold.has_value());
  EXPECT_EQ(*a.gold, "card_delivery");
  EXPECT_EQ(a.metadata, R"({"a":[1,2],"b":"x"})");
  EXPECT_TRUE(a.embedding.empty());
  EXPECT_EQ(a.line, 1u);
  EXPECT_EQ(set.traces[1].id, "17");
  EXPECT_FALSE(set.traces[1].gold.has_value());
  EXPECT_EQ(set.traces[1].metadata, "");
  EXPECT_EQ(set.traces[2].id, "2.5");
  EXPECT_FALSE(set.traces[2].gold.has_value()) << "an empty gold label means unlabelled";
  EXPECT_EQ(set.embedding_dim, 0u);
}

TEST(ReadTraces, AcceptsAliasesInPriorityOrder) {
  TempDir dir;
  const std::string path = dir.file("t.jsonl");
  write_file(path, R"({"text": "t1", "label": "l1"})"
                   "\n"
                   R"({"query": "q2", "output": "o2"})"
                   "\n"
                   R"({"prompt": "p3", "teacher": "x3"})"
                   "\n"
                   R"({"prompt": "p4", "query": "q4", "text": "t4", "output": "o4", "label": "l4"})"
                   "\n"
                   R"({"text": "t5", "input": "i5", "label": "l5", "teacher": "x5"})"
                   "\n");
  const TraceSet set = read_traces(path);
  ASSERT_EQ(set.size(), 5u);
  EXPECT_EQ(set.traces[0].input, "t1");
  EXPECT_EQ(set.traces[0].teacher, "l1");
  EXPECT_EQ(set.traces[1].input, "q2");
  EXPECT_EQ(set.traces[1].teacher, "o2");
  EXPECT_EQ(set.traces[2].input, "p3");
  EXPECT_EQ(set.traces[3].input, "t4");
  EXPECT_EQ(set.traces[3].teacher, "l4");
  EXPECT_EQ(set.traces[4].input, "i5");
  EXPECT_EQ(set.traces[4].teacher, "x5");
}

TEST(ReadTraces, PreferredKeyWinsEvenWhenItsValueIsBad) {
  // "First present wins": a null `teacher` is an error, not a reason to fall back to `label`.
  TempDir dir;
  const std::string path = dir.file("t.jsonl");
  write_file(path, R"({"input": "x", "teacher": null, "label": "a"})"
                   "\n");
  EXPECT_THAT(read_error(path), HasSubstr(R"(label field "teacher" is null)"));
}

TEST(ReadTraces, ReadsEmbeddingsAndWidth) {
  TempDir dir;
  const std::string path = dir.file("t.jsonl");
  write_file(path, R"({"input": "a", "teacher": "x", "embedding": [0.5, -1, 2e3]})"
                   "\n"
                   R"({"input": "b", "teacher": "y", "embedding": [0, 0.25, -0.125], "id": null})"
                   "\n");
  const TraceSet set = read_traces(path);
  ASSERT_EQ(set.size(), 2u);
  EXPECT_EQ(set.embedding_dim, 3u);
  EXPECT_EQ(set.traces[0].embedding, (std::vector<float>{0.5f, -1.f, 2000.f}));
  EXPECT_EQ(set.traces[1].embedding, (std::vector<float>{0.f, 0.25f, -0.125f}));
  EXPECT_EQ(set.traces[1].id, "");
}

TEST(ReadTraces, SkipsBlankLinesAndKeepsPhysicalLineNumbers) {
  TempDir dir;
  const std::string path = dir.file("t.jsonl");
  write_file(path,
             "\n   \t\n"
             R"({"input": "a", "teacher": "x"})"
             "\n\n\r\n"
             R"({"input": "b", "teacher": "y"})"
             "\n  \n");
  ReadReport report;
  const TraceSet set = read_traces(path, {}, &report);
  ASSERT_EQ(set.size(), 2u);
  EXPECT_EQ(set.traces[0].line, 3u);
  EXPECT_EQ(set.traces[1].line, 6u);
  EXPECT_EQ(report.lines, 7u);
  EXPECT_EQ(report.accepted, 2u);
  EXPECT_EQ(report.skipped, 0u);
  EXPECT_TRUE(report.errors.empty());
}

TEST(ReadTraces, HandlesCrlfBomAndMissingFinalNewline) {
  TempDir dir;
  const std::string path = dir.file("t.jsonl");
  write_file(path,
             "\xEF\xBB\xBF"
             R"({"input": "a b", "teacher": "x"})"
             "\r\n"
             R"({"input": "c", "teacher": "y"})"
             "\r\n"
             R"({"input": "d", "teacher": "y"})");
  const TraceSet set = read_traces(path);
  ASSERT_EQ(set.size(), 3u);
  EXPECT_EQ(set.traces[0].input, "a b");
  EXPECT_EQ(set.traces[1].teacher, "y");
  EXPECT_EQ(set.traces[2].input, "d");
  EXPECT_EQ(set.traces[2].line, 3u);
  EXPECT_EQ(set.labels, (std::vector<std::string>{"x", "y"}));
}

TEST(ReadTraces, KeepsUnicodeTextExactly) {
  TempDir dir;
  const std::string path = dir.file("t.ndjson");
  write_file(path,
             "{\"input\": \"caf\u00e9 \\u00fcber \U0001F600\", \"teacher\": \"\u65e5\"}\n"
             "{\"input\": \"b\", \"teacher\": \"z\"}\n");
  const TraceSet set = read_traces(path);
  ASSERT_EQ(set.size(), 2u);
  EXPECT_EQ(set.traces[0].input, "caf\u00e9 \u00fcber \U0001F600");
  EXPECT_EQ(set.traces[0].teacher, "\u65e5");
}

TEST(ReadTraces, LimitsAreInclusive) {
  TempDir dir;
  const std::string path = dir.file("t.jsonl");
  const std::string line = R"({"input": "0123456789", "teacher": "abcde"})";
  write_file(path, line + "\r\n" + line + "\n");
  ReadOptions options;
  options.max_input_bytes = 10;
  options.max_label_bytes = 5;
  options.max_line_bytes = line.size();  // the CR does not count
  EXPECT_EQ(read_traces(path, options).size(), 2u);
}

TEST(ReadTraces, JsonArrayFileGetsAHint) {
  TempDir dir;
  const std::string path = dir.file("t.json");
  write_file(path, R"([{"input": "a", "teacher": "x"}, {"input": "b", "teacher": "y"}])");
  const std::string msg = read_error(path);
  EXPECT_THAT(msg, HasSubstr(path + ":1: expected a JSON object, got an array"));
  EXPECT_THAT(msg, HasSubstr("JSON Lines"));
}

// ---------------------------------------------------------------------------------------------
// Whole-file behaviour.

TEST(ReadTraces, ListsFirstReasonsAndCountsTheRest) {
  TempDir dir;
  const std::string path = dir.file("t.jsonl");
  std::string content;
  for (int i = 1; i <= 30; ++i) {
    content += i % 2 ? R"({"input": "x", "teacher": null})" : R"({"input": "x", "teacher": "a"})";
    content += "\n";
  }
  write_file(path, content);
  ReadOptions options;
  options.max_errors_reported = 3;
  ReadReport report;
  const std::string msg = read_error(path, options, &report);
  EXPECT_THAT(msg, HasSubstr(path + ": 15 of 30 lines are invalid"));
  EXPECT_THAT(msg, HasSubstr(path + ":1: "));
  EXPECT_THAT(msg, HasSubstr(path + ":3: "));
  EXPECT_THAT(msg, HasSubstr(path + ":5: "));
  EXPECT_THAT(msg, Not(HasSubstr(path + ":7: ")));
  EXPECT_THAT(msg, HasSubstr("... and 12 more"));
  EXPECT_EQ(report.errors.size(), 3u);
  EXPECT_EQ(report.skipped, 0u) << "nothing is skipped when the file is rejected";

  options.skip_invalid = true;
  ReadReport skipped;
  const TraceSet set = read_traces(path, options, &skipped);
  EXPECT_EQ(set.size(), 15u);
  EXPECT_EQ(skipped.skipped, 15u);
  EXPECT_EQ(skipped.accepted, 15u);
  EXPECT_EQ(skipped.lines, 30u);
  EXPECT_EQ(skipped.errors.size(), 3u);
  EXPECT_EQ(skipped.path, path);
}

TEST(ReadTraces, NoValidTracesIsAnErrorEvenWhenSkipping) {
  TempDir dir;
  const std::string path = dir.file("t.jsonl");
  write_file(path, R"({"input": "x"})"
                   "\n"
                   R"({"teacher": "a"})"
                   "\n");
  const std::string msg = read_error(path, skipping());
  EXPECT_THAT(msg, HasSubstr("no valid traces"));
  EXPECT_THAT(msg, HasSubstr(path + ":1: no label field"));
  EXPECT_THAT(msg, HasSubstr(path + ":2: no input field"));
}

TEST(ReadTraces, EmptyOrBlankFileIsAnError) {
  TempDir dir;
  const std::string empty = dir.file("empty.jsonl");
  write_file(empty, "");
  EXPECT_THAT(read_error(empty, skipping()), HasSubstr("no traces found"));
  const std::string blank = dir.file("blank.jsonl");
  write_file(blank, "\n \n\t\n");
  EXPECT_THAT(read_error(blank), HasSubstr(blank + ": no traces found"));
}

TEST(ReadTraces, MissingFileDirectoryAndUnknownExtension) {
  TempDir dir;
  const std::string missing = dir.file("nope.jsonl");
  EXPECT_THAT(read_error(missing), HasSubstr("\"" + missing + "\" does not exist"));
  const std::string folder = dir.file("traces.jsonl");
  std::filesystem::create_directory(folder);
  EXPECT_THAT(read_error(folder), HasSubstr("is a directory"));
  const std::string txt = dir.file("traces.txt");
  write_file(txt, R"({"input": "a", "teacher": "x"})"
                  "\n");
  const std::string msg = read_error(txt);
  EXPECT_THAT(msg, HasSubstr(txt));
  EXPECT_THAT(msg, HasSubstr(".jsonl"));
  EXPECT_THAT(msg, HasSubstr(".ndjson"));
  EXPECT_THAT(msg, HasSubstr(".csv"));
  const std::string upper = dir.file("TRACES.JSONL");
  write_file(upper, R"({"input": "a", "teacher": "x"})"
                    "\n");
  EXPECT_EQ(read_traces(upper).size(), 1u) << "extensions are case-insensitive";
}

TEST(ReadTraces, Utf16FileIsRejectedUpFront) {
  TempDir dir;
  const std::string path = dir.file("t.jsonl");
  write_file(path, std::string("\xFF\xFE{\0\"\0", 6));
  EXPECT_THAT(read_error(path), HasSubstr("UTF-16"));
}

TEST(ReadTraces, PathologicalLineIsRejectedAtTheDefaultLimit) {
  TempDir dir;
  const std::string path = dir.file("t.jsonl");
  const size_t limit = ReadOptions{}.max_line_bytes;
  EXPECT_EQ(limit, size_t{16} << 20);
  std::string content = R"({"input": "a", "teacher": "x"})"
                        "\n{\"input\": \"";
  content.append(limit, 'z');
  content +=
      "\", \"teacher\": \"y\"}\n"
      R"({"input": "b", "teacher": "y"})"
      "\n";
  write_file(path, content);
  ReadReport report;
  const TraceSet set = read_traces(path, skipping(), &report);
  ASSERT_EQ(set.size(), 2u);
  EXPECT_EQ(set.traces[1].line, 3u);
  ASSERT_EQ(report.errors.size(), 1u);
  EXPECT_THAT(report.errors[0],
              HasSubstr(path + ":2: the line is longer than the limit of 16777216 bytes"));
}

TEST(StreamTraces, CallsSinkInFileOrder) {
  TempDir dir;
  const std::string path = dir.file("t.jsonl");
  write_file(path, R"({"input": "a", "teacher": "x"})"
                   "\n"
                   R"({"input": "b", "teacher": "y"})"
                   "\n"
                   R"({"input": "c", "teacher": "x"})"
                   "\n");
  std::vector<std::string> seen;
  ReadReport report;
  stream_traces(
      path, {}, [&](Trace&& t) { seen.push_back(t.input + std::to_string(t.line)); }, &report);
  EXPECT_EQ(seen, (std::vector<std::string>{"a1", "b2", "c3"}));
  EXPECT_EQ(report.accepted, 3u);
}

TEST(StreamTraces, StopsFeedingTheSinkOnceTheFileIsDoomed) {
  TempDir dir;
  const std::string path = dir.file("t.jsonl");
  write_file(path, R"({"input": "a", "teacher": "x"})"
                   "\nnot json\n"
                   R"({"input": "c", "teacher": "x"})"
                   "\n");
  size_t calls = 0;
  EXPECT_THROW(stream_traces(path, {}, [&](Trace&&) { ++calls; }), InputError);
  EXPECT_EQ(calls, 1u);
}

// ---------------------------------------------------------------------------------------------
// TraceSet and label checks.

TEST(ReadTraces, IndexesSortedLabels) {
  TempDir dir;
  const std::string path = dir.file("t.jsonl");
  write_file(path, R"({"input": "1", "teacher": "b"})"
                   "\n"
                   R"({"input": "2", "teacher": "B"})"
                   "\n"
                   R"({"input": "3", "teacher": "a"})"
                   "\n"
                   R"({"input": "4", "teacher": "b"})"
                   "\n");
  const TraceSet set = read_traces(path);
  EXPECT_EQ(set.labels, (std::vector<std::string>{"B", "a", "b"}));  // byte order
  EXPECT_EQ(set.y, (std::vector<int>{2, 0, 1, 2}));
  EXPECT_EQ(set.label_counts(), (std::vector<size_t>{1, 1, 2}));
  EXPECT_NO_THROW(check_label_counts(set, 1));
}

TraceSet make_set(const std::vector<std::pair<std::string, size_t>>& counts) {
  TraceSet set;
  for (const auto& [label, n] : counts) set.labels.push_back(label);
  for (size_t l = 0; l < counts.size(); ++l) {
    for (size_t i = 0; i < counts[l].second; ++i) {
      Trace t;
      t.input = "x";
      t.teacher = counts[l].first;
      set.traces.push_back(t);
      set.y.push_back(static_cast<int>(l));
    }
  }
  return set;
}

TEST(CheckLabelCounts, NeedsTwoLabels) {
  const std::string msg = check_error(make_set({{"only", 50}}), 1);
  EXPECT_THAT(msg, HasSubstr("all 50 traces have the same label \"only\""));
  EXPECT_THAT(msg, HasSubstr("at least two labels"));
  EXPECT_THAT(check_error(TraceSet{}, 1), HasSubstr("at least two labels"));
}

TEST(CheckLabelCounts, ListsRareLabelsWithCounts) {
  const TraceSet set = make_set({{"big", 30}, {"rare", 2}, {"ok", 5}, {"tiny", 1}});
  EXPECT_NO_THROW(check_label_counts(set, 1));
  const std::string msg = check_error(set, 5);
  EXPECT_THAT(msg, HasSubstr("2 of 4 labels have fewer than 5 traces: \"tiny\" (1), \"rare\" (2)"));
  EXPECT_THAT(msg, HasSubstr("collect more traces"));
  EXPECT_THAT(msg, HasSubstr("merge"));
  EXPECT_THAT(msg, HasSubstr("drop"));
  EXPECT_THAT(msg, Not(HasSubstr("\"ok\"")));
}

TEST(CheckLabelCounts, ShowsAtMostTenRareLabels) {
  std::vector<std::pair<std::string, size_t>> counts = {{"big", 100}};
  for (int i = 0; i < 14; ++i) counts.emplace_back("l" + std::to_string(10 + i), 1);
  const std::string msg = check_error(make_set(counts), 3);
  EXPECT_THAT(msg, HasSubstr("14 of 15 labels have fewer than 3 traces"));
  EXPECT_THAT(msg, HasSubstr("\"l19\" (1)"));
  EXPECT_THAT(msg, Not(HasSubstr("\"l20\"")));
  EXPECT_THAT(msg, HasSubstr("and 4 more"));
}

// ---------------------------------------------------------------------------------------------
// CSV.

TEST(ReadCsv, ReadsQuotedFieldsWithCommasQuotesAndNewlines) {
  TempDir dir;
  const std::string path = dir.file("t.csv");
  write_file(path,
             "id,input,teacher,gold,ignored\n"
             "1,plain text,card_arrival,,z\n"
             "2,\"hello, world\",\"say \"\"hi\"\"\",greet,z\n"
             "3,\"first line\nsecond line\",multi,,z\n"
             "4,\"\",empty_input,,z\n"
             "5,after,x,,\"\"\n");
  ReadReport report;
  const std::string msg = read_error(path, {}, &report);
  EXPECT_THAT(msg, HasSubstr(path + ":6: input field \"input\" is empty")) << msg;
  EXPECT_THAT(msg, HasSubstr("1 of 5 records is invalid"));

  const TraceSet set = read_traces(path, skipping());
  ASSERT_EQ(set.size(), 4u);
  EXPECT_EQ(set.traces[0].id, "1");
  EXPECT_EQ(set.traces[0].input, "plain text");
  EXPECT_FALSE(set.traces[0].gold.has_value());
  EXPECT_EQ(set.traces[0].line, 2u);
  EXPECT_EQ(set.traces[1].input, "hello, world");
  EXPECT_EQ(set.traces[1].teacher, "say \"hi\"");
  EXPECT_EQ(set.traces[1].gold, std::optional<std::string>("greet"));
  EXPECT_EQ(set.traces[2].input, "first line\nsecond line");
  EXPECT_EQ(set.traces[2].line, 4u);
  EXPECT_EQ(set.traces[3].input, "after");
  EXPECT_EQ(set.traces[3].line, 7u) << "the line count continues past the embedded newline";
}

TEST(ReadCsv, HandlesBomCrlfAliasesAndHeaderCase) {
  TempDir dir;
  const std::string path = dir.file("t.CSV");
  write_file(path,
             "\xEF\xBB\xBF Text ,LABEL\r\n"
             "a,x\r\n"
             "\r\n"
             "\"b\r\nc\",y\r\n"
             "d,y");
  ReadReport report;
  const TraceSet set = read_traces(path, {}, &report);
  ASSERT_EQ(set.size(), 3u);
  EXPECT_EQ(set.traces[0].input, "a");
  EXPECT_EQ(set.traces[0].teacher, "x");
  EXPECT_EQ(set.traces[1].input, "b\r\nc") << "line breaks inside quotes are kept as written";
  EXPECT_EQ(set.traces[1].line, 4u);
  EXPECT_EQ(set.traces[2].input, "d");
  EXPECT_EQ(set.traces[2].line, 6u);
  EXPECT_EQ(report.lines, 4u);  // records after the header, the blank one included
}

TEST(ReadCsv, ReadsEmbeddingsAsJsonOrSeparatedNumbersAndMetadata) {
  TempDir dir;
  const std::string path = dir.file("t.csv");
  write_file(path,
             "input,teacher,embedding,metadata\n"
             "a,x,\"[0.5, -1, 2]\",\"{\"\"k\"\": 1}\"\n"
             "b,y,0.25 0 1e1,plain note\n"
             "c,y,\"1,2,3\",\n");
  const TraceSet set = read_traces(path);
  ASSERT_EQ(set.size(), 3u);
  EXPECT_EQ(set.embedding_dim, 3u);
  EXPECT_EQ(set.traces[0].embedding, (std::vector<float>{0.5f, -1.f, 2.f}));
  EXPECT_EQ(set.traces[1].embedding, (std::vector<float>{0.25f, 0.f, 10.f}));
  EXPECT_EQ(set.traces[2].embedding, (std::vector<float>{1.f, 2.f, 3.f}));
  EXPECT_EQ(set.traces[0].metadata, R"({"k":1})");
  EXPECT_EQ(set.traces[1].metadata, R"("plain note")");
  EXPECT_EQ(set.traces[2].metadata, "");
}

struct BadCsvCase {
  std::string name;
  std::string header;
  std::string bad_record;  // written after the header and one good record, so it starts on line 3
  std::string expected;
  std::string good = "hello,greet";
};

void PrintTo(const BadCsvCase& c, std::ostream* os) { *os << c.name; }

class BadCsvRecord : public ::testing::TestWithParam<BadCsvCase> {};

TEST_P(BadCsvRecord, NamesFileLineAndFix) {
  const auto& c = GetParam();
  TempDir dir;
  const std::string path = dir.file("bad.csv");
  write_file(path, c.header + "\n" + c.good + "\n" + c.bad_record + "\n" + c.good + "\n");
  const std::string msg = read_error(path);
  EXPECT_THAT(msg, HasSubstr(path + ":3: ")) << msg;
  EXPECT_THAT(msg, HasSubstr(c.expected)) << msg;
  EXPECT_THAT(msg, HasSubstr("fix these lines or pass --skip-invalid to skip them")) << msg;
}

INSTANTIATE_TEST_SUITE_P(
    Traces, BadCsvRecord,
    ::testing::Values(
        BadCsvCase{"TooFewFields", "input,teacher", "just one",
                   "the record has 1 fields but the header has 2"},
        BadCsvCase{"TooManyFields", "input,teacher", "a, b,c",
                   "the record has 3 fields but the header has 2; quote fields that contain"},
        BadCsvCase{"TextAfterClosingQuote", "input,teacher", "\"a\"b,c",
                   "field 1 has text after its closing quote"},
        BadCsvCase{"UnterminatedQuote", "input,teacher", "\"never closed,x",
                   "the quoted field opened on line 3 is never closed"},
        BadCsvCase{"EmptyLabel", "input,teacher", "text,  ", "label field \"teacher\" is empty"},
        BadCsvCase{"InvalidUtf8", "text,label", "caf\xe9,x",
                   "field \"text\" is not valid UTF-8 (bad byte at offset 3)"},
        BadCsvCase{"EmbeddingNotNumbers", "input,teacher,embedding", "a,x,0.1 abc",
                   "\"abc\" at position 1, which is not a finite number", "b,y,1 2"},
        BadCsvCase{"EmbeddingBadJson", "input,teacher,embedding", "a,x,\"[1, \"",
                   "not a valid "
                   "JSON array",
                   "b,y,1 2"},
        BadCsvCase{"EmbeddingWrongWidth", "input,teacher,embedding", "a,x,1 2 3",
                   "\"embedding\" has 3 numbers but the first trace (line 2) has 2", "b,y,1 2"}),
    [](const ::testing::TestParamInfo<BadCsvCase>& info) { return info.param.name; });

TEST(ReadCsv, HeaderProblemsRejectTheFile) {
  TempDir dir;
  const std::string path = dir.file("t.csv");
  write_file(path, "question,teacher\nhi,greet\n");
  std::string msg = read_error(path, skipping());
  EXPECT_THAT(msg, HasSubstr(path + ":1: the CSV header has no input column"));
  EXPECT_THAT(msg, HasSubstr("\"question\", \"teacher\""));

  write_file(path, "input,answer\nhi,greet\n");
  EXPECT_THAT(read_error(path), HasSubstr("has no label column"));

  write_file(path, "input\tteacher\nhi\tgreet\n");
  EXPECT_THAT(read_error(path), HasSubstr("tab- or semicolon-separated"));

  write_file(path, "input,teacher,Input\nhi,greet,x\n");
  EXPECT_THAT(read_error(path), HasSubstr("column \"input\" appears twice"));

  write_file(path, "");
  EXPECT_THAT(read_error(path), HasSubstr("header row"));

  write_file(path, "input,teacher\n\n");
  EXPECT_THAT(read_error(path, skipping()), HasSubstr("has a header row but no records"));
}

TEST(ReadCsv, OverlongRecordIsRejectedAndReadingResumes) {
  TempDir dir;
  const std::string path = dir.file("t.csv");
  write_file(path, "input,teacher\na,x\n\"" + std::string(500, 'q') + "\n" + std::string(500, 'r') +
                       "\",y\nb,y\n");
  ReadOptions options = skipping();
  options.max_line_bytes = 100;
  ReadReport report;
  const TraceSet set = read_traces(path, options, &report);
  ASSERT_EQ(set.size(), 2u);
  EXPECT_EQ(set.traces[1].input, "b");
  EXPECT_EQ(set.traces[1].line, 5u);
  ASSERT_EQ(report.errors.size(), 1u);
  EXPECT_THAT(report.errors[0], HasSubstr(path + ":3: the record is longer than the limit"));
}

// ---------------------------------------------------------------------------------------------
// The shipped data set.

TEST(ReadTraces, ReadsShippedBanking77) {
  const std::string path = tracer::testing::source_path("data/banking77/train.jsonl");
  ReadReport report;
  const TraceSet set = read_traces(path, {}, &report);
  EXPECT_EQ(set.size(), 10003u);
  EXPECT_EQ(set.labels.size(), 77u);
  EXPECT_EQ(report.lines, 10003u);
  EXPECT_EQ(report.skipped, 0u);
  EXPECT_TRUE(std::is_sorted(set.labels.begin(), set.labels.end()));
  ASSERT_EQ(set.y.size(), set.size());
  for (size_t i = 0; i < set.size(); i += 997) {
    EXPECT_EQ(set.labels[static_cast<size_t>(set.y[i])], set.traces[i].teacher);
    EXPECT_EQ(set.traces[i].line, i + 1);
  }
  EXPECT_EQ(set.traces[0].input, "I am still waiting on my card?");
  EXPECT_EQ(set.traces[0].teacher, "card_arrival");
  EXPECT_NO_THROW(check_label_counts(set, 5));
}

}  // namespace
}  // namespace tracer

namespace tracer {
namespace {

TEST(ReadTraceFiles, SeveralFilesAreOneSetWithSummedReport) {
  TempDir dir;
  write_file(dir.file("a.jsonl"), R"({"input": "hi", "teacher": "greet"}
{"input": "bye", "teacher": "leave"}
)");
  write_file(dir.file("b.csv"), "input,teacher\nhello,greet\nciao,leave\nhowdy,greet\n");
  ReadReport report;
  TraceSet s = read_trace_files({dir.file("a.jsonl"), dir.file("b.csv")}, {}, &report);
  ASSERT_EQ(s.size(), 5u);
  EXPECT_EQ(s.labels, (std::vector<std::string>{"greet", "leave"}));
  EXPECT_EQ(s.traces[2].input, "hello");
  EXPECT_EQ(s.y[2], 0);
  EXPECT_EQ(report.accepted, 5u);
  EXPECT_THROW(read_trace_files({}), InputError);
  // A bad line in the second file still names that file and line.
  write_file(dir.file("c.jsonl"), "{\"input\": 1}\n");
  try {
    read_trace_files({dir.file("a.jsonl"), dir.file("c.jsonl")});
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("c.jsonl:1"));
  }
}

TEST(ReadTraceFiles, EmbeddingWidthsMustAgreeAcrossFiles) {
  TempDir dir;
  write_file(dir.file("a.jsonl"), R"({"input": "hi", "teacher": "greet", "embedding": [0.5, 1]})"
                                  "\n");
  write_file(dir.file("b.jsonl"), R"({"input": "yo", "teacher": "greet", "embedding": [0.5]})"
                                  "\n");
  try {
    read_trace_files({dir.file("a.jsonl"), dir.file("b.jsonl")});
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("width"));
  }
}

}  // namespace
}  // namespace tracer
