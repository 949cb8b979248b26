#pragma once
// The bodies of the server's status endpoints, built from the served policy.
#include <nlohmann/json.hpp>
#include <string>

#include "runtime/drift.hpp"
#include "serve/loaded_policy.hpp"

namespace tracer::serve {

// GET /v1/audit: the served policy's shadow-audit state, with a message when it tripped.
nlohmann::json audit_json(const LoadedPolicy& p);
// GET /v1/drift: the served policy's drift report with the window options.
nlohmann::json drift_json(const LoadedPolicy& p, const DriftOptions& o);
// The memory tier's Prometheus gauges (tracer_memory_answers_total is counted with the
// decisions).
std::string memory_metrics(const ServedMemory& m);

}  // namespace tracer::serve
