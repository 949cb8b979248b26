#include "serve/loaded_policy.hpp"

#include <iostream>

namespace tracer::serve {
namespace {

// α and δ the policy was certified at; no monitor when the manifest lacks them.
std::shared_ptr<AuditMonitor> make_monitor(const nlohmann::json& manifest,
                                           const AuditOptions& audit) {
  auto gate = manifest.find("gate");
  if (gate == manifest.end() || !gate->is_object()) return nullptr;
  auto target = gate->find("target"), delta = gate->find("delta");
  if (target == gate->end() || delta == gate->end() || !target->is_number() || !delta->is_number())
    return nullptr;
  double a = target->get<double>(), d = delta->get<double>();
  if (!(a > 0 && a < 1 && d > 0 && d < 1)) return nullptr;
  return std::make_shared<AuditMonitor>(a, d, audit);
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
  return route.handled ? std::string() : reason_name(route.reason);
}

LoadedPolicy::LoadedPolicy(Router router, const AuditOptions& audit, const DriftOptions& drift)
    : LoadedPolicy(std::move(router), std::shared_ptr<AuditMonitor>(),
                   std::shared_ptr<DriftState>()) {
  audit_ = make_monitor(router_.manifest(), audit);
  drift_ = make_drift(router_.manifest(), drift);
}

LoadedPolicy::LoadedPolicy(Router router, std::shared_ptr<AuditMonitor> audit,
                           std::shared_ptr<DriftState> drift)
    : router_(std::move(router)),
      audit_(std::move(audit)),
      drift_(std::move(drift)),
      pool_(router_) {
  manifest_json_ =
      router_.manifest().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  const auto& labels = router_.policy().labels;
  for (size_t i = 0; i < labels.size(); ++i) label_index_.emplace(labels[i], static_cast<int>(i));
}

std::shared_ptr<const LoadedPolicy> LoadedPolicy::load(const std::string& dir,
                                                       const AuditOptions& audit,
                                                       const DriftOptions& drift) {
  return std::make_shared<const LoadedPolicy>(Router::load(dir), audit, drift);
}

std::shared_ptr<const LoadedPolicy> LoadedPolicy::reload(const std::string& dir,
                                                         const AuditOptions& audit,
                                                         const DriftOptions& drift,
                                                         const LoadedPolicy& previous) {
  Router router = Router::load(dir);
  if (router.policy().policy_version != previous.version())
    return std::make_shared<const LoadedPolicy>(std::move(router), audit, drift);
  // The same version keeps its audit monitor and drift window.
  auto monitor = previous.audit_ ? previous.audit_ : make_monitor(router.manifest(), audit);
  return std::shared_ptr<const LoadedPolicy>(
      new LoadedPolicy(std::move(router), std::move(monitor), previous.drift_));
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
  if (!d.handled()) j["reason"] = d.reason();
  if (r.stage != 1) j["stage"] = r.stage;
  j["policy_version"] = version();
  return j;
}

}  // namespace tracer::serve
