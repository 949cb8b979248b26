#pragma once
// Surrogate: a cheap classifier mimicking the teacher. One interface, a registry of named
// candidates (the zoo).
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "features/sparse.hpp"
#include "util/binio.hpp"

namespace tracer {

struct FitContext {
  uint64_t seed = 42;
  int threads = 1;  // threads this one fit may use
};

class Surrogate {
 public:
  virtual ~Surrogate() = default;
  // Registry name of this candidate, e.g. "logreg_c1"; make_surrogate(name()) rebuilds it.
  virtual std::string name() const = 0;
  virtual void fit(const SparseMatrix& X, std::span<const int> y, int num_classes,
                   const FitContext& ctx) = 0;
  virtual int num_classes() const = 0;
  // Class probabilities (sum to 1) into out[0..num_classes). Thread-safe after fit,
  // no heap allocation.
  virtual void predict_proba(SparseRow x, std::span<float> out) const = 0;
  virtual void save(BinaryWriter& w) const = 0;
  virtual void load(BinaryReader& r) = 0;
};

// Every registered candidate name, and the default zoo (trees only when asked for).
std::vector<std::string> surrogate_names();
std::vector<std::string> default_zoo(bool with_trees);
// Throws InputError listing the valid names when `name` is unknown.
std::unique_ptr<Surrogate> make_surrogate(const std::string& name);

}  // namespace tracer
