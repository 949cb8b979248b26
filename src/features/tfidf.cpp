#include "features/tfidf.hpp"

#include <utf8proc.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <unordered_map>

#include "util/error.hpp"

namespace tracer {
namespace {

constexpr uint32_t kFormatVersion = 1;
constexpr uint32_t kMaxWordN = 4;
constexpr uint32_t kMaxCharN = 8;
constexpr uint32_t kMaxFeaturesLimit = 1u << 24;
constexpr uint32_t kNoColumn = UINT32_MAX;

// NFKC_Casefold, the same options as utf8proc_NFKC_Casefold (which would malloc per call).
constexpr auto kNormOptions = static_cast<utf8proc_option_t>(
    UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT | UTF8PROC_CASEFOLD | UTF8PROC_IGNORE);

// Word characters (letters, marks, digits) form runs; each symbol (currency, math, emoji, ...)
// is a one-character token of its own; everything else (spaces, punctuation, controls) separates.
enum CharClass : uint8_t { kSeparator = 0, kWordChar = 1, kSymbol = 2 };

CharClass classify(int32_t cp) {
  switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
      return kWordChar;
    case UTF8PROC_CATEGORY_SM:
    case UTF8PROC_CATEGORY_SC:
    case UTF8PROC_CATEGORY_SO:
    case UTF8PROC_CATEGORY_CN:  // unassigned in this utf8proc (e.g. newer emoji)
    case UTF8PROC_CATEGORY_CO:
      return kSymbol;
    default:
      return kSeparator;
  }
}

// The ASCII fast path's copy of classify(); a test checks it against utf8proc.
constexpr std::array<uint8_t, 128> kAsciiClass = [] {
  std::array<uint8_t, 128> t{};
  for (int c = 0; c < 128; ++c) {
    bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    bool symbol = c == '$' || c == '+' || c == '<' || c == '=' || c == '>' || c == '|' || c == '~';
    t[c] = alnum ? kWordChar : symbol ? kSymbol : kSeparator;
  }
  return t;
}();

// Builds the token buffer " t1 t2 ... tn " (single spaces, empty when there is no token), so every
// word n-gram and every space-padded word is a contiguous substring.
class TokenWriter {
 public:
  explicit TokenWriter(std::string& buf) : buf_(buf) {
    buf_.clear();
    buf_.push_back(' ');
  }
  void word_bytes(const char* p, size_t n) {
    buf_.append(p, n);
    in_word_ = true;
  }
  void word_byte(char c) {
    buf_.push_back(c);
    in_word_ = true;
  }
  void separator() {
    if (in_word_) buf_.push_back(' ');
    in_word_ = false;
  }
  void symbol(const char* p, size_t n) {
    separator();
    buf_.append(p, n);
    buf_.push_back(' ');
  }
  void finish() {
    separator();
    if (buf_.size() == 1) buf_.clear();
  }

