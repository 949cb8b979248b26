#pragma once
// Fitting the featurizer and the surrogate zoo on the pool, with out-of-fold predictions for
// the rows that choose the plan (select) and the deployed models' predictions on calibrate.
//
// With K >= 2 folds, each fold's featurizer, OOD centroids and every zoo candidate are fit on the
// other K - 1 folds and score the fold: every pool unit is a select row, scored by models that
// never saw it (its OOD signals too: known n-grams and centroid similarity come from the fold's
// own vocabulary and centroids). The deployed featurizer, centroids and models are then refit on
// the whole pool. With K = 1, the models fit on the train share score the select share and are
// deployed as they are. Calibrate is only ever predicted by the deployed models.
#include <memory>
#include <string>
#include <vector>

#include "features/featurizer.hpp"
#include "fit/gate_search.hpp"
#include "fit/split.hpp"
#include "fit/zoo.hpp"
#include "gate/ood.hpp"
#include "io/traces.hpp"
#include "util/progress.hpp"

namespace tracer {

struct CrossFitOptions {
  std::string featurizer = "tfidf";
  std::vector<std::string> zoo;  // candidate names
  size_t ensemble_members = 2;   // 0 or 1: no ensemble candidate
  bool ood = true;               // fit centroids and compute the OOD signals
  uint64_t seed = 42;
  int threads = 2;
  // With K >= 2 folds, the first fold fits every candidate and only the `screen_keep` best by
  // agreement on that fold's held-out inputs go on to the other folds and the refit (0: all).
  size_t screen_keep = 2;
};

struct CrossFitResult {
  std::unique_ptr<Featurizer> featurizer;  // the deployed featurizer
  OodGate centroids;  // the deployed centroids (reference not set yet); disabled without OOD
  // select_* are out of fold over `sel` rows, calib_* the deployed models' on `cal` rows; model
  // is the deployed model.
  std::vector<Candidate> zoo;
  HeldOut sel, cal;                       // y = drawn labels, stats, known, similarity
  std::vector<size_t> sel_units;          // unit of each select row
  std::vector<size_t> cal_units;          // unit of each calibrate row
  std::vector<size_t> train_label_units;  // per label: units the deployed models trained on
  size_t train_units = 0;
  int folds = 1;
};

// Throws InputError when the pool has fewer than two labels, or every candidate fails.
CrossFitResult cross_fit(const TraceSet& set, const TraceUnits& units, const UnitSplit& split,
                         const CrossFitOptions& options, Progress& progress);

}  // namespace tracer
