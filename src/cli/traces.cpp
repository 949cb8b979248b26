// Placeholder: `tracer traces` is being built (owned by its own change); registered so the CLI links.
#include "cli/commands.hpp"
#include "util/error.hpp"

namespace tracer::cli {

Command add_traces_command(CLI::App& app) {
  auto* sub = app.add_subcommand("traces", "(not available yet)");
  return {sub, [] () -> int { throw InputError("tracer traces is not available in this build yet"); }};
}

}  // namespace tracer::cli
