// libFuzzer target for the TF-IDF featurizer (src/features/). Not part of the CMake build; build
// with e.g.
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Isrc fuzz/fuzz_tfidf.cpp \
//     src/features/*.cpp -lutf8proc -o fuzz_tfidf && ./fuzz_tfidf -max_total_time=60
// Every input is (1) transformed as text by a small fitted featurizer, with the row invariants
// checked, (2) split into n-grams under a config taken from its first bytes, (3) loaded as a
// model file, and (4) spliced into a valid model file and loaded, so the checks behind the
// version number are reached too. FormatError / InputError are the expected refusals; anything
// else (a crash, another exception, a broken invariant) is a bug.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "features/tfidf.hpp"
#include "util/error.hpp"

namespace {

void require(bool ok) {
  if (!ok) std::abort();
}

tracer::TfidfFeaturizer fitted() {
  tracer::TfidfConfig c;
  c.min_df = 1;
  tracer::TfidfFeaturizer f(c);
  std::vector<std::string> docs = {"I lost my card", "Où est ma carte ?", "card arrived 🙂",
                                   "ＡＢＣ straße",  "東京 card",         "top up $100 by card"};
  f.fit(docs);
  return f;
}

void check_row(const tracer::TfidfFeaturizer& f, std::string_view text) {
  tracer::SparseVector v;
  tracer::FeatureStats st;
  f.transform(text, v, &st);
  require(v.idx.size() == v.val.size());
  require(st.known_ngrams <= st.ngrams);
  require(v.idx.size() <= st.known_ngrams);
  double norm2 = 0;
  for (size_t i = 0; i < v.idx.size(); ++i) {
    require(v.idx[i] < f.dim());
    require(i == 0 || v.idx[i - 1] < v.idx[i]);
    require(std::isfinite(v.val[i]) && v.val[i] > 0);
    norm2 += static_cast<double>(v.val[i]) * v.val[i];
  }
  require(v.idx.empty() || std::fabs(norm2 - 1.0) < 1e-4);
  // Same answer on a warm buffer.
  tracer::SparseVector again = v;
  f.transform(text, again);
  require(again.idx == v.idx && again.val == v.val);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const tracer::TfidfFeaturizer featurizer = fitted();
  static const std::string model = [] {
    tracer::BinaryWriter w;
    featurizer.save(w);
    return w.take();
  }();
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);

  check_row(featurizer, bytes);

  if (size >= 3) {
    tracer::TfidfConfig c;
    c.word_max_n = data[0] % 6;
    c.char_min_n = data[1] % 10;
    c.char_max_n = data[2] % 10;
    try {
      auto grams = tracer::TfidfFeaturizer::ngrams(bytes.substr(3), c);
      for (const auto& g : grams) require(!g.second.empty());
    } catch (const tracer::InputError&) {
    }
  }

  try {
    tracer::TfidfFeaturizer f;
    tracer::BinaryReader r(bytes);
    f.load(r);
    check_row(f, "lost card");
  } catch (const tracer::FormatError&) {
  }

  if (size >= 2) {
    std::string spliced = model;
    size_t at = (static_cast<size_t>(data[0]) << 8 | data[1]) % (spliced.size() + 1);
    spliced.replace(at, std::min(size - 2, spliced.size() - at), bytes.substr(2));
    try {
      tracer::TfidfFeaturizer f;
      tracer::BinaryReader r(spliced);
      f.load(r);
      check_row(f, bytes);
    } catch (const tracer::FormatError&) {
    }
  }
  return 0;
}
