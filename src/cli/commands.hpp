#pragma once
// Each command lives in its own file (fit.cpp, predict.cpp, ...) and adds itself here.
#include <CLI/CLI.hpp>
#include <functional>
#include <vector>

namespace tracer::cli {

struct Command {
  CLI::App* app = nullptr;
  std::function<int()> run;  // runs with the options parsed into the command's own state
};

Command add_fit_command(CLI::App& app);
Command add_predict_command(CLI::App& app);
Command add_demo_command(CLI::App& app);
Command add_serve_command(CLI::App& app);     // serve.cpp
Command add_traces_command(CLI::App& app);    // traces.cpp
Command add_report_command(CLI::App& app);    // report.cpp
Command add_drift_command(CLI::App& app);     // drift.cpp
Command add_update_command(CLI::App& app);    // update.cpp
Command add_scan_command(CLI::App& app);      // scan.cpp
Command add_versions_command(CLI::App& app);  // versions.cpp
Command add_rollback_command(CLI::App& app);  // rollback.cpp
Command add_simulate_command(CLI::App& app);  // simulate.cpp

std::vector<Command> register_commands(CLI::App& app);

}  // namespace tracer::cli
