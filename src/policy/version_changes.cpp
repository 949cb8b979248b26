#include "policy/version_changes.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <string>

namespace tracer {
namespace {

using nlohmann::json;

struct LabelRow {
  double coverage = 0;
  json agreement;  // null when nothing of the label was handled
  int64_t training_inputs = 0;
  std::string status = "absent";
};

std::map<std::string, LabelRow> rows_of(const json& manifest) {
  std::map<std::string, LabelRow> out;
  const json rows = manifest.is_object() ? manifest.value("per_label", json::array()) : json();
  if (!rows.is_array()) return out;
  for (const json& r : rows) {
    if (!r.is_object() || !r.contains("label") || !r["label"].is_string()) continue;
    LabelRow row;
    row.coverage = r.value("coverage", 0.0);
    if (r.contains("agreement") && r["agreement"].is_number()) row.agreement = r["agreement"];
    row.training_inputs = r.value("training_inputs", int64_t{0});
    row.status = r.value("status", std::string("deferred"));
    out[r["label"].get<std::string>()] = row;
  }
  return out;
}

bool answered(const LabelRow& r) { return r.status == "handled" || r.status == "partly_handled"; }

// A version that certified nothing answers no label, whatever its calibrate rows say.
void zero_if_refused(const json& manifest, std::map<std::string, LabelRow>& rows) {
  const bool deployed = manifest.is_object() && manifest.contains("gate") &&
                        manifest["gate"].is_object() && manifest["gate"].value("deployed", false);
  if (deployed) return;
  for (auto& [_, r] : rows) {
    r.coverage = 0;
    r.agreement = nullptr;
    if (r.status != "rare") r.status = "deferred";
  }
}

}  // namespace

json label_changes(const json& candidate, const json& previous, int previous_version) {
  if (previous.is_null()) return nullptr;
  auto now = rows_of(candidate), before = rows_of(previous);
  zero_if_refused(candidate, now);
  zero_if_refused(previous, before);
  std::map<std::string, std::pair<LabelRow, LabelRow>> all;
  for (const auto& [l, r] : before) all[l].first = r;
  for (const auto& [l, r] : now) all[l].second = r;
  json gained = json::array(), lost = json::array(), per_label = json::array();
  std::vector<std::pair<double, json>> moved;
  for (const auto& [label, pair] : all) {
    const auto& [b, a] = pair;
    if (answered(a) && !answered(b)) gained.push_back(label);
    if (answered(b) && !answered(a)) lost.push_back(label);
    const double d = a.coverage - b.coverage;
    if (std::abs(d) < 0.01 && b.status != "absent" && a.status != "absent") continue;
    moved.emplace_back(std::abs(d), json{{"label", label},
                                         {"coverage_before", b.coverage},
                                         {"coverage", a.coverage},
                                         {"agreement_before", b.agreement},
                                         {"agreement", a.agreement},
                                         {"training_inputs_before", b.training_inputs},
                                         {"training_inputs", a.training_inputs},
                                         {"status_before", b.status},
                                         {"status", a.status}});
  }
  std::stable_sort(moved.begin(), moved.end(),
                   [](const auto& x, const auto& y) { return x.first > y.first; });
  for (auto& [_, row] : moved) per_label.push_back(std::move(row));
  return {{"against_version", previous_version},
          {"labels_gained", std::move(gained)},
          {"labels_lost", std::move(lost)},
          {"per_label", std::move(per_label)},
          {"rule",
           "against the version active when this one was written; a label is answered when "
           "some of its calibrate rows are handled; coverage and agreement per label are on "
           "calibrate and not separately certified; training_inputs counts the label's distinct "
           "training inputs, so its change shows what the new traces brought"}};
}

json label_changes_summary(const json& changes) {
  if (!changes.is_object()) return nullptr;
  json top = json::array();
  for (const json& r : changes["per_label"]) {
    if (top.size() == 5) break;
    top.push_back({{"label", r["label"]},
                   {"coverage_before", r["coverage_before"]},
                   {"coverage", r["coverage"]},
                   {"training_inputs_added", r["training_inputs"].get<int64_t>() -
                                                 r["training_inputs_before"].get<int64_t>()}});
  }
  return {{"against_version", changes["against_version"]},
          {"labels_gained", changes["labels_gained"]},
          {"labels_lost", changes["labels_lost"]},
          {"largest_changes", std::move(top)}};
}

}  // namespace tracer
