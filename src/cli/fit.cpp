// `tracer fit TRACES -o DIR`: learn, choose and certify a routing policy.
#include "cli/fit.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <thread>

#include "cli/commands.hpp"
#include "cli/summary.hpp"
#include "fit/fitter.hpp"
#include "models/surrogate.hpp"
#include "policy/version_changes.hpp"
#include "policy/versions.hpp"
#include "report/qualitative.hpp"
#include "util/error.hpp"
#include "util/progress.hpp"

namespace tracer::cli {
namespace {

// The run itself plus the flags that are parsed into its FitOptions.
struct FitArgs {
  FitRun run;
  std::string zoo;
  std::string methods = "global,l2d,rsb";
  std::vector<double> split;  // empty: chosen from the number of distinct inputs
  bool no_ood = false;
  std::string memory = "auto";
  std::string promote = "auto";
};

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

int run_fit(FitArgs& a) {
  FitOptions& fit = a.run.fit;
  a.run.selection.seed = fit.seed;
  if (!a.split.empty()) {
    if (a.split.size() != 3)
      throw InputError("--split needs three fractions: TRAIN,SELECT,CALIBRATE");
    fit.fractions = SplitFractions{a.split[0], a.split[1], a.split[2]};
  }
  fit.zoo = split_list(a.zoo);
  fit.methods.clear();
  for (const auto& m : split_list(a.methods)) {
    Method method = parse_method(m);
    if (method == Method::kNone) throw InputError("--methods takes global, l2d and/or rsb");
    fit.methods.push_back(method);
  }
  if (fit.methods.empty()) throw InputError("--methods needs at least one of global, l2d, rsb");
  fit.ood = !a.no_ood;
  fit.memory.enabled = a.memory != "off";
  a.run.promotion.mode = parse_promotion_mode(a.promote);
  return fit_and_write(a.run).exit_code;
}

}  // namespace

namespace {

// One line of history.json for a written version.
nlohmann::json history_entry(const nlohmann::json& m) {
  const nlohmann::json& g = m["gate"];
  const nlohmann::json& v = m["version"];
  return {{"version", v["number"]},
          {"event", v["event"]},
          {"policy_version", m["policy_version"]},
          {"created_at", m["created_at"]},
          {"deployed", g["deployed"]},
          {"method", g["method"]},
          {"target", g["target"]},
          {"coverage", g["certified"]["coverage"]},
          {"agreement", g["certified"]["agreement"]},
          {"lower_bound", g["certified"]["lower_bound"]},
          {"handled_share", handled_share(m)},
          {"traces", m.value("/units/traces"_json_pointer,
                             m.value("/traces/accepted"_json_pointer, nlohmann::json()))},
          {"activated", v["activated"]},
          {"reason", v["reason"]},
          {"changes", label_changes_summary(m.value("changes", nlohmann::json()))}};
}

// The report of a version, into its staging folder. A report failure warns: the version is
// still written.
void write_version_report(const FitRun& a, const std::filesystem::path& staging,
                          const TraceSet& set, const FitResult& result, const Progress& progress) {
  ReportOptions ro_report;
  ro_report.fit = a.fit;
  ro_report.learning_curve = a.learning_curve;
  if (progress.enabled())
    ro_report.note = [](const std::string& l) { std::cerr << "      " << l << "\n"; };
  try {
    write_report_files(staging.string(), set, result, ro_report);
  } catch (const std::exception& e) {
    std::cerr << "warning: the policy was written but its report failed: " << e.what() << "\n";
  }
}

}  // namespace

// Everything under the folder's lock: the next writer waits rather than racing for a number.
FitOutcome write_policy_version(const FitRun& a, const TraceSet& set, FitResult& result,
                                Progress& progress) {
  PolicyFolder folder(a.out, /*create=*/true);
  folder.clean_leftovers();
  if (const int adopted = folder.adopt_flat_policy(); adopted > 0 && !a.quiet)
    std::cerr << "note: " << a.out << " held a policy from before versions; it is now version "
              << adopted << "\n";
  const int previous = folder.active();
  const nlohmann::json active_manifest = folder.active_manifest();
  const Promotion promotion = decide_promotion(result.manifest, active_manifest, a.promotion);
  if (previous > 0)
    result.manifest["changes"] = label_changes(result.manifest, active_manifest, previous);
  const PolicyFolder::Draft draft = folder.begin_version();
  result.manifest["version"] = {
      {"number", draft.number},
      {"event", a.event},
      {"previous_active", previous > 0 ? nlohmann::json(previous) : nlohmann::json()},
      {"activated", promotion.activate},
      {"reason", promotion.reason}};
  write_artifact(draft.staging.string(), result);
  nlohmann::json history = folder.read_history();
  history.push_back(history_entry(result.manifest));
  write_file_atomic((draft.staging / "history.json").string(), history.dump(2) + "\n");
  if (!a.no_report) write_version_report(a, draft.staging, set, result, progress);
  folder.commit_version(draft);
  folder.write_history(history);
  if (promotion.activate) folder.activate(draft.number);
  folder.prune(std::max<size_t>(a.keep, 1));

  FitOutcome out;
  out.version = draft.number;
  out.activated = promotion.activate;
  out.active = folder.active();
  out.reason = promotion.reason;
  out.exit_code = !result.deployed ? kExitRefused : promotion.activate ? 0 : kExitNotActivated;
  return out;
}

// fit_policy, with the cap named when too few traces are left because of it.
FitResult fit_selected(const TraceSet& set, const FitRun& a, const SelectionReport& sr,
                       Progress& progress) {
  try {
    return fit_policy(set, a.fit, progress);
  } catch (const InputError& e) {
    if (sr.capped == 0) throw;
    throw InputError(std::string(e.what()) + " (--max-traces " +
                     std::to_string(a.selection.max_traces) + " kept " + std::to_string(sr.kept) +
                     " of " + std::to_string(sr.read) + " traces: raise --max-traces)");
  }
}

FitOutcome fit_and_write(const FitRun& a) {
  Progress progress(!a.quiet, 6, ::isatty(STDERR_FILENO));
  std::string names;
  for (const auto& t : a.traces) names += (names.empty() ? "" : ", ") + t;
  progress.step("reading " + names);
  ReadOptions ro;
  ro.skip_invalid = a.skip_invalid;
  ReadReport report;
  TraceSet set = read_trace_files(a.traces, ro, &report);
  if (report.skipped > 0) {
    progress.finish();
    std::cerr << "warning: skipped " << report.skipped << " invalid line(s) of " << names
              << "; first reasons:\n";
    for (const auto& e : report.errors) std::cerr << "  " << e << "\n";
  }
  nlohmann::json selection;
  const SelectionReport sr = select_traces(set, a.selection);
  if (sr.kept < sr.read) progress.note(sr.summary(a.selection));
  if (a.selection.active() || sr.surrogate > 0) {
    selection = {{"read", sr.read},
                 {"kept", sr.kept},
                 {"surrogate_answers", sr.surrogate},
                 {"older", sr.older},
                 {"undated", sr.undated},
                 {"capped", sr.capped},
                 {"max_traces", a.selection.max_traces}};
    if (a.selection.since_ms != INT64_MIN) selection["since_ms"] = a.selection.since_ms;
  }
  if (set.labels.size() < 2 && sr.kept < sr.read)
    throw InputError(fmt::format(
        "{}: the {} traces left to fit on have {} label ({}); a classifier needs at least two - "
        "{}",
        names, set.size(), set.labels.size(), sr.summary(a.selection),
        sr.capped > 0 ? "raise --max-traces" : "widen --window or add traces"));
  if (set.labels.size() < 2)
    throw InputError(fmt::format(
        "{}: all {} traces have the same label \"{}\"; a classifier needs at least two labels to "
        "choose between - check that the label field holds the LLM's label for each trace",
        names, set.size(), set.labels.empty() ? std::string() : set.labels.front()));
  FitResult result = fit_selected(set, a, sr, progress);
  nlohmann::json paths = nlohmann::json::array();
  const size_t files = a.traces.size() - (a.store_path.empty() ? 0 : 1);
  for (size_t i = 0; i < files; ++i)
    paths.push_back(std::filesystem::absolute(a.traces[i]).string());
  result.manifest["traces"] = {{"path", paths.empty() ? nlohmann::json() : paths.front()},
                               {"paths", paths},
                               {"accepted", report.accepted},
                               {"skipped", report.skipped}};
  if (!selection.is_null()) result.manifest["traces"]["selection"] = selection;
  if (!a.store_path.empty())
    result.manifest["traces"]["store"] = {
        {"path", std::filesystem::absolute(a.store_path).string()}, {"rows", a.store_rows}};
  const FitOutcome out = write_policy_version(a, set, result, progress);
  progress.finish();
  if (a.json) {
    std::cout << result.manifest.dump(2) << "\n";
  } else if (!a.quiet) {
    print_fit_summary(std::cout, result.manifest, result.frontier);
    std::cout << "\nwrote version " << out.version << " of " << a.out << "/ (versions/"
              << out.version << "/: manifest.json, model.bin, frontier.json"
              << (a.no_report ? "" : ", qualitative_report.json, report.html") << ")\n";
    if (out.activated)
      std::cout << "version " << out.version << " is active: " << out.reason << "\n";
    else
      std::cout << "version " << out.version << " is NOT active, "
                << (out.active > 0 ? "version " + std::to_string(out.active) + " stays active"
                                   : std::string("no version is active"))
                << ": " << out.reason << "\n  activate it anyway with `tracer rollback " << a.out
                << " " << out.version << "`\n";
  }
  return out;
}

void add_version_options(CLI::App* sub, FitRun& run, std::string& promote) {
  sub->add_option("--promote", promote,
                  "When the new version becomes the active one. auto: when it certifies and, "
                  "against an active version certified at the same target, answers at least its "
                  "share of traffic less --max-coverage-drop (a version certifying nothing never "
                  "replaces one that certifies); always; never (activate later with `tracer "
                  "rollback`)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "always", "never"}));
  sub->add_option("--max-coverage-drop", run.promotion.max_coverage_drop,
                  "--promote auto: largest drop in the share of traffic answered, versus the "
                  "active version at the same target, that still activates the new version")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  sub->add_option("--keep", run.keep,
                  "Versions kept in the folder (the newest ones; the active version is never "
                  "removed)")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{100000}));
}

