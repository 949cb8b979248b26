#include "serve/audit_state_file.hpp"

#include <chrono>
#include <filesystem>
#include <iostream>

#include "policy/policy.hpp"
#include "util/error.hpp"

namespace tracer::serve {
namespace {

constexpr const char* kFormat = "tracer-audit-state";
constexpr int kFormatVersion = 1;
constexpr size_t kMaxFileBytes = 1 << 20;

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

SavedAudit saved(const std::string& version, double alpha, double delta, int min_rows,
                 AuditSnapshot state) {
  return SavedAudit{version, alpha, delta, min_rows, std::move(state)};
}

}  // namespace

AuditStateFile::AuditStateFile(const std::string& policy_dir)
    : path_((std::filesystem::path(policy_dir) / "audit_state.json").string()) {}

std::optional<SavedAudit> AuditStateFile::load(const std::string& version) const {
  std::error_code ec;
  if (!std::filesystem::exists(path_, ec)) return std::nullopt;
  if (!std::filesystem::is_regular_file(path_, ec))
    throw InputError(path_ + " is not a regular file");
  if (std::filesystem::file_size(path_, ec) > kMaxFileBytes)
    throw InputError(path_ + " is larger than 1 MiB: not an audit state");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_whole_file(path_));
  } catch (const nlohmann::json::parse_error& e) {
    throw InputError(path_ + " is not valid JSON (error at byte " + std::to_string(e.byte) + ")");
  } catch (const nlohmann::json::exception&) {
    throw InputError(path_ + " is not valid JSON");
  }
  try {
    if (!j.is_object() || j.value("format", "") != kFormat)
      throw InputError("\"format\" is not \"" + std::string(kFormat) + "\"");
    if (j.value("format_version", 0) != kFormatVersion)
      throw InputError("\"format_version\" is not " + std::to_string(kFormatVersion));
    if (!j.contains("policy_version") || !j["policy_version"].is_string())
      throw InputError("no string \"policy_version\"");
    if (j["policy_version"].get<std::string>() != version) return std::nullopt;
    SavedAudit a;
    a.policy_version = version;
    if (!j.contains("alpha") || !j["alpha"].is_number() || !j.contains("delta") ||
        !j["delta"].is_number())
      throw InputError("no numbers \"alpha\" and \"delta\"");
    a.alpha = j["alpha"].get<double>();
    a.delta = j["delta"].get<double>();
    // The range of --audit-min-rows.
    if (!j.contains("min_rows") || !j["min_rows"].is_number_integer() ||
        j["min_rows"].get<int64_t>() < 1 || j["min_rows"].get<int64_t>() > 1000000000)
      throw InputError("\"min_rows\" is not an integer in [1, 1000000000]");
    a.min_rows = j["min_rows"].get<int>();
    if (!j.contains("state")) throw InputError("no \"state\"");
    a.state = AuditSnapshot::from_json(j["state"], a.min_rows);
    return a;
  } catch (const InputError& e) {
    throw InputError(path_ + ": " + e.what());
  }
}

void AuditStateFile::save(const SavedAudit& a) const {
  nlohmann::json j{{"format", kFormat},
                   {"format_version", kFormatVersion},
                   {"policy_version", a.policy_version},
                   {"alpha", a.alpha},
                   {"delta", a.delta},
                   {"min_rows", a.min_rows},
                   {"saved_at_ms", now_ms()},
                   {"state", a.state.to_json()}};
  write_file_atomic(path_, j.dump(2) + "\n");
}

std::shared_ptr<AuditMonitor> open_audit_monitor(const std::string& policy_dir,
                                                 const std::string& version, double alpha,
                                                 double delta, AuditOptions options) {
  if (policy_dir.empty()) return std::make_shared<AuditMonitor>(alpha, delta, options);
  AuditStateFile file(policy_dir);
  std::optional<SavedAudit> prior;
  try {
    prior = file.load(version);
    if (prior && (prior->alpha != alpha || prior->delta != delta))
      throw InputError(file.path() + ": alpha/delta differ from manifest.json's gate");
  } catch (const InputError& e) {
    std::cerr << "warning: ignoring the saved audit state: " << e.what()
              << "; the shadow audit of policy " << version << " starts over\n";
    prior.reset();
  }
  if (prior && prior->min_rows != options.min_rows) {
    std::cerr << "audit: policy " << version << " keeps --audit-min-rows " << prior->min_rows
              << " from its saved state (a new schedule would spend delta twice); the flag's "
              << options.min_rows << " applies from the next policy version\n";
    options.min_rows = prior->min_rows;
  }
  auto monitor = std::make_shared<AuditMonitor>(alpha, delta, options);
  if (prior) {
    monitor->restore(prior->state);
    std::cerr << "audit: resumed policy " << version << "'s shadow audit from " << file.path()
              << ": " << prior->state.rows << " audited rows, " << prior->state.agreed << " agreed"
              << (prior->state.tripped ? ", TRIPPED (everything is deferred)" : "") << "\n";
  }
  auto warned = std::make_shared<bool>(false);  // guarded by the monitor's lock
  const int min_rows = options.min_rows;
  monitor->on_look([file, version, alpha, delta, min_rows, warned](const AuditSnapshot& s) {
    try {
      file.save(saved(version, alpha, delta, min_rows, s));
    } catch (const std::exception& e) {
      if (!*warned)
        std::cerr << "warning: cannot save the audit state (" << e.what()
                  << "); a restart would start the audit over\n";
      *warned = true;
    }
  });
  return monitor;
}

void save_audit_state(const std::string& policy_dir, const std::string& version, double alpha,
                      double delta, const AuditMonitor& monitor) {
  if (policy_dir.empty()) return;
  const AuditState st = monitor.state();
  try {
    AuditStateFile(policy_dir).save(saved(version, alpha, delta, st.min_rows, monitor.snapshot()));
  } catch (const std::exception& e) {
    std::cerr << "warning: cannot save the audit state (" << e.what() << ")\n";
  }
}

}  // namespace tracer::serve
