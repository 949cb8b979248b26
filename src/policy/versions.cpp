#include "policy/versions.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

#include "policy/policy.hpp"
#include "util/error.hpp"

namespace tracer {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// The files of a version that DIR links to by name (history.json is DIR's own).
constexpr const char* kLinkedFiles[] = {"model.bin", "manifest.json", "frontier.json",
                                        "qualitative_report.json", "report.html"};
constexpr const char* kVersionFiles[] = {"model.bin",    "manifest.json",           "frontier.json",
                                         "history.json", "qualitative_report.json", "report.html"};

std::string sys_error(const std::string& what, const fs::path& p) {
  return what + " " + p.string() + ": " + std::strerror(errno);
}

// A version folder's number, or 0 when `name` is not all digits (staging, trash, strays).
int version_number(const std::string& name) {
  if (name.empty() || name.size() > 9) return 0;
  for (char c : name)
    if (c < '0' || c > '9') return 0;
  return std::stoi(name);
}

void fsync_path(const fs::path& p, bool directory) {
  const int fd = ::open(p.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) throw InputError(sys_error("cannot open", p));
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) throw InputError(sys_error("cannot flush", p));
}

// Points `link` at `target` atomically: a new symlink beside it, renamed over it.
void replace_symlink(const fs::path& link, const std::string& target) {
  const fs::path tmp =
      link.parent_path() / ("." + link.filename().string() + ".tmp." + std::to_string(::getpid()));
  ::unlink(tmp.c_str());
  if (::symlink(target.c_str(), tmp.c_str()) != 0)
    throw InputError(sys_error("cannot create", tmp));
  if (::rename(tmp.c_str(), link.c_str()) != 0) {
    const std::string msg = sys_error("cannot replace", link);
    ::unlink(tmp.c_str());
    throw InputError(msg + " (move it out of the policy folder and retry)");
  }
}

// The PID in a temporary name ending ".tmp.PID" or "-PID" forms; 0 when there is none.
long trailing_pid(const std::string& name, const std::string& marker) {
  const auto at = name.rfind(marker);
  if (at == std::string::npos) return 0;
  std::string digits = name.substr(at + marker.size());
  const auto dot = digits.find('.');  // ".update-traces-PID.jsonl"
  if (dot != std::string::npos) digits.resize(dot);
  if (digits.empty() || digits.size() > 9) return 0;
  for (char c : digits)
    if (c < '0' || c > '9') return 0;
  return std::stol(digits);
}

bool process_gone(long pid) {
  return pid > 0 && pid != ::getpid() && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
}

json read_json_or_null(const fs::path& p, std::string* error) {
  try {
    return json::parse(read_whole_file(p.string()));
  } catch (const std::exception& e) {
    if (error) *error = e.what();
    return json();
  }
}

double number_at(const json& j, const char* pointer, double fallback) {
  const auto ptr = json::json_pointer(pointer);
  if (!j.is_object() || !j.contains(ptr)) return fallback;
  const json& v = j.at(ptr);
  return v.is_number() ? v.get<double>() : fallback;
}

bool deployed(const json& m) {
  return m.is_object() && m.contains("gate") && m["gate"].is_object() &&
         m["gate"].value("deployed", false) == true;
}

}  // namespace

std::string resolve_policy_dir(const std::string& dir) {
  const fs::path active = fs::path(dir) / "active";
  std::error_code ec;
  if (!fs::is_symlink(active, ec)) return dir;
  const fs::path target = fs::read_symlink(active, ec);
  if (ec) throw InputError("cannot read " + active.string() + ": " + ec.message());
  const fs::path resolved = target.is_absolute() ? target : fs::path(dir) / target;
  if (!fs::is_directory(resolved, ec))
    throw InputError(active.string() + " points to " + target.string() +
                     ", which is gone; activate a version that exists with `tracer rollback " +
                     dir + " N` (list them with `tracer versions " + dir + "`)");
  return resolved.string();
}

