#pragma once
// A policy as served: the router, its scratch pool and what the endpoints answer about it.
// Requests hold a shared_ptr to the one they started with, so a hot reload swaps the slot's
// pointer and in-flight requests finish on the old policy, which dies with its last user.
#include <atomic>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <unordered_map>

#include "runtime/audit.hpp"
#include "runtime/drift_monitor.hpp"
#include "runtime/router.hpp"
#include "serve/requests.hpp"
#include "serve/scratch_pool.hpp"

namespace tracer::serve {

// What the server answers for one text: the router's decision, unless the shadow audit has
// tripped, which defers everything with reason "audit".
struct Decision {
  RouteResult route;  // the router's own decision
  bool audit_tripped = false;
  bool handled() const { return route.handled && !audit_tripped; }
  std::string reason() const;  // "" when handled
};

// The drift check of one policy version: its monitor (repeated looks with a spending schedule,
// runtime/drift_monitor.hpp) and whether the warning was logged. Shared by reloads of the same
// version, like the audit monitor.
class DriftState {
 public:
  DriftState(DriftReference ref, const DriftOptions& options) : monitor_(std::move(ref), options) {}
  void record(const RouteResult& r) { monitor_.record(r); }
  // Polls the monitor (a look when a block of routed inputs completed since the last one).
  // Logs a one-line warning to stderr the first time it shows drift for `version`.
  DriftReport report(const std::string& version);

 private:
  DriftMonitor monitor_;
  std::atomic<bool> warned_{false};
};

// The memory tier of one policy version as served, shared by reloads of that version like the
// audit monitor: the entries a shadow audit or feedback found stale (evicted: never answered
// from again), and when the table expires. Thread-safe.
class ServedMemory {
 public:
  // `expires_unix_s` 0: never.
  ServedMemory(size_t entries, int64_t expires_unix_s);
  MemoryFilter filter() const { return MemoryFilter{!expired(), evicted_.get()}; }
  bool expired() const;
  // Evicts entry `index`; true when this call evicted it (false: already evicted).
  bool evict(size_t index);
  uint64_t evictions() const { return evictions_.load(std::memory_order_relaxed); }
  size_t entries() const { return n_; }
  int64_t expires_unix_s() const { return expires_; }

 private:
  std::unique_ptr<std::atomic<uint8_t>[]> evicted_;
  size_t n_ = 0;
  int64_t expires_ = 0;
  std::atomic<uint64_t> evictions_{0};
};

class LoadedPolicy {
 public:
  // The audit monitor takes α and δ from manifest.json's gate (target, delta); a manifest
  // without them gets none (audit() is null). The drift window compares with manifest.json's
  // "drift" section (none: the report says it is unavailable).
  // `state_dir`: where the audit state is saved and resumed from (the policy folder; "" keeps it
  // in memory only; see serve/audit_state_file.hpp).
  explicit LoadedPolicy(Router router, const AuditOptions& audit = {},
                        const DriftOptions& drift = {}, std::string state_dir = {},
                        const ServedMemoryOptions& memory = {});
  LoadedPolicy(const LoadedPolicy&) = delete;
  LoadedPolicy& operator=(const LoadedPolicy&) = delete;

  static std::shared_ptr<const LoadedPolicy> load(const std::string& dir,
                                                  const AuditOptions& audit = {},
                                                  const DriftOptions& drift = {},
                                                  const ServedMemoryOptions& memory = {});
  // Reloading the policy version `previous` serves keeps its audit monitor and drift window:
  // only a refit (a new version) clears a tripped audit or starts a fresh window.
  static std::shared_ptr<const LoadedPolicy> reload(const std::string& dir,
                                                    const AuditOptions& audit,
                                                    const DriftOptions& drift,
                                                    const LoadedPolicy& previous,
                                                    const ServedMemoryOptions& memory = {});

  const Router& router() const { return router_; }
  RouteResult route(std::string_view text) const;       // not recorded in the drift window
  Decision decide(std::string_view text) const;         // recorded in the drift window
  AuditMonitor* audit() const { return audit_.get(); }  // null without gate.target/delta
  // Saves the audit's current counts beside the policy (at shutdown; looks save themselves).
  void save_audit_state() const;
  // A fresh LLM label for `text` (shadow audit, feedback): when `text` is answered from memory
  // with another label, its entry is evicted (logged once). True when this call evicted it.
  bool evict_if_stale(std::string_view text, std::string_view llm_label) const;
  const ServedMemory& memory() const { return *memory_; }
  // The drift report of this version's monitor (polled: may take a look).
  DriftReport drift_report() const { return drift_->report(version()); }
  const std::string& version() const { return router_.policy().policy_version; }
  std::string method() const { return method_name(router_.policy().method); }
  const std::string& manifest_json() const { return manifest_json_; }
  size_t num_labels() const { return router_.policy().labels.size(); }
  int label_index(std::string_view name) const;  // -1 when not a label of this policy
  // How --label-json-field answers write this policy's labels (serve/requests.hpp).
  LabelJson label_json_kind() const { return label_json_kind_; }

  // {label, probability, decision, accept_score, reason (deferred only), policy_version}.
  nlohmann::json decision_json(const Decision& d) const;

 private:
  LoadedPolicy(Router router, std::shared_ptr<AuditMonitor> audit,
               std::shared_ptr<DriftState> drift, std::shared_ptr<ServedMemory> memory,
               std::string state_dir);

  Router router_;
  std::shared_ptr<AuditMonitor> audit_;
  std::shared_ptr<DriftState> drift_;     // never null
  std::shared_ptr<ServedMemory> memory_;  // never null
  mutable ScratchPool pool_;              // internally synchronised
  std::string manifest_json_;
  LabelJson label_json_kind_ = LabelJson::kString;
  std::string state_dir_;
  std::unordered_map<std::string, int> label_index_;
};

// The policy currently served; swapped atomically by reload.
class PolicySlot {
 public:
  explicit PolicySlot(std::shared_ptr<const LoadedPolicy> p) : p_(std::move(p)) {}
  std::shared_ptr<const LoadedPolicy> get() const { return p_.load(std::memory_order_acquire); }
  void set(std::shared_ptr<const LoadedPolicy> p) {
    p_.store(std::move(p), std::memory_order_release);
  }

 private:
  std::atomic<std::shared_ptr<const LoadedPolicy>> p_;
};

}  // namespace tracer::serve
