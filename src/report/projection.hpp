#pragma once
// A 2-D map of featurized rows: the first two principal components, computed on the sparse
// matrix directly (centering folded into the products, never densifying the rows).
#include <array>
#include <cstdint>
#include <vector>

#include "features/sparse.hpp"

namespace tracer {

struct Projection2D {
  std::vector<std::array<float, 2>> points;  // one per row of the input
  std::array<double, 2> explained{};         // share of the total variance each axis carries
};

// Subspace iteration on the centred covariance (deterministic for a given seed). Fewer than
// two rows give points at the origin and zero explained variance.
Projection2D pca_2d(const SparseMatrix& X, uint64_t seed = 42, int iterations = 30);

}  // namespace tracer
