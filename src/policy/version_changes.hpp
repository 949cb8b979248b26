#pragma once
// Per-label changes of a new version against the version that was active when it was written
// (issue 10, "temporal deltas"): which labels it now answers that the active one did not
// (gained), which it stops answering (lost), how each label's coverage and agreement on the
// calibrate split moved, and how many more distinct training inputs of the label the new traces
// brought (what drove the change). Read from the two manifests' `per_label` sections.
#include <nlohmann/json.hpp>

namespace tracer {

// {"against_version": N, "labels_gained": [...], "labels_lost": [...],
//  "per_label": [{"label", "coverage_before", "coverage", "agreement_before", "agreement",
//                 "training_inputs_before", "training_inputs", "status_before", "status"}, ...],
//  "rule": "..."}
// per_label lists only labels whose coverage moved by at least 0.01 or that are new/gone,
// sorted by the size of the coverage change (largest first). A label is answered when its
// status is "handled" or "partly_handled" (coverage > 0 on calibrate). Coverage and agreement
// of a label are its calibrate rows' (not separately certified). `previous` null: returns null.
nlohmann::json label_changes(const nlohmann::json& candidate, const nlohmann::json& previous,
                             int previous_version);

// The short form for history.json: against_version, labels_gained, labels_lost and the five
// largest coverage changes.
nlohmann::json label_changes_summary(const nlohmann::json& changes);

}  // namespace tracer
