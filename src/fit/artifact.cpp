// The fit's options as recorded in manifest.json, and the policy folder's files.
#include <algorithm>
#include <filesystem>

#include "fit/fitter.hpp"
#include "util/error.hpp"

namespace tracer {

using nlohmann::json;

json fit_options_json(const FitOptions& o) {
  json methods = json::array();
  for (Method m : o.methods) methods.push_back(method_name(m));
  return json{{"target", o.target},
              {"delta", o.delta},
              {"min_coverage", o.min_coverage},
              {"min_rows", o.min_rows},
              {"frontier_targets", o.frontier_targets},
              {"zoo", o.zoo},
              {"trees", o.trees},
              {"ensemble_members", o.ensemble_members},
              {"methods", methods},
              {"fractions",
               o.fractions ? json{o.fractions->train, o.fractions->select, o.fractions->calibrate}
                           : json(nullptr)},
              {"folds", o.folds},
              {"seed", o.seed},
              {"min_per_label", o.min_per_label},
              {"featurizer", o.featurizer},
              {"ood", o.ood},
              {"ood_quantile", o.ood_quantile},
              {"memory",
               {{"enabled", o.memory.enabled},
                {"holdout", o.memory.holdout},
                {"delta_share", o.memory.delta_share},
                {"max_entries", o.memory.max_entries}}}};
}

FitOptions fit_options_from(const json& rec, const json& m, const json& frontier) {
  FitOptions o;
  try {
    if (rec.is_object()) {
      o.target = rec.at("target");
      o.delta = rec.at("delta");
      o.min_coverage = rec.at("min_coverage");
      o.min_rows = rec.at("min_rows");
      o.frontier_targets = rec.at("frontier_targets").get<std::vector<double>>();
      o.zoo = rec.at("zoo").get<std::vector<std::string>>();
      o.trees = rec.at("trees");
      o.ensemble_members = rec.value("ensemble_members", o.ensemble_members);
      o.methods.clear();
      for (const auto& name : rec.at("methods")) o.methods.push_back(parse_method(name));
      if (!rec.at("fractions").is_null()) {
        auto f = rec.at("fractions").get<std::vector<double>>();
        if (f.size() != 3) throw FormatError("fit_options.fractions needs three numbers");
        o.fractions = SplitFractions{f[0], f[1], f[2]};
      }
      o.folds = rec.value("folds", 0);
      o.seed = rec.at("seed");
      o.min_per_label = rec.at("min_per_label");
      o.featurizer = rec.at("featurizer");
      o.ood = rec.at("ood");
      o.ood_quantile = rec.at("ood_quantile");
      if (rec.contains("memory")) {  // older folders: the memory tier's defaults
        const json& mem = rec.at("memory");
        o.memory.enabled = mem.at("enabled");
        o.memory.holdout = mem.at("holdout");
        o.memory.delta_share = mem.at("delta_share");
        o.memory.max_entries = mem.at("max_entries");
      }
      return o;
    }
    // Older folders: rebuild what the manifest and frontier record.
    const json& g = m.at("gate");
    o.target = g.at("target");
    o.delta = g.at("delta");
    o.min_rows = g.value("min_rows", o.min_rows);
    o.min_coverage = g.value("min_coverage", o.min_coverage);
    o.seed = m.at("split").value("seed", o.seed);
    const double tr = m["split"].value("train", 0.0), se = m["split"].value("select", 0.0),
                 ca = m["split"].value("calibrate", 0.0);
    if (m["split"].value("automatic", false)) {
      o.fractions.reset();  // chosen from the number of distinct inputs: choose again
    } else if (m["split"].contains("folds")) {
      o.folds = m["split"].value("folds", 0);
      if (o.folds == 1 && tr + se + ca > 0)
        o.fractions = SplitFractions{tr / (tr + se + ca), se / (tr + se + ca), ca / (tr + se + ca)};
    } else if (tr + se + ca > 0) {
      const double total = tr + se + ca;
      o.fractions = SplitFractions{1.0 - se / total - ca / total, se / total, ca / total};
    }
    o.zoo.clear();
    for (const auto& c : m.value("zoo", json::array())) o.zoo.push_back(c.at("name"));
    o.featurizer = m.at("featurizer").value("kind", o.featurizer);
    o.ood = m.value("ood", json::object()).value("enabled", true);
    std::vector<Method> methods;
    std::vector<double> targets;
    for (const auto& r : frontier.value("rows", json::array())) {
      Method mm = parse_method(r.at("method"));
      if (std::find(methods.begin(), methods.end(), mm) == methods.end()) methods.push_back(mm);
      double t = r.at("target");
      if (std::find(targets.begin(), targets.end(), t) == targets.end()) targets.push_back(t);
    }
    if (!methods.empty()) o.methods = methods;
    if (!targets.empty()) o.frontier_targets = targets;
  } catch (const json::exception& e) {
    throw FormatError(std::string("cannot read the fit options from the policy folder (") +
                      e.what() + "); refit with `tracer fit`");
  } catch (const InputError& e) {  // e.g. an unknown method name
    throw FormatError(std::string("the policy folder records invalid fit options (") + e.what() +
                      "); refit with `tracer fit`");
  }
  return o;
}

void write_artifact(const std::string& dir, FitResult& r) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (!fs::is_directory(dir))
    throw InputError("cannot create the output folder " + dir + (ec ? ": " + ec.message() : ""));
  std::string model = encode_policy(r.policy);
  std::string sum = checksum_hex(fnv1a64(model));
  r.manifest["policy_version"] =
      r.manifest.value("created_at", std::string()) + "-" + sum.substr(0, 8);
  r.manifest["model"] = {{"file", "model.bin"}, {"bytes", model.size()}, {"checksum", sum}};
  r.policy.policy_version = r.manifest["policy_version"];

  write_file_atomic((fs::path(dir) / "model.bin").string(), model);
  write_file_atomic((fs::path(dir) / "frontier.json").string(), r.frontier.dump(2) + "\n");
  write_file_atomic((fs::path(dir) / "manifest.json").string(), r.manifest.dump(2) + "\n");
}

}  // namespace tracer
