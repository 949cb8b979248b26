#include "cli/commands.hpp"
namespace tracer::cli {
Command add_predict_command(CLI::App& app) {
  auto* sub = app.add_subcommand("predict", "Label texts with a fitted policy");
  return {sub, [] { return 0; }};
}
}  // namespace tracer::cli
