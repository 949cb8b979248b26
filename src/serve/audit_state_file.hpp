#pragma once
// The shadow audit of one policy version, persisted beside the policy (POLICY_DIR/
// audit_state.json) so that a restart resumes the audit where it stopped: the counts, the look
// schedule and, above all, a trip. Saved after every look (the counts at 50, 63, 79, ... rows,
// and the look that trips) and when the server stops; a kill -9 loses at most the rows since
// the last look, which is as if they had never been sampled (the sample stays uniform).
//
// File: {"format": "tracer-audit-state", "format_version": 1, "policy_version", "alpha",
// "delta", "min_rows", "saved_at_ms", "state": AuditSnapshot::to_json()}.
#include <memory>
#include <optional>
#include <string>

#include "runtime/audit.hpp"

namespace tracer::serve {

struct SavedAudit {
  std::string policy_version;
  double alpha = 0, delta = 0;
  int min_rows = 0;
  AuditSnapshot state;
};

class AuditStateFile {
 public:
  explicit AuditStateFile(const std::string& policy_dir);
  const std::string& path() const { return path_; }
  // The saved audit when the file exists and holds `version`'s; nullopt when there is no file
  // or it belongs to another version. Throws InputError naming the file and the field when it
  // cannot be read or is malformed.
  std::optional<SavedAudit> load(const std::string& version) const;
  // Atomic replace (temp file, fsync, rename). Throws InputError.
  void save(const SavedAudit& a) const;

 private:
  std::string path_;
};

// The audit monitor of a policy version at α, δ: resumed from `policy_dir`'s saved state when
// it is this version's (its --audit-min-rows then wins over the flag, so a restart cannot start
// a second schedule), and saving itself there after every look. An unreadable state file is
// reported on stderr and the audit starts over; so does a folder that cannot be written (the
// audit then lives in memory only). `policy_dir` empty: no persistence.
std::shared_ptr<AuditMonitor> open_audit_monitor(const std::string& policy_dir,
                                                 const std::string& version, double alpha,
                                                 double delta, AuditOptions options);
// Saves `monitor`'s current state (at shutdown). Reports failures on stderr.
void save_audit_state(const std::string& policy_dir, const std::string& version, double alpha,
                      double delta, const AuditMonitor& monitor);

}  // namespace tracer::serve
