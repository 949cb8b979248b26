// Hostile inputs on the command line, one table per kind: broken trace files for `tracer fit`
// (exit 2, the message names the file and, for a bad line, its number) and damaged model files
// for `tracer predict` (exit 3, the message names the file). Other kinds live beside their
// code: numeric options (commands_test.cpp), devices and endless lines (input_lines_test.cpp),
// damaged manifests (tests/policy/manifest_test.cpp), the saved audit state
// (tests/serve/audit_serve_test.cpp).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "test_util.hpp"

namespace tracer {
namespace {

using testing::read_file;
using testing::run_cli;
using testing::TempDir;
using testing::write_file;

// 60 valid lines of 3 labels, so that a fit gets past "too few" checks when nothing is wrong.
std::string valid_lines() {
  std::string s;
  for (int i = 0; i < 60; ++i)
    s += "{\"input\": \"text number " + std::to_string(i) + " about topic " +
         std::to_string(i % 3) + "\", \"label\": \"l" + std::to_string(i % 3) + "\"}\n";
  return s;
}

struct TraceCase {
  const char* name;
  const char* file;     // file name (the extension picks the format)
  std::string content;  // bytes
  const char* marker;   // must appear in stderr besides the file name ("" = none)
};

TEST(HostileInputs, BrokenTraceFilesAreExitTwoNamingFileAndLine) {
  const std::string ok = valid_lines();
  const std::vector<TraceCase> cases = {
      {"bad UTF-8", "t.jsonl", ok + "{\"input\": \"b\xff\xfe\", \"label\": \"l1\"}\n", ":61:"},
      {"UTF-16 file", "t.jsonl", std::string("\xff\xfe{\0\"\0", 6), "UTF-16"},
      {"invalid JSON", "t.jsonl", ok + "{\"input\": \"a\", \"label\": }\n", ":61:"},
      {"array line", "t.jsonl", ok + "[\"a\", \"l1\"]\n", ":61:"},
      {"number input", "t.jsonl", ok + "{\"input\": 5, \"label\": \"l1\"}\n", ":61:"},
      {"missing label", "t.jsonl", ok + "{\"input\": \"a\"}\n", ":61:"},
      {"empty label", "t.jsonl", ok + "{\"input\": \"a\", \"label\": \"\"}\n", ":61:"},
      {"object label", "t.jsonl", ok + "{\"input\": \"a\", \"label\": {\"x\": 1}}\n", ":61:"},
      {"empty input", "t.jsonl", ok + "{\"input\": \"\", \"label\": \"l1\"}\n", ":61:"},
      {"truncated last line", "t.jsonl", ok + "{\"input\": \"a\", \"la", ":61:"},
      {"NUL byte", "t.jsonl", ok + std::string("{\"input\": \"a\0b\", \"label\": \"l1\"}\n", 31),
       ":61:"},
      {"bare string line", "t.jsonl", ok + "\"just a text\"\n", ":61:"},
      {"NaN in embedding", "t.jsonl",
       ok + "{\"input\": \"a\", \"label\": \"l1\", \"embedding\": [1, NaN]}\n", ":61:"},
      {"unknown extension", "t.txt", ok, "extension"},
      {"empty file", "t.jsonl", "", "empty"},
      {"blank lines only", "t.jsonl", "\n\n  \n", "no traces"},
      {"one label", "t.jsonl",
       "{\"input\": \"a\", \"label\": \"x\"}\n{\"input\": \"b\", \"label\": \"x\"}\n",
       "two labels"},
      {"CSV without input column", "t.csv", "text_x,label\nhello,a\n", "input"},
      {"CSV unterminated quote", "t.csv", "input,label\n\"hello,a\nworld,b\n", "t.csv"},
      {"CSV header only", "t.csv", "input,label\n", "no records"},
  };
  for (const auto& c : cases) {
    TempDir dir;
    const std::string path = dir.file(c.file);
    write_file(path, c.content);
    auto r = run_cli("fit " + path + " -o " + dir.file("p") + " --quiet");
    EXPECT_EQ(r.exit_code, 2) << c.name << ": " << r.err;
    EXPECT_NE(r.err.find(c.file), std::string::npos) << c.name << ": " << r.err;
    EXPECT_NE(r.err.find(c.marker), std::string::npos) << c.name << ": " << r.err;
    EXPECT_EQ(r.err.find("json.exception"), std::string::npos) << c.name << ": " << r.err;
    EXPECT_FALSE(std::filesystem::exists(dir.file("p") + "/model.bin")) << c.name;
  }
}

TEST(HostileInputs, DamagedModelFilesAreExitThreeNamingTheFile) {
  TempDir dir;
  std::string traces, others;
  for (const auto& l : testing::banking77_lines(4, 40)) traces += l + "\n";
  for (const auto& l : testing::banking77_lines(8, 20)) others += l + "\n";
  write_file(dir.file("b.jsonl"), traces);
  write_file(dir.file("t.jsonl"), others);
  const std::string policy = dir.file("policy"), other = dir.file("other");
  for (const auto& [file, out] :
       {std::pair{dir.file("b.jsonl"), policy}, std::pair{dir.file("t.jsonl"), other}}) {
    auto fit = run_cli("fit " + file + " -o " + out +
                       " --quiet --no-report --target 0.8 --zoo logreg_strong");
    ASSERT_TRUE(fit.exit_code == 0 || fit.exit_code == 4) << fit.err;
  }
  const std::string model = policy + "/model.bin";
  const std::string good = read_file(model);
  struct ModelCase {
    const char* name;
    std::string bytes;
    const char* marker;
  };
  std::string flipped = good;
  flipped[flipped.size() / 2] = static_cast<char>(flipped[flipped.size() / 2] ^ 0x5a);
  std::string future = good;
  future[8] = 99;  // the format version follows the 8-byte magic
  const std::vector<ModelCase> cases = {
      {"truncated", good.substr(0, good.size() / 2), "truncated"},
      {"one byte flipped", flipped, "checksum"},
      {"wrong magic", "NOTMODEL" + good.substr(8), "magic"},
      {"empty", "", "model.bin"},
      {"a newer format", future, "format version 99"},
      {"padded", good + "extra", "padded"},
      {"another fit's model", read_file(other + "/model.bin"), "refit"},
  };
  for (const auto& c : cases) {
    write_file(model, c.bytes);
    auto r = run_cli("predict " + policy + " \"where is my card\"");
    EXPECT_EQ(r.exit_code, 3) << c.name << ": " << r.err;
    EXPECT_NE(r.err.find("model.bin"), std::string::npos) << c.name << ": " << r.err;
    EXPECT_NE(r.err.find(c.marker), std::string::npos) << c.name << ": " << r.err;
  }
  // Missing files are an incomplete folder (exit 2), not a damaged one. (The folder's
  // model.bin is a link to the active version's file: remove the file itself.)
  const std::string active_model = policy + "/active/model.bin";
  std::filesystem::remove(active_model);
  auto missing = run_cli("predict " + policy + " hi");
  EXPECT_EQ(missing.exit_code, 2) << missing.err;
  EXPECT_NE(missing.err.find("model.bin"), std::string::npos) << missing.err;
  std::filesystem::create_directory(active_model);
  auto dir_model = run_cli("predict " + policy + " hi");
  EXPECT_NE(dir_model.exit_code, 0) << dir_model.err;
  EXPECT_NE(dir_model.exit_code, 1)
      << "an internal error for a folder named model.bin: " << dir_model.err;
}

}  // namespace
}  // namespace tracer
