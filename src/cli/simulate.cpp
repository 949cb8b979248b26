// `tracer simulate TRACES`: the flywheel replayed offline on a labelled trace file
// (sim/simulate.hpp): how coverage grows day by day, what the LLM calls cost, whether handled
// agreement stays at the target, and which versions were promoted and why.
#include "sim/simulate.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <thread>

#include "cli/commands.hpp"
#include "util/error.hpp"

namespace tracer::cli {
namespace {

struct SimulateArgs {
  std::string traces;
  SimulationOptions sim;
  std::vector<std::string> zoo;
  std::string json_out;
  bool quiet = false;
  bool skip_invalid = false;
};

void print_header(std::ostream& os, const SimulationOptions& o) {
  os << fmt::format("{:>4}  {:>7}  {:>7}  {:>8}  {:>9}  {:>7}  {:>9}  {:>6}  {}\n", "day", "served",
                    "traces", "traffic", "coverage", "agree", "LLM calls", "saved",
                    "end-of-day update");
  (void)o;
}

void print_day(std::ostream& os, const SimulatedDay& d, double target) {
  std::string update = d.certified
                           ? fmt::format("v{} answers {:.1f}%", d.version, 100 * d.version_share)
                           : fmt::format("v{} certified nothing", d.version);
  if (d.version == 0)
    update = d.reason;
  else
    update += (d.promoted ? ": promoted: " : ": not promoted: ") + d.reason;
  if (d.day == 0) {
    os << fmt::format("{:>4}  {:>7}  {:>7}  {:>8}  {:>9}  {:>7}  {:>9}  {:>6}  {}\n", 0, "-",
                      d.traces_before, "-", "-", "-", "-", "-", update);
    return;
  }
  const std::string agree =
      d.handled == 0 ? std::string("-")
                     : fmt::format("{:.3f}{}", d.agreement(), d.agreement() < target ? "!" : "");
  os << fmt::format("{:>4}  {:>7}  {:>7}  {:>8}  {:>8.1f}%  {:>7}  {:>9}  {:>5.1f}%  {}{}\n", d.day,
                    d.served_by ? "v" + std::to_string(d.served_by) : std::string("none"),
                    d.traces_before, d.traffic, 100 * d.coverage(), agree, d.llm_calls(),
                    d.traffic ? 100.0 * double(d.handled - d.audited) / double(d.traffic) : 0.0,
                    d.audit_tripped ? "[audit tripped] " : "", update);
}

int run_simulate(SimulateArgs& a) {
  a.sim.fit.zoo = a.zoo;
  ReadOptions ro;
  ro.skip_invalid = a.skip_invalid;
  const TraceSet data = read_traces(a.traces, ro);
  Progress progress(!a.quiet, a.sim.days + 1, ::isatty(STDERR_FILENO));
  if (!a.quiet)
    std::cout << fmt::format(
        "Simulating {} days of {} ({} traces, {} labels): {} seed traces, target {:g}, "
        "delta {:g}, audit share {:g}{}{}\n",
        a.sim.days, a.traces, data.size(), data.labels.size(), a.sim.seed_traces, a.sim.fit.target,
        a.sim.fit.delta, a.sim.audit_share,
        a.sim.window_days ? fmt::format(", window {} days", a.sim.window_days) : std::string(),
        a.sim.flip_labels
            ? fmt::format(", {} labels flip on day {}", a.sim.flip_labels, a.sim.flip_day)
            : std::string());
  bool header = false;
  const double target = a.sim.fit.target;
  SimulationResult r = simulate(data, a.sim, progress, [&](const SimulatedDay& d) {
    if (a.quiet) return;
    progress.finish();
    if (!header) print_header(std::cout, a.sim), header = true;
    print_day(std::cout, d, target);
    std::cout.flush();
  });
  size_t traffic = 0, handled = 0, agreed = 0, calls = 0, below = 0;
  for (const auto& d : r.days) {
    traffic += d.traffic;
    handled += d.handled;
    agreed += d.agreed;
    calls += d.llm_calls();
    below += d.handled > 0 && d.agreement() < target;
  }
  if (!a.quiet) {
    if (!r.flipped_labels.empty()) {
      std::cout << "flipped labels:";
      for (const auto& l : r.flipped_labels) std::cout << " " << l;
      std::cout << "\n";
    }
    std::cout << fmt::format(
        "total: {} requests, {:.1f}% handled at agreement {}, {} LLM calls ({:.1f}% saved); "
        "{} day(s) with handled agreement below the target {:g} ('!')\n",
        traffic, traffic ? 100.0 * double(handled) / double(traffic) : 0.0,
        handled ? fmt::format("{:.4f}", double(agreed) / double(handled)) : std::string("-"), calls,
        traffic ? 100.0 * (1 - double(calls) / double(traffic)) : 0.0, below, target);
  }
  if (!a.json_out.empty()) {
    nlohmann::json j = r.to_json(a.sim);
    j["traces"] = a.traces;
    const std::string tmp = a.json_out + ".tmp";
    {
      std::ofstream out(tmp);
      if (!out) throw InputError("cannot write " + tmp + "; check that the folder exists");
      out << j.dump(2) << "\n";
      if (!out) throw InputError("failed writing " + tmp);
    }
    std::error_code ec;
    std::filesystem::rename(tmp, a.json_out, ec);
    if (ec) throw InputError("cannot rename " + tmp + " to " + a.json_out + ": " + ec.message());
    if (!a.quiet) std::cout << "wrote " << a.json_out << "\n";
  }
  // As `tracer fit`: 4 when no version ever certified anything.
  for (const auto& d : r.days)
    if (d.certified) return 0;
  if (!a.quiet) std::cout << "no version certified anything: every request went to the LLM\n";
  return 4;
}

}  // namespace

Command add_simulate_command(CLI::App& app) {
  auto a = std::make_shared<SimulateArgs>();
  a->sim.fit.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  auto* sub = app.add_subcommand(
      "simulate",
      "Replay the flywheel offline on a labelled trace file (its labels play the LLM): day 0 "
      "fits on the first --seed-traces traces of the shuffled file; each following day the "
      "active policy routes that day's traffic, the deferred and audited requests get the "
      "file's label and become traces as `tracer serve --audit-share` records them, and an "
      "update at the end of the day refits and promotes as `tracer update` does. Prints a "
      "table per day: traces so far, coverage, agreement on handled traffic ('!' below the "
      "target), LLM calls and the share saved, the version promoted or kept and why. "
      "docs/simulate.md.");
  sub->add_option("traces", a->traces, "Labelled trace file (JSONL or CSV) to replay")
      ->required()
      ->check(CLI::ExistingFile);
  sub->add_option("--days", a->sim.days,
                  "Days of traffic after the seed (the rest of the file "
                  "is split evenly across them)")
      ->capture_default_str()
      ->check(CLI::Range(1, 3650));
  sub->add_option("--seed-traces", a->sim.seed_traces, "Traces of the day-0 fit")
      ->capture_default_str()
      ->check(CLI::Range(size_t{10}, size_t{1} << 40));
  sub->add_option("-t,--target", a->sim.fit.target, "Target agreement of every fit")
      ->capture_default_str()
      ->check(CLI::Range(0.5, 0.9999));
  sub->add_option("--delta", a->sim.fit.delta, "Allowed failure probability of every fit")
      ->capture_default_str()
      ->check(CLI::Range(1e-6, 0.5));
  sub->add_option("--audit-share", a->sim.audit_share,
                  "Share of handled requests shadow-audited (and of deferred ones marked as "
                  "part of the traffic sample): the traces that certify the refits")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  sub->add_option("--audit-min-rows", a->sim.audit_min_rows,
                  "Audited rows before the audit may trip")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  sub->add_option("--window-days", a->sim.window_days,
                  "Refit on the traces of the last N days only (the seed traces are day 0); 0: "
                  "all (as `tracer update --window`)")
      ->capture_default_str()
      ->check(CLI::Range(0, 3650));
  sub->add_flag("--window-after-trip", a->sim.window_after_trip,
                "Once the audit trips on day D, refit on the traces recorded from day D on only "
                "(as running `tracer update --window` after a trip: older labels may be stale)");
  sub->add_option("--max-traces", a->sim.max_traces, "Cap on traces per fit (0: none)")
      ->capture_default_str()
      ->check(CLI::Range(size_t{0}, size_t{1} << 40));
  sub->add_option("--max-coverage-drop", a->sim.promotion.max_coverage_drop,
                  "Promotion: largest drop in handled share versus the active version that "
                  "still promotes (as `tracer update`)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  sub->add_option("--flip-labels", a->sim.flip_labels,
                  "Stress test: from --flip-day on, the LLM answers this many labels (chosen "
                  "at random) as another of them, in a cycle")
      ->capture_default_str()
      ->check(CLI::Range(0, 100000));
  sub->add_option("--flip-day", a->sim.flip_day,
                  "First day of the flipped answers (default with --flip-labels: the middle "
                  "day, days / 2 + 1)")
      ->check(CLI::Range(1, 3650));
  sub->add_option("--zoo", a->zoo, "Comma-separated surrogates of every fit (default: fit's)")
      ->delimiter(',');
  sub->add_option("--seed", a->sim.seed, "Random seed (shuffle, audit coin, flip)")
      ->capture_default_str();
  sub->add_option("--threads", a->sim.fit.threads, "Worker threads of each fit")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  sub->add_option("--json", a->json_out, "Also write the per-day results as JSON here");
  sub->add_flag("--skip-invalid", a->skip_invalid, "Skip invalid trace lines");
  sub->add_flag("-q,--quiet", a->quiet, "No table (use with --json)");
  return {sub, [a] {
            a->sim.fit.seed = a->sim.seed;
            if (a->sim.flip_labels > 0 && a->sim.flip_day == 0)
              a->sim.flip_day = a->sim.days / 2 + 1;
            return run_simulate(*a);
          }};
}

}  // namespace tracer::cli
