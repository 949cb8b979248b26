#pragma once
// The qualitative report: where the certified policy answers, where it defers and why, computed
// on the held-out calibrate rows only (nothing was fit or chosen on them).
//
// `tracer fit` writes it as qualitative_report.json next to the manifest, and report.html from
// it; `tracer report` re-renders the HTML from those files without the traces.
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "fit/fitter.hpp"
#include "io/traces.hpp"

namespace tracer {

struct ReportOptions {
  FitOptions fit;  // the options the reported policy was fit with (split, learning-curve refits)
  // Refit on growing shares of the traces (10 fits: slow); off unless asked for.
  bool learning_curve = false;
  std::vector<double> curve_shares = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0};
  // Refits try only the surrogates the reported policy runs on (its stage 1, an ensemble's
  // members, an rsb stage 2): the curve then follows one pipeline instead of jumping between
  // candidates, at a fraction of the cost. True: the whole zoo of `fit`, as the fit did.
  bool curve_full_zoo = false;
  // A deferred row whose teacher label had fewer train traces than this is deferred because
  // the label is rare rather than because of a close call between two labels.
  size_t rare_label_train_traces = 20;
  size_t examples = 3;             // example inputs per label, pair side and reason
  size_t top_pairs = 12;           // boundary pairs and low-confidence pairs listed
  size_t max_map_points = 2500;    // calibrate rows drawn on the 2-D map
  size_t max_example_bytes = 240;  // longer inputs are cut (at a UTF-8 boundary) with "…"
  std::function<void(const std::string&)> note;  // progress lines, e.g. learning-curve refits
};

// Everything but the learning curve unless options.learning_curve. Throws InputError when
// `fit.calibrate_rows` do not index `traces` (a different trace file).
nlohmann::json build_qualitative_report(const TraceSet& traces, const FitResult& fit,
                                        const ReportOptions& options);

// Refits on stratified growing shares of `traces` (nested subsets, same options, quiet) and
// reports the certified coverage at the target for each; the 100% point is the reported policy
// itself, read from `manifest` (gate.certified) and `per_label` (rows with "label" and
// "coverage"). Points whose refit fails (too few traces) carry an "error".
nlohmann::json build_learning_curve(const TraceSet& traces, const nlohmann::json& manifest,
                                    const nlohmann::json& per_label, const ReportOptions& options);

// The learning curve's verdict from its points ({"traces", "coverage", "surrogate_agreement"},
// or {"error"}): a saturating curve (scan/curve.hpp) fitted to every point, the gain of a
// doubling with an 80% interval, always within [0, 1]. {"status": rising|plateau|unknown,
// "message", ...}.
nlohmann::json learning_curve_assessment(const nlohmann::json& points, bool deployed,
                                         double target);

// Writes qualitative_report.json and report.html into `dir` (atomically), after
// write_artifact(dir, fit) so the manifest carries its policy version. Reads dir/history.json
// for the refit history.
void write_report_files(const std::string& dir, const TraceSet& traces, const FitResult& fit,
                        const ReportOptions& options);

// The outcome in plain words, from the manifest (and the frontier, to suggest a target that
// would certify after a refusal): {"deployed", "verdict" (one line), "explanation" (a paragraph),
// "advice" (may be empty)}.
nlohmann::json report_headline(const nlohmann::json& manifest, const nlohmann::json& frontier);

// Cuts `text` to at most `max_bytes` bytes without splitting a UTF-8 sequence, adding "…" when
// cut; newlines and tabs become spaces.
std::string clip_text(std::string_view text, size_t max_bytes);

}  // namespace tracer
