#include "fit/split.hpp"

#include <gtest/gtest.h>

#include <map>
#include <set>

#include "util/error.hpp"

namespace tracer {
namespace {

TraceSet make_set(int labels, int per_label, int duplicate_every = 0) {
  TraceSet s;
  for (int l = 0; l < labels; ++l) s.labels.push_back("label" + std::to_string(l));
  for (int l = 0; l < labels; ++l)
    for (int i = 0; i < per_label; ++i) {
      Trace t;
      // Every `duplicate_every`-th text repeats the previous one exactly.
      int id = (duplicate_every && i % duplicate_every == 1) ? i - 1 : i;
      t.input = "text " + std::to_string(l) + " " + std::to_string(id);
      t.teacher = s.labels[l];
      s.traces.push_back(t);
      s.y.push_back(l);
    }
  return s;
}

TEST(Split, CoversEveryRowOnceWithStratifiedFractions) {
  TraceSet s = make_set(5, 100);
  Split sp = stratified_split(s, {0.6, 0.2, 0.2}, 7);
  std::multiset<size_t> all;
  for (auto* part : {&sp.train, &sp.select, &sp.calibrate}) all.insert(part->begin(), part->end());
  ASSERT_EQ(all.size(), s.size());
  EXPECT_EQ(std::set<size_t>(all.begin(), all.end()).size(), s.size());
  std::map<int, int> cal_per_label, sel_per_label;
  for (size_t i : sp.calibrate) ++cal_per_label[s.y[i]];
  for (size_t i : sp.select) ++sel_per_label[s.y[i]];
  for (int l = 0; l < 5; ++l) {
    EXPECT_EQ(cal_per_label[l], 20) << "label " << l;
    EXPECT_EQ(sel_per_label[l], 20) << "label " << l;
  }
}

TEST(Split, KeepsExactDuplicatesOnOneSide) {
  TraceSet s = make_set(3, 90, 2);
  Split sp = stratified_split(s, {}, 3);
  std::map<std::string, std::set<int>> side;
  for (size_t i : sp.train) side[s.traces[i].input].insert(0);
  for (size_t i : sp.select) side[s.traces[i].input].insert(1);
  for (size_t i : sp.calibrate) side[s.traces[i].input].insert(2);
  size_t dup_texts = 0;
  for (auto& [text, sides] : side) {
    EXPECT_EQ(sides.size(), 1u) << text;
    dup_texts += 1;
  }
  EXPECT_LT(dup_texts, s.size());  // the fixture really has duplicates
}

TEST(Split, DeterministicPerSeedAndDifferentAcrossSeeds) {
  TraceSet s = make_set(4, 50);
  Split a = stratified_split(s, {}, 11), b = stratified_split(s, {}, 11),
        c = stratified_split(s, {}, 12);
  EXPECT_EQ(a.calibrate, b.calibrate);
  EXPECT_EQ(a.train, b.train);
  EXPECT_NE(a.calibrate, c.calibrate);
}

TEST(Split, SmallLabelsKeepATrainingRow) {
  TraceSet s = make_set(2, 3);
  Split sp = stratified_split(s, {}, 1);
  std::map<int, int> train_per_label;
  for (size_t i : sp.train) ++train_per_label[s.y[i]];
  EXPECT_GE(train_per_label[0], 1);
  EXPECT_GE(train_per_label[1], 1);
}

TEST(Split, RejectsBadFractions) {
  TraceSet s = make_set(2, 10);
  EXPECT_THROW(stratified_split(s, {0.5, 0.5, 0.5}, 1), InputError);
  EXPECT_THROW(stratified_split(s, {1.0, 0.0, 0.0}, 1), InputError);
}

}  // namespace
}  // namespace tracer
