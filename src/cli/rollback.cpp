// `tracer rollback DIR [N]`: make version N of a policy folder the active one again (by default
// the version that was active before the current one), after checking that it loads.
#include <algorithm>
#include <iostream>

#include "cli/commands.hpp"
#include "cli/reload_client.hpp"
#include "policy/versions.hpp"
#include "runtime/router.hpp"
#include "util/error.hpp"
#include "util/time_text.hpp"

namespace tracer::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct RollbackArgs {
  std::string policy;
  int version = 0;  // 0: the version active before the current one
  std::string reload;
  std::string api_key;
  bool quiet = false;
};

// The version the active one replaced (manifest version.previous_active) when it still exists;
// else the newest older version that certified something.
int previous_version(const PolicyFolder& folder, const std::vector<VersionInfo>& versions) {
  const int active = folder.active();
  const json m = folder.active_manifest();
  const json prev =
      m.is_object() ? m.value("/version/previous_active"_json_pointer, json()) : json();
  for (const auto& v : versions)
    if (prev.is_number_integer() && v.number == prev.get<int>() && v.number != active)
      return v.number;
  for (auto it = versions.rbegin(); it != versions.rend(); ++it)
    if (it->number < active && it->manifest.is_object() &&
        it->manifest.value("/gate/deployed"_json_pointer, false))
      return it->number;
  throw InputError("version " + std::to_string(active) + " of " + folder.dir() +
                   " has no earlier version to go back to; name one: `tracer rollback " +
                   folder.dir() + " N` (see `tracer versions " + folder.dir() + "`)");
}

int run_rollback(const RollbackArgs& a) {
  PolicyFolder folder(a.policy, /*create=*/false);
  folder.clean_leftovers();
  const auto versions = list_versions(a.policy);
  if (versions.empty())
    throw InputError(a.policy +
                     " has no versions to roll back to (it was written before versions, or is "
                     "empty); the next `tracer fit` or `tracer update` into it starts them");
  const int from = folder.active();
  const int to = a.version > 0 ? a.version : previous_version(folder, versions);
  const auto it = std::find_if(versions.begin(), versions.end(),
                               [&](const VersionInfo& v) { return v.number == to; });
  if (it == versions.end())
    throw InputError("version " + std::to_string(to) + " of " + a.policy +
                     " does not exist (pruned or never written); list the versions with "
                     "`tracer versions " +
                     a.policy + "`");
  // Only a version that loads becomes active: a server reloading it must not fail.
  const Router router = Router::load(it->path.string());
  if (to == from) {
    if (!a.quiet) std::cout << "version " << to << " is already active\n";
  } else {
    folder.activate(to);
    json history = folder.read_history();
    history.push_back({{"version", to},
                       {"event", "rollback"},
                       {"at", utc_now()},
                       {"previous_active", from > 0 ? json(from) : json()},
                       {"policy_version", router.manifest().value("policy_version", "")},
                       {"activated", true},
                       {"reason", "tracer rollback"}});
    folder.write_history(history);
    if (!a.quiet)
      std::cout << "version " << to << " (" << router.manifest().value("policy_version", "")
                << ") is active"
                << (from > 0 ? ", was version " + std::to_string(from) : std::string()) << "\n";
  }
  if (!a.reload.empty()) {
    reload_server(a.reload, a.api_key, "version " + std::to_string(to) + " is active");
    if (!a.quiet) std::cout << "reloaded " << a.reload << "\n";
  }
  return 0;
}

}  // namespace

Command add_rollback_command(CLI::App& app) {
  auto args = std::make_shared<RollbackArgs>();
  auto* sub = app.add_subcommand(
      "rollback",
      "Make an earlier (or any) version of a policy folder the active one, in one atomic step, "
      "after checking that it loads. Without N: the version that was active before the current "
      "one. Servers keep their policy until told to reload (--reload, SIGHUP or POST "
      "/v1/admin/reload).");
  sub->add_option("policy", args->policy, "Policy folder written by `tracer fit`")->required();
  sub->add_option("version", args->version,
                  "Version number to activate (see `tracer versions DIR`)")
      ->check(CLI::Range(1, 999999999));
  sub->add_option("--reload", args->reload,
                  "Then POST /v1/admin/reload to this running `tracer serve`, e.g. "
                  "http://127.0.0.1:8000");
  sub->add_option("--api-key", args->api_key, "API key of that server, if it has one");
  sub->add_flag("-q,--quiet", args->quiet, "No output");
  return {sub, [args] { return run_rollback(*args); }};
}

}  // namespace tracer::cli
