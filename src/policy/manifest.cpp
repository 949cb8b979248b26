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
