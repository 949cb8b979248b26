// libFuzzer target for trace ingestion (src/io/). Not part of the CMake build; build with e.g.
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Isrc fuzz/fuzz_traces.cpp \
//     src/io/*.cpp -lutf8proc -lfmt -o fuzz_traces && ./fuzz_traces -max_total_time=60
// The first input byte picks the format (bit 0: CSV or JSONL) and the limits (bit 1: tiny limits,
// so the too-long paths are reached); the rest is the file. Each input is read with and without
// skip_invalid. InputError is the expected way to refuse a file; anything else (a crash, another
// exception, a broken invariant) is a bug.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "io/traces.hpp"
#include "io/utf8.hpp"
#include "util/error.hpp"

namespace {

void require(bool ok) {
  if (!ok) std::abort();
}

void check_set(const tracer::TraceSet& set, const tracer::ReadReport& report,
               const tracer::ReadOptions& options) {
  require(set.size() > 0);
  require(set.y.size() == set.size());
  require(report.accepted == set.size());
  require(report.errors.size() <= options.max_errors_reported);
  require(report.errors.size() <= report.skipped);
  for (size_t i = 1; i < set.labels.size(); ++i) require(set.labels[i - 1] < set.labels[i]);
  size_t last_line = 0;
  for (size_t i = 0; i < set.size(); ++i) {
    const tracer::Trace& t = set.traces[i];
    require(set.y[i] >= 0 && static_cast<size_t>(set.y[i]) < set.labels.size());
    require(set.labels[static_cast<size_t>(set.y[i])] == t.teacher);
    require(!t.input.empty() && t.input.size() <= options.max_input_bytes);
    require(!t.teacher.empty() && t.teacher.size() <= options.max_label_bytes);
    require(tracer::is_valid_utf8(t.input) && tracer::is_valid_utf8(t.teacher));
    require(t.embedding.size() == set.embedding_dim);
    require(t.line > last_line);
    last_line = t.line;
  }
  size_t total = 0;
  for (const size_t c : set.label_counts()) total += c;
  require(total == set.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t selector = data[0];
  const bool csv = (selector & 1) != 0;
  tracer::ReadOptions options;
  if ((selector & 2) != 0) {
    options.max_input_bytes = 16;
    options.max_label_bytes = 8;
    options.max_line_bytes = 64;
    options.max_errors_reported = 2;
  }
  const std::string path =
      (std::filesystem::temp_directory_path() /
       ("tracer_fuzz_" + std::to_string(::getpid()) + (csv ? ".csv" : ".jsonl")))
          .string();
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data + 1), static_cast<std::streamsize>(size - 1));
  }
  for (const bool skip : {false, true}) {
    options.skip_invalid = skip;
    tracer::ReadReport report;
    try {
      const tracer::TraceSet set = tracer::read_traces(path, options, &report);
      check_set(set, report, options);
      if (!skip) require(report.skipped == 0);
      try {
        tracer::check_label_counts(set, 2);
      } catch (const tracer::InputError&) {
      }
    } catch (const tracer::InputError& e) {
      require(e.what()[0] != '\0');
    }
  }
  std::error_code ec;
  std::filesystem::remove(path, ec);
  return 0;
}
