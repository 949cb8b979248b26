#include "fit/memory.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "features/featurizer.hpp"
#include "policy/policy.hpp"
#include "util/error.hpp"

namespace tracer {
namespace {

// Traffic over `inputs` distinct texts with Zipf(1.1) popularity; input x's LLM answers its
// "main" label x % labels with probability consistency[x], else a uniformly random other label.
struct Traffic {
  int inputs = 300, labels = 10;
  std::vector<double> weight;       // popularity, normalised
  std::vector<double> consistency;  // P(answer == main label)
  int main_label(int x) const { return x % labels; }
  std::string text(int x) const { return "request number " + std::to_string(x) + " please"; }
};

Traffic make_traffic(int inputs, int labels, std::mt19937_64& rng,
                     const std::vector<double>& consistency_levels) {
  Traffic t;
  t.inputs = inputs;
  t.labels = labels;
  double z = 0;
  for (int x = 0; x < inputs; ++x) z += std::pow(x + 1, -1.1);
  for (int x = 0; x < inputs; ++x) {
    t.weight.push_back(std::pow(x + 1, -1.1) / z);
    t.consistency.push_back(consistency_levels[rng() % consistency_levels.size()]);
  }
  return t;
}

Trace trace(std::string input, std::string teacher) {
  Trace t;
  t.input = std::move(input);
  t.teacher = std::move(teacher);
  return t;
}

TraceSet log_calls(const Traffic& t, size_t calls, std::mt19937_64& rng) {
  TraceSet s;
  for (int l = 0; l < t.labels; ++l) s.labels.push_back("label_" + std::to_string(l));
  std::discrete_distribution<int> pick(t.weight.begin(), t.weight.end());
  std::uniform_real_distribution<double> u(0, 1);
  for (size_t i = 0; i < calls; ++i) {
    const int x = pick(rng);
    int y = t.main_label(x);
    if (u(rng) >= t.consistency[x])
      y = (y + 1 + static_cast<int>(rng() % (t.labels - 1))) % t.labels;
    s.traces.push_back(trace(t.text(x), s.labels[y]));
    s.y.push_back(y);
  }
  return s;
}

TraceUnits units_of(const TraceSet& s) { return group_units(s, *make_featurizer("tfidf"), 7); }

// The exact agreement of the served table with a fresh LLM call, over the traffic that hits it.
double true_hit_agreement(const Traffic& t, const MemoryCertificate& m) {
  auto f = make_featurizer("tfidf");
  Policy p;
  p.memory_inputs = m.keys;
  p.memory_labels = m.labels;
  double w = 0, agree = 0;
  for (int x = 0; x < t.inputs; ++x) {
    const int label = p.memory_label(known_input_key(*f, t.text(x)));
    if (label < 0) continue;
    const double same = t.consistency[x];
    const double p_label =
        label == t.main_label(x) ? same : (1 - same) / static_cast<double>(t.labels - 1);
    w += t.weight[x];
    agree += t.weight[x] * p_label;
  }
  return w > 0 ? agree / w : 1;
}

TEST(Memory, TracesWithoutRepeatsLeaveItInactiveAndSpendNoDelta) {
  TraceSet s;
  s.labels = {"a", "b"};
  for (int i = 0; i < 500; ++i) {
    s.traces.push_back(trace("text " + std::to_string(i), s.labels[i % 2]));
    s.y.push_back(i % 2);
  }
  MemoryCertificate m = certify_memory(s, units_of(s), 0.9, 0.05, MemoryOptions{}, 1);
  EXPECT_FALSE(m.active);
  EXPECT_FALSE(m.certified);
  EXPECT_EQ(m.delta, 0);
  EXPECT_TRUE(m.keys.empty());
  EXPECT_NE(m.reason.find("inactive"), std::string::npos) << m.reason;
}

TEST(Memory, OffSpendsNothing) {
  std::mt19937_64 rng(3);
  Traffic t = make_traffic(200, 5, rng, {1.0});
  TraceSet s = log_calls(t, 3000, rng);
  MemoryOptions o;
  o.enabled = false;
  MemoryCertificate m = certify_memory(s, units_of(s), 0.9, 0.05, o, 1);
  EXPECT_FALSE(m.active);
  EXPECT_EQ(m.delta, 0);
  EXPECT_TRUE(m.keys.empty());
}

TEST(Memory, ADeterministicLlmIsRememberedWithItsOwnLabels) {
  std::mt19937_64 rng(5);
  Traffic t = make_traffic(300, 10, rng, {1.0});
  TraceSet s = log_calls(t, 4000, rng);
  MemoryCertificate m = certify_memory(s, units_of(s), 0.9, 0.05, MemoryOptions{}, 1);
  ASSERT_TRUE(m.certified) << m.reason;
  EXPECT_DOUBLE_EQ(m.delta, 0.05 * 0.2);
  ASSERT_GE(m.served_step, 0);
  const MemoryStep& s_last = m.steps[static_cast<size_t>(m.served_step)];
  EXPECT_EQ(s_last.agreed, s_last.hits);
  EXPECT_GE(s_last.bound, 0.9);
  EXPECT_GT(m.hit_share(), 0.6);  // Zipf traffic over 300 inputs repeats itself
  EXPECT_DOUBLE_EQ(true_hit_agreement(t, m), 1.0);
  // Keys ascending, labels the main ones.
  EXPECT_TRUE(std::is_sorted(m.keys.begin(), m.keys.end()));
  auto f = make_featurizer("tfidf");
  Policy p;
  p.memory_inputs = m.keys;
  p.memory_labels = m.labels;
  EXPECT_EQ(p.memory_label(known_input_key(*f, t.text(0))), t.main_label(0));
  EXPECT_EQ(p.memory_label(known_input_key(*f, "never logged")), -1);
  // The steps are nested: entries and hits grow, scores fall.
  for (size_t k = 1; k < m.steps.size(); ++k) {
    EXPECT_GT(m.steps[k].entries, m.steps[k - 1].entries);
    EXPECT_GE(m.steps[k].hits, m.steps[k - 1].hits);
    EXPECT_LT(m.steps[k].min_score, m.steps[k - 1].min_score);
  }
}

TEST(Memory, AnLlmThatRarelyRepeatsItselfIsRefused) {
  std::mt19937_64 rng(9);
  Traffic t = make_traffic(200, 10, rng, {0.5});
  TraceSet s = log_calls(t, 4000, rng);
  MemoryCertificate m = certify_memory(s, units_of(s), 0.9, 0.05, MemoryOptions{}, 1);
  EXPECT_TRUE(m.active);
  EXPECT_FALSE(m.certified);
  EXPECT_TRUE(m.keys.empty());
  EXPECT_NE(m.reason.find("refused"), std::string::npos) << m.reason;
}

TEST(Memory, TheSizeCapKeepsTheMostLoggedInputs) {
  std::mt19937_64 rng(11);
  Traffic t = make_traffic(300, 10, rng, {1.0});
  TraceSet s = log_calls(t, 4000, rng);
  MemoryOptions o;
  o.max_entries = 5;
  MemoryCertificate m = certify_memory(s, units_of(s), 0.9, 0.05, o, 1);
  ASSERT_TRUE(m.certified) << m.reason;
  EXPECT_EQ(m.candidates, 5u);
  EXPECT_LE(m.keys.size(), 5u);
  auto f = make_featurizer("tfidf");
  Policy p;
  p.memory_inputs = m.keys;
  p.memory_labels = m.labels;
  EXPECT_GE(p.memory_label(known_input_key(*f, t.text(0))), 0);  // the most popular input
}

// Two records of one call (same id and input) count once; an input that normalises to nothing
// (punctuation only) is never remembered, since its key would stand for every such request.
TEST(Memory, DuplicateRecordsAndBlankInputsAreNotCalls) {
  TraceSet s;
  s.labels = {"a", "b"};
  for (int i = 0; i < 400; ++i) {
    Trace t = trace("request " + std::to_string(i % 100), s.labels[i % 2]);
    t.id = "call-" + std::to_string(i % 100);  // every call recorded four times
    s.traces.push_back(t);
    s.y.push_back(i % 2);
  }
  MemoryCertificate dup = certify_memory(s, units_of(s), 0.9, 0.05, MemoryOptions{}, 1);
  EXPECT_FALSE(dup.active) << "copies of one record are not repeated calls: " << dup.reason;

  TraceSet blank;
  blank.labels = {"a", "b"};
  for (int i = 0; i < 400; ++i) {
    blank.traces.push_back(trace(i % 2 ? "???" : "!!! ...", "a"));
    blank.y.push_back(0);
  }
  MemoryCertificate b = certify_memory(blank, units_of(blank), 0.9, 0.05, MemoryOptions{}, 1);
  EXPECT_EQ(b.candidates, 0u);
  EXPECT_FALSE(b.certified);
}

TEST(Memory, OptionsOutOfRangeAreRefused) {
  TraceSet s;
  s.labels = {"a", "b"};
  s.traces.push_back(trace("x", "a"));
  s.y.push_back(0);
  MemoryOptions o;
  o.holdout = 1.0;
  EXPECT_THROW(certify_memory(s, units_of(s), 0.9, 0.05, o, 1), InputError);
  o = MemoryOptions{};
  o.delta_share = std::nan("");
  EXPECT_THROW(certify_memory(s, units_of(s), 0.9, 0.05, o, 1), InputError);
}

// The statistical claim: over many independent trace logs of an LLM whose self-consistency is
// close to the target, the served table's true agreement on the traffic hitting it is below the
// target in at most delta_m of the certified runs (plus sampling slack).
TEST(Memory, TheBoundHoldsOverManySeedsWithAnInconsistentLlm) {
  const int runs = 300;
  const double alpha = 0.9, delta = 0.5, share = 0.4;  // delta_m = 0.2: violations countable
  MemoryOptions o;
  o.delta_share = share;
  int certified = 0, violations = 0;
  for (int r = 0; r < runs; ++r) {
    std::mt19937_64 rng(1000 + static_cast<uint64_t>(r));
    // Per input consistency around the target: the table's agreement straddles alpha.
    Traffic t = make_traffic(150, 8, rng, {1.0, 0.95, 0.9, 0.85, 0.8});
    TraceSet s = log_calls(t, 1500, rng);
    MemoryCertificate m = certify_memory(s, units_of(s), alpha, delta, o, static_cast<uint64_t>(r));
    if (!m.certified) continue;
    ++certified;
    violations += true_hit_agreement(t, m) < alpha;
  }
  const double dm = delta * share;
  const double bound = dm * certified + 3 * std::sqrt(dm * (1 - dm) * certified);
  EXPECT_GT(certified, runs / 4) << "the test must certify often to test anything";
  EXPECT_LE(violations, bound) << violations << " violations in " << certified << " certified";
  RecordProperty("certified", certified);
  RecordProperty("violations", violations);
  std::printf("memory validity: %d certified of %d runs, %d violations (bound %.1f)\n", certified,
              runs, violations, bound);
}

}  // namespace
}  // namespace tracer
