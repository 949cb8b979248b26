#include "report/projection.hpp"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace tracer {
namespace {

// Modified Gram–Schmidt, twice for stability. A column (nearly) dependent on the previous
// ones becomes zero: normalising its round-off residue would give a vector that is not
// orthogonal when the data span fewer dimensions than the subspace.
// (Small and explicit: Eigen's QR and eigen solvers trip GCC 12's -Wmaybe-uninitialized.)
Eigen::MatrixXd orthonormal(Eigen::MatrixXd M) {
  for (Eigen::Index c = 0; c < M.cols(); ++c) {
    const double before = M.col(c).norm();
    for (int pass = 0; pass < 2; ++pass)
      for (Eigen::Index p = 0; p < c; ++p) M.col(c) -= M.col(p).dot(M.col(c)) * M.col(p);
    const double norm = M.col(c).norm();
    if (norm > 1e-9 * before && norm > 1e-300) {
      M.col(c) /= norm;
    } else {
      M.col(c).setZero();
    }
  }
  return M;
}

// Eigen-decomposition of a small symmetric matrix by cyclic Jacobi rotations; eigenvalues in
// descending order, eigenvectors in the matching columns of `vecs`.
Eigen::VectorXd jacobi_eigen(Eigen::MatrixXd A, Eigen::MatrixXd& vecs) {
  const Eigen::Index k = A.rows();
  vecs = Eigen::MatrixXd::Identity(k, k);
  for (int sweep = 0; sweep < 100; ++sweep) {
    double off = 0;
    for (Eigen::Index p = 0; p < k; ++p)
      for (Eigen::Index q = p + 1; q < k; ++q) off += A(p, q) * A(p, q);
    if (off < 1e-30 * std::max(1.0, A.squaredNorm())) break;
    for (Eigen::Index p = 0; p < k; ++p) {
      for (Eigen::Index q = p + 1; q < k; ++q) {
        if (std::abs(A(p, q)) < 1e-300) continue;
        const double theta = (A(q, q) - A(p, p)) / (2 * A(p, q));
        const double t =
            (theta >= 0 ? 1.0 : -1.0) / (std::abs(theta) + std::sqrt(theta * theta + 1));
        const double c = 1 / std::sqrt(t * t + 1), s = t * c;
        for (Eigen::Index r = 0; r < k; ++r) {  // A <- A J
          const double ap = A(r, p), aq = A(r, q);
          A(r, p) = c * ap - s * aq;
          A(r, q) = s * ap + c * aq;
        }
        for (Eigen::Index r = 0; r < k; ++r) {  // A <- Jᵀ A
          const double ap = A(p, r), aq = A(q, r);
          A(p, r) = c * ap - s * aq;
          A(q, r) = s * ap + c * aq;
        }
        for (Eigen::Index r = 0; r < k; ++r) {
          const double vp = vecs(r, p), vq = vecs(r, q);
          vecs(r, p) = c * vp - s * vq;
          vecs(r, q) = s * vp + c * vq;
        }
      }
    }
  }
  std::vector<Eigen::Index> order(static_cast<size_t>(k));
  for (Eigen::Index i = 0; i < k; ++i) order[static_cast<size_t>(i)] = i;
  std::sort(order.begin(), order.end(),
            [&](Eigen::Index a, Eigen::Index b) { return A(a, a) > A(b, b); });
  Eigen::VectorXd values(k);
  Eigen::MatrixXd sorted(k, k);
  for (Eigen::Index i = 0; i < k; ++i) {
    values[i] = A(order[static_cast<size_t>(i)], order[static_cast<size_t>(i)]);
    sorted.col(i) = vecs.col(order[static_cast<size_t>(i)]);
  }
  vecs = sorted;
  return values;
}

}  // namespace

Projection2D pca_2d(const SparseMatrix& X, uint64_t seed, int iterations) {
  const Eigen::Index n = static_cast<Eigen::Index>(X.rows());
  const Eigen::Index d = static_cast<Eigen::Index>(X.cols());
  Projection2D out;
  out.points.assign(static_cast<size_t>(n), {0.f, 0.f});
  if (n < 2 || d < 1) return out;

  Eigen::VectorXd mu = Eigen::VectorXd::Zero(d);
  double total_sq = 0;  // sum of squared row norms
  for (Eigen::Index i = 0; i < n; ++i) {
    SparseRow r = X.row(static_cast<size_t>(i));
    for (size_t j = 0; j < r.nnz(); ++j) {
      mu[r.idx[j]] += r.val[j];
      total_sq += double(r.val[j]) * r.val[j];
    }
  }
  mu /= double(n);
  const double total_var = total_sq - double(n) * mu.squaredNorm();  // trace of Xcᵀ Xc
  if (!(total_var > 1e-12)) return out;

  // Xc·V and Xcᵀ·W with Xc = X − 1·μᵀ, using only the sparse rows.
  auto times = [&](const Eigen::MatrixXd& V) {
    Eigen::MatrixXd W(n, V.cols());
    const Eigen::RowVectorXd shift = mu.transpose() * V;
    for (Eigen::Index i = 0; i < n; ++i) {
      SparseRow r = X.row(static_cast<size_t>(i));
      Eigen::RowVectorXd acc = -shift;
      for (size_t j = 0; j < r.nnz(); ++j) acc += double(r.val[j]) * V.row(r.idx[j]);
      W.row(i) = acc;
    }
    return W;
  };
  auto times_t = [&](const Eigen::MatrixXd& W) {
    Eigen::MatrixXd Z = Eigen::MatrixXd::Zero(d, W.cols());
    for (Eigen::Index i = 0; i < n; ++i) {
      SparseRow r = X.row(static_cast<size_t>(i));
      for (size_t j = 0; j < r.nnz(); ++j) Z.row(r.idx[j]) += double(r.val[j]) * W.row(i);
    }
    Z -= mu * W.colwise().sum();
    return Z;
  };

  // Two extra vectors make the top two converge faster (oversampling).
  const Eigen::Index k = std::min<Eigen::Index>(4, std::min(n, d));
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  Eigen::MatrixXd V(d, k);
  for (Eigen::Index i = 0; i < d; ++i)
    for (Eigen::Index c = 0; c < k; ++c) V(i, c) = normal(rng);
  V = orthonormal(V);
  for (int it = 0; it < iterations; ++it) V = orthonormal(times_t(times(V)));

  // Rayleigh–Ritz: rotate the subspace onto the eigenvectors of its small Gram matrix.
  Eigen::MatrixXd W = times(V);
  Eigen::MatrixXd vecs;
  const Eigen::VectorXd values = jacobi_eigen(W.transpose() * W, vecs);  // descending
  for (int axis = 0; axis < 2 && axis < k; ++axis) {
    const Eigen::Index col = axis;
    Eigen::VectorXd scores = W * vecs.col(col);
    // Sign convention: the largest-magnitude score is positive, so reruns draw the same map.
    Eigen::Index arg = 0;
    scores.cwiseAbs().maxCoeff(&arg);
    if (scores[arg] < 0) scores = -scores;
    for (Eigen::Index i = 0; i < n; ++i)
      out.points[static_cast<size_t>(i)][axis] = static_cast<float>(scores[i]);
    out.explained[axis] = std::max(0.0, values[col]) / total_var;
  }
  return out;
}

}  // namespace tracer
