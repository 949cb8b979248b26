#pragma once
// The routing policy: everything the router needs, and its on-disk form (`model.bin`).
//
// model.bin layout (little-endian):
//   8 bytes  magic "TRACERPB"
//   u32      format version (kModelFormatVersion)
//   u64      payload size
//   u64      FNV-1a 64 checksum of the payload
//   payload  featurizer, labels, surrogate, gate (see policy.cpp)
#include <memory>
#include <string>
#include <vector>

#include "features/featurizer.hpp"
#include "gate/acceptor.hpp"
#include "gate/ood.hpp"
#include "models/surrogate.hpp"

namespace tracer {

// 2: adds the rare-label mask. 3: adds the known inputs. 4: adds the memory tier. Older versions
// still load (no label is rare, no input is known, nothing is remembered).
inline constexpr uint32_t kModelFormatVersion = 4;

// How a policy answers: `none` means nothing was certified and everything is deferred.
enum class Method { kNone, kGlobal, kL2D, kRSB };
std::string method_name(Method m);
Method parse_method(const std::string& s);  // throws InputError

struct Stage {
  std::unique_ptr<Surrogate> surrogate;
  Acceptor acceptor;
  float threshold = 0;             // accept when acceptor score >= threshold
  std::vector<float> label_prior;  // per-label agreement rate on select (acceptor signal)
};

struct Policy {
  std::unique_ptr<Featurizer> featurizer;
  std::vector<std::string> labels;
  Method method = Method::kNone;
  Stage stage1;
  Stage stage2;  // rsb only: answers part of what stage 1 rejects
  OodGate ood;
  // Per label, 1 when the surrogate saw too few distinct inputs of it to answer it: an input
  // predicted as that label is deferred (reason rare_label). Empty: no rare label.
  std::vector<uint8_t> rare_labels;
  // The distinct inputs of the traces the policy was fit on, by FNV-1a 64 of the featurizer's
  // normalisation (ascending), and per input the label the LLM gave in at least a `target`
  // share of its logged answers (-1: no label did). The router defers an input it would handle
  // when it is known and the surrogate's label is not that one (reason known_disagreement): the
  // LLM's own answers to this very input say the surrogate's would mostly disagree, and with
  // repeated traffic one such input can weigh on agreement in proportion to its traffic, which a
  // certificate over distinct inputs does not see. Empty: no input is known.
  std::vector<uint64_t> known_inputs;
  std::vector<int32_t> known_labels;
  // The memory tier (fit/memory.hpp): inputs answered with the LLM's remembered label before any
  // surrogate runs, keyed like known_inputs (ascending), and their labels. Certified as a whole
  // by the fit (manifest.json → memory). Empty: nothing is remembered.
  std::vector<uint64_t> memory_inputs;
  std::vector<int32_t> memory_labels;
  std::string policy_version;  // copied from the manifest when loaded

  // The agreeing label of a known input (-1: none), or -2 when `key` is not a known input.
  int known_label(uint64_t key) const;
  // The remembered label of `key`, or -1 when it is not in the memory table. O(log n).
  int memory_label(uint64_t key) const;
  // The index of `key` in memory_inputs, or -1.
  int memory_index(uint64_t key) const;
  bool is_rare(int label) const {
    return label >= 0 && static_cast<size_t>(label) < rare_labels.size() &&
           rare_labels[static_cast<size_t>(label)] != 0;
  }
};

uint64_t fnv1a64(std::string_view bytes);
// The key of an input in Policy::known_inputs: fnv1a64 of its normalised text.
inline uint64_t known_input_key(const Featurizer& f, std::string_view text) {
  return fnv1a64(f.normalize(text));
}
std::string checksum_hex(uint64_t sum);  // 16 lowercase hex digits

// Serialises to the model.bin format above.
std::string encode_policy(const Policy& p);
// Throws FormatError with a message saying what is wrong and what to do (refit) on a bad file.
Policy decode_policy(std::string_view bytes, const std::string& source_name);

// Writes `content` to `path` atomically (temp file in the same folder, fsync, rename).
void write_file_atomic(const std::string& path, const std::string& content);
std::string read_whole_file(const std::string& path);

}  // namespace tracer
