#include "gate/ood.hpp"

#include <gtest/gtest.h>

namespace tracer {
namespace {

SparseMatrix two_cluster_matrix(std::vector<int>& y) {
  SparseMatrix X(10);
  // Class 0 lives on features 0-2, class 1 on features 3-5; features 6-9 are never used.
  for (int i = 0; i < 20; ++i) {
    std::vector<uint32_t> idx =
        i % 2 ? std::vector<uint32_t>{3, 4, 5} : std::vector<uint32_t>{0, 1, 2};
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

TEST(OodGate, CombinedScoreFlagsRowsUnusualOnAnySignal) {
  std::vector<int> y;
  SparseMatrix X = two_cluster_matrix(y);
  OodGate g;
  g.fit_centroids(X, y, 2);
  // Reference rows: each signal uniform on its own range.
  std::vector<float> known(1000), sim(1000), top1(1000);
  for (int i = 0; i < 1000; ++i) {
    known[i] = 0.5f + 0.0005f * i;
    sim[i] = 0.3f + 0.0006f * ((i * 7) % 1000);
    top1[i] = 0.2f + 0.0008f * ((i * 13) % 1000);
  }
  g.set_reference(known, sim, top1, 0.05);
  // Close to the share asked for is flagged on the reference rows themselves.
  int flagged = 0;
  for (int i = 0; i < 1000; ++i) flagged += g.is_ood(known[i], sim[i], top1[i]);
  EXPECT_GE(flagged, 30);
  EXPECT_LE(flagged, 50);
  EXPECT_FALSE(g.is_ood(0.9f, 0.8f, 0.9f));                             // typical on every signal
  EXPECT_TRUE(g.is_ood(0.1f, 0.8f, 0.9f));                              // unknown vocabulary
  EXPECT_TRUE(g.is_ood(0.9f, 0.0f, 0.9f));                              // far from every centroid
  EXPECT_TRUE(g.is_ood(0.9f, 0.8f, 0.01f));                             // surrogate unsure
  EXPECT_LT(g.score(0.55f, 0.35f, 0.25f), g.score(0.55f, 0.8f, 0.9f));  // several signals low
  g.disable();
  EXPECT_FALSE(g.is_ood(0.1f, 0.0f, 0.01f));
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
