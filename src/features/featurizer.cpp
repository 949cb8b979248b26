#include "features/featurizer.hpp"

#include <algorithm>
#include <exception>
#include <thread>

#include "features/tfidf.hpp"
#include "util/error.hpp"

namespace tracer {

SparseMatrix Featurizer::transform_all(std::span<const std::string> texts, int threads) const {
  const size_t n = texts.size();
  const size_t workers =
      std::clamp<size_t>(threads < 1 ? 1 : static_cast<size_t>(threads), 1, std::max<size_t>(n, 1));
  auto run = [&](size_t begin, size_t end, SparseMatrix& m) {
    SparseVector v;
    for (size_t i = begin; i < end; ++i) {
      transform(texts[i], v);
      m.add_row(v.row());
    }
  };
  SparseMatrix all(dim());
  if (workers == 1) {
    run(0, n, all);
    return all;
  }
  // Contiguous chunks, concatenated in order afterwards, keep row i == texts[i].
  std::vector<SparseMatrix> parts(workers, SparseMatrix(dim()));
  std::vector<std::exception_ptr> errors(workers);
  {
    std::vector<std::jthread> pool;
    pool.reserve(workers);
    const size_t chunk = (n + workers - 1) / workers;
    for (size_t t = 0; t < workers; ++t) {
      pool.emplace_back([&, t] {
        try {
          run(std::min(n, t * chunk), std::min(n, (t + 1) * chunk), parts[t]);
        } catch (...) {
          errors[t] = std::current_exception();
        }
      });
    }
  }
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
  for (const auto& part : parts)
    for (size_t r = 0; r < part.rows(); ++r) all.add_row(part.row(r));
  return all;
}

std::unique_ptr<Featurizer> make_featurizer(const std::string& kind) {
  if (kind == "tfidf") return std::make_unique<TfidfFeaturizer>();
  throw InputError("unknown featurizer '" + kind + "'; valid featurizers: tfidf");
}

}  // namespace tracer
