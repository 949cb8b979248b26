#pragma once
// A policy folder's versions: every fit and update writes a numbered, immutable version, then
// activates it (or keeps the active one) in one atomic step. See docs/versions.md.
//
// Layout of a policy folder DIR:
//   DIR/versions/N/   one fit, complete: model.bin, manifest.json, frontier.json, history.json (the
//                     folder's history as of that fit), qualitative_report.json, report.html.
//                     Written as versions/.staging-N-PID/, fsynced, then renamed to N: a version
//                     folder either does not exist or is complete.
//   DIR/active        symlink to versions/N, the version readers load. Switched by rename(2) of a
//                     new symlink over it: a reader sees the old version or the new one, never a
//                     mix of their files, whenever a writer is killed.
//   DIR/model.bin, manifest.json, frontier.json, qualitative_report.json, report.html
//                     symlinks to active/NAME, for people and tools that open files by name.
//   DIR/history.json  the folder's log: one entry per version written and per rollback.
//   DIR/.lock         flock(2) held by every writer (fit, update, rollback, pruning).
//   DIR/traces.db and the audit state are written by `tracer serve` and are not versioned.
// A folder written before versions existed (the files directly in DIR) is read as it is and
// becomes version 1 the first time a new version is written into it.
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace tracer {

// The folder holding the active policy's files: DIR/versions/N when DIR has an active version,
// else DIR itself. Throws InputError when DIR/active points at a version that is gone.
std::string resolve_policy_dir(const std::string& dir);

// The active version's number; 0 when DIR has no active version (flat or empty folder).
int active_version(const std::string& dir);

struct VersionInfo {
  int number = 0;
  std::filesystem::path path;
  nlohmann::json manifest;  // null when it cannot be read (see error)
  std::string error;
  bool active = false;
};
// Every version of DIR, ascending by number. Empty for a flat folder.
std::vector<VersionInfo> list_versions(const std::string& dir);

// The share of traffic a policy answers by its own certificate, in [0, 1]: the memory tier's
// held-out hit share plus the rest times the gate's certified coverage (0 for what was refused).
double handled_share(const nlohmann::json& manifest);

// When a newly written version becomes the active one.
struct PromotionRule {
  enum class Mode { kAuto, kAlways, kNever };
  Mode mode = Mode::kAuto;
  // auto: a certified version replaces a certified active version at the same target only when
  // its handled_share is at least the active one's minus this (in [0, 1]; 1 = any coverage).
  double max_coverage_drop = 1.0;
  // auto: the active version's shadow audit tripped (POLICY_DIR/audit_state.json): its
  // guarantee no longer holds, so any version that certifies replaces it.
  bool active_audit_tripped = false;
};
PromotionRule::Mode parse_promotion_mode(const std::string& s);  // auto|always|never, InputError

struct Promotion {
  bool activate = false;
  std::string reason;  // one sentence: why it is or is not activated
};
// `active` is the active version's manifest, or null when there is none.
Promotion decide_promotion(const nlohmann::json& candidate, const nlohmann::json& active,
                           const PromotionRule& rule);

// Exclusive write access to a policy folder (flock on DIR/.lock, waiting for another writer),
// released when destroyed. Every method that changes the folder needs one.
class PolicyFolder {
 public:
  // Creates DIR when `create` (else InputError when it is missing).
  PolicyFolder(std::string dir, bool create);
  ~PolicyFolder();
  PolicyFolder(const PolicyFolder&) = delete;
  PolicyFolder& operator=(const PolicyFolder&) = delete;

  const std::string& dir() const { return dir_; }
  // Removes what killed writers left behind: staging and half-pruned version folders, temporary
  // files of processes that no longer run. Returns how many entries were removed.
  size_t clean_leftovers();
  // A flat folder (model.bin and manifest.json directly in DIR) becomes version N (the next
  // number) and is activated. Returns its number, 0 when there was nothing to adopt.
  int adopt_flat_policy();

  int active() const { return active_version(dir_); }
  nlohmann::json active_manifest() const;  // null when no version is active

  // The next version's number and an empty staging folder for its files.
  struct Draft {
    int number = 0;
    std::filesystem::path staging;
  };
  Draft begin_version();
  // fsyncs the staging folder's files and renames it to versions/N. Returns that path.
  std::filesystem::path commit_version(const Draft& draft);
  // Makes version N the active one (one rename), and points DIR's file links at it.
  void activate(int number);

  nlohmann::json read_history() const;  // DIR/history.json, or [] when missing or unreadable
  void write_history(const nlohmann::json& history) const;

  // Removes all but the `keep` newest versions, never the active one. Returns the numbers removed.
  std::vector<int> prune(size_t keep);

 private:
  std::string dir_;
  int lock_fd_ = -1;
};

}  // namespace tracer
