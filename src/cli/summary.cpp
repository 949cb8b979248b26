#include "cli/summary.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <map>

namespace tracer::cli {

using nlohmann::json;

namespace {
std::string pct(const json& v) {
  if (!v.is_number()) return "-";
  return fmt::format("{:.1f}%", v.get<double>() * 100);
}
std::string num(const json& v) {
  if (!v.is_number()) return "-";
  return fmt::format("{:.4f}", v.get<double>());
}
}  // namespace

void print_zoo_table(std::ostream& os, const json& m) {
  os << "Surrogates (fit on train, scored on select):\n";
  os << fmt::format("  {:<16} {:>10} {:>10}\n", "candidate", "agreement", "fit time");
  std::string chosen = m["surrogate"]["name"];
  for (const auto& c : m["zoo"]) {
    std::string name = c["name"];
    if (c.contains("error")) {
      os << fmt::format("  {:<16} {:>10} {:>10}  {}\n", name, "failed", "-",
                        c["error"].get<std::string>());
      continue;
    }
    os << fmt::format("  {:<16} {:>10} {:>9.2f}s{}\n", name, num(c["select_agreement"]),
                      c["fit_seconds"].get<double>(), name == chosen ? "  <- chosen" : "");
  }
}

void print_policy(std::ostream& os, const json& m) {
  const json& g = m["gate"];
  const json& c = g["certified"];
  os << "Routing policy (target agreement " << num(g["target"]) << ", delta " << num(g["delta"])
     << "):\n";
  if (g["deployed"].get<bool>()) {
    os << fmt::format("  method {}  surrogate {}  coverage {}  agreement {}  lower bound {}\n",
                      g["method"].get<std::string>(), g["stage1"]["surrogate"].get<std::string>(),
                      pct(c["coverage"]), num(c["agreement"]), num(c["lower_bound"]));
    os << "  guarantee: " << g["guarantee"].get<std::string>() << "\n";
    os << fmt::format("  certified on {} calibrate rows ({} handled, {} agreeing)\n",
                      c["rows"].get<long>(), c["accepted"].get<long>(), c["agreeing"].get<long>());
  } else {
    const json& r = g["refusal"];
    os << "  REFUSED: " << r["reason"].get<std::string>() << "\n";
    os << "  surrogate agreement on calibrate " << num(r["surrogate_agreement_on_calibrate"])
       << " (lower bound " << num(r["surrogate_lower_bound_on_calibrate"]) << ") vs target "
       << num(r["target"]) << "\n";
    os << "  " << r["advice"].get<std::string>() << "\n";
    os << "  every input will be deferred to the LLM.\n";
  }
}

void print_frontier(std::ostream& os, const json& f) {
  std::map<std::string, std::map<double, json>> by_method;
  std::vector<double> targets;
  for (const auto& r : f["rows"]) {
    double t = r["target"];
    by_method[r["method"]][t] = r;
    if (std::find(targets.begin(), targets.end(), t) == targets.end()) targets.push_back(t);
  }
  std::sort(targets.begin(), targets.end());
  os << "Frontier (certified coverage on calibrate, by target):\n  method ";
  for (double t : targets) os << fmt::format(" {:>7.2f}", t);
  os << "\n";
  for (const auto& [method, rows] : by_method) {
    os << fmt::format("  {:<6} ", method);
    for (double t : targets) {
      auto it = rows.find(t);
      if (it == rows.end() || !it->second.value("available", false))
        os << fmt::format(" {:>7}", "n/a");
      else if (!it->second["certified"].get<bool>())
        os << fmt::format(" {:>7}", "refuse");
      else
        os << fmt::format(" {:>7}", pct(it->second["coverage"]));
    }
    os << "\n";
  }
}

void print_labels(std::ostream& os, const json& m, size_t top) {
  std::vector<json> labels(m["per_label"].begin(), m["per_label"].end());
  std::stable_sort(labels.begin(), labels.end(), [](const json& a, const json& b) {
    return a["coverage"].get<double>() > b["coverage"].get<double>();
  });
  auto row = [&](const json& l) {
    os << fmt::format("  {:<40} {:>8} {:>10} {:>8}\n", l["label"].get<std::string>().substr(0, 40),
                      pct(l["coverage"]), num(l["agreement"]), l["calibrate_rows"].get<long>());
  };
  os << fmt::format("Labels most handled (calibrate split):\n  {:<40} {:>8} {:>10} {:>8}\n",
                    "label", "coverage", "agreement", "rows");
  for (size_t i = 0; i < std::min(top, labels.size()); ++i) row(labels[i]);
  os << "Labels most deferred:\n";
  for (size_t i = 0; i < std::min(top, labels.size()); ++i) row(labels[labels.size() - 1 - i]);
}

void print_fit_summary(std::ostream& os, const json& m, const json& f) {
  print_zoo_table(os, m);
  os << "\n";
  print_policy(os, m);
  os << "\n";
  print_frontier(os, f);
}

}  // namespace tracer::cli
