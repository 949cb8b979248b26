// Placeholder: `tracer report` is being built (owned by its own change); registered so the CLI links.
#include "cli/commands.hpp"
#include "util/error.hpp"

namespace tracer::cli {

Command add_report_command(CLI::App& app) {
  auto* sub = app.add_subcommand("report", "(not available yet)");
  return {sub, [] () -> int { throw InputError("tracer report is not available in this build yet"); }};
}

}  // namespace tracer::cli
