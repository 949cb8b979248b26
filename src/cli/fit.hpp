#pragma once
// The body of `tracer fit` once its flags are parsed (read traces, fit, write the policy folder,
// report, summary), shared with `tracer update`, which refits with the recorded options.
#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "fit/fitter.hpp"
#include "io/trace_selection.hpp"
#include "policy/versions.hpp"
#include "util/progress.hpp"

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
  // The folder's versions (policy/versions.hpp): when the new version becomes the active one,
  // how many versions to keep, and what wrote it (history.json "event": fit or update).
  PromotionRule promotion;
  size_t keep = 10;
  std::string event = "fit";
  // Which of the traces read to fit on (update --window, --max-traces); applied after reading.
  TraceSelection selection;
};

// --max-traces (fit and update).
void add_selection_options(CLI::App* sub, FitRun& run);

// Exit codes of fit and update (docs/usage.md#exit-codes).
inline constexpr int kExitRefused = 4;       // nothing certified
inline constexpr int kExitNotActivated = 5;  // certified, but the active version was kept

struct FitOutcome {
  int exit_code = 0;  // 0 certified and active, kExitRefused, kExitNotActivated
  int version = 0;    // the version written
  bool activated = false;
  int active = 0;      // the active version afterwards
  std::string reason;  // why it was or was not activated
};

// Reads the traces, fits, writes a new version of run.out and activates it by run.promotion.
// Throws InputError / FormatError.
FitOutcome fit_and_write(const FitRun& run);

// The writing half of fit_and_write, for a fit already made from `set`: a new version of run.out
// with its report (unless run.no_report), activated by run.promotion, older versions pruned.
FitOutcome write_policy_version(const FitRun& run, const TraceSet& set, FitResult& result,
                                Progress& progress);

// --promote, --max-coverage-drop and --keep, shared by fit and update.
void add_version_options(CLI::App* sub, FitRun& run, std::string& promote);

}  // namespace tracer::cli
