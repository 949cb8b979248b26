// `tracer report POLICY_DIR`: re-render report.html (or a terminal summary) from the policy
// folder's JSON files; --learning-curve re-reads the traces to add the learning curve.
#include <fmt/format.h>
#include <unistd.h>

#include <filesystem>
#include <iostream>
#include <thread>

#include "cli/commands.hpp"
#include "cli/summary.hpp"
#include "policy/versions.hpp"
#include "report/html.hpp"
#include "report/qualitative.hpp"
#include "util/error.hpp"

namespace tracer::cli {
namespace {

using nlohmann::json;

struct ReportArgs {
  std::string dir;
  std::string out;
  std::string traces;
  bool text = false;
  bool learning_curve = false;
  bool quiet = false;
};

std::string pct(const json& v) {
  return v.is_number() ? fmt::format("{:.1f}%", v.get<double>() * 100) : "-";
}

// Terminal version of the qualitative sections; the headline tables come from summary.hpp.
void print_text(std::ostream& os, const ReportInputs& in) {
  const json& m = in.manifest;
  const json h = report_headline(m, in.frontier.is_null() ? json::object() : in.frontier);
  os << h.value("verdict", "") << "\n  " << h.value("explanation", "") << "\n";
  if (!h.value("advice", std::string()).empty())
    os << "  What to do: " << h["advice"].get<std::string>() << "\n";
  os << "\n";
  print_policy(os, m);
  if (in.frontier.is_object()) {
    os << "\n";
    print_frontier(os, in.frontier);
  }
  if (m.contains("per_label")) {
    os << "\n";
    print_labels(os, m, 5);
  }
  const json& q = in.qualitative;
  if (!q.is_object()) {
    os << "\n(qualitative_report.json is missing: refit with `tracer fit` for confusions, "
          "deferral reasons and slices)\n";
    return;
  }
  if (q.contains("boundary_pairs")) {
    const json& b = q["boundary_pairs"];
    os << fmt::format("\nMost confused label pairs (held out; {} disagreements, {} answered):\n",
                      b.value("errors", 0), b.value("handled_errors", 0));
    for (const auto& p : b.value("pairs", json::array()))
      os << fmt::format("  {:<32} <-> {:<32} {:>5}  ({} / {}, {} answered)\n",
                        p.value("a", "").substr(0, 32), p.value("b", "").substr(0, 32),
                        p.value("count", 0), p.value("a_as_b", 0), p.value("b_as_a", 0),
                        p.value("handled", 0));
  }
  if (q.contains("defer_reasons")) {
    const json& d = q["defer_reasons"];
    os << fmt::format("\nWhy it defers ({} of {} held-out traces deferred):\n",
                      d.value("deferred", 0), d.value("rows", 0));
    for (const auto& r : d.value("reasons", json::array()))
      os << fmt::format("  {:<22} {:>6} {:>7}  {}\n", r.value("reason", ""), r.value("count", 0),
                        pct(r["share"]), r.value("description", ""));
    const json& lp = d.value("low_confidence_pairs", json::array());
    if (!lp.empty()) os << "  low confidence between:\n";
    for (size_t i = 0; i < lp.size() && i < 5; ++i)
      os << fmt::format("    {} <-> {}: {}\n", lp[i].value("a", ""), lp[i].value("b", ""),
                        lp[i].value("count", 0));
  }
  if (q.contains("slices")) {
    os << fmt::format("\nSlices (held out):\n  {:<44} {:>6} {:>9} {:>10} {:>10}\n", "slice", "rows",
                      "coverage", "agreement", "surrogate");
    for (const auto& s : q["slices"])
      os << fmt::format("  {:<44} {:>6} {:>9} {:>10} {:>10}\n", s.value("name", "").substr(0, 44),
                        s.value("rows", 0), pct(s["coverage"]), pct(s["agreement"]),
                        pct(s["surrogate_agreement"]));
  }
  if (q.contains("learning_curve")) {
    const json& c = q["learning_curve"];
    os << "\nLearning curve (certified coverage at the target by traces used):\n";
    for (const auto& p : c.value("points", json::array())) {
      if (p.contains("error")) {
        os << fmt::format("  {:>7} traces  refit failed: {}\n", p.value("traces", 0),
                          p.value("error", ""));
        continue;
      }
      os << fmt::format("  {:>7} traces  coverage {:>7}  surrogate agreement {:>7}{}\n",
                        p.value("traces", 0), pct(p["coverage"]), pct(p["surrogate_agreement"]),
                        p.value("deployed", false) ? "" : "  (refused)");
    }
    os << "  " << c.value("assessment", json::object()).value("message", "") << "\n";
  } else {
    os << "\n(learning curve not computed: add --learning-curve)\n";
  }
}

int run_report(const ReportArgs& a) {
  namespace fs = std::filesystem;
  ReportInputs in = load_report_inputs(a.dir);
  if (a.learning_curve) {
    std::string path = a.traces;
    if (path.empty()) path = in.manifest.value("/traces/path"_json_pointer, std::string());
    if (path.empty())
      throw InputError("the manifest does not record the traces file; pass --traces FILE");
    if (!fs::exists(path))
      throw InputError("traces file " + path + " (recorded in " + a.dir +
                       "/manifest.json) not "
                       "found; relative paths are relative to where `tracer fit` ran: pass "
                       "--traces FILE");
    const bool show = !a.quiet && ::isatty(STDERR_FILENO);
    ReadOptions ro;
    ro.skip_invalid = in.manifest.value("/traces/skipped"_json_pointer, 0) > 0;
    TraceSet set = read_traces(path, ro);
    std::vector<std::string> labels;
    for (const auto& l : in.manifest.value("labels", json::array())) labels.push_back(l);
    if (set.labels != labels)
      throw InputError(path + " does not have the labels of the policy in " + a.dir +
                       " (different trace file?); pass the file the policy was fit on with "
                       "--traces");
    const auto accepted = in.manifest.value("/traces/accepted"_json_pointer, size_t{0});
    if (accepted && accepted != set.size() && !a.quiet)
      std::cerr << "warning: " << path << " now holds " << set.size()
                << " traces; the policy was fit on " << accepted << "\n";
    ReportOptions o;
    const json recorded =
        in.qualitative.is_object() ? in.qualitative.value("fit_options", json()) : json();
    o.fit = fit_options_from(recorded, in.manifest,
                             in.frontier.is_null() ? json::object() : in.frontier);
    o.fit.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    if (show) o.note = [](const std::string& line) { std::cerr << line << "\n"; };
    const json per_label = in.qualitative.is_object() && in.qualitative.contains("per_label")
                               ? in.qualitative["per_label"]
                               : in.manifest.value("per_label", json::array());
    json curve = build_learning_curve(set, in.manifest, per_label, o);
    if (in.qualitative.is_object()) {
      in.qualitative["learning_curve"] = curve;
      write_file_atomic((fs::path(resolve_policy_dir(a.dir)) / "qualitative_report.json").string(),
                        in.qualitative.dump(1) + "\n");
    } else {
      in.qualitative = json{{"learning_curve", curve}};  // shown, not saved: the rest is missing
    }
  }
  if (a.text) print_text(std::cout, in);
  if (!a.text || !a.out.empty()) {
    // The active version's report (DIR/report.html links to it).
    const std::string out =
        a.out.empty() ? (fs::path(resolve_policy_dir(a.dir)) / "report.html").string() : a.out;
    write_file_atomic(out, render_report_html(in));
    if (!a.quiet) std::cerr << "wrote " << out << "\n";
  }
  return 0;
}

}  // namespace

Command add_report_command(CLI::App& app) {
  auto args = std::make_shared<ReportArgs>();
  auto* sub = app.add_subcommand(
      "report",
      "Render the policy's report (report.html: the guarantee in plain words, frontier, per-label "
      "coverage, confusions, why it defers, slices, a map of the traces) from the policy folder. "
      "Needs no traces unless --learning-curve.");
  sub->add_option("policy", args->dir, "Policy folder written by `tracer fit`")->required();
  sub->add_option("-o,--out", args->out, "HTML file to write (default: POLICY/report.html)");
  sub->add_flag("--text", args->text,
                "Print a terminal summary instead of writing HTML (HTML too if -o is given)");
  sub->add_flag("--learning-curve", args->learning_curve,
                "Refit on 10%..90% of the traces to show whether more traces would raise "
                "coverage (slow: nine fits); saved into qualitative_report.json");
  sub->add_option("--traces", args->traces,
                  "Trace file for --learning-curve (default: the path in manifest.json)")
      ->check(CLI::ExistingFile);
  sub->add_flag("-q,--quiet", args->quiet, "No progress or 'wrote' lines");
  return {sub, [args] { return run_report(*args); }};
}

}  // namespace tracer::cli
