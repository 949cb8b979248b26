#include "cli/commands.hpp"
namespace tracer::cli {
Command add_fit_command(CLI::App& app) {
  auto* sub = app.add_subcommand("fit", "Fit a routing policy from a trace file");
  return {sub, [] { return 0; }};
}
}  // namespace tracer::cli