 private:
  std::string& buf_;
  bool in_word_ = false;
};

// Returns false (leaving `buf` unspecified) at the first non-ASCII byte.
bool tokenize_ascii(std::string_view text, std::string& buf) {
  TokenWriter w(buf);
  for (char ch : text) {
    auto c = static_cast<unsigned char>(ch);
    if (c >= 0x80) return false;
    switch (kAsciiClass[c]) {
      case kWordChar:
        w.word_byte(static_cast<char>(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c));
        break;
      case kSymbol:
        w.symbol(&ch, 1);
        break;
      default:
        w.separator();
    }
  }
  w.finish();
  return true;
}

// Copies `text` into `buf`, replacing each byte that does not start a valid UTF-8 sequence by
// U+FFFD, so utf8proc accepts it.
void sanitize_utf8(std::string_view text, std::string& buf) {
  buf.clear();
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(text.data());
  auto rem = static_cast<utf8proc_ssize_t>(text.size());
  while (rem > 0) {
    utf8proc_int32_t cp;
    utf8proc_ssize_t k = utf8proc_iterate(p, rem, &cp);
    if (k <= 0 || cp < 0) {
      buf.append("\xEF\xBF\xBD");
      k = 1;
    } else {
      buf.append(reinterpret_cast<const char*>(p), static_cast<size_t>(k));
    }
    p += k;
    rem -= k;
  }
}

utf8proc_ssize_t decompose(std::string_view text, std::vector<int32_t>& cps) {
  if (cps.size() < text.size() + 1) cps.resize(text.size() + 1);
  for (;;) {
    utf8proc_ssize_t n =
        utf8proc_decompose(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                           static_cast<utf8proc_ssize_t>(text.size()), cps.data(),
                           static_cast<utf8proc_ssize_t>(cps.size()), kNormOptions);
    if (n < 0 || static_cast<size_t>(n) <= cps.size()) return n;
    cps.resize(static_cast<size_t>(n));
  }
}

// NFKC-casefolds and tokenizes `text` into `buf` (see TokenWriter); `cps` is scratch.
void normalize_tokens(std::string_view text, std::string& buf, std::vector<int32_t>& cps) {
  if (tokenize_ascii(text, buf)) return;  // ASCII: NFKC is the identity, casefold is tolower
  utf8proc_ssize_t n = decompose(text, cps);
  if (n == UTF8PROC_ERROR_INVALIDUTF8) {
    sanitize_utf8(text, buf);
    n = decompose(buf, cps);
  }
  if (n >= 0) n = utf8proc_normalize_utf32(cps.data(), n, kNormOptions);
  TokenWriter w(buf);
  for (utf8proc_ssize_t i = 0; i < n; ++i) {
    int32_t cp = cps[static_cast<size_t>(i)];
    utf8proc_uint8_t enc[4];
    auto len = static_cast<size_t>(utf8proc_encode_char(cp, enc));
    const auto* bytes = reinterpret_cast<const char*>(enc);
    switch (classify(cp)) {
      case kWordChar:
        w.word_bytes(bytes, len);
        break;
      case kSymbol:
        w.symbol(bytes, len);
        break;
      default:
        w.separator();
    }
  }
  w.finish();
}

// N-gram keys: FNV-1a over the n-gram's UTF-8 bytes, a murmur3 finaliser (linear probing uses the
// low bits), and the kind in the top bit so word and char n-grams can never share a key. Two
// distinct n-grams of one kind collide with probability ~2^-63 per pair: negligible, and a
// collision merely merges two columns.
constexpr uint64_t kFnvBasis = 0xcbf29ce484222325ull;
constexpr uint64_t kFnvPrime = 0x100000001b3ull;

inline uint64_t fnv_byte(uint64_t h, char c) {
  return (h ^ static_cast<unsigned char>(c)) * kFnvPrime;
}

inline uint64_t finish_key(uint64_t h, NgramKind kind) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  uint64_t key = (h >> 1) | (static_cast<uint64_t>(kind) << 63);
  return key ? key : 1;  // 0 marks an empty slot
}

uint64_t term_key(std::string_view term, NgramKind kind) {
  uint64_t h = kFnvBasis;
  for (char c : term) h = fnv_byte(h, c);
  return finish_key(h, kind);
}

uint64_t hash_bytes(std::string_view bytes) { return term_key(bytes, NgramKind::kWord); }

// Calls emit(kind, begin, length, key) for every n-gram of the token buffer, repeats included.
// Char n-grams are every window of char_min_n..char_max_n code points inside " token " (as
// scikit-learn's analyzer='char_wb'); word n-grams are runs of consecutive tokens.
template <typename Emit>
void for_each_ngram(const std::string& buf, const TfidfConfig& cfg, Emit&& emit) {
  const char* d = buf.data();
  const size_t n = buf.size();
  std::array<size_t, kMaxWordN> starts{};
  size_t count = 0;
  for (size_t s = 1; s < n;) {
    size_t e = buf.find(' ', s);  // token is [s, e); the writer always ends tokens with ' '
    if (cfg.word_max_n > 0) {
      starts[count % kMaxWordN] = s;
      ++count;
      size_t max_k = std::min<size_t>(cfg.word_max_n, count);
      for (size_t k = 1; k <= max_k; ++k) {
        size_t b = starts[(count - k) % kMaxWordN];
        emit(NgramKind::kWord, d + b, e - b, term_key({d + b, e - b}, NgramKind::kWord));
      }
    }
    if (cfg.char_max_n > 0) {
      const char* pe = d + e + 1;
      for (const char* a = d + s - 1; a < pe;) {
        uint64_t h = kFnvBasis;
        const char* b = a;
        for (uint32_t len = 1; len <= cfg.char_max_n && b < pe; ++len) {
          do {
            h = fnv_byte(h, *b++);
          } while (b < pe && (static_cast<unsigned char>(*b) & 0xC0) == 0x80);
          if (len >= cfg.char_min_n)
            emit(NgramKind::kChar, a, static_cast<size_t>(b - a), finish_key(h, NgramKind::kChar));
        }
        do ++a;
        while (a < pe && (static_cast<unsigned char>(*a) & 0xC0) == 0x80);
      }
    }
    s = e + 1;
  }
}

