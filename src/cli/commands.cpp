#include "cli/commands.hpp"

namespace tracer::cli {

std::vector<Command> register_commands(CLI::App& app) {
  return {add_fit_command(app),   add_predict_command(app), add_demo_command(app),
          add_serve_command(app), add_traces_command(app),  add_report_command(app),
          add_drift_command(app), add_update_command(app),  add_scan_command(app)};
}

}  // namespace tracer::cli
