// report.html: headline numbers from the manifest, every chart with data, every user string
// escaped, and the same page whether rendered at fit time or later from the folder.
#include "report/html.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <random>
#include <sstream>

#include "report/qualitative.hpp"
#include "report/report_fixture.hpp"

namespace tracer {
namespace {

using nlohmann::json;
using testing::TempDir;

size_t count(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) ++n;
  return n;
}

// The value after `prefix` up to `quote` (a tiny attribute scanner; std::regex trips GCC 12's
// -Wmaybe-uninitialized under the sanitizer build).
std::string after(const std::string& hay, const std::string& prefix, char quote, size_t from = 0) {
  const size_t p = hay.find(prefix, from);
  if (p == std::string::npos) return "<missing>";
  const size_t b = p + prefix.size();
  return hay.substr(b, hay.find(quote, b) - b);
}

std::string metric_value(const std::string& html, const std::string& name) {
  return after(html, "data-metric='" + name + "' data-value='", '\'');
}

// chart name -> (declared marks, class='mark' elements inside that <svg>)
std::map<std::string, std::pair<int, int>> charts(const std::string& html) {
  std::map<std::string, std::pair<int, int>> out;
  const std::string open = "<svg data-chart='";
  for (size_t p = html.find(open); p != std::string::npos; p = html.find(open, p + 1)) {
    const std::string name = after(html, open, '\'', p);
    const int marks = std::stoi(after(html, "data-marks='", '\'', p));
    const size_t end = html.find("</svg>", p);
    out[name] = {marks, static_cast<int>(count(html.substr(p, end - p), "class='mark'"))};
  }
  return out;
}

TEST(ReportHtml, EscapeCoversEveryHtmlMetacharacter) {
  EXPECT_EQ(html_escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
  EXPECT_EQ(html_escape("plain \xc3\xa9"), "plain \xc3\xa9");
}

TEST(ReportHtml, HeadlineAndChartsComeFromTheFolder) {
  TempDir dir;
  auto s = testing::fit_jsonl(dir, testing::banking_subset(8, 80), testing::small_fit_options());
  ASSERT_TRUE(s.fit.deployed);
  const std::string out = dir.file("policy");
  write_artifact(out, s.fit);
  write_report_files(out, s.set, s.fit, testing::report_options(s.options));
  const std::string html = testing::read_file(out + "/report.html");
  const json q = json::parse(testing::read_file(out + "/qualitative_report.json"));
  const json m = json::parse(testing::read_file(out + "/manifest.json"));

  const json& c = m["gate"]["certified"];
  EXPECT_EQ(std::stod(metric_value(html, "coverage")), c["coverage"].get<double>());
  EXPECT_EQ(std::stod(metric_value(html, "agreement")), c["agreement"].get<double>());
  EXPECT_EQ(std::stod(metric_value(html, "lower_bound")), c["lower_bound"].get<double>());
  EXPECT_EQ(std::stod(metric_value(html, "target")), m["gate"]["target"].get<double>());
  EXPECT_EQ(metric_value(html, "method"), m["gate"]["method"].get<std::string>());
  EXPECT_EQ(std::stoi(metric_value(html, "calibrate_rows")), c["rows"].get<int>());
  EXPECT_NE(html.find("data-deployed='true'"), std::string::npos);
  EXPECT_EQ(q["policy_version"], m["policy_version"]);

  auto found = charts(html);
  for (const char* name :
       {"frontier", "label-coverage", "defer-reasons", "map-decision", "map-label"}) {
    ASSERT_TRUE(found.count(name)) << name;
    EXPECT_GT(found[name].first, 0) << name;
    EXPECT_EQ(found[name].first, found[name].second) << name;
  }
  EXPECT_EQ(found["map-label"].first, static_cast<int>(s.fit.calibrate_rows.size()));
  EXPECT_FALSE(found.count("learning-curve"));  // not computed: the section says how to get it
  EXPECT_NE(html.find("--learning-curve"), std::string::npos);
  EXPECT_FALSE(found.count("history"));  // one fit: no history chart
  for (const char* id : {"headline", "frontier", "labels", "pairs", "defer", "slices", "curve",
                         "map", "examples", "zoo"})
    EXPECT_NE(html.find(std::string("<section id='") + id + "'"), std::string::npos) << id;
  // Self-contained: nothing fetched from anywhere.
  EXPECT_EQ(html.find("http://"), html.find("http://www.w3.org/2000/svg"));
  EXPECT_EQ(html.find("https://"), std::string::npos);
  EXPECT_EQ(html.find("<link"), std::string::npos);

  // Rendering later from the folder gives the very same page.
  const std::string later = render_report_html(load_report_inputs(out));
  const size_t diff =
      std::mismatch(later.begin(), later.end(), html.begin(), html.end()).first - later.begin();
  EXPECT_EQ(later.size(), html.size());
  EXPECT_EQ(diff, later.size()) << "first difference: " << later.substr(diff, 200) << "\n vs "
                                << html.substr(std::min(diff, html.size()), 200);

  // A second version appends to the folder's history.json: the history section appears.
  const nlohmann::json& g = s.fit.manifest["gate"];
  nlohmann::json entry{{"version", 1},
                       {"event", "fit"},
                       {"created_at", s.fit.manifest["created_at"]},
                       {"deployed", g["deployed"]},
                       {"method", g["method"]},
                       {"target", g["target"]},
                       {"coverage", g["certified"]["coverage"]},
                       {"agreement", g["certified"]["agreement"]},
                       {"lower_bound", g["certified"]["lower_bound"]},
                       {"activated", true}};
  nlohmann::json second = entry;
  second["version"] = 2;
  testing::write_file(out + "/history.json", nlohmann::json::array({entry, second}).dump());
  const std::string again = render_report_html(load_report_inputs(out));
  EXPECT_NE(again.find("<section id='history'>"), std::string::npos);
  EXPECT_GT(charts(again)["history"].first, 1);
}

TEST(ReportHtml, NamesDistinctInputsAndRareLabels) {
  TempDir dir;
  auto s = testing::fit_jsonl(dir, testing::banking_subset(5, 60), testing::small_fit_options());
  ReportInputs in;
  in.manifest = s.fit.manifest;
  in.frontier = s.fit.frontier;
  in.manifest["rare_labels"] =
      json::array({{{"label", "lost_or_stolen_phone"}, {"training_inputs", 1}, {"needs", 2}}});
  const std::string html = render_report_html(in);
  EXPECT_NE(html.find("distinct inputs</b>"), std::string::npos);
  EXPECT_NE(html.find("id='rare-labels'"), std::string::npos);
  EXPECT_NE(html.find("lost_or_stolen_phone (1 training inputs, needs 2 more)"), std::string::npos);
}

TEST(ReportHtml, EveryUserStringIsEscaped) {
  TempDir dir;
  auto s =
      testing::fit_jsonl(dir, testing::banking_subset(6, 80, true), testing::small_fit_options());
  ASSERT_NE(std::find(s.set.labels.begin(), s.set.labels.end(), testing::kHostileLabel),
            s.set.labels.end());
  ReportInputs in;
  in.manifest = s.fit.manifest;
  in.frontier = s.fit.frontier;
  in.qualitative = build_qualitative_report(s.set, s.fit, testing::report_options(s.options));
  // Hostile text in every other place a user string can reach.
  const std::string hostile = testing::kHostileInput;
  in.manifest["traces"]["path"] = hostile;
  in.manifest["policy_version"] = hostile;
  in.manifest["created_at"] = hostile;
  in.qualitative["per_label"][0]["examples"]["handled"] = json::array({{{"input", hostile},
                                                                        {"teacher", hostile},
                                                                        {"predicted", hostile},
                                                                        {"runner_up", hostile},
                                                                        {"handled", true}}});
  in.qualitative["slices"][1]["name"] = hostile;
  in.manifest["rare_labels"] =
      json::array({{{"label", hostile}, {"training_inputs", 1}, {"needs", 2}}});
  in.history = json::array({{{"created_at", hostile}, {"deployed", true}, {"coverage", 0.5}},
                            {{"created_at", "x"}, {"method", hostile}, {"deployed", true}}});
  const std::string html = render_report_html(in);
  EXPECT_EQ(count(html, "<script"), 1u);  // ours only
  EXPECT_EQ(html.find("<script>alert"), std::string::npos);
  EXPECT_EQ(html.find("<img"), std::string::npos);
  EXPECT_GT(count(html, "&lt;script&gt;alert(1)&lt;/script&gt;"), 3u);
  EXPECT_GT(
      count(html, "&lt;img src=x onerror=alert(2)&gt; card &amp; &quot;quotes&quot; &#39;x&#39;"),
      5u);
}

TEST(ReportHtml, RendersTheManifestAloneAndRefusalsInPlainWords) {
  // Random labels: refused; and no qualitative_report.json (an older folder).
  std::istringstream in(testing::banking_subset(5, 60));
  std::mt19937 rng(11);
  std::string noise;
  for (std::string l; std::getline(in, l);) {
    auto j = json::parse(l);
    j["teacher"] = "L" + std::to_string(rng() % 3);
    noise += j.dump() + "\n";
  }
  TempDir dir;
  auto s = testing::fit_jsonl(dir, noise, testing::small_fit_options(0.95));
  ASSERT_FALSE(s.fit.deployed);
  const std::string out = dir.file("policy");
  write_artifact(out, s.fit);
  ReportInputs inputs = load_report_inputs(out);
  EXPECT_TRUE(inputs.qualitative.is_null());
  const std::string html = render_report_html(inputs);
  EXPECT_NE(html.find("data-deployed='false'"), std::string::npos);
  EXPECT_EQ(metric_value(html, "coverage"), "0");
  EXPECT_EQ(std::stod(metric_value(html, "surrogate_agreement")),
            s.fit.manifest["gate"]["refusal"]["surrogate_agreement_on_calibrate"].get<double>());
  EXPECT_NE(html.find("Not deployed"), std::string::npos);
  EXPECT_NE(html.find("every input goes to the LLM"), std::string::npos);
  EXPECT_NE(html.find("qualitative_report.json is missing"), std::string::npos);
  EXPECT_EQ(html.find("<section id='pairs'>"), std::string::npos);
  auto found = charts(html);
  EXPECT_GT(found["frontier"].first, 0);
  EXPECT_GT(found["label-coverage"].first, 0);

  EXPECT_THROW(load_report_inputs(dir.file("nope")), InputError);
  testing::write_file(out + "/frontier.json", "{broken");
  EXPECT_THROW(load_report_inputs(out), FormatError);
}

}  // namespace
}  // namespace tracer