void add_selection_options(CLI::App* sub, FitRun& run) {
  sub->add_option("--max-traces", run.selection.max_traces,
                  "Fit on at most this many traces (0: all): a uniform random sample (seeded), "
                  "drawn in proportion among the traces that stand for traffic and the recorded "
                  "deferred ones, so both keep their share of the mix (docs/versions.md, "
                  "\"Windows and caps\")")
      ->capture_default_str()
      ->check(CLI::Range(size_t{0}, size_t{1} << 40));
}

Command add_fit_command(CLI::App& app) {
  auto args = std::make_shared<FitArgs>();
  auto* sub = app.add_subcommand(
      "fit",
      "Fit surrogates on LLM traces, choose a routing method on the select split and certify it "
      "on the calibrate split.\nExit code 0: a policy was certified; 4: nothing could be "
      "certified (the policy defers everything, see manifest.json gate.refusal); 5: certified, "
      "but not activated (--promote).\nEach fit writes a new version DIR/versions/N/ and "
      "activates it by --promote: a refused fit never replaces an active policy that certifies "
      "(see `tracer versions`, `tracer rollback`).");
  sub->add_option("traces", args->run.traces,
                  "Trace file(s): JSONL (one {\"input\":..., \"teacher\":...} object per line) or "
                  "CSV with a header row; several files are read as one set")
      ->required()
      ->check(CLI::ExistingFile);
  sub->add_option("-o,--out", args->run.out, "Policy folder to write")->capture_default_str();
  sub->add_option("-t,--target", args->run.fit.target,
                  "Target agreement alpha with the LLM on handled traffic")
      ->capture_default_str()
      ->check(CLI::Range(0.5, 0.9999));
  sub->add_option("--delta", args->run.fit.delta,
                  "Allowed failure probability of the guarantee (confidence = 1 - delta)")
      ->capture_default_str()
      ->check(CLI::Range(1e-6, 0.5));
  sub->add_option("--min-coverage", args->run.fit.min_coverage,
                  "Refuse to deploy when the certified share of traffic is below this")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  sub->add_option("--min-rows", args->run.fit.min_rows,
                  "Fewest accepted calibration rows a threshold is tested on")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  std::string zoo_help = "Comma-separated surrogates to try (default: ";
  for (const auto& n : default_zoo(false)) zoo_help += n + ",";
  zoo_help.back() = ')';
  zoo_help += "; all: ";
  for (const auto& n : surrogate_names()) zoo_help += n + " ";
  sub->add_option("--zoo", args->zoo, zoo_help);
  sub->add_flag("--trees", args->run.fit.trees,
                "Also try gradient-boosted trees (xgboost; slower)");
  sub->add_option("--ensemble", args->run.fit.ensemble_members,
                  "Also try the average of the N best candidates by select agreement (0: off)")
      ->capture_default_str()
      ->check(CLI::Range(0, 8));
  sub->add_option("--methods", args->methods, "Routing methods to consider: global,l2d,rsb")
      ->capture_default_str();
  sub->add_option("--split", args->split,
                  "Shares of distinct inputs TRAIN,SELECT,CALIBRATE, summing to 1, with one select "
                  "share instead of cross-fitting (default: chosen from the number of distinct "
                  "inputs: up to 4,000, calibrate 30% and 5-fold cross-fitting of the rest; "
                  "above, 0.6,0.15,0.25)")
      ->delimiter(',')
      ->expected(3);
  sub->add_option("--folds", args->run.fit.folds,
                  "Cross-fitting folds for choosing the plan (0: automatic; 1: one select share)")
      ->capture_default_str()
      ->check(CLI::Range(0, 20));
  sub->add_option("--seed", args->run.fit.seed, "Random seed (splits, training)")
      ->capture_default_str();
  args->run.fit.threads = std::max(1u, std::thread::hardware_concurrency());
  sub->add_option("--threads", args->run.fit.threads, "Worker threads")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  sub->add_option("--min-per-label", args->run.fit.min_per_label,
                  "Labels with fewer distinct training inputs than this are not answered: inputs "
                  "predicted as one are deferred (reason rare_label); never an error")
      ->capture_default_str();
  sub->add_flag("--no-ood", args->no_ood, "Disable the out-of-distribution gate");
  sub->add_option("--ood-quantile", args->run.fit.ood_quantile,
                  "Share of in-distribution (select) inputs the OOD gate may flag; higher "
                  "defers more unusual inputs")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 0.5));
  sub->add_option("--memory", args->memory,
                  "Memory tier: answer requests the traces already hold with the LLM's remembered "
                  "label, certified on held-out repeats with a share of --delta (auto: on when the "
                  "traces repeat enough to test it; off: never)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "off"}));
  sub->add_option("--memory-holdout", args->run.fit.memory.holdout,
                  "Share of traces held out to test the remembered answers")
      ->capture_default_str()
      ->check(CLI::Range(0.01, 0.9));
  sub->add_option("--memory-delta-share", args->run.fit.memory.delta_share,
                  "Share of --delta the memory tier spends when active (the surrogate gate gets "
                  "the rest)")
      ->capture_default_str()
      ->check(CLI::Range(0.01, 0.99));
  sub->add_option("--memory-max-entries", args->run.fit.memory.max_entries,
                  "Size cap of the memory table: the most-logged inputs are kept")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{100000000}));
  add_version_options(sub, args->run, args->promote);
  add_selection_options(sub, args->run);
  sub->add_flag("--skip-invalid", args->run.skip_invalid,
                "Skip invalid trace lines (reporting how many) instead of rejecting the file");
  sub->add_flag("--learning-curve", args->run.learning_curve,
                "Also refit on 10%..90% of the traces to show whether more traces would raise "
                "coverage (slow: 9 extra fits)");
  sub->add_flag("--no-report", args->run.no_report,
                "Do not write qualitative_report.json and report.html");
  sub->add_flag("-q,--quiet", args->run.quiet, "No progress or summary output");
  sub->add_flag("--json", args->run.json, "Print the manifest as JSON instead of the summary");
  return {sub, [args] { return run_fit(*args); }};
}

}  // namespace tracer::cli
