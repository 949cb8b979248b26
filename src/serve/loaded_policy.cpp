#include "serve/loaded_policy.hpp"

#include <iostream>

#include "serve/audit_state_file.hpp"
#include "util/error.hpp"
#include "util/time_text.hpp"

namespace tracer::serve {
namespace {

// α and δ the policy was certified at (manifest.json's gate); nullopt when it lacks them.
std::optional<std::pair<double, double>> audit_target(const nlohmann::json& manifest) {
  auto gate = manifest.find("gate");
  if (gate == manifest.end() || !gate->is_object()) return std::nullopt;
  auto target = gate->find("target"), delta = gate->find("delta");
  if (target == gate->end() || delta == gate->end() || !target->is_number() || !delta->is_number())
    return std::nullopt;
  double a = target->get<double>(), d = delta->get<double>();
  if (!(a > 0 && a < 1 && d > 0 && d < 1)) return std::nullopt;
  return std::make_pair(a, d);
}

// No monitor when the manifest lacks α and δ; persisted in `state_dir` unless it is empty.
std::shared_ptr<AuditMonitor> make_monitor(const Router& router, const AuditOptions& audit,
                                           const std::string& state_dir) {
  auto ad = audit_target(router.manifest());
  if (!ad) return nullptr;
  return open_audit_monitor(state_dir, router.policy().policy_version, ad->first, ad->second,
                            audit);
}

// The served table of `router`'s policy; expires `ttl_s` after the fit's created_at.
std::shared_ptr<ServedMemory> make_memory(const Router& router, const ServedMemoryOptions& o) {
  int64_t expires = 0;
  if (o.ttl_s > 0 && !router.policy().memory_inputs.empty()) {
    const int64_t created = parse_utc_timestamp(router.manifest().value("created_at", ""));
    if (created < 0)
      throw InputError(
          "--memory-ttl needs the fit time, and manifest.json has no created_at of the form "
          "2026-12-01T02:51:18Z; refit the policy");
    expires = created + o.ttl_s;
  }
  return std::make_shared<ServedMemory>(router.policy().memory_inputs.size(), expires);
}

std::shared_ptr<DriftState> make_drift(const nlohmann::json& manifest, const DriftOptions& drift) {
  return std::make_shared<DriftState>(DriftReference::from_manifest(manifest), drift);
}

}  // namespace

DriftReport DriftState::report(const std::string& version) {
  DriftReport r = monitor_.poll();
  // Once per version: the gauges and /v1/drift keep saying it, a log line per request would not
  // help anyone.
  if (r.drift && !warned_.exchange(true))
    std::cerr << "warning: policy " << version << ": " << r.message << "\n";
  return r;
}

std::string Decision::reason() const {
  if (audit_tripped) return "audit";
  return decision_reason(route);
}

ServedMemory::ServedMemory(size_t entries, int64_t expires_unix_s)
    : evicted_(std::make_unique<std::atomic<uint8_t>[]>(entries)),
      n_(entries),
      expires_(expires_unix_s) {}

bool ServedMemory::expired() const {
  return expires_ > 0 && static_cast<int64_t>(std::time(nullptr)) >= expires_;
}

bool ServedMemory::evict(size_t index) {
  if (index >= n_ || evicted_[index].exchange(1, std::memory_order_relaxed) != 0) return false;
  evictions_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

LoadedPolicy::LoadedPolicy(Router router, const AuditOptions& audit, const DriftOptions& drift,
                           std::string state_dir, const ServedMemoryOptions& memory)
    : LoadedPolicy(std::move(router), std::shared_ptr<AuditMonitor>(),
                   std::shared_ptr<DriftState>(), std::shared_ptr<ServedMemory>(),
                   std::move(state_dir)) {
  audit_ = make_monitor(router_, audit, state_dir_);
  drift_ = make_drift(router_.manifest(), drift);
  memory_ = make_memory(router_, memory);
}

LoadedPolicy::LoadedPolicy(Router router, std::shared_ptr<AuditMonitor> audit,
                           std::shared_ptr<DriftState> drift, std::shared_ptr<ServedMemory> memory,
                           std::string state_dir)
    : router_(std::move(router)),
      audit_(std::move(audit)),
      drift_(std::move(drift)),
      memory_(std::move(memory)),
      pool_(router_),
      state_dir_(std::move(state_dir)) {
  manifest_json_ =
      router_.manifest().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  const auto& labels = router_.policy().labels;
  for (size_t i = 0; i < labels.size(); ++i) label_index_.emplace(labels[i], static_cast<int>(i));
  label_json_kind_ = tracer::serve::label_json_kind(labels);
}

std::shared_ptr<const LoadedPolicy> LoadedPolicy::load(const std::string& dir,
                                                       const AuditOptions& audit,
                                                       const DriftOptions& drift,
                                                       const ServedMemoryOptions& memory) {
  return std::make_shared<const LoadedPolicy>(Router::load(dir), audit, drift, dir, memory);
}

std::shared_ptr<const LoadedPolicy> LoadedPolicy::reload(const std::string& dir,
                                                         const AuditOptions& audit,
                                                         const DriftOptions& drift,
                                                         const LoadedPolicy& previous,
                                                         const ServedMemoryOptions& memory) {
  Router router = Router::load(dir);
  if (router.policy().policy_version != previous.version()) {
    // Audits of the old version still in flight must not overwrite the new version's state.
    if (previous.audit_) previous.audit_->on_look({});
    return std::make_shared<const LoadedPolicy>(std::move(router), audit, drift, dir, memory);
  }
  // The same version keeps its audit monitor, drift window and evicted memory entries.
  auto monitor = previous.audit_ ? previous.audit_ : make_monitor(router, audit, dir);
  return std::shared_ptr<const LoadedPolicy>(new LoadedPolicy(
      std::move(router), std::move(monitor), previous.drift_, previous.memory_, dir));
}

void LoadedPolicy::save_audit_state() const {
  auto ad = audit_target(router_.manifest());
  if (!audit_ || !ad) return;
  const AuditSnapshot s = audit_->snapshot();
  if (s.rows == 0 && s.unusable == 0 && s.dropped == 0) return;  // nothing to resume
  serve::save_audit_state(state_dir_, version(), ad->first, ad->second, *audit_);
}

RouteResult LoadedPolicy::route(std::string_view text) const {
  auto scratch = pool_.checkout();
  return router_.route(text, *scratch, memory_->filter());
}

bool LoadedPolicy::evict_if_stale(std::string_view text, std::string_view llm_label) const {
  if (memory_->entries() == 0) return false;
  int index = -1;
  {
    auto scratch = pool_.checkout();
    index = router_.memory_index(text, *scratch);
  }
  if (index < 0) return false;
  const int remembered = router_.policy().memory_labels[static_cast<size_t>(index)];
  if (label_index(llm_label) == remembered) return false;
  if (!memory_->evict(static_cast<size_t>(index))) return false;
  const uint64_t n = memory_->evictions();
  if (n > 10 && n % 1000 != 0) return true;  // the first ten, then one line per thousand
  std::cerr << "memory: policy " << version() << ": evicted a remembered answer ("
            << router_.label_name(remembered) << ") the LLM now answers as '"
            << std::string(llm_label.substr(0, 64)) << "' (eviction " << n << ")\n";
  return true;
}

Decision LoadedPolicy::decide(std::string_view text) const {
  Decision d;
  d.route = route(text);
  drift_->record(d.route);
  d.audit_tripped = audit_ && audit_->tripped();
  return d;
}

int LoadedPolicy::label_index(std::string_view name) const {
  auto it = label_index_.find(std::string(name));
  return it == label_index_.end() ? -1 : it->second;
}

nlohmann::json LoadedPolicy::decision_json(const Decision& d) const {
  const RouteResult& r = d.route;
  nlohmann::json j{{"label", router_.label_name(r.label)},
                   {"probability", r.probability},
                   {"decision", d.handled() ? "handled" : "deferred"},
                   {"accept_score", r.accept_score}};
  if (std::string why = d.reason(); !why.empty()) j["reason"] = why;
  if (r.stage == 2) j["stage"] = r.stage;
  j["policy_version"] = version();
  return j;
}

}  // namespace tracer::serve
