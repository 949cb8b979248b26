#pragma once
// Helpers shared by tests: temporary directories, writing files, running the CLI.
#include <filesystem>
#include <string>
#include <vector>

namespace tracer::testing {

// A fresh directory removed when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

void write_file(const std::string& path, const std::string& content);
std::string read_file(const std::string& path);

struct CommandResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};
// Runs the built `tracer` binary with the given argument string (shell-quoted by the caller).
CommandResult run_cli(const std::string& args);

// Path of a file in the source tree, e.g. source_path("data/banking77/train.jsonl").
std::string source_path(const std::string& rel);

// The shipped Banking77 train lines (raw JSONL) of the first `labels` labels met in the file, at
// most `per_label` each: a small real trace file for end-to-end tests.
std::vector<std::string> banking77_lines(int labels, int per_label);

// True under the ASan/UBSan build: tests shrink heavy workloads there.
bool sanitized();

}  // namespace tracer::testing
