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

void print_traces(std::ostream& os, const json& m) {
  if (!m.contains("units") || !m["units"].is_object()) return;  // older manifests
  const json& t = m["units"];
  const json& s = m["split"];
  os << fmt::format("Traces: {} traces, {} distinct inputs", t.value("traces", 0L),
                    t.value("distinct_inputs", 0L));
  if (t.value("duplicate_traces", 0L) > 0)
    os << fmt::format(" ({} duplicate traces counted once", t.value("duplicate_traces", 0L)) +
              (t.value("conflicting_inputs", 0L) > 0
                   ? fmt::format("; {} inputs carry more than one teacher label",
                                 t.value("conflicting_inputs", 0L))
                   : std::string()) +
              ")";
  os << "\n";
  if (t.contains("train_only") && t["train_only"].value("traces", 0L) > 0)
    os << fmt::format(
        "  {} recorded traces ({} distinct inputs) train only: deferred requests outside the "
        "traffic sample cannot certify\n",
        t["train_only"].value("traces", 0L), t["train_only"].value("inputs", 0L));
  if (s.value("folds", 1) >= 2)
    os << fmt::format(
        "  calibrate {} inputs; the other {} train the surrogates, {}-fold "
        "cross-fitted to choose the plan\n",
        s.value("calibrate", 0L), s.value("train", 0L), s.value("folds", 0));
  else
    os << fmt::format("  train {}, select {}, calibrate {} inputs\n", s.value("train", 0L),
                      s.value("select", 0L), s.value("calibrate", 0L));
  const json rare = m.value("rare_labels", json::array());
  if (!rare.empty()) {
    os << fmt::format(
        "  {} label(s) with fewer than {} training inputs are never answered "
        "(deferred as rare_label):",
        rare.size(), m["options"].value("min_per_label", 3));
    size_t shown = 0;
    for (const auto& r : rare) {
      if (shown++ == 8) {
        os << fmt::format(" ... ({} more)", rare.size() - 8);
        break;
      }
      os << fmt::format(" {} ({}, needs {} more)", r.value("label", std::string()),
                        r.value("training_inputs", 0L), r.value("needs", 0L));
    }
    os << "\n";
  }
}

void print_zoo_table(std::ostream& os, const json& m) {
  os << "Surrogates (agreement with the teacher on select inputs, scored out of fold):\n";
  os << fmt::format("  {:<16} {:>10} {:>10}\n", "candidate", "agreement", "fit time");
  std::string chosen = m["surrogate"]["name"];
  for (const auto& c : m["zoo"]) {
    std::string name = c["name"];
    if (c.value("screened_out", false)) {
      os << fmt::format("  {:<16} {:>10} {:>10}  screened out after the first fold\n", name,
                        num(c["first_fold_agreement"]), "-");
      continue;
    }
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
    os << fmt::format("  certified on {} calibrate inputs ({} handled, {} agreeing)\n",
                      c["rows"].get<long>(), c["accepted"].get<long>(), c["agreeing"].get<long>());
  } else {
    const json& r = g["refusal"];
    os << "  REFUSED: " << r["reason"].get<std::string>() << "\n";
    os << "  surrogate agreement on calibrate " << num(r["surrogate_agreement_on_calibrate"])
       << " (lower bound " << num(r["surrogate_lower_bound_on_calibrate"]) << ") vs target "
       << num(r["target"]) << "\n";
    os << "  " << r["advice"].get<std::string>() << "\n";
    os << (m.value("/memory/certified"_json_pointer, false)
               ? "  every input the memory tier does not answer will be deferred to the LLM.\n"
               : "  every input will be deferred to the LLM.\n");
  }
  print_memory(os, m);
}

void print_memory(std::ostream& os, const json& m) {
  if (!m.contains("memory") || !m["memory"].is_object()) return;  // older manifests
  const json& mem = m["memory"];
  if (!mem.value("certified", false)) {
    os << "Memory tier: " << mem.value("reason", std::string("not certified")) << "\n";
    return;
  }
  os << fmt::format(
      "Memory tier (delta {}): {} remembered inputs answer {} of held-out traces; the LLM's "
      "self-consistency on them {} (lower bound {}) over {} held-out repeats\n",
      num(mem["delta"]), mem.value("entries", 0L), pct(mem["hit_share"]),
      num(mem["self_consistency"]), num(mem["bound"]), mem.value("hits", 0L));
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
  print_traces(os, m);
  os << "\n";
  print_zoo_table(os, m);
  os << "\n";
  print_policy(os, m);
  os << "\n";
  print_frontier(os, f);
}

}  // namespace tracer::cli
