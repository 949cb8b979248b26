#include "cli/commands.hpp"

#include <cmath>
#include <string>

namespace tracer::cli {
namespace {

// Every floating-point option (CLI11 names their type FLOAT) of `app` and its subcommands takes
// finite numbers only: CLI11 itself converts "nan" and "inf" to doubles, which then pass range
// checks written as `x < lo || x > hi` and end up in manifests as null.
void require_finite_numbers(CLI::App& app) {
  const CLI::Validator finite(
      [](std::string& value) -> std::string {
        try {
          size_t used = 0;
          const double v = std::stod(value, &used);
          if (!std::isfinite(v)) return "must be a finite number, got " + value;
        } catch (const std::out_of_range&) {
          return "must be a finite number, got " + value + " (out of range)";  // e.g. 1e400
        } catch (const std::exception&) {
          // Not a number at all: CLI11's own conversion reports it.
        }
        return {};
      },
      "");
  for (CLI::Option* o : app.get_options())
    if (o->get_type_name().find("FLOAT") != std::string::npos) o->check(finite);
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; }))
    require_finite_numbers(*sub);
}

}  // namespace

std::vector<Command> register_commands(CLI::App& app) {
  std::vector<Command> commands = {
      add_fit_command(app),      add_predict_command(app),  add_demo_command(app),
      add_serve_command(app),    add_traces_command(app),   add_report_command(app),
      add_drift_command(app),    add_update_command(app),   add_scan_command(app),
      add_versions_command(app), add_rollback_command(app), add_simulate_command(app)};
  require_finite_numbers(app);
  return commands;
}

}  // namespace tracer::cli
