#include <functional>
#include <map>

#include "models/ensemble.hpp"
#include "models/factories.hpp"
#include "util/error.hpp"

namespace tracer {
namespace {

using Factory = std::function<std::unique_ptr<Surrogate>()>;

const std::map<std::string, Factory>& registry() {
  static const std::map<std::string, Factory> r = {
      {"logreg_strong", [] { return make_logistic("logreg_strong", 1e-5); }},
      {"logreg_weak", [] { return make_logistic("logreg_weak", 1e-6); }},
      {"linear_svm", [] { return make_linear_svm("linear_svm"); }},
      {"complement_nb", [] { return make_complement_nb("complement_nb"); }},
      {"mlp", [] { return make_mlp("mlp"); }},
      {"xgboost", [] { return make_xgboost("xgboost"); }},
  };
  return r;
}

}  // namespace

std::vector<std::string> surrogate_names() {
  std::vector<std::string> names;
  for (const auto& [name, _] : registry()) names.push_back(name);
  return names;
}

std::vector<std::string> default_zoo(bool with_trees) {
  std::vector<std::string> zoo = {"logreg_strong", "logreg_weak", "linear_svm", "complement_nb",
                                  "mlp"};
  if (with_trees) zoo.push_back("xgboost");
  return zoo;
}

std::unique_ptr<Surrogate> make_surrogate(const std::string& name) {
  // Ensembles are assembled from fitted members by the zoo sweep, so they are not listed as
  // candidates, but a stored one must load.
  if (name == "ensemble") return std::make_unique<EnsembleSurrogate>();
  auto it = registry().find(name);
  if (it == registry().end()) {
    std::string valid;
    for (const auto& n : surrogate_names()) valid += (valid.empty() ? "" : ", ") + n;
    throw InputError("unknown surrogate '" + name + "'; valid names: " + valid);
  }
  return it->second();
}

}  // namespace tracer
