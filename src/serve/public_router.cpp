// The public facade of include/tracer/router.hpp over runtime/Router.
#include "serve/loaded_policy.hpp"
#include "tracer/router.hpp"

namespace tracer::api {

struct Router::Impl {
  std::shared_ptr<const serve::LoadedPolicy> policy;
};

Router::Router(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Router::~Router() = default;
Router::Router(Router&&) noexcept = default;
Router& Router::operator=(Router&&) noexcept = default;

Router Router::load(const std::string& policy_dir) {
  return Router(std::make_unique<Impl>(Impl{serve::LoadedPolicy::load(policy_dir)}));
}

Decision Router::route(std::string_view text) const {
  const serve::LoadedPolicy& p = *impl_->policy;
  RouteResult r = p.route(text);
  Decision d;
  d.label = p.router().label_name(r.label);
  d.handled = r.handled;
  d.decision = r.handled ? "handled" : "deferred";
  d.accept_score = r.accept_score;
  d.probability = r.probability;
  d.reason = decision_reason(r);
  return d;
}

const std::string& Router::policy_version() const { return impl_->policy->version(); }

const std::vector<std::string>& Router::labels() const {
  return impl_->policy->router().policy().labels;
}

}  // namespace tracer::api