std::string hex64(uint64_t v) {
  char out[17];
  std::snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(v));
  return out;
}

}  // namespace

void TfidfConfig::validate() const {
  auto bad = [](const std::string& what) { throw InputError("tfidf featurizer: " + what); };
  if (min_df < 1) bad("min_df must be at least 1 (got 0)");
  if (max_features < 1 || max_features > kMaxFeaturesLimit)
    bad("max_features must be in 1.." + std::to_string(kMaxFeaturesLimit) + " (got " +
        std::to_string(max_features) + ")");
  if (word_max_n > kMaxWordN)
    bad("word_max_n must be in 0.." + std::to_string(kMaxWordN) + " (got " +
        std::to_string(word_max_n) + ")");
  if (char_max_n > kMaxCharN)
    bad("char_max_n must be in 0.." + std::to_string(kMaxCharN) + " (got " +
        std::to_string(char_max_n) + ")");
  if (char_max_n > 0 && (char_min_n < 1 || char_min_n > char_max_n))
    bad("char_min_n must be in 1..char_max_n (got " + std::to_string(char_min_n) + ".." +
        std::to_string(char_max_n) + ")");
  if (word_max_n == 0 && char_max_n == 0)
    bad("word_max_n and char_max_n are both 0: enable word or char n-grams");
}

TfidfFeaturizer::TfidfFeaturizer(TfidfConfig config) : config_(config) {
  config_.validate();
  finish_vocabulary();
}

void TfidfFeaturizer::fit(std::span<const std::string> texts) {
  if (texts.empty())
    throw InputError("tfidf featurizer: cannot fit on zero texts; give at least one training text");
  SparseVector scratch;
  std::vector<uint64_t> keys;
  // Pass 1: document frequency by key only (no strings for the many n-grams pruned later).
  std::unordered_map<uint64_t, uint32_t> df;
  for (const auto& text : texts) {
    normalize_tokens(text, scratch.scratch, scratch.scratch_cp);
    keys.clear();
    for_each_ngram(scratch.scratch, config_,
                   [&](NgramKind, const char*, size_t, uint64_t key) { keys.push_back(key); });
    std::sort(keys.begin(), keys.end());
    keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    for (uint64_t key : keys) ++df[key];
  }
  std::vector<std::pair<uint32_t, uint64_t>> kept;  // (df, key)
  for (const auto& [key, count] : df)
    if (count >= config_.min_df) kept.emplace_back(count, key);
  // Highest df first; equal df ordered by key so the cut at max_features is deterministic.
  std::sort(kept.begin(), kept.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  if (kept.size() > config_.max_features) kept.resize(config_.max_features);
  size_t unpruned = df.size();
  df = {};

  // Pass 2: recover the text of each kept n-gram from its first occurrence.
  std::unordered_map<uint64_t, uint32_t> slot_of;
  slot_of.reserve(kept.size());
  for (size_t i = 0; i < kept.size(); ++i) slot_of.emplace(kept[i].second, i);
  std::vector<std::string> term(kept.size());
  std::vector<uint8_t> kind(kept.size());
  std::vector<bool> found(kept.size(), false);
  size_t missing = kept.size();
  for (size_t t = 0; t < texts.size() && missing > 0; ++t) {
    normalize_tokens(texts[t], scratch.scratch, scratch.scratch_cp);
    for_each_ngram(scratch.scratch, config_,
                   [&](NgramKind k, const char* p, size_t len, uint64_t key) {
                     auto it = slot_of.find(key);
                     if (it == slot_of.end() || found[it->second]) return;
                     found[it->second] = true;
                     term[it->second].assign(p, len);
                     kind[it->second] = static_cast<uint8_t>(k);
                     --missing;
                   });
  }

  // Columns in (kind, text) order: readable and independent of the hash function.
  std::vector<uint32_t> order(kept.size());
  for (uint32_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
    return kind[a] != kind[b] ? kind[a] < kind[b] : term[a] < term[b];
  });
  terms_.clear();
  kinds_.clear();
  df_.clear();
  for (uint32_t i : order) {
    terms_.push_back(std::move(term[i]));
    kinds_.push_back(kind[i]);
    df_.push_back(kept[i].first);
  }
  num_docs_ = texts.size();
  finish_vocabulary();
  unpruned_size_ = unpruned;
}