int active_version(const std::string& dir) {
  const fs::path active = fs::path(dir) / "active";
  std::error_code ec;
  if (!fs::is_symlink(active, ec)) return 0;
  const fs::path target = fs::read_symlink(active, ec);
  if (ec) return 0;
  return version_number(target.filename().string());
}

std::vector<VersionInfo> list_versions(const std::string& dir) {
  std::vector<VersionInfo> out;
  const fs::path root = fs::path(dir) / "versions";
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return out;
  const int active = active_version(dir);
  for (const auto& e : fs::directory_iterator(root, ec)) {
    const int n = version_number(e.path().filename().string());
    if (n <= 0 || !e.is_directory()) continue;
    VersionInfo v;
    v.number = n;
    v.path = e.path();
    v.active = n == active;
    v.manifest = read_json_or_null(e.path() / "manifest.json", &v.error);
    out.push_back(std::move(v));
  }
  std::sort(out.begin(), out.end(),
            [](const VersionInfo& a, const VersionInfo& b) { return a.number < b.number; });
  return out;
}

double handled_share(const json& m) {
  if (!m.is_object()) return 0;
  double memory = 0;
  if (m.contains("memory") && m["memory"].is_object() &&
      m["memory"].value("certified", false) == true)
    memory = std::clamp(number_at(m, "/memory/hit_share", 0), 0.0, 1.0);
  double gate = 0;
  if (m.contains("gate") && m["gate"].is_object() && m["gate"].value("method", "none") != "none")
    gate = std::clamp(number_at(m, "/gate/certified/coverage", 0), 0.0, 1.0);
  return memory + (1 - memory) * gate;
}

PromotionRule::Mode parse_promotion_mode(const std::string& s) {
  if (s == "auto") return PromotionRule::Mode::kAuto;
  if (s == "always") return PromotionRule::Mode::kAlways;
  if (s == "never") return PromotionRule::Mode::kNever;
  throw InputError("--promote must be auto, always or never, got '" + s + "'");
}

Promotion decide_promotion(const json& candidate, const json& active, const PromotionRule& rule) {
  using Mode = PromotionRule::Mode;
  if (rule.mode == Mode::kAlways) return {true, "--promote always"};
  if (rule.mode == Mode::kNever) return {false, "--promote never"};
  const double share = handled_share(candidate);
  if (active.is_null()) return {true, "the folder had no active version"};
  if (!deployed(candidate)) {
    if (!deployed(active)) return {true, "nothing was certified, as for the active version"};
    if (rule.active_audit_tripped)
      return {false,
              "nothing was certified; the active version's audit tripped, so it defers "
              "everything until a version certifies"};
    return {false, fmt::format("nothing was certified, and the active version answers "
                               "{:.1f}% of traffic",
                               100 * handled_share(active))};
  }
  if (!deployed(active)) return {true, "the active version certified nothing"};
  if (rule.active_audit_tripped)
    return {true, fmt::format("the active version's audit tripped; this one answers {:.1f}% of "
                              "traffic",
                              100 * share)};
  const double target = number_at(candidate, "/gate/target", 0);
  const double active_target = number_at(active, "/gate/target", 0);
  const double active_share = handled_share(active);
  if (std::abs(target - active_target) > 1e-12)
    return {true, fmt::format("certified at target {:g} (the active version: {:g})", target,
                              active_target)};
  if (share + 1e-12 < active_share - rule.max_coverage_drop)
    return {false, fmt::format("it answers {:.1f}% of traffic, the active version "
                               "{:.1f}% at the same target (allowed drop {:.1f} points; "
                               "--max-coverage-drop)",
                               100 * share, 100 * active_share, 100 * rule.max_coverage_drop)};
  return {true, fmt::format("it answers {:.1f}% of traffic (the active version {:.1f}%)",
                            100 * share, 100 * active_share)};
}

