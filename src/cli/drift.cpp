// `tracer drift DIR -i FILE`: does new traffic still look like the traffic the policy was
// certified on? Routes the file's texts and compares the stage-1 acceptor scores with the
// calibrate split's (label-free); when the lines carry the LLM's labels, also measures agreement
// on what the policy handles.
#include "runtime/drift.hpp"

#include <fmt/format.h>

#include <fstream>
#include <iostream>

#include "cli/commands.hpp"
#include "cli/input_lines.hpp"
#include "gate/bounds.hpp"
#include "runtime/router.hpp"
#include "util/error.hpp"

namespace tracer::cli {
namespace {

struct DriftArgs {
  std::string policy;
  std::string input;
  DriftOptions options = kFileDriftOptions;
  bool json = false;
  bool fail_on_drift = false;
};

constexpr int kExitDrift = 5;

int run_drift(const DriftArgs& a) {
  Router router = Router::load(a.policy);
  const DriftReference ref = DriftReference::from_manifest(router.manifest());
  if (ref.empty())
    throw InputError(a.policy +
                     " has no drift reference (fitted by an older tracer); refit it "
                     "with `tracer fit`");
  RouteScratch scratch = router.make_scratch();
  DriftSample sample;
  size_t labelled = 0, handled_labelled = 0, agree = 0, remembered = 0, not_traffic = 0;
  for_each_input_line(a.input, [&](InputLine&& l, size_t) {
    // Like with like: the calibrate split is a sample of traffic, so only rows that are one
    // (not the deferred requests a trace store records at full rate) are compared.
    if (!l.represents_traffic) {
      ++not_traffic;
      return;
    }
    RouteResult r = router.route(l.text, scratch);
    sample.add(r);  // memory answers are not scored, so not in the sample
    remembered += r.stage == 0;
    if (!l.teacher) return;
    ++labelled;
    if (!r.handled) return;
    ++handled_labelled;
    agree += router.label_name(r.label) == *l.teacher;
  });
  const size_t lines = sample.scores.size();
  if (lines == 0 && remembered > 0)
    throw InputError("every text of " + a.input + " (" + std::to_string(remembered) +
                     ") is answered from the memory tier; the drift check compares the "
                     "surrogate's scores and has none to compare");
  if (lines == 0 && not_traffic > 0)
    throw InputError(
        "all " + std::to_string(not_traffic) + " rows of " + a.input +
        " are trace-store rows outside the traffic sample (deferred requests, recorded at full "
        "rate, or handled ones not audited): they are not a sample of traffic, so comparing them "
        "with the calibrate split would report drift that is not there. Run `tracer serve "
        "--audit-share R` so the proxy marks a uniform sample (\"sampled\": true), or check a "
        "file of texts sampled from traffic (docs/trace_store.md, \"Which traces certify a "
        "refit\")");
  if (lines == 0) throw InputError(a.input + " holds no texts");
  DriftReport rep = compare_drift(ref, sample, a.options);

  const auto& gate = router.manifest()["gate"];
  const double target = gate.value("target", 0.0), delta = gate.value("delta", 0.05);
  nlohmann::json out = rep.to_json();
  out["policy"] = a.policy;
  out["input"] = a.input;
  out["scored_texts"] = lines;
  out["memory_answers"] = remembered;     // routed from memory: not scored, not in the KS test
  out["not_traffic_rows"] = not_traffic;  // store rows outside the traffic sample: left out
  if (labelled > 0) {
    const int n = static_cast<int>(handled_labelled), k = static_cast<int>(agree);
    nlohmann::json lab{{"labelled_rows", labelled},
                       {"handled_rows", handled_labelled},
                       {"agreeing_rows", agree},
                       {"target", target}};
    if (n > 0) {
      lab["agreement"] = double(k) / n;
      lab["lower_bound"] = clopper_pearson_lower(n, k, 1 - delta);
      lab["upper_bound"] = clopper_pearson_upper(n, k, 1 - delta);
    }
    out["labels"] = lab;
  }
  if (a.json) {
    std::cout << out.dump(2) << "\n";
  } else {
    std::cout << fmt::format("Drift check: {} texts from {} against the policy in {}{}\n", lines,
                             a.input, a.policy,
                             remembered ? fmt::format(" ({} more answered from memory: not "
                                                      "scored; the label agreement below "
                                                      "includes them)",
                                                      remembered)
                                        : std::string());
    if (not_traffic > 0)
      std::cout << fmt::format(
          "  left out {} trace-store rows outside the traffic sample (deferred requests and "
          "unaudited handled ones are not a sample of traffic; \"sampled\" rows are kept)\n",
          not_traffic);
    std::cout << fmt::format(
        "  stage-1 acceptor score: median {:.4f} (calibrate {:.4f}); one-sided KS D = {:.4f}, "
        "p = {:.2g}\n",
        rep.live_median, rep.reference_median, rep.ks, rep.p_value);
    std::cout << fmt::format(
        "  handled {:.1f}% (certified on calibrate {:.1f}%), out of distribution {:.1f}% "
        "(calibrate {:.1f}%)\n",
        100 * rep.live_handled_share, 100 * rep.reference_handled_share, 100 * rep.live_ood_share,
        100 * rep.reference_ood_share);
    std::cout << "  " << rep.message << "\n";
    if (out.contains("labels")) {
      const auto& l = out["labels"];
      if (l.contains("agreement"))
        std::cout << fmt::format(
            "  labels in the file: agreement on handled texts {:.4f} ({} of {}; {:g}% bounds "
            "{:.4f} to {:.4f}) vs target {:.4f}{}\n",
            l["agreement"].get<double>(), agree, handled_labelled, 100 * (1 - delta),
            l["lower_bound"].get<double>(), l["upper_bound"].get<double>(), target,
            l["upper_bound"].get<double>() < target ? ": BELOW the target" : "");
      else
        std::cout << "  labels in the file: none of the labelled texts was handled\n";
    }
  }
  return rep.drift && a.fail_on_drift ? kExitDrift : 0;
}

}  // namespace

Command add_drift_command(CLI::App& app) {
  auto args = std::make_shared<DriftArgs>();
  auto* sub = app.add_subcommand(
      "drift",
      "Check whether new traffic still looks like the traces a policy was certified on. Routes "
      "the texts of a JSONL file and compares the stage-1 acceptor scores with the calibrate "
      "split's (one-sided Kolmogorov-Smirnov: do the new texts score lower?), and the handled "
      "and out-of-distribution shares. Needs no labels; if lines carry the LLM's label "
      "(\"teacher\" or \"label\"), also prints the agreement on handled texts with its bounds. "
      "Drift is a warning: agreement can only be proven below the target with labels.");
  sub->add_option("policy", args->policy, "Policy folder written by `tracer fit`")
      ->required()
      ->check(CLI::ExistingDirectory);
  sub->add_option("-i,--input", args->input,
                  "JSONL file of new traffic: {\"input\": ...} objects (optional \"teacher\") "
                  "or JSON strings, one per line; trace files work as they are")
      ->required()
      ->check(CLI::ExistingFile);
  sub->add_option("--level", args->options.level, "p-value below which drift is reported")
      ->capture_default_str()
      ->check(CLI::Range(1e-12, 0.5));
  sub->add_option("--min-rows", args->options.min_rows, "Fewest texts for a drift check")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000000));
  sub->add_flag("--json", args->json, "Print the report as JSON");
  sub->add_flag("--fail-on-drift", args->fail_on_drift,
                "Exit with code 5 when drift is detected (for CI and cron jobs)");
  return {sub, [args] { return run_drift(*args); }};
}

}  // namespace tracer::cli
