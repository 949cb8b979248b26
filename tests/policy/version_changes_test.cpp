#include "policy/version_changes.hpp"

#include <gtest/gtest.h>

namespace tracer {
namespace {

using nlohmann::json;

json row(const std::string& label, double coverage, const std::string& status, int inputs,
         json agreement = 0.95) {
  return {{"label", label},
          {"coverage", coverage},
          {"agreement", coverage > 0 ? agreement : json(nullptr)},
          {"training_inputs", inputs},
          {"status", status}};
}

json manifest(bool deployed, json per_label) {
  return {{"gate", {{"deployed", deployed}}}, {"per_label", std::move(per_label)}};
}

TEST(VersionChanges, GainedLostAndMovedLabelsAgainstThePreviousActiveVersion) {
  const json before =
      manifest(true, {row("card", 0.9, "handled", 40), row("fee", 0.0, "deferred", 5),
                      row("pin", 0.5, "partly_handled", 20), row("lost", 0.3, "partly_handled", 10),
                      row("same", 0.7, "partly_handled", 30)});
  const json after = manifest(
      true, {row("card", 0.95, "handled", 60), row("fee", 0.6, "partly_handled", 25),
             row("pin", 0.5, "partly_handled", 22), row("lost", 0.0, "rare", 2),
             row("same", 0.705, "partly_handled", 31), row("new", 0.2, "partly_handled", 8)});
  const json c = label_changes(after, before, 3);
  EXPECT_EQ(c["against_version"], 3);
  EXPECT_EQ(c["labels_gained"], json({"fee", "new"}));
  EXPECT_EQ(c["labels_lost"], json({"lost"}));
  // Sorted by |coverage change|; pin and same moved less than 0.01 and are left out.
  ASSERT_EQ(c["per_label"].size(), 4u);
  EXPECT_EQ(c["per_label"][0]["label"], "fee");
  EXPECT_EQ(c["per_label"][0]["training_inputs_before"], 5);
  EXPECT_EQ(c["per_label"][0]["training_inputs"], 25);
  EXPECT_EQ(c["per_label"][1]["label"], "lost");
  EXPECT_EQ(c["per_label"][2]["label"], "new");
  EXPECT_EQ(c["per_label"][2]["status_before"], "absent");
  EXPECT_EQ(c["per_label"][3]["label"], "card");

  const json s = label_changes_summary(c);
  EXPECT_EQ(s["labels_gained"], c["labels_gained"]);
  ASSERT_EQ(s["largest_changes"].size(), 4u);
  EXPECT_EQ(s["largest_changes"][0]["training_inputs_added"], 20);
}

TEST(VersionChanges, ARefusedVersionAnswersNoLabel) {
  const json before =
      manifest(true, {row("card", 0.9, "handled", 40), row("fee", 0.2, "partly_handled", 5)});
  const json refused =
      manifest(false, {row("card", 0.9, "handled", 41), row("fee", 0.2, "partly_handled", 5)});
  const json c = label_changes(refused, before, 1);
  EXPECT_EQ(c["labels_lost"], json({"card", "fee"}));
  EXPECT_EQ(c["labels_gained"], json::array());
  const json back = label_changes(before, refused, 2);
  EXPECT_EQ(back["labels_gained"], json({"card", "fee"}));
  EXPECT_TRUE(label_changes(before, nullptr, 0).is_null());
  EXPECT_TRUE(label_changes_summary(nullptr).is_null());
}

}  // namespace
}  // namespace tracer
