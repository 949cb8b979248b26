// Files of texts to route (`tracer predict --input`, `tracer drift -i`) and trace files that are
// not files: devices, FIFOs, endless lines. Each is a clear error with exit 2, at once, never a
// hang, an unbounded read or a silent exit 0.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "test_util.hpp"

namespace tracer {
namespace {

using testing::run_cli;
using testing::TempDir;
using testing::write_file;

class CliInputFiles : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir;
    std::string traces;
    for (const auto& l : testing::banking77_lines(6, 60)) traces += l + "\n";
    write_file(dir_->file("traces.jsonl"), traces);
    policy_ = dir_->file("policy");
    auto fit = run_cli("fit " + dir_->file("traces.jsonl") + " -o " + policy_ +
                       " --target 0.8 --quiet --no-report --zoo logreg_strong");
    ASSERT_TRUE(fit.exit_code == 0 || fit.exit_code == 4) << fit.err;
  }
  static void TearDownTestSuite() { delete dir_; }
  static TempDir* dir_;
  static std::string policy_;
};
TempDir* CliInputFiles::dir_ = nullptr;
std::string CliInputFiles::policy_;

TEST_F(CliInputFiles, DevicesAndFifosAreRefusedBeforeAnyRead) {
  TempDir tmp;
  const std::string zero = tmp.file("zero.jsonl"), fifo = tmp.file("fifo.jsonl");
  std::filesystem::create_symlink("/dev/zero", zero);
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  for (const std::string& cmd :
       {"predict " + policy_ + " --input " + zero, "predict " + policy_ + " --input " + fifo,
        "drift " + policy_ + " -i " + zero, "drift " + policy_ + " -i " + fifo, "fit " + zero,
        "fit " + fifo, "scan " + zero}) {
    auto r = run_cli(cmd);
    EXPECT_EQ(r.exit_code, 2) << cmd << ": " << r.err;
    EXPECT_NE(r.err.find("not a regular file"), std::string::npos) << cmd << ": " << r.err;
  }
}

TEST_F(CliInputFiles, AnEndlessLineIsAnErrorNamingTheLine) {
  TempDir tmp;
  const std::string path = tmp.file("long.jsonl");
  {
    std::ofstream out(path, std::ios::binary);
    out << "\"first text\"\n\"";
    const std::string chunk(1 << 20, 'a');
    for (size_t i = 0; i <= 16; ++i) out << chunk;  // 17 MiB: over cli::kMaxInputLineBytes
    out << "\"\n";
  }
  auto r = run_cli("predict " + policy_ + " --input " + path + " -o " + tmp.file("out.jsonl"));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find(path + ":2:"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("longer than 16 MiB"), std::string::npos) << r.err;
}

TEST_F(CliInputFiles, LastLineWithoutNewlineBlankLinesAndSymlinksAreFine) {
  TempDir tmp;
  const std::string path = tmp.file("texts.jsonl"), link = tmp.file("link.jsonl");
  write_file(path, "\"I lost my card\"\n\n  \r\n{\"input\": \"where is my refund\", \"id\": 7}");
  std::filesystem::create_symlink(path, link);
  auto r = run_cli("predict " + policy_ + " --input " + link);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 2) << r.out;
  EXPECT_NE(r.out.find("\"id\":7"), std::string::npos) << r.out;
  for (const std::string& bad : {tmp.file("missing.jsonl"), tmp.path().string()}) {
    auto e = run_cli("predict " + policy_ + " --input " + bad);
    EXPECT_EQ(e.exit_code, 2) << bad << ": " << e.err;
  }
  // Line numbers count blank lines: a bad fourth line is reported as line 4.
  write_file(path, "\"ok\"\n\n\n{\"nope\": 1}\n");
  auto bad = run_cli("predict " + policy_ + " --input " + path);
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  EXPECT_NE(bad.err.find(path + ":4:"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace tracer
