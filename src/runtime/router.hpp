#pragma once
// The router: featurize → surrogate → OOD gate → acceptor → handled or deferred.
// Thread-safe: one Router is shared by all threads; each thread brings its own Scratch.
#include <atomic>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "policy/policy.hpp"

namespace tracer {

enum class DeferReason {
  kNone,
  kBelowThreshold,
  kOutOfDistribution,
  kNoPolicy,
  kRareLabel,
  kKnownDisagreement,  // a logged input whose LLM answers mostly differ from the surrogate's
};
inline constexpr int kDeferReasons = 6;  // DeferReason values, kNone included
std::string reason_name(DeferReason r);

struct RouteResult {
  int label = -1;          // the surrogate's answer (argmax of the answering stage)
  float probability = 0;   // its probability
  bool handled = false;    // true: the surrogate answers; false: defer to the LLM
  float accept_score = 0;  // acceptor score of the stage that decided
  float stage1_score = 0;  // stage 1's acceptor score, always computed (the drift statistic)
  int stage = 1;           // 1 or 2 (rsb second stage); 0: answered from memory (the LLM's
                           // remembered label; probability and scores are then 1)
  DeferReason reason = DeferReason::kNone;
  float known_fraction = 0, similarity = 0;  // OOD signals
};

// Per-thread buffers so routing does not allocate once warmed up.
struct RouteScratch {
  SparseVector x;
  SparseVector key;  // normalisation buffer of the memory and known-input lookups
  std::vector<float> probs, probs2, sims;
};

// Which memory entries a caller lets answer (the server: none once the table expired, and not
// those an audit found stale). Default: all of them.
struct MemoryFilter {
  bool enabled = true;
  const std::atomic<uint8_t>* evicted = nullptr;  // per entry of Policy::memory_inputs, or null
};

// How a server uses the memory tier (docs/serve.md, "Memory tier").
struct ServedMemoryOptions {
  // Remembered answers stop being used this many seconds after the fit (manifest.json →
  // created_at); 0: never. A refit (`tracer update`) rebuilds the table.
  int64_t ttl_s = 0;
};

// What a decision reports as its reason: the deferral reason, "memory" for an answer from the
// memory tier, "" for a surrogate answer.
std::string decision_reason(const RouteResult& r);

// What one stage says about one featurized input (shared by the fitter and the router so the
// certified numbers are computed exactly as traffic is routed).
struct StageView {
  int label = -1;
  float probability = 0;
  float score = 0;  // acceptor score
};
StageView evaluate_stage(const Stage& stage, SparseRow x, const FeatureStats& stats,
                         std::span<float> probs);

class Router {
 public:
  // Loads `dir/manifest.json` and `dir/model.bin`; checks version, checksum and featurizer.
  static Router load(const std::string& dir);
  Router(Policy policy, nlohmann::json manifest);

  RouteScratch make_scratch() const;
  // Routes `text`: an input in the memory table (Policy::memory_inputs) is answered with its
  // remembered label (stage 0) without running a surrogate; anything else is featurized and
  // routed, and a handled known input (Policy::known_inputs) whose agreeing label is not the
  // surrogate's is deferred with reason kKnownDisagreement.
  RouteResult route(std::string_view text, RouteScratch& s, const MemoryFilter& memory = {}) const;
  // The index of `text`'s entry in Policy::memory_inputs, or -1.
  int memory_index(std::string_view text, RouteScratch& s) const;
  // Routes an already featurized input (used by the fitter; no known-input check: it needs the
  // text).
  RouteResult route_features(SparseRow x, const FeatureStats& stats, RouteScratch& s) const;

  const Policy& policy() const { return policy_; }
  const nlohmann::json& manifest() const { return manifest_; }
  // True when the policy defers every input whatever it says: no certified gate and no memory
  // table. Its deferred requests are then a census of traffic, not a biased subset.
  bool answers_nothing() const {
    return policy_.method == Method::kNone && policy_.memory_inputs.empty();
  }
  const std::string& label_name(int i) const { return policy_.labels.at(i); }

 private:
  uint64_t input_key(std::string_view text, RouteScratch& s) const;
  static RouteResult memory_answer(int label);
  Policy policy_;
  nlohmann::json manifest_;
};

}  // namespace tracer
