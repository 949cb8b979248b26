// `tracer` command line: parses arguments and dispatches to one file per command.
#include <CLI/CLI.hpp>
#include <iostream>

#include "cli/commands.hpp"
#include "util/error.hpp"

int main(int argc, char** argv) {
  CLI::App app{
      "tracer — learn a cheap surrogate from an LLM's classification traces and certify where\n"
      "it can answer in the LLM's place (agreement >= target with probability >= 1 - delta)."};
  app.set_version_flag("--version", std::string("tracer ") + TRACER_VERSION);
  app.require_subcommand(1);
  auto commands = tracer::cli::register_commands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version exit 0; every usage error (unknown flag, bad or out-of-range value,
    // missing argument) exits 2, as docs/usage.md promises, with CLI11's message and a hint.
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  try {
    for (auto& c : commands)
      if (c.app->parsed()) return c.run();
    return 1;
  } catch (const tracer::InputError& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  } catch (const tracer::FormatError& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 3;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
