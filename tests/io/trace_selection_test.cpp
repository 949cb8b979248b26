#include "io/trace_selection.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "util/error.hpp"

namespace tracer {
namespace {

using ::testing::HasSubstr;

// n traces; trace i has label "a"/"b" alternating, time 1000 + i (or none when undated), and is
// a recorded deferred request outside the sample when i % 4 == 0.
TraceSet dated_set(size_t n, bool undated_tail = false) {
  TraceSet s;
  s.labels = {"a", "b", "c"};
  for (size_t i = 0; i < n; ++i) {
    Trace t;
    t.input = "text " + std::to_string(i);
    t.teacher = i % 2 ? "b" : "a";
    const bool undated = undated_tail && i >= n / 2;
    std::string m;
    if (!undated) m = "\"time_ms\":" + std::to_string(1000 + i);
    if (i % 4 == 0) m += std::string(m.empty() ? "" : ",") + "\"decision\":\"deferred\"";
    if (!m.empty()) t.metadata = "{" + m + "}";
    s.traces.push_back(t);
    s.y.push_back(i % 2 ? 1 : 0);
  }
  return s;
}

TEST(TraceSelection, ReadsTheTimeFromMetadata) {
  Trace t;
  EXPECT_EQ(trace_time_ms(t), INT64_MIN);
  t.metadata = R"({"time_ms":17})";
  EXPECT_EQ(trace_time_ms(t), 17);
  t.metadata = R"({"time_ms":"17"})";
  EXPECT_EQ(trace_time_ms(t), INT64_MIN);
  t.metadata = R"({"time_ms":1.5})";
  EXPECT_EQ(trace_time_ms(t), INT64_MIN);
}

TEST(TraceSelection, AWindowKeepsRecentDatedTracesOnly) {
  TraceSet s = dated_set(100, /*undated_tail=*/true);
  TraceSelection sel;
  sel.since_ms = 1020;
  const SelectionReport r = select_traces(s, sel);
  EXPECT_EQ(r.read, 100u);
  EXPECT_EQ(r.older, 20u);
  EXPECT_EQ(r.undated, 50u);
  EXPECT_EQ(r.kept, 30u);
  ASSERT_EQ(s.size(), 30u);
  EXPECT_EQ(s.traces.front().input, "text 20");
  EXPECT_EQ(s.traces.back().input, "text 49");
  EXPECT_THAT(r.summary(sel), HasSubstr("kept 30 of 100 traces"));
  EXPECT_THAT(r.summary(sel), HasSubstr("50 without a time"));
  // Labels no kept trace carries are dropped, and y follows.
  EXPECT_EQ(s.labels, (std::vector<std::string>{"a", "b"}));
  for (size_t i = 0; i < s.size(); ++i) EXPECT_EQ(s.labels[size_t(s.y[i])], s.traces[i].teacher);
}

TEST(TraceSelection, TheCapKeepsTheMixOfTrainOnlyAndRepresentativeTraces) {
  TraceSet s = dated_set(1000);
  TraceSelection sel;
  sel.max_traces = 200;
  const SelectionReport r = select_traces(s, sel);
  EXPECT_EQ(r.kept, 200u);
  EXPECT_EQ(r.capped, 800u);
  size_t train_only = 0;
  for (const auto& t : s.traces) train_only += !represents_traffic(t);
  EXPECT_EQ(train_only, 50u);  // a quarter, as in the whole set
  // Order kept; the sample spreads over the whole range rather than taking a prefix.
  for (size_t i = 1; i < s.size(); ++i)
    EXPECT_LT(trace_time_ms(s.traces[i - 1]), trace_time_ms(s.traces[i]));
  EXPECT_GT(trace_time_ms(s.traces.back()), 1500);
  // Deterministic per seed.
  TraceSet again = dated_set(1000);
  select_traces(again, sel);
  for (size_t i = 0; i < s.size(); ++i) EXPECT_EQ(s.traces[i].input, again.traces[i].input);
}

// The surrogate's own answers recorded by the proxy are never fit on (their label is not the
// LLM's); audits and sampled rows are.
TEST(TraceSelection, TheSurrogatesOwnAnswersAreAlwaysLeftOut) {
  TraceSet s = dated_set(4);
  s.traces[0].metadata = R"({"decision":"handled","source":"proxy"})";
  s.traces[1].metadata = R"({"decision":"handled","source":"audit"})";
  s.traces[2].metadata = R"({"decision":"handled","source":"proxy","sampled":true})";
  s.traces[3].metadata = R"({"decision":"deferred"})";
  const SelectionReport r = select_traces(s, TraceSelection{});
  EXPECT_EQ(r.surrogate, 1u);
  EXPECT_EQ(r.kept, 3u);
  EXPECT_EQ(s.traces.front().input, "text 1");
  EXPECT_THAT(r.summary(TraceSelection{}), HasSubstr("1 answers of the surrogate itself"));
}

TEST(TraceSelection, NothingLeftIsAClearError) {
  TraceSet s = dated_set(10);
  TraceSelection sel;
  sel.since_ms = 999999;
  try {
    select_traces(s, sel);
    ADD_FAILURE() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("no traces left"));
    EXPECT_THAT(e.what(), HasSubstr("10 recorded before"));
  }
}

}  // namespace
}  // namespace tracer
