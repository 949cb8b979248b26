#pragma once
// The zoo sweep: every candidate surrogate fit once on train, scored on select, its class
// probabilities on select and calibrate cached for every later target and method.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "features/sparse.hpp"
#include "models/surrogate.hpp"

namespace tracer {

struct Candidate {
  std::string name;
  std::unique_ptr<Surrogate> model;  // null when the fit failed
  std::string error;                 // why it failed
  // Cross-fitting only: dropped after the first fold (model null, no error), with its agreement
  // on that fold's held-out inputs.
  bool screened_out = false;
  double screen_agreement = 0;
  double fit_seconds = 0;
  double select_agreement = 0;      // argmax == teacher on select
  std::vector<float> select_probs;  // rows × K, row-major
  std::vector<float> calib_probs;
  std::vector<int> select_pred, calib_pred;
};

struct ZooData {
  const SparseMatrix* train;
  std::span<const int> train_y;
  const SparseMatrix* select;
  std::span<const int> select_y;
  const SparseMatrix* calibrate;
  int num_classes;
};

// Fits `names` with up to `threads` fits at a time. `on_done` is called (from the calling
// thread, in completion order) with each finished candidate for progress display.
std::vector<Candidate> sweep_zoo(const std::vector<std::string>& names, const ZooData& data,
                                 uint64_t seed, int threads,
                                 const std::function<void(const Candidate&)>& on_done = {});

// Appends an "ensemble" candidate averaging the probabilities of the `members` best candidates
// by select agreement (no refit: cached probabilities are combined exactly as the ensemble's
// predict_proba does). No-op when fewer than two candidates succeeded.
// `select_y`: the labels the select rows are scored on.
void add_ensemble(std::vector<Candidate>& zoo, std::span<const int> select_y, int num_classes,
                  size_t members = 2);

// Index of the candidate with the best select agreement (ties: earlier in the list). Throws
// when every candidate failed.
size_t best_candidate(const std::vector<Candidate>& zoo);

}  // namespace tracer
