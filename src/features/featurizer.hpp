#pragma once
// Featurizer: text → sparse vector. One interface, implementations chosen by name.
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "features/sparse.hpp"
#include "util/binio.hpp"

namespace tracer {

// Per-text by-products the OOD gate uses: how much of the text the vocabulary knew.
struct FeatureStats {
  uint32_t ngrams = 0;        // n-grams extracted from the text
  uint32_t known_ngrams = 0;  // of which are in the fitted vocabulary
};

class Featurizer {
 public:
  virtual ~Featurizer() = default;
  virtual std::string kind() const = 0;  // registry name, e.g. "tfidf"
  virtual void fit(std::span<const std::string> texts) = 0;
  virtual size_t dim() const = 0;
  // The key under which two texts are the same input for this featurizer (they get identical
  // features): e.g. NFKC-casefolded tokens for TF-IDF. Usable before fit(); the fitter groups
  // traces by it, so a distinct key is the unit of certification evidence.
  virtual std::string normalize(std::string_view text) const = 0;
  // normalize() into `scratch`'s buffer (no allocation once warmed up); the view is valid until
  // `scratch` is next used. Thread-safe after fit.
  virtual std::string_view normalize_into(std::string_view text, SparseVector& scratch) const {
    scratch.scratch = normalize(text);
    return scratch.scratch;
  }
  // Thread-safe after fit; `out` is cleared and reused (no allocation once warmed up).
  virtual void transform(std::string_view text, SparseVector& out,
                         FeatureStats* stats = nullptr) const = 0;
  // Stable hash of the configuration and fitted state; recorded in the manifest.
  virtual std::string fingerprint() const = 0;
  virtual std::string describe()
      const = 0;  // one human line, e.g. "tfidf word1-2+char2-5, 40000 features"
  virtual void save(BinaryWriter& w) const = 0;
  virtual void load(BinaryReader& r) = 0;

  SparseMatrix transform_all(std::span<const std::string> texts, int threads = 1) const;
};

std::unique_ptr<Featurizer> make_featurizer(const std::string& kind);

}  // namespace tracer
