#pragma once
// Embed a fitted tracer policy in your own program (link libtracer):
//
//   auto router = tracer::api::Router::load(".tracer");
//   tracer::api::Decision d = router.route("my card has not arrived");
//   if (d.handled) use(d.label); else ask_the_llm();
//
// Thread-safe: one Router may be shared by every thread. Errors are std::runtime_error
// subclasses whose message says what to fix (e.g. a missing or corrupted policy folder).
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace tracer::api {

struct Decision {
  std::string label;     // the surrogate's answer (also set when deferred)
  std::string decision;  // "handled" (use label) or "deferred" (ask the LLM)
  bool handled = false;
  float accept_score = 0;  // the acceptor's estimate that the label agrees with the LLM
  float probability = 0;   // the surrogate's probability for label
  std::string reason;  // why deferred: below_threshold, out_of_distribution, rare_label,
                       // known_disagreement, no_policy; when handled: "memory" for the LLM's
                       // remembered answer to a repeated request, "" for a surrogate answer
};

class Router {
 public:
  // Loads DIR/manifest.json and DIR/model.bin, written by `tracer fit`.
  static Router load(const std::string& policy_dir);
  ~Router();
  Router(Router&&) noexcept;
  Router& operator=(Router&&) noexcept;

  Decision route(std::string_view text) const;
  const std::string& policy_version() const;
  const std::vector<std::string>& labels() const;

 private:
  struct Impl;
  explicit Router(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tracer::api
