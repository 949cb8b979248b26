#include "runtime/router.hpp"

#include <algorithm>
#include <filesystem>

#include "policy/manifest.hpp"
#include "policy/versions.hpp"
#include "util/error.hpp"

namespace tracer {

std::string reason_name(DeferReason r) {
  switch (r) {
    case DeferReason::kNone:
      return "";
    case DeferReason::kBelowThreshold:
      return "below_threshold";
    case DeferReason::kOutOfDistribution:
      return "out_of_distribution";
    case DeferReason::kNoPolicy:
      return "no_policy";
    case DeferReason::kRareLabel:
      return "rare_label";
    case DeferReason::kKnownDisagreement:
      return "known_disagreement";
  }
  return "";
}

std::string decision_reason(const RouteResult& r) {
  if (r.handled) return r.stage == 0 ? "memory" : "";
  return reason_name(r.reason);
}

StageView evaluate_stage(const Stage& stage, SparseRow x, const FeatureStats& stats,
                         std::span<float> probs) {
  stage.surrogate->predict_proba(x, probs);
  StageView v;
  Signals sig = compute_signals(probs, stage.label_prior, OodGate::known_fraction(stats),
                                static_cast<float>(stats.ngrams), &v.label);
  v.probability = probs[v.label];
  v.score = stage.acceptor.score(sig);
  return v;
}

Router::Router(Policy policy, nlohmann::json manifest)
    : policy_(std::move(policy)), manifest_(std::move(manifest)) {}

Router Router::load(const std::string& folder) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(folder))
    throw InputError("policy folder " + folder +
                     " does not exist; create it with `tracer fit TRACES -o " + folder + "`");
  // Both files from the active version's own folder: a version switched meanwhile is never
  // read half old, half new.
  const std::string dir = resolve_policy_dir(folder);
  std::string manifest_path = (fs::path(dir) / "manifest.json").string();
  std::string model_path = (fs::path(dir) / "model.bin").string();
  if (!fs::exists(manifest_path) || !fs::exists(model_path)) {
    if (!list_versions(folder).empty() && active_version(folder) == 0)
      throw InputError(folder +
                       " has versions but none is active; activate one with `tracer "
                       "rollback " +
                       folder + " N` (list them with `tracer versions " + folder + "`)");
    throw InputError(folder +
                     " is not a complete tracer policy (needs manifest.json and model.bin); "
                     "run `tracer fit` again");
  }
  nlohmann::json manifest;
  try {
    manifest = nlohmann::json::parse(read_whole_file(manifest_path));
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(manifest_path + " is not valid JSON (" + e.what() + "); refit the policy");
  }
  check_manifest(manifest, manifest_path);
  std::string bytes = read_whole_file(model_path);
  Policy policy = decode_policy(bytes, model_path);
  std::string want = manifest.value("/featurizer/fingerprint"_json_pointer, std::string());
  if (want != policy.featurizer->fingerprint())
    throw FormatError("featurizer mismatch: " + manifest_path + " records fingerprint '" + want +
                      "' but model.bin holds '" + policy.featurizer->fingerprint() +
                      "'; the two files come from different fits, refit the policy");
  std::string model_sum = manifest.value("/model/checksum"_json_pointer, std::string());
  if (!model_sum.empty() && model_sum != checksum_hex(fnv1a64(bytes)))
    throw FormatError(model_path + " does not match the checksum recorded in " + manifest_path +
                      "; the files come from different fits, refit the policy");
  policy.policy_version = manifest.value("policy_version", std::string());
  return Router(std::move(policy), std::move(manifest));
}

RouteScratch Router::make_scratch() const {
  RouteScratch s;
  size_t k = policy_.labels.size();
  s.probs.resize(k);
  s.probs2.resize(k);
  s.sims.resize(std::max<size_t>(k, policy_.ood.num_classes()));
  s.x.idx.reserve(512);
  s.x.val.reserve(512);
  return s;
}

RouteResult Router::route(std::string_view text, RouteScratch& s,
                          const MemoryFilter& memory) const {
  if (memory.enabled && !policy_.memory_inputs.empty()) {
    const int i = memory_index(text, s);
    if (i >= 0 && !(memory.evicted && memory.evicted[i].load(std::memory_order_relaxed)))
      return memory_answer(policy_.memory_labels[static_cast<size_t>(i)]);
  }
  FeatureStats stats;
  policy_.featurizer->transform(text, s.x, &stats);
  RouteResult r = route_features(s.x.row(), stats, s);
  if (r.handled && !policy_.known_inputs.empty()) {
    const int agreeing = policy_.known_label(input_key(text, s));
    if (agreeing != -2 && agreeing != r.label) {
      r.handled = false;
      r.reason = DeferReason::kKnownDisagreement;
    }
  }
  return r;
}

int Router::memory_index(std::string_view text, RouteScratch& s) const {
  if (policy_.memory_inputs.empty()) return -1;
  const std::string_view normalised = policy_.featurizer->normalize_into(text, s.key);
  // An input that normalises to nothing (punctuation only, empty) is never remembered: its key
  // would stand for every such request.
  if (normalised.find_first_not_of(' ') == std::string_view::npos) return -1;
  return policy_.memory_index(fnv1a64(normalised));
}

uint64_t Router::input_key(std::string_view text, RouteScratch& s) const {
  return fnv1a64(policy_.featurizer->normalize_into(text, s.key));
}

RouteResult Router::memory_answer(int label) {
  RouteResult r;
  r.label = label;
  r.probability = 1;
  r.accept_score = 1;
  r.stage1_score = 1;
  r.handled = true;
  r.stage = 0;
  r.known_fraction = 1;
  r.similarity = 1;
  return r;
}

RouteResult Router::route_features(SparseRow x, const FeatureStats& stats, RouteScratch& s) const {
  RouteResult r;
  StageView v1 = evaluate_stage(policy_.stage1, x, stats, s.probs);
  r.label = v1.label;
  r.probability = v1.probability;
  r.accept_score = v1.score;
  r.stage1_score = v1.score;
  r.known_fraction = OodGate::known_fraction(stats);
  r.similarity = policy_.ood.enabled() ? policy_.ood.similarity(x, s.sims) : 1.f;
  if (policy_.method == Method::kNone) {
    r.reason = DeferReason::kNoPolicy;
    return r;
  }
  if (policy_.ood.is_ood(r.known_fraction, r.similarity, v1.probability)) {
    r.reason = DeferReason::kOutOfDistribution;
    return r;
  }
  if (policy_.is_rare(v1.label)) {
    r.reason = DeferReason::kRareLabel;
    return r;
  }
  if (policy_.method == Method::kGlobal || v1.score >= policy_.stage1.threshold) {
    r.handled = true;
    return r;
  }
  if (policy_.method == Method::kRSB && policy_.stage2.surrogate) {
    StageView v2 = evaluate_stage(policy_.stage2, x, stats, s.probs2);
    if (v2.score >= policy_.stage2.threshold && !policy_.is_rare(v2.label)) {
      r.label = v2.label;
      r.probability = v2.probability;
      r.accept_score = v2.score;
      r.stage = 2;
      r.handled = true;
      return r;
    }
  }
  r.reason = DeferReason::kBelowThreshold;
  return r;
}

}  // namespace tracer
