#include "policy/manifest.hpp"

#include <cmath>
#include <initializer_list>

#include "util/error.hpp"
#include "util/json_kind.hpp"

namespace tracer {
namespace {

using nlohmann::json;

[[noreturn]] void bad(const std::string& path, const std::string& field, const std::string& what) {
  throw FormatError(path + ": field \"" + field + "\" " + what +
                    "; the file is damaged or not tracer's: refit the policy with `tracer fit` "
                    "(or restore the folder from a copy)");
}

void expect(const json& parent, const std::string& prefix, const char* key, json::value_t type,
            const char* type_name, bool required, const std::string& path) {
  const std::string field = prefix + key;
  auto it = parent.find(key);
  if (it == parent.end()) {
    if (required) bad(path, field, std::string("is missing (expected ") + type_name + ")");
    return;
  }
  const bool ok = type == json::value_t::number_float ? it->is_number() : it->type() == type;
  if (!ok) bad(path, field, std::string("must be ") + type_name + ", found " + json_kind(*it));
}

void expect_probability(const json& gate, const char* key, const std::string& path) {
  auto it = gate.find(key);
  if (it == gate.end()) return;
  const double v = it->is_number() ? it->get<double>() : NAN;
  if (!(v > 0 && v < 1))
    bad(path, std::string("gate.") + key, "must be a number strictly between 0 and 1");
}

// The drift reference (runtime/drift.hpp): a damaged one must not read as "no reference" (an
// older tracer) nor give false drift, so its numbers are checked here.
void check_drift_section(const json& d, const std::string& path) {
  using T = json::value_t;
  expect(d, "drift.", "score_quantiles", T::array, "an array", true, path);
  const json& q = d["score_quantiles"];
  if (q.empty()) bad(path, "drift.score_quantiles", "is empty");
  double prev = -INFINITY;
  for (const auto& v : q) {
    const double x = v.is_number() ? v.get<double>() : NAN;
    if (!(x >= 0 && x <= 1 && x >= prev))
      bad(path, "drift.score_quantiles", "must be acceptor scores in [0, 1] in ascending order");
    prev = x;
  }
  auto rows = d.find("rows");
  if (rows == d.end() || !rows->is_number_integer() || rows->get<int64_t>() < 1 ||
      (rows->is_number_unsigned() && rows->get<uint64_t>() > (uint64_t{1} << 40)))
    bad(path, "drift.rows", "must be a positive count of calibrate rows");
  for (const char* key : {"handled_share", "ood_share"}) {
    auto it = d.find(key);
    if (it == d.end()) continue;
    const double x = it->is_number() ? it->get<double>() : NAN;
    if (!(x >= 0 && x <= 1)) bad(path, std::string("drift.") + key, "must be a share in [0, 1]");
  }
}

}  // namespace

void check_manifest(const json& m, const std::string& path) {
  if (!m.is_object())
    throw FormatError(path + " must hold a JSON object, found " + json_kind(m) +
                      "; refit the policy with `tracer fit`");
  using T = json::value_t;
  expect(m, "", "policy_version", T::string, "a string", true, path);
  if (m["policy_version"].get_ref<const std::string&>().empty())
    bad(path, "policy_version", "is empty");
  expect(m, "", "featurizer", T::object, "an object", true, path);
  expect(m["featurizer"], "featurizer.", "fingerprint", T::string, "a string", true, path);
  expect(m, "", "gate", T::object, "an object", true, path);
  expect_probability(m["gate"], "target", path);
  expect_probability(m["gate"], "delta", path);
  for (const char* key :
       {"model", "options", "drift", "ood", "split", "units", "surrogate", "timings", "traces"})
    expect(m, "", key, T::object, "an object", false, path);
  for (const char* key : {"labels", "per_label", "rare_labels", "zoo"})
    expect(m, "", key, T::array, "an array", false, path);
  for (const char* key : {"created_at", "format", "tracer_version"})
    expect(m, "", key, T::string, "a string", false, path);
  if (m.contains("model"))
    expect(m["model"], "model.", "checksum", T::string, "a string", false, path);
  if (m.contains("drift")) check_drift_section(m["drift"], path);
}

void check_frontier(const json& f, const std::string& path) {
  if (!f.is_object())
    throw FormatError(path + " must hold a JSON object, found " + json_kind(f) +
                      "; refit the policy with `tracer fit`");
  auto rows = f.find("rows");
  if (rows == f.end()) return;
  if (!rows->is_array())
    bad(path, "rows", std::string("must be an array, found ") + json_kind(*rows));
  for (size_t i = 0; i < rows->size(); ++i)
    if (!(*rows)[i].is_object())
      bad(path, "rows[" + std::to_string(i) + "]",
          std::string("must be an object, found ") + json_kind((*rows)[i]));
}

}  // namespace tracer
