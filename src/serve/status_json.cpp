#include "serve/status_json.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace tracer::serve {

using nlohmann::json;

json audit_json(const LoadedPolicy& p) {
  json j{{"policy_version", p.version()}, {"enabled", p.audit() != nullptr}};
  if (!p.audit()) {
    j["message"] =
        "manifest.json has no gate.target / gate.delta to audit against; refit the policy";
    return j;
  }
  AuditState a = p.audit()->state();
  j.update(json{{"alpha", a.alpha},
                {"delta", a.delta},
                {"share", a.share},
                {"min_rows", a.min_rows},
                {"rows", a.rows},
                {"agreed", a.agreed},
                {"agreement", a.agreement},
                {"upper_bound", a.upper_bound},
                {"confidence", a.confidence},
                {"checked_rows", a.checked_rows},
                {"checked_agreed", a.checked_agreed},
                {"next_check_rows", a.next_check_rows},
                {"shadow_rows", a.shadow_rows},
                {"feedback_rows", a.feedback_rows},
                {"unusable", a.unusable},
                {"dropped", a.dropped},
                {"restored_rows", a.restored_rows},
                {"tripped", a.tripped}});
  if (a.tripped) {
    j["tripped_at_rows"] = a.tripped_at_rows;
    j["message"] = fmt::format(
        "the shadow audit tripped at {} audited rows: agreement {:.4f} ({} of {}), upper bound "
        "{:.4f} at confidence {:.4f}, is below the target {:g}. Every request is deferred to the "
        "LLM until a refit re-certifies: tracer fit on recent traces into the policy folder, "
        "then POST /v1/admin/reload",
        a.tripped_at_rows,
        a.checked_rows > 0 ? static_cast<double>(a.checked_agreed) / a.checked_rows : 0.0,
        a.checked_agreed, a.checked_rows, a.upper_bound, a.confidence, a.alpha);
  }
  return j;
}

std::string memory_metrics(const ServedMemory& m) {
  return fmt::format(
      "# HELP tracer_memory_entries Remembered answers of the served policy still in use (memory "
      "tier; evicted ones left out).\n"
      "# TYPE tracer_memory_entries gauge\ntracer_memory_entries {}\n"
      "# HELP tracer_memory_evictions_total Remembered answers evicted because a shadow audit or "
      "feedback found the LLM now answers otherwise.\n"
      "# TYPE tracer_memory_evictions_total counter\ntracer_memory_evictions_total {}\n"
      "# HELP tracer_memory_expired 1 when --memory-ttl has passed since the fit: no remembered "
      "answer is used until a refit.\n"
      "# TYPE tracer_memory_expired gauge\ntracer_memory_expired {}\n",
      m.entries() - std::min<uint64_t>(m.entries(), m.evictions()), m.evictions(),
      m.expired() ? 1 : 0);
}

json drift_json(const LoadedPolicy& p, const DriftOptions& o) {
  json j = p.drift_report().to_json();
  j["policy_version"] = p.version();
  j["window"] = o.window;
  j["min_rows"] = o.min_rows;
  return j;
}

}  // namespace tracer::serve