void TfidfFeaturizer::finish_vocabulary() {
  const size_t n = terms_.size();
  idf_.resize(n);
  for (size_t c = 0; c < n; ++c)
    idf_[c] = static_cast<float>(
        std::log((1.0 + static_cast<double>(num_docs_)) / (1.0 + static_cast<double>(df_[c]))) +
        1.0);
  size_t cap = 16;
  while (cap < 2 * n) cap *= 2;  // load factor <= 1/2 keeps misses to ~2 probes
  table_.assign(cap, Slot{});
  mask_ = cap - 1;
  for (size_t c = 0; c < n; ++c) {
    uint64_t key = term_key(terms_[c], static_cast<NgramKind>(kinds_[c]));
    size_t i = key & mask_;
    while (table_[i].key != 0) {
      if (table_[i].key == key)
        throw FormatError("tfidf featurizer: duplicate vocabulary term '" + terms_[c] +
                          "' (model file corrupted?)");
      i = (i + 1) & mask_;
    }
    table_[i] = {key, static_cast<uint32_t>(c)};
  }
  unpruned_size_ = 0;
  BinaryWriter w;
  save(w);
  fingerprint_ = hex64(hash_bytes(w.bytes()));
}

uint32_t TfidfFeaturizer::lookup(uint64_t key) const {
  for (size_t i = key & mask_;; i = (i + 1) & mask_) {
    const Slot& s = table_[i];
    if (s.key == key) return s.col;
    if (s.key == 0) return kNoColumn;
  }
}

std::string TfidfFeaturizer::normalize(std::string_view text) const {
  std::string buf;
  std::vector<int32_t> cps;
  normalize_tokens(text, buf, cps);
  return buf;
}

std::string_view TfidfFeaturizer::normalize_into(std::string_view text,
                                                 SparseVector& scratch) const {
  normalize_tokens(text, scratch.scratch, scratch.scratch_cp);
  return scratch.scratch;
}

void TfidfFeaturizer::transform(std::string_view text, SparseVector& out,
                                FeatureStats* stats) const {
  out.clear();
  normalize_tokens(text, out.scratch, out.scratch_cp);
  uint32_t ngrams = 0;
  for_each_ngram(out.scratch, config_, [&](NgramKind, const char*, size_t, uint64_t key) {
    ++ngrams;
    uint32_t col = lookup(key);
    if (col != kNoColumn) out.idx.push_back(col);
  });
  if (stats) {
    stats->ngrams = ngrams;
    stats->known_ngrams = static_cast<uint32_t>(out.idx.size());
  }
  // Sort the column hits, merge repeats into counts, then weight: (1 + ln tf) * idf, L2 norm.
  auto& idx = out.idx;
  std::sort(idx.begin(), idx.end());
  size_t m = 0;
  double norm2 = 0;
  for (size_t i = 0; i < idx.size();) {
    size_t j = i + 1;
    while (j < idx.size() && idx[j] == idx[i]) ++j;
    float tf = j - i == 1 ? 1.0f : 1.0f + std::log(static_cast<float>(j - i));
    float w = tf * idf_[idx[i]];
    idx[m++] = idx[i];
    out.val.push_back(w);
    norm2 += static_cast<double>(w) * w;
    i = j;
  }
  idx.resize(m);
  if (norm2 > 0) {
    auto inv = static_cast<float>(1.0 / std::sqrt(norm2));
    for (float& v : out.val) v *= inv;
  }
}

