#pragma once
// The body of `tracer fit` once its flags are parsed (read traces, fit, write the policy folder,
// report, summary), shared with `tracer update`, which refits with the recorded options.
#include <string>
#include <vector>

#include "fit/fitter.hpp"

namespace tracer::cli {

struct FitRun {
  std::vector<std::string> traces;  // one or more trace files, read as one set
  std::string out = ".tracer";
  FitOptions fit;
  bool skip_invalid = false;
  bool quiet = false;
  bool json = false;  // print the manifest instead of the summary
  bool learning_curve = false;
  bool no_report = false;
  // `tracer update`: the last entry of `traces` is a temporary export of this trace store; the
  // manifest records the store (path, rows) instead of that file, so the next update re-reads it.
  std::string store_path;
  size_t store_rows = 0;
};

// Returns the exit code: 0 certified, 4 refused. Throws InputError / FormatError.
int fit_and_write(const FitRun& run);

}  // namespace tracer::cli
