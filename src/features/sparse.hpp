#pragma once
// Compressed sparse rows: the common currency between featurizers and surrogates.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace tracer {

struct SparseRow {
  std::span<const uint32_t> idx;
  std::span<const float> val;
  size_t nnz() const { return idx.size(); }
};

// A reusable output buffer for one featurized text.
struct SparseVector {
  std::vector<uint32_t> idx;
  std::vector<float> val;
  // Featurizer scratch (normalised text, code points): transform() is const and thread-safe, so
  // its reusable buffers live here, one per caller. Not part of the row; clear() keeps them.
  std::string scratch;
  std::vector<int32_t> scratch_cp;
  void clear() {
    idx.clear();
    val.clear();
  }
  SparseRow row() const { return {idx, val}; }
};

class SparseMatrix {
 public:
  explicit SparseMatrix(size_t cols = 0) : cols_(cols) {}

  void add_row(SparseRow r) {
    indices_.insert(indices_.end(), r.idx.begin(), r.idx.end());
    values_.insert(values_.end(), r.val.begin(), r.val.end());
    indptr_.push_back(indices_.size());
  }
  SparseRow row(size_t i) const {
    size_t b = indptr_[i], e = indptr_[i + 1];
    return {std::span<const uint32_t>(indices_.data() + b, e - b),
            std::span<const float>(values_.data() + b, e - b)};
  }
  size_t rows() const { return indptr_.size() - 1; }
  size_t cols() const { return cols_; }
  void set_cols(size_t c) { cols_ = c; }
  size_t nnz() const { return indices_.size(); }

  // Rows picked by position, in the given order.
  SparseMatrix subset(std::span<const size_t> rows) const {
    SparseMatrix out(cols_);
    for (size_t r : rows) out.add_row(row(r));
    return out;
  }

  const std::vector<uint64_t>& indptr() const { return indptr_; }
  const std::vector<uint32_t>& indices() const { return indices_; }
  const std::vector<float>& values() const { return values_; }

 private:
  size_t cols_;
  std::vector<uint64_t> indptr_{0};
  std::vector<uint32_t> indices_;
  std::vector<float> values_;
};

}  // namespace tracer
