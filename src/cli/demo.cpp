// `tracer demo`: the whole story offline on the shipped Banking77 traces.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <iostream>

#include "cli/commands.hpp"
#include "cli/fit.hpp"
#include "cli/summary.hpp"
#include "fit/fitter.hpp"
#include "report/qualitative.hpp"
#include "runtime/drift.hpp"
#include "runtime/router.hpp"
#include "util/error.hpp"

namespace tracer::cli {
namespace {

struct DemoArgs {
  std::string train = "data/banking77/train.jsonl";
  std::string test = "data/banking77/test.jsonl";
  std::string out = ".tracer-demo";
  double target = 0.95;
  double price = 0.002;
  double volume = 100000;
  int examples = 3;
};

int run_demo(const DemoArgs& a) {
  std::cout << "tracer demo: Banking77 (77 intents) traces, teacher labels as the 'LLM'.\n"
            << "Train traces: " << a.train << "\nFresh traffic: " << a.test << "\n\n";
  Progress progress(true, 6, ::isatty(STDERR_FILENO));
  progress.step("reading " + a.train);
  TraceSet train = read_traces(a.train);
  FitOptions fo;
  fo.target = a.target;
  FitResult fit = fit_policy(train, fo, progress);
  fit.manifest["traces"] = {{"path", a.train}, {"accepted", train.size()}, {"skipped", 0}};
  FitRun run;
  run.out = a.out;
  run.fit = fo;
  run.quiet = true;
  run.promotion.mode = PromotionRule::Mode::kAlways;  // the demo shows the fit it just made
  write_policy_version(run, train, fit, progress);

  print_fit_summary(std::cout, fit.manifest, fit.frontier);
  std::cout << "\n";
  print_labels(std::cout, fit.manifest, 5);

  // Live routing through the router loaded back from disk, exactly as `tracer serve` would.
  Router router = Router::load(a.out);
  RouteScratch scratch = router.make_scratch();
  TraceSet test = read_traces(a.test);
  size_t handled = 0, agree = 0;
  std::vector<double> micros;
  std::vector<std::pair<const Trace*, RouteResult>> shown_h, shown_d;
  DriftSample drift_sample;
  for (const auto& t : test.traces) {
    auto t0 = std::chrono::steady_clock::now();
    RouteResult r = router.route(t.input, scratch);
    micros.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    drift_sample.add(r);
    if (r.handled) {
      ++handled;
      agree += router.label_name(r.label) == t.teacher;
    }
    auto& bucket = r.handled ? shown_h : shown_d;
    // Spread the examples over the (label-grouped) file.
    if (bucket.size() < static_cast<size_t>(a.examples) &&
        (&t - test.traces.data()) % 997 < (r.handled ? 1 : 40))
      bucket.emplace_back(&t, r);
  }
  std::sort(micros.begin(), micros.end());
  const double coverage = test.size() ? double(handled) / test.size() : 0;
  std::cout << "\nLive routing of " << test.size() << " fresh inputs (test file):\n";
  std::cout << fmt::format(
      "  handled {:.1f}%  agreement on handled {}  p50 {:.1f} us  p99 {:.1f} us\n", coverage * 100,
      handled ? fmt::format("{:.4f}", double(agree) / handled) : "-", micros[micros.size() / 2],
      micros[micros.size() * 99 / 100]);
  const DriftReport drift = compare_drift(DriftReference::from_manifest(router.manifest()),
                                          drift_sample, kFileDriftOptions);
  std::cout << "  drift check (no labels needed; `tracer drift`): " << drift.message << "\n";
  auto show = [&](const char* title, auto& list) {
    std::cout << "  " << title << ":\n";
    for (auto& [t, r] : list) {
      std::string text = t->input.substr(0, 70);
      std::replace(text.begin(), text.end(), '\n', ' ');
      std::cout << fmt::format(
          "    \"{}\"\n      -> {} (p={:.2f}, score={:.2f}){}\n", text, router.label_name(r.label),
          r.probability, r.accept_score,
          r.handled ? ""
                    : "  deferred: " + reason_name(r.reason) + " (LLM said " + t->teacher + ")");
    }
  };
  show("handled by the surrogate", shown_h);
  show("deferred to the LLM", shown_d);

  const double saved_calls = a.volume * coverage;
  std::cout << fmt::format(
      "\nCost projection: {:.0f} calls/day at ${:.4f}/call -> {:.0f} answered locally, "
      "${:.2f}/day (${:.0f}/month) saved.\n",
      a.volume, a.price, saved_calls, saved_calls * a.price, saved_calls * a.price * 30);
  std::cout << "Policy and report written to " << a.out << "/ (open " << a.out
            << "/report.html)\nTry: tracer predict " << a.out
            << " \"I still have not received my new card\"\n";
  return 0;
}

}  // namespace

Command add_demo_command(CLI::App& app) {
  auto args = std::make_shared<DemoArgs>();
  auto* sub = app.add_subcommand(
      "demo",
      "Offline demo: fit the shipped Banking77 traces, print the certified policy and frontier, "
      "route fresh inputs live and project the cost saved.");
  sub->add_option("--train", args->train, "Trace file to fit")
      ->capture_default_str()
      ->check(CLI::ExistingFile);
  sub->add_option("--test", args->test, "Fresh traffic to route live")
      ->capture_default_str()
      ->check(CLI::ExistingFile);
  sub->add_option("-o,--out", args->out, "Policy folder to write")->capture_default_str();
  sub->add_option("-t,--target", args->target, "Target agreement alpha")
      ->capture_default_str()
      ->check(CLI::Range(0.5, 0.9999));
  sub->add_option("--price-per-call", args->price, "LLM price per call (USD) for the projection")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1e6));
  sub->add_option("--daily-volume", args->volume, "Calls per day for the projection")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1e15));
  sub->add_option("--examples", args->examples, "Handled/deferred examples to show")
      ->capture_default_str();
  return {sub, [args] { return run_demo(*args); }};
}

}  // namespace tracer::cli
