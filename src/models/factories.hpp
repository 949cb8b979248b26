#pragma once
// Constructors of each surrogate family; the registry (registry.cpp) maps names onto these.
#include <memory>
#include <string>

#include "models/surrogate.hpp"

namespace tracer {

// Multinomial logistic regression with L2 penalty `l2` (per-example scale).
std::unique_ptr<Surrogate> make_logistic(const std::string& name, double l2);
// One-vs-rest linear SVM (liblinear), scores calibrated to probabilities.
std::unique_ptr<Surrogate> make_linear_svm(const std::string& name);
// Complement naive Bayes (Rennie et al. 2003).
std::unique_ptr<Surrogate> make_complement_nb(const std::string& name);
// One-hidden-layer MLP on the sparse features.
std::unique_ptr<Surrogate> make_mlp(const std::string& name);
// Gradient-boosted trees via libxgboost.
std::unique_ptr<Surrogate> make_xgboost(const std::string& name);

}  // namespace tracer
