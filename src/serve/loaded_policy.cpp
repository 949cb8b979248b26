#include "serve/loaded_policy.hpp"

#include <iostream>

#include "serve/audit_state_file.hpp"

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

LoadedPolicy::LoadedPolicy(Router router, const AuditOptions& audit, const DriftOptions& drift,
                           std::string state_dir)
    : LoadedPolicy(std::move(router), std::shared_ptr<AuditMonitor>(),
                   std::shared_ptr<DriftState>(), std::move(state_dir)) {
  audit_ = make_monitor(router_, audit, state_dir_);
  drift_ = make_drift(router_.manifest(), drift);
}

LoadedPolicy::LoadedPolicy(Router router, std::shared_ptr<AuditMonitor> audit,
                           std::shared_ptr<DriftState> drift, std::string state_dir)
    : router_(std::move(router)),
      audit_(std::move(audit)),
      drift_(std::move(drift)),
      pool_(router_),
      state_dir_(std::move(state_dir)) {
  manifest_json_ =
      router_.manifest().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  const auto& labels = router_.policy().labels;
  for (size_t i = 0; i < labels.size(); ++i) label_index_.emplace(labels[i], static_cast<int>(i));
}

std::shared_ptr<const LoadedPolicy> LoadedPolicy::load(const std::string& dir,
                                                       const AuditOptions& audit,
                                                       const DriftOptions& drift) {
  return std::make_shared<const LoadedPolicy>(Router::load(dir), audit, drift, dir);
}

std::shared_ptr<const LoadedPolicy> LoadedPolicy::reload(const std::string& dir,
                                                         const AuditOptions& audit,
                                                         const DriftOptions& drift,
                                                         const LoadedPolicy& previous) {
  Router router = Router::load(dir);
  if (router.policy().policy_version != previous.version()) {
    // Audits of the old version still in flight must not overwrite the new version's state.
    if (previous.audit_) previous.audit_->on_look({});
    return std::make_shared<const LoadedPolicy>(std::move(router), audit, drift, dir);
  }
  // The same version keeps its audit monitor and drift window.
  auto monitor = previous.audit_ ? previous.audit_ : make_monitor(router, audit, dir);
  return std::shared_ptr<const LoadedPolicy>(
      new LoadedPolicy(std::move(router), std::move(monitor), previous.drift_, dir));
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
  return router_.route(text, *scratch);
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