std::string TfidfFeaturizer::describe() const {
  std::string grams;
  if (config_.word_max_n > 0) grams = "word 1-" + std::to_string(config_.word_max_n);
  if (config_.char_max_n > 0) {
    if (!grams.empty()) grams += " + ";
    grams +=
        "char_wb " + std::to_string(config_.char_min_n) + "-" + std::to_string(config_.char_max_n);
  }
  return "tfidf " + grams + " grams, " + std::to_string(dim()) + " features (min_df " +
         std::to_string(config_.min_df) + ", " + std::to_string(num_docs_) +
         " training texts; NFKC casefold, sublinear tf, smooth idf, L2)";
}

std::string TfidfFeaturizer::term_label(size_t col) const {
  if (kinds_[col] == static_cast<uint8_t>(NgramKind::kChar)) return "'" + terms_[col] + "'";
  return terms_[col];
}

std::optional<uint32_t> TfidfFeaturizer::column_of(std::string_view term, NgramKind kind) const {
  uint32_t col = lookup(term_key(term, kind));
  if (col == kNoColumn || terms_[col] != term) return std::nullopt;
  return col;
}

std::vector<std::pair<NgramKind, std::string>> TfidfFeaturizer::ngrams(std::string_view text,
                                                                       const TfidfConfig& config) {
  config.validate();
  SparseVector scratch;
  normalize_tokens(text, scratch.scratch, scratch.scratch_cp);
  std::vector<std::pair<NgramKind, std::string>> out;
  for_each_ngram(scratch.scratch, config, [&](NgramKind k, const char* p, size_t len, uint64_t) {
    out.emplace_back(k, std::string(p, len));
  });
  return out;
}

void TfidfFeaturizer::save(BinaryWriter& w) const {
  w.put<uint32_t>(kFormatVersion);
  w.put<uint32_t>(config_.min_df);
  w.put<uint32_t>(config_.max_features);
  w.put<uint32_t>(config_.word_max_n);
  w.put<uint32_t>(config_.char_min_n);
  w.put<uint32_t>(config_.char_max_n);
  w.put<uint64_t>(num_docs_);
  w.put_strings(terms_);
  w.put_vector(kinds_);
  w.put_vector(df_);
}

void TfidfFeaturizer::load(BinaryReader& r) {
  auto version = r.get<uint32_t>();
  if (version != kFormatVersion)
    throw FormatError("tfidf featurizer: unsupported format version " + std::to_string(version) +
                      " (this tracer reads version " + std::to_string(kFormatVersion) +
                      "); refit the policy with this tracer");
  TfidfConfig cfg;
  cfg.min_df = r.get<uint32_t>();
  cfg.max_features = r.get<uint32_t>();
  cfg.word_max_n = r.get<uint32_t>();
  cfg.char_min_n = r.get<uint32_t>();
  cfg.char_max_n = r.get<uint32_t>();
  try {
    cfg.validate();
  } catch (const InputError& e) {
    throw FormatError(std::string("model file: ") + e.what() + " (file corrupted?)");
  }
  // Build into a fresh object so a bad file leaves *this untouched.
  TfidfFeaturizer tmp(cfg);
  tmp.num_docs_ = r.get<uint64_t>();
  tmp.terms_ = r.get_strings();
  tmp.kinds_ = r.get_vector<uint8_t>(kMaxFeaturesLimit);
  tmp.df_ = r.get_vector<uint32_t>(kMaxFeaturesLimit);
  const size_t n = tmp.terms_.size();
  if (tmp.kinds_.size() != n || tmp.df_.size() != n || n > cfg.max_features)
    throw FormatError("tfidf featurizer: vocabulary arrays disagree in size (file corrupted?)");
  for (size_t c = 0; c < n; ++c) {
    if (tmp.terms_[c].empty() || tmp.kinds_[c] > 1 || tmp.df_[c] < 1 || tmp.df_[c] > tmp.num_docs_)
      throw FormatError("tfidf featurizer: invalid vocabulary entry " + std::to_string(c) +
                        " (file corrupted?)");
  }
  tmp.finish_vocabulary();
  *this = std::move(tmp);
}

}  // namespace tracer