PolicyFolder::PolicyFolder(std::string dir, bool create) : dir_(std::move(dir)) {
  std::error_code ec;
  if (create) fs::create_directories(dir_, ec);
  if (!fs::is_directory(dir_, ec))
    throw InputError(
        create
            ? "cannot create the policy folder " + dir_ + (ec ? ": " + ec.message() : std::string())
            : "policy folder " + dir_ + " does not exist; create it with `tracer fit TRACES -o " +
                  dir_ + "`");
  const fs::path lock = fs::path(dir_) / ".lock";
  lock_fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd_ < 0) throw InputError(sys_error("cannot open", lock));
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) {
      const std::string msg = sys_error("cannot lock", lock);
      ::close(lock_fd_);
      throw InputError(msg);
    }
    std::fprintf(stderr, "waiting for another tracer process writing %s ...\n", dir_.c_str());
    while (::flock(lock_fd_, LOCK_EX) != 0) {
      if (errno == EINTR) continue;
      const std::string msg = sys_error("cannot lock", lock);
      ::close(lock_fd_);
      throw InputError(msg);
    }
  }
}

PolicyFolder::~PolicyFolder() {
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
}

size_t PolicyFolder::clean_leftovers() {
  size_t removed = 0;
  std::error_code ec;
  auto remove = [&](const fs::path& p) {
    std::error_code rm;
    if (fs::remove_all(p, rm) > 0 && !rm) ++removed;
  };
  // Temporary files of writers that are gone (atomic writes, link swaps, update's store export).
  auto clean_files = [&](const fs::path& folder) {
    for (const auto& e : fs::directory_iterator(folder, ec)) {
      const std::string name = e.path().filename().string();
      const long pid =
          std::max(trailing_pid(name, ".tmp."),
                   name.rfind(".update-traces-", 0) == 0 ? trailing_pid(name, "-") : 0L);
      if (process_gone(pid)) remove(e.path());
    }
  };
  clean_files(dir_);
  const fs::path root = fs::path(dir_) / "versions";
  if (!fs::is_directory(root, ec)) return removed;
  // Staging and trash folders: every writer holds the lock while it has one, so any that exist
  // now belong to a writer that was killed.
  for (const auto& e : fs::directory_iterator(root, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(".staging-", 0) == 0 || name.rfind(".trash-", 0) == 0)
      remove(e.path());
    else if (version_number(name) > 0 && e.is_directory())
      clean_files(e.path());  // `tracer report` rewrites a version's report atomically
  }
  return removed;
}

int PolicyFolder::adopt_flat_policy() {
  const fs::path base(dir_);
  std::error_code ec;
  if (active() > 0 || fs::is_symlink(base / "model.bin", ec) ||
      !fs::is_regular_file(base / "model.bin", ec) ||
      !fs::is_regular_file(base / "manifest.json", ec))
    return 0;
  Draft d = begin_version();
  for (const char* name : kVersionFiles) {
    const fs::path from = base / name;
    if (fs::is_symlink(from, ec) || !fs::is_regular_file(from, ec)) continue;
    fs::copy_file(from, d.staging / name, ec);
    if (ec) throw InputError("cannot copy " + from.string() + ": " + ec.message());
  }
  commit_version(d);
  activate(d.number);
  return d.number;
}

json PolicyFolder::active_manifest() const {
  if (active() == 0) return json();
  return read_json_or_null(fs::path(resolve_policy_dir(dir_)) / "manifest.json", nullptr);
}

PolicyFolder::Draft PolicyFolder::begin_version() {
  const fs::path root = fs::path(dir_) / "versions";
  std::error_code ec;
  fs::create_directories(root, ec);
  if (!fs::is_directory(root, ec))
    throw InputError("cannot create " + root.string() + (ec ? ": " + ec.message() : ""));
  int last = 0;
  for (const auto& e : fs::directory_iterator(root, ec))
    last = std::max(last, version_number(e.path().filename().string()));
  Draft d;
  d.number = last + 1;
  d.staging = root / fmt::format(".staging-{}-{}", d.number, ::getpid());
  fs::remove_all(d.staging, ec);
  if (!fs::create_directory(d.staging, ec))
    throw InputError("cannot create " + d.staging.string() + (ec ? ": " + ec.message() : ""));
  return d;
}

