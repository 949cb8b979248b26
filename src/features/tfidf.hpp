#pragma once
// The built-in featurizer: TF-IDF over word n-grams and char_wb n-grams of NFKC-casefolded text,
// sublinear tf, smooth idf, L2-normalised rows. No model download, microseconds per text.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "features/featurizer.hpp"

namespace tracer {

struct TfidfConfig {
  uint32_t min_df = 2;            // keep n-grams seen in at least this many training texts
  uint32_t max_features = 30000;  // then keep the most frequent (highest df) ones
  uint32_t word_max_n = 2;        // word 1..word_max_n-grams; 0 disables word n-grams
  uint32_t char_min_n = 2;        // char_wb n-grams of char_min_n..char_max_n code points;
  uint32_t char_max_n = 5;        // char_max_n 0 disables them
  void validate() const;          // throws InputError naming the bad field
};

enum class NgramKind : uint8_t { kWord = 0, kChar = 1 };

class TfidfFeaturizer final : public Featurizer {
 public:
  explicit TfidfFeaturizer(TfidfConfig config = {});

  std::string kind() const override { return "tfidf"; }
  void fit(std::span<const std::string> texts) override;
  size_t dim() const override { return terms_.size(); }
  std::string normalize(std::string_view text) const override;
  std::string_view normalize_into(std::string_view text, SparseVector& scratch) const override;
  void transform(std::string_view text, SparseVector& out,
                 FeatureStats* stats = nullptr) const override;
  std::string fingerprint() const override { return fingerprint_; }
  std::string describe() const override;
  void save(BinaryWriter& w) const override;
  void load(BinaryReader& r) override;

  const TfidfConfig& config() const { return config_; }
  // Vocabulary, indexed by column: the n-gram text (char n-grams include their padding spaces).
  const std::vector<std::string>& terms() const { return terms_; }
  NgramKind term_kind(size_t col) const { return static_cast<NgramKind>(kinds_[col]); }
  // Human label for reports: words as-is ("my card"), char n-grams quoted ("' car'").
  std::string term_label(size_t col) const;
  const std::vector<float>& idf() const { return idf_; }
  const std::vector<uint32_t>& document_frequency() const { return df_; }
  std::optional<uint32_t> column_of(std::string_view term, NgramKind kind) const;
  // Distinct n-grams seen by the last fit() before min_df / max_features pruning (0 after load).
  size_t unpruned_vocabulary_size() const { return unpruned_size_; }

  // Every n-gram of `text` in extraction order (with repeats): for tests and explanations.
  static std::vector<std::pair<NgramKind, std::string>> ngrams(std::string_view text,
                                                               const TfidfConfig& config);

 private:
  struct Slot {
    uint64_t key = 0;  // 0 = empty; real keys are never 0
    uint32_t col = 0;
  };
  void finish_vocabulary();  // idf, hash table, fingerprint from terms_/kinds_/df_
  uint32_t lookup(uint64_t key) const;

  TfidfConfig config_;
  uint64_t num_docs_ = 0;
  std::vector<std::string> terms_;
  std::vector<uint8_t> kinds_;
  std::vector<uint32_t> df_;
  std::vector<float> idf_;
  std::vector<Slot> table_;  // open addressing, power-of-two capacity, linear probing
  uint64_t mask_ = 0;
  std::string fingerprint_;
  size_t unpruned_size_ = 0;
};

}  // namespace tracer
