// `tracer scan TRACES...`: what could a policy certify now, and with 2x, 5x, 10x the traces?
#include "scan/scan.hpp"

#include <unistd.h>

#include <iostream>
#include <thread>

#include "cli/commands.hpp"
#include "io/traces.hpp"
#include "models/surrogate.hpp"
#include "util/error.hpp"

namespace tracer::cli {
namespace {

struct ScanArgs {
  std::vector<std::string> traces;
  ScanOptions scan;
  bool skip_invalid = false;
  bool quiet = false;
  bool json = false;
  size_t max_labels = 12;
};

int run_scan(ScanArgs& a) {
  Progress progress(!a.quiet, 3, ::isatty(STDERR_FILENO));
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
  if (set.size() == 0) throw InputError("no traces in " + names);
  ScanResult r = scan_traces(set, a.scan, progress);
  if (a.json)
    std::cout << r.to_json().dump(2) << "\n";
  else if (!a.quiet)
    std::cout << r.to_text(a.max_labels);
  return 0;
}

}  // namespace

Command add_scan_command(CLI::App& app) {
  auto args = std::make_shared<ScanArgs>();
  auto* sub = app.add_subcommand(
      "scan",
      "Day-one scan: estimate from the traces you have what a policy could certify now at each "
      "target, how that would grow with 2x, 5x, 10x the traces, and which labels need more "
      "traces. Writes nothing; takes seconds (it refits a fast surrogate on 25%, 50% and 100% "
      "of the distinct inputs, a few seeds each).\n\n"
      "What the numbers mean:\n"
      "  coverage   the share of traffic a policy fit with `tracer fit --target T` would "
      "certify\n"
      "             (answer itself with agreement >= T, with probability >= 1 - delta); the rest "
      "goes to the LLM.\n"
      "  fit now    what the full-size refits actually certified (median, min-max over seeds).\n"
      "  now, Nx    estimates: median and interval (--level, default 80%) of the certified "
      "coverage\n"
      "             a fit on that many traces of the same kind would reach. The interval "
      "covers both\n"
      "             how far the learning curve could flatten or keep rising and the luck of "
      "the calibrate draw.\n"
      "  agreement  how often the surrogate's answer equals the LLM's on traces it never saw.\n"
      "  labels     labels whose held-out agreement is below --target, with the traces each "
      "would need\n"
      "             if its errors fall like the overall error ('unlikely': not within 100x).\n"
      "Every value is a share in [0, 100%]. Exit code 0 when the scan ran, 2 for bad input.");
  sub->add_option("traces", args->traces,
                  "Trace file(s): JSONL ({\"input\":..., \"teacher\":...} per line) or CSV with a "
                  "header row; several files are read as one set")
      ->required()
      ->check(CLI::ExistingFile);
  sub->add_option("--targets", args->scan.targets,
                  "Targets (agreement alpha) to estimate coverage at, comma-separated")
      ->delimiter(',')
      ->capture_default_str()
      ->check(CLI::Range(0.5, 0.9999));
  sub->add_option("-t,--target", args->scan.target,
                  "Headline target: the verdict and which labels are below it")
      ->capture_default_str()
      ->check(CLI::Range(0.5, 0.9999));
  sub->add_option("--multiples", args->scan.multiples,
                  "Trace counts to extrapolate to, as multiples of the traces read")
      ->delimiter(',')
      ->capture_default_str()
      ->check(CLI::Range(1.01, 1000.0));
  sub->add_option("--delta", args->scan.delta,
                  "Failure probability of the guarantee, as in `tracer fit`")
      ->capture_default_str()
      ->check(CLI::Range(1e-6, 0.5));
  std::string zoo_help =
      "Comma-separated surrogates to refit (default linear_svm: fast; the whole zoo of `tracer "
      "fit` usually certifies a few points more but takes minutes). Known: ";
  for (const auto& n : surrogate_names()) zoo_help += n + " ";
  sub->add_option("--zoo", args->scan.zoo, zoo_help)->delimiter(',');
  sub->add_option("--shares", args->scan.shares,
                  "Shares of the distinct inputs to refit on (100% is always added)")
      ->delimiter(',')
      ->capture_default_str()
      ->check(CLI::Range(0.01, 1.0));
  sub->add_option("--seeds", args->scan.seeds, "Refits per share (different random shares/splits)")
      ->capture_default_str()
      ->check(CLI::Range(1, 20));
  sub->add_option("--level", args->scan.level, "Coverage of every interval (0.8: 10th-90th pct)")
      ->capture_default_str()
      ->check(CLI::Range(0.51, 0.99));
  sub->add_option("--min-per-label", args->scan.min_per_label,
                  "Labels with fewer traces are left out of the refits and listed as needing "
                  "traces")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  sub->add_option("--seed", args->scan.seed, "Random seed (shares, splits, simulation)")
      ->capture_default_str();
  args->scan.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  sub->add_option("--threads", args->scan.threads, "Refits run in parallel")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  sub->add_option("--labels", args->max_labels, "Labels listed in the text output")
      ->capture_default_str();
  sub->add_flag("--skip-invalid", args->skip_invalid,
                "Skip invalid trace lines (reporting how many) instead of rejecting the file");
  sub->add_flag("-q,--quiet", args->quiet, "No progress or text output");
  sub->add_flag("--json", args->json, "Print the scan as JSON instead of the text table");
  return {sub, [args] { return run_scan(*args); }};
}

}  // namespace tracer::cli
