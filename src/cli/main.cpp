// `tracer` command line: parses arguments and dispatches to one file per command.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "cli/commands.hpp"
#include "util/error.hpp"

namespace {

// Edit distance between two short words (insertions, deletions, substitutions).
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1])});
      diagonal = up;
    }
  }
  return row[b.size()];
}

// "unknown command 'fitt'; did you mean 'fit'?" when `word` (the first argument) names no
// subcommand of `app`; "" when it does or is an option.
std::string unknown_command(const CLI::App& app, std::string_view word) {
  if (word.empty() || word[0] == '-') return {};
  std::string best;
  size_t best_distance = 3;  // suggest only close spellings
  std::string names;
  for (const CLI::App* sub : app.get_subcommands({})) {
    const std::string& name = sub->get_name();
    if (name == word) return {};
    names += (names.empty() ? "" : ", ") + name;
    const size_t d = edit_distance(word, name);
    const bool prefix = name.rfind(word, 0) == 0;
    if (d < best_distance || (prefix && best.empty())) {
      best = name;
      best_distance = prefix ? 0 : d;
    }
  }
  std::string message = "unknown command '" + std::string(word) + "'";
  if (!best.empty()) message += "; did you mean '" + best + "'?";
  return message + "\nCommands: " + names + ". Run tracer --help for what each does.";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "tracer — learn a cheap surrogate from an LLM's classification traces and certify where\n"
      "it can answer in the LLM's place (agreement >= target with probability >= 1 - delta)."};
  app.set_version_flag("--version", std::string("tracer ") + TRACER_VERSION);
  app.require_subcommand(1);
  auto commands = tracer::cli::register_commands(app);
  if (argc > 1)
    if (const std::string unknown = unknown_command(app, argv[1]); !unknown.empty()) {
      std::cerr << unknown << "\n";
      return 2;
    }
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
