#include "gate/ood.hpp"

#include <gtest/gtest.h>

namespace tracer {
namespace {

SparseMatrix two_cluster_matrix(std::vector<int>& y) {
  SparseMatrix X(10);
  // Class 0 lives on features 0-2, class 1 on features 3-5; features 6-9 are never used.
  for (int i = 0; i < 20; ++i) {
    std::vector<uint32_t> idx = i % 2 ? std::vector<uint32_t>{3, 4, 5} : std::vector<uint32_t>{0, 1, 2};
    std::vector<float> val(3, 0.57735f);
    X.add_row({idx, val});
    y.push_back(i % 2);
  }
  return X;
}

TEST(OodGate, SimilarityHighInsideLowOutside) {
  std::vector<int> y;
  SparseMatrix X = two_cluster_matrix(y);
  OodGate g;
  g.fit_centroids(X, y, 2);
  std::vector<float> scratch(2);
  EXPECT_NEAR(g.similarity(X.row(0), scratch), 1.0f, 1e-4);
  std::vector<uint32_t> idx{7, 8};
  std::vector<float> val{0.7071f, 0.7071f};
  EXPECT_EQ(g.similarity({idx, val}, scratch), 0.f);
}

TEST(OodGate, ThresholdsFromQuantilesFlagOutliers) {
  std::vector<int> y;
  SparseMatrix X = two_cluster_matrix(y);
  OodGate g;
  g.fit_centroids(X, y, 2);
  std::vector<float> known(100), sim(100);
  for (int i = 0; i < 100; ++i) known[i] = 0.5f + i * 0.005f, sim[i] = 0.3f + i * 0.005f;
  g.set_thresholds(known, sim, 0.05);
  EXPECT_FALSE(g.is_ood(0.9f, 0.9f));
  EXPECT_TRUE(g.is_ood(0.1f, 0.9f));
  EXPECT_TRUE(g.is_ood(0.9f, 0.05f));
  g.disable();
  EXPECT_FALSE(g.is_ood(0.1f, 0.05f));
}

TEST(OodGate, SaveLoadRoundTripAndCorruption) {
  std::vector<int> y;
  SparseMatrix X = two_cluster_matrix(y);
  OodGate g;
  g.fit_centroids(X, y, 2);
  BinaryWriter w;
  g.save(w);
  OodGate h;
  BinaryReader r(w.bytes());
  h.load(r);
  std::vector<float> s1(2), s2(2);
  EXPECT_EQ(g.similarity(X.row(1), s1), h.similarity(X.row(1), s2));
  std::string bad = w.bytes();
  bad[0] = 9;  // unknown version
  BinaryReader rb(bad);
  EXPECT_THROW(h.load(rb), FormatError);
  BinaryReader rt(std::string_view(w.bytes()).substr(0, w.bytes().size() / 2));
  EXPECT_THROW(OodGate().load(rt), FormatError);
}

}  // namespace
}  // namespace tracer