fs::path PolicyFolder::commit_version(const Draft& d) {
  std::error_code ec;
  if (!fs::is_regular_file(d.staging / "model.bin", ec) ||
      !fs::is_regular_file(d.staging / "manifest.json", ec))
    throw InputError("internal error: version " + std::to_string(d.number) +
                     " lacks model.bin or manifest.json");
  // write_file_atomic fsyncs every file; the folder's entries need their own fsync.
  fsync_path(d.staging, true);
  const fs::path final_path = d.staging.parent_path() / std::to_string(d.number);
  if (::rename(d.staging.c_str(), final_path.c_str()) != 0)
    throw InputError(sys_error("cannot rename " + d.staging.string() + " to", final_path));
  fsync_path(d.staging.parent_path(), true);
  return final_path;
}

void PolicyFolder::activate(int number) {
  const fs::path base(dir_);
  const fs::path version = base / "versions" / std::to_string(number);
  std::error_code ec;
  if (!fs::is_regular_file(version / "manifest.json", ec) ||
      !fs::is_regular_file(version / "model.bin", ec))
    throw InputError("version " + std::to_string(number) + " of " + dir_ +
                     " does not exist or is incomplete; list the versions with `tracer versions " +
                     dir_ + "`");
  if (fs::is_directory(base / "active", ec) && !fs::is_symlink(base / "active", ec)) {
    // A copy of the folder that followed links (std::filesystem::copy, `cp -rL`): `active` is a
    // copy of a version. Readers use DIR's own files meanwhile (see resolve_policy_dir).
    const fs::path trash = base / "versions" / fmt::format(".trash-active-{}", ::getpid());
    if (::rename((base / "active").c_str(), trash.c_str()) != 0)
      throw InputError(sys_error("cannot move aside", base / "active"));
    fs::remove_all(trash, ec);
  } else if (fs::exists(base / "active", ec) && !fs::is_symlink(base / "active", ec)) {
    throw InputError((base / "active").string() +
                     " is not a link tracer made; move it out of the policy folder and retry");
  }
  replace_symlink(base / "active", "versions/" + std::to_string(number));
  // File links by name. They go through `active`, so they only change once (and when a flat
  // folder is adopted, its regular files are replaced by links to the same content).
  // Only for files the version has: no dangling links (a version fit with --no-report has no
  // report), which tools that copy by following links trip over.
  for (const char* name : kLinkedFiles) {
    const fs::path link = base / name;
    const std::string target = std::string("active/") + name;
    const bool is_link = fs::is_symlink(link, ec);
    if (!fs::exists(version / name, ec)) {
      if (is_link) ::unlink(link.c_str());
      continue;
    }
    if (is_link && fs::read_symlink(link, ec).string() == target) continue;
    if (!is_link && fs::is_directory(link, ec)) continue;  // not ours to replace
    replace_symlink(link, target);
  }
  fsync_path(base, true);
}

json PolicyFolder::read_history() const {
  const fs::path p = fs::path(dir_) / "history.json";
  std::error_code ec;
  if (!fs::exists(p, ec)) return json::array();
  json h = read_json_or_null(p, nullptr);
  return h.is_array() ? h : json::array();  // an unreadable history is restarted, not fatal
}

void PolicyFolder::write_history(const json& history) const {
  write_file_atomic((fs::path(dir_) / "history.json").string(), history.dump(2) + "\n");
}

std::vector<int> PolicyFolder::prune(size_t keep) {
  std::vector<int> removed;
  const auto versions = list_versions(dir_);
  const int active_number = active();
  if (versions.size() <= keep) return removed;
  const size_t cut = versions.size() - keep;  // versions[0, cut) are the oldest
  for (size_t i = 0; i < cut; ++i) {
    const VersionInfo& v = versions[i];
    if (v.number == active_number) continue;
    // Renamed first, so a kill in the middle leaves a trash folder (cleaned next time), never a
    // numbered version with files missing.
    const fs::path trash = v.path.parent_path() / fmt::format(".trash-{}-{}", v.number, ::getpid());
    if (::rename(v.path.c_str(), trash.c_str()) != 0) continue;
    std::error_code ec;
    fs::remove_all(trash, ec);
    removed.push_back(v.number);
  }
  return removed;
}

}  // namespace tracer
