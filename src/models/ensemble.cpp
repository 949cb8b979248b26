#include "models/ensemble.hpp"

#include <array>

#include "util/error.hpp"

namespace tracer {

namespace {
constexpr uint32_t kFormatVersion = 1;
}

EnsembleSurrogate::EnsembleSurrogate(std::vector<std::unique_ptr<Surrogate>> members)
    : members_(std::move(members)) {
  if (members_.empty()) throw InputError("an ensemble needs at least one member");
  num_classes_ = members_.front()->num_classes();
  for (const auto& m : members_)
    if (m->num_classes() != num_classes_)
      throw InputError("ensemble members disagree on the number of labels");
  if (num_classes_ > kMaxEnsembleClasses)
    throw InputError("ensembles support at most " + std::to_string(kMaxEnsembleClasses) +
                     " labels");
}

void EnsembleSurrogate::fit(const SparseMatrix& X, std::span<const int> y, int num_classes,
                            const FitContext& ctx) {
  // Refits every member on new data (the members keep their kinds).
  for (auto& m : members_) m->fit(X, y, num_classes, ctx);
  num_classes_ = num_classes;
}

void EnsembleSurrogate::predict_proba(SparseRow x, std::span<float> out) const {
  std::array<float, kMaxEnsembleClasses> buf;
  std::span<float> tmp(buf.data(), static_cast<size_t>(num_classes_));
  std::fill(out.begin(), out.end(), 0.f);
  const float w = 1.f / static_cast<float>(members_.size());
  for (const auto& m : members_) {
    m->predict_proba(x, tmp);
    for (int c = 0; c < num_classes_; ++c) out[c] += w * tmp[c];
  }
}

void EnsembleSurrogate::save(BinaryWriter& w) const {
  w.put<uint32_t>(kFormatVersion);
  w.put<uint32_t>(static_cast<uint32_t>(members_.size()));
  for (const auto& m : members_) {
    w.put_string(m->name());
    m->save(w);
  }
}

void EnsembleSurrogate::load(BinaryReader& r) {
  if (r.get<uint32_t>() != kFormatVersion)
    throw FormatError("ensemble section has an unknown format version");
  uint32_t n = r.get<uint32_t>();
  if (n == 0 || n > 16) throw FormatError("ensemble member count out of range");
  std::vector<std::unique_ptr<Surrogate>> members;
  for (uint32_t i = 0; i < n; ++i) {
    std::string name = r.get_string(256);
    if (name == "ensemble") throw FormatError("nested ensembles are not supported");
    auto m = make_surrogate(name);
    m->load(r);
    members.push_back(std::move(m));
  }
  try {
    *this = EnsembleSurrogate(std::move(members));
  } catch (const InputError& e) {
    throw FormatError(std::string("ensemble: ") + e.what());
  }
}

std::vector<std::string> EnsembleSurrogate::member_names() const {
  std::vector<std::string> names;
  for (const auto& m : members_) names.push_back(m->name());
  return names;
}

std::unique_ptr<Surrogate> clone_surrogate(const Surrogate& s) {
  BinaryWriter w;
  s.save(w);
  auto copy = make_surrogate(s.name());
  BinaryReader r(w.bytes());
  copy->load(r);
  return copy;
}

}  // namespace tracer
