// Placeholder: `tracer serve` is being built (owned by its own change); registered so the CLI links.
#include "cli/commands.hpp"
#include "util/error.hpp"

namespace tracer::cli {

Command add_serve_command(CLI::App& app) {
  auto* sub = app.add_subcommand("serve", "(not available yet)");
  return {sub, [] () -> int { throw InputError("tracer serve is not available in this build yet"); }};
}

}  // namespace tracer::cli
