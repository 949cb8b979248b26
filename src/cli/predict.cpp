// `tracer predict DIR [TEXT | --input FILE]`: label texts with a fitted policy.
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "cli/input_lines.hpp"
#include "runtime/router.hpp"
#include "util/error.hpp"

namespace tracer::cli {
namespace {

struct PredictArgs {
  std::string policy = ".tracer";
  std::vector<std::string> texts;
  std::string input;
  std::string output;
};

nlohmann::json decision_json(const Router& router, const RouteResult& r) {
  nlohmann::json j{{"label", router.label_name(r.label)},
                   {"probability", r.probability},
                   {"decision", r.handled ? "handled" : "deferred"},
                   {"accept_score", r.accept_score}};
  if (std::string why = decision_reason(r); !why.empty()) j["reason"] = why;
  if (r.stage == 2) j["stage"] = r.stage;
  return j;
}

int run_predict(const PredictArgs& a) {
  if (a.texts.empty() == a.input.empty())
    throw InputError("give either TEXT arguments or --input FILE (not both, not neither)");
  Router router = Router::load(a.policy);
  RouteScratch scratch = router.make_scratch();
  std::ofstream file;
  std::ostream* out = &std::cout;
  if (!a.output.empty()) {
    file.open(a.output);
    if (!file) throw InputError("cannot write " + a.output);
    out = &file;
  }
  auto emit = [&](std::string_view text, const nlohmann::json& id) {
    nlohmann::json j = decision_json(router, router.route(text, scratch));
    if (!id.is_null()) j["id"] = id;
    *out << j.dump() << "\n";
  };
  if (!a.input.empty()) {
    for_each_input_line(a.input, [&](InputLine&& l, size_t) { emit(l.text, l.id); });
  } else {
    for (const auto& t : a.texts) emit(t, nullptr);
  }
  out->flush();
  if (!*out) throw InputError("failed writing the output");
  return 0;
}

}  // namespace

Command add_predict_command(CLI::App& app) {
  auto args = std::make_shared<PredictArgs>();
  auto* sub = app.add_subcommand(
      "predict",
      "Route texts through a fitted policy. Prints one JSON object per text: label, probability, "
      "decision (handled: the surrogate answers; deferred: ask the LLM), accept_score, reason.");
  sub->add_option("policy", args->policy, "Policy folder written by `tracer fit`")
      ->required()
      ->check(CLI::ExistingDirectory);
  sub->add_option("text", args->texts, "Text(s) to route");
  sub->add_option("-i,--input", args->input,
                  "JSONL file to route, streamed in order: one {\"input\": ...} object (optional "
                  "\"id\" echoed back) or JSON string per line")
      ->check(CLI::ExistingFile);
  sub->add_option("-o,--output", args->output, "Write results here instead of stdout");
  return {sub, [args] { return run_predict(*args); }};
}

}  // namespace tracer::cli
