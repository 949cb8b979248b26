#pragma once
// An average of already fitted surrogates' probabilities. Built by the zoo sweep from its best
// members (chosen on select), never fitted directly.
#include <memory>
#include <vector>

#include "models/surrogate.hpp"

namespace tracer {

inline constexpr int kMaxEnsembleClasses = 4096;  // stack scratch bound in predict_proba

class EnsembleSurrogate : public Surrogate {
 public:
  EnsembleSurrogate() = default;
  explicit EnsembleSurrogate(std::vector<std::unique_ptr<Surrogate>> members);

  std::string name() const override { return "ensemble"; }
  void fit(const SparseMatrix& X, std::span<const int> y, int num_classes,
           const FitContext& ctx) override;
  int num_classes() const override { return num_classes_; }
  void predict_proba(SparseRow x, std::span<float> out) const override;
  void save(BinaryWriter& w) const override;
  void load(BinaryReader& r) override;
  std::vector<std::string> member_names() const;

 private:
  std::vector<std::unique_ptr<Surrogate>> members_;
  int num_classes_ = 0;
};

// A deep copy through save/load (the surrogate's own format is the single source of truth).
std::unique_ptr<Surrogate> clone_surrogate(const Surrogate& s);

}  // namespace tracer
