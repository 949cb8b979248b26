// libFuzzer target for the model file parser (src/policy/ decode_policy and every section's
// load()). Built by scripts/fuzz.sh. Two kinds of input: raw bytes as a whole file, and a valid
// small model with the input spliced into its payload and the checksum fixed up, so the section
// parsers behind the checksum are reached too. FormatError is the expected way to refuse a file;
// a crash, another exception or a huge allocation is a bug.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "features/featurizer.hpp"
#include "models/surrogate.hpp"
#include "policy/policy.hpp"
#include "util/error.hpp"

namespace {

std::string valid_model() {
  using namespace tracer;
  Policy p;
  p.featurizer = make_featurizer("tfidf");
  std::vector<std::string> texts = {"card arrived late", "card never arrived", "exchange rate",
                                    "bad exchange rate", "top up failed",      "top up pending"};
  p.featurizer->fit(texts);
  SparseMatrix X = p.featurizer->transform_all(texts);
  std::vector<int> y = {0, 0, 1, 1, 2, 2};
  p.labels = {"a", "b", "c"};
  p.stage1.surrogate = make_surrogate("complement_nb");
  p.stage1.surrogate->fit(X, y, 3, FitContext{});
  p.method = Method::kL2D;
  return encode_policy(p);
}

void try_decode(const std::string& bytes) {
  try {
    tracer::decode_policy(bytes, "fuzz.bin");
  } catch (const tracer::FormatError&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string base = valid_model();
  const std::string input(reinterpret_cast<const char*>(data), size);
  try_decode(input);
  if (size >= 4) {
    // Overwrite part of the payload at an input-chosen offset, then fix the checksum.
    uint32_t at;
    std::memcpy(&at, data, 4);
    std::string m = base;
    const size_t payload = 28, n = m.size() - payload;
    const size_t off = payload + at % n;
    m.replace(off, std::min(size - 4, m.size() - off), input.substr(4, m.size() - off));
    const uint64_t sum = tracer::fnv1a64(std::string_view(m).substr(payload));
    std::memcpy(m.data() + 20, &sum, 8);
    try_decode(m);
  }
  return 0;
}
