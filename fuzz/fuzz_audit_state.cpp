// libFuzzer target for the saved shadow-audit state (AuditSnapshot::from_json, read back from
// POLICY_DIR/audit_state.json by `tracer serve`). Not part of the CMake build; see
// scripts/fuzz.sh. The first byte picks --audit-min-rows; the rest is the JSON text. InputError
// is the expected way to refuse a state; a state it accepts must restore into a monitor that
// reports the same counts, saves the same JSON and keeps counting without breaking invariants.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "runtime/audit.hpp"
#include "util/error.hpp"

namespace {

void require(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const int min_rows = 1 + data[0] % 100;
  std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) return 0;
  tracer::AuditSnapshot s;
  try {
    s = tracer::AuditSnapshot::from_json(j, min_rows);
  } catch (const tracer::InputError&) {
    return 0;
  }
  tracer::AuditMonitor m(0.9, 0.05, {0, min_rows, 0});
  m.restore(s);
  require(m.snapshot().to_json() == s.to_json());
  tracer::AuditState st = m.state();
  require(st.rows == s.rows && st.agreed == s.agreed && st.tripped == s.tripped);
  require(st.upper_bound >= 0 && st.upper_bound <= 1);
  for (int i = 0; i < 300 && st.rows < 2000000000; ++i) m.record(i % 3 != 0);
  st = m.state();
  require(st.agreed <= st.rows && st.shadow_rows + st.feedback_rows == st.rows);
  tracer::AuditSnapshot after = m.snapshot();
  require(tracer::AuditSnapshot::from_json(after.to_json(), min_rows).to_json() == after.to_json());
  return 0;
}
