#pragma once
// Terminal tables shared by `fit`, `demo` and `report --text`.
#include <nlohmann/json.hpp>
#include <ostream>

namespace tracer::cli {

// Trace counts (distinct inputs, duplicates), the split and the rare labels.
void print_traces(std::ostream& os, const nlohmann::json& manifest);
void print_zoo_table(std::ostream& os, const nlohmann::json& manifest);
void print_policy(std::ostream& os, const nlohmann::json& manifest);
// The memory tier line(s) of manifest.json → memory (nothing for older manifests).
void print_memory(std::ostream& os, const nlohmann::json& manifest);
void print_frontier(std::ostream& os, const nlohmann::json& frontier);
void print_labels(std::ostream& os, const nlohmann::json& manifest, size_t top);
void print_fit_summary(std::ostream& os, const nlohmann::json& manifest,
                       const nlohmann::json& frontier);

}  // namespace tracer::cli
