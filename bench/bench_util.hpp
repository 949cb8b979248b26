#pragma once
// Small helpers shared by the benchmarks: percentiles, JSON result files, data paths.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace tracer::bench {

inline double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = std::min(v.size() - 1, static_cast<size_t>(q * (v.size() - 1) + 0.5));
  return v[i];
}

// Writes `j` to bench/results/NAME.json under the source tree (or --json-out).
inline std::string write_result(const std::string& path, const nlohmann::json& j) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path) << j.dump(2) << "\n";
  return path;
}

inline std::string default_result_path(const std::string& name) {
  return std::string(TRACER_SOURCE_DIR) + "/bench/results/" + name + ".json";
}

// ../shared/data when it exists beside the checkout, for datasets not shipped in data/.
inline std::string shared_data_dir() {
  for (const char* c : {"/../shared/data", "/../../shared/data"}) {
    std::string p = std::string(TRACER_SOURCE_DIR) + c;
    if (std::filesystem::exists(p)) return p;
  }
  return std::string(TRACER_SOURCE_DIR) + "/../shared/data";
}

}  // namespace tracer::bench
