#include "serve/loaded_policy.hpp"

namespace tracer::serve {

LoadedPolicy::LoadedPolicy(Router router) : router_(std::move(router)), pool_(router_) {
  manifest_json_ =
      router_.manifest().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  const auto& labels = router_.policy().labels;
  for (size_t i = 0; i < labels.size(); ++i) label_index_.emplace(labels[i], static_cast<int>(i));
}

std::shared_ptr<const LoadedPolicy> LoadedPolicy::load(const std::string& dir) {
  return std::make_shared<const LoadedPolicy>(Router::load(dir));
}

RouteResult LoadedPolicy::route(std::string_view text) const {
  auto scratch = pool_.checkout();
  return router_.route(text, *scratch);
}

int LoadedPolicy::label_index(std::string_view name) const {
  auto it = label_index_.find(std::string(name));
  return it == label_index_.end() ? -1 : it->second;
}

nlohmann::json LoadedPolicy::decision_json(const RouteResult& r) const {
  nlohmann::json j{{"label", router_.label_name(r.label)},
                   {"probability", r.probability},
                   {"decision", r.handled ? "handled" : "deferred"},
                   {"accept_score", r.accept_score}};
  if (!r.handled) j["reason"] = reason_name(r.reason);
  if (r.stage != 1) j["stage"] = r.stage;
  j["policy_version"] = version();
  return j;
}

}  // namespace tracer::serve
