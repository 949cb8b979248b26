// `tracer versions DIR`: the versions a policy folder holds (policy/versions.hpp), which one is
// active, and why each was or was not activated; `--keep N` prunes the oldest.
#include "policy/versions.hpp"

#include <fmt/format.h>

#include <iostream>

#include "cli/commands.hpp"
#include "util/error.hpp"

namespace tracer::cli {
namespace {

using nlohmann::json;

struct VersionsArgs {
  std::string policy;
  bool json = false;
  size_t keep = 0;  // 0: do not prune
};

// One version as `tracer versions --json` prints it.
json version_row(const VersionInfo& v) {
  json row{{"version", v.number}, {"active", v.active}, {"path", v.path.string()}};
  if (v.manifest.is_null()) {
    row["error"] = "manifest.json unreadable: " + v.error;
    return row;
  }
  const json& m = v.manifest;
  const json gate = m.value("gate", json::object());
  const json version = m.value("version", json::object());
  row["created_at"] = m.value("created_at", "");
  row["policy_version"] = m.value("policy_version", "");
  row["event"] = version.value("event", "fit");
  // The traces the version was fit on (after --window / --max-traces), not those read.
  row["traces"] =
      m.value("/units/traces"_json_pointer, m.value("/traces/accepted"_json_pointer, json()));
  row["deployed"] = gate.value("deployed", false);
  row["method"] = gate.value("method", "none");
  row["target"] = gate.value("target", json());
  row["coverage"] = m.value("/gate/certified/coverage"_json_pointer, json());
  row["lower_bound"] = m.value("/gate/certified/lower_bound"_json_pointer, json());
  row["handled_share"] = handled_share(m);
  // Folders adopted from before versions carry no decision.
  row["activated_when_written"] = version.value("activated", json());
  row["reason"] = version.value("reason", "written before versions existed");
  return row;
}

std::string status(const json& row) {
  if (row.value("active", false)) return "ACTIVE";
  if (row.contains("error")) return "unreadable";
  const json when = row.value("activated_when_written", json());
  if (when.is_boolean() && !when.get<bool>()) return "not activated";
  return "inactive";
}

std::string cell(const json& v, const char* fmt_percent) {
  if (!v.is_number()) return "-";
  return fmt::format(fmt::runtime(fmt_percent), 100 * v.get<double>());
}

void print_table(std::ostream& os, const std::string& dir, const json& rows) {
  os << fmt::format("{:>4}  {:<20}  {:<6}  {:>7}  {:<6}  {:>6}  {:>8}  {:>7}  {:<13}  {}\n", "ver",
                    "created (UTC)", "event", "traces", "method", "target", "answers", "bound",
                    "status", "why");
  for (const auto& r : rows) {
    if (r.contains("error")) {
      os << fmt::format("{:>4}  {}\n", r["version"].get<int>(), r["error"].get<std::string>());
      continue;
    }
    os << fmt::format(
        "{:>4}  {:<20}  {:<6}  {:>7}  {:<6}  {:>6}  {:>8}  {:>7}  {:<13}  {}\n",
        r["version"].get<int>(), r.value("created_at", ""), r.value("event", ""),
        r["traces"].is_number() ? std::to_string(r["traces"].get<long>()) : "-",
        r.value("deployed", false) ? r.value("method", "") : "none",
        r["target"].is_number() ? fmt::format("{:g}", r["target"].get<double>()) : "-",
        cell(r["handled_share"], "{:.1f}%"),
        r.value("deployed", false) ? cell(r["lower_bound"], "{:.2f}%") : "-", status(r),
        r.value("reason", ""));
  }
  if (rows.empty()) os << "(no versions: " << dir << " is empty or was written before versions)\n";
  os << "answers: share of traffic the version answers by its certificate (memory tier + "
        "surrogate); bound: the certified lower bound on agreement.\n";
}

int run_versions(const VersionsArgs& a) {
  if (!std::filesystem::is_directory(a.policy))
    throw InputError("policy folder " + a.policy + " does not exist");
  std::vector<int> pruned;
  if (a.keep > 0) {
    PolicyFolder folder(a.policy, /*create=*/false);
    folder.clean_leftovers();
    pruned = folder.prune(a.keep);
  }
  json rows = json::array();
  for (const auto& v : list_versions(a.policy)) rows.push_back(version_row(v));
  if (a.json) {
    std::cout << json{{"policy", a.policy},
                      {"active", active_version(a.policy)},
                      {"versions", rows},
                      {"pruned", pruned}}
                     .dump(2)
              << "\n";
    return 0;
  }
  print_table(std::cout, a.policy, rows);
  if (!pruned.empty()) {
    std::cout << "pruned " << pruned.size() << " version(s):";
    for (int n : pruned) std::cout << " " << n;
    std::cout << "\n";
  }
  return 0;
}

}  // namespace

Command add_versions_command(CLI::App& app) {
  auto args = std::make_shared<VersionsArgs>();
  auto* sub = app.add_subcommand(
      "versions",
      "List the versions of a policy folder: every fit and update writes one "
      "(DIR/versions/N/), and DIR/active points at the one that is served. Shows when each was "
      "written, on how many traces, what it certified, and why it was or was not activated. "
      "Activate another with `tracer rollback DIR N`.");
  sub->add_option("policy", args->policy, "Policy folder written by `tracer fit`")->required();
  sub->add_flag("--json", args->json, "Print the versions as JSON");
  sub->add_option("--keep", args->keep,
                  "First remove all but the N newest versions (never the active one)")
      ->check(CLI::Range(size_t{1}, size_t{100000}));
  return {sub, [args] { return run_versions(*args); }};
}

}  // namespace tracer::cli
