#include "test_util.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <stdexcept>

namespace tracer::testing {

TempDir::TempDir() {
  std::random_device rd;
  auto base = std::filesystem::temp_directory_path();
  for (int attempt = 0; attempt < 100; ++attempt) {
    auto candidate =
        base / ("tracer_test_" + std::to_string(::getpid()) + "_" + std::to_string(rd()));
    if (std::filesystem::create_directory(candidate)) {
      path_ = candidate;
      return;
    }
  }
  throw std::runtime_error("cannot create a temporary directory");
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void write_file(const std::string& path, const std::string& content) {
  std::ofstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot write " + path);
  f << content;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

CommandResult run_cli(const std::string& args) {
  TempDir tmp;
  std::string out = tmp.file("stdout"), err = tmp.file("stderr");
  std::string cmd = std::string(TRACER_CLI_PATH) + " " + args + " >" + out + " 2>" + err;
  int status = std::system(cmd.c_str());
  CommandResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = read_file(out);
  r.err = read_file(err);
  return r;
}

std::string source_path(const std::string& rel) {
  return std::string(TRACER_SOURCE_DIR) + "/" + rel;
}

std::vector<std::string> banking77_lines(int labels, int per_label) {
  std::ifstream in(source_path("data/banking77/train.jsonl"));
  if (!in) throw std::runtime_error("cannot read the shipped Banking77 traces");
  std::map<std::string, int> seen;
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) {
    const std::string t = nlohmann::json::parse(line)["teacher"];
    if (!seen.count(t) && static_cast<int>(seen.size()) >= labels) continue;
    if (seen[t]++ < per_label) out.push_back(line);
  }
  return out;
}

bool sanitized() { return std::getenv("TRACER_SANITIZED") != nullptr; }

}  // namespace tracer::testing
