// report.html in a real browser (headless Chromium): the DOM the user sees carries the manifest's
// headline numbers, every chart has marks, a hostile label is shown as text and never runs, the
// page's own script runs, and a screenshot renders. Skipped when Chromium is not installed.
#include <gtest/gtest.h>

#include <filesystem>

#include "report/report_fixture.hpp"

namespace tracer {
namespace {

using nlohmann::json;
using testing::TempDir;

constexpr const char* kChromium = "/usr/bin/chromium";

size_t count(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) ++n;
  return n;
}

// Runs headless Chromium with a throwaway profile; returns its stdout.
std::string chromium(const std::string& args, const TempDir& dir) {
  const std::string out = dir.file("chromium.out");
  const std::string cmd = std::string("timeout 120 ") + kChromium +
                          " --headless --no-sandbox --disable-gpu --disable-quic --no-first-run"
                          " --disable-background-networking --disable-component-update"
                          " --disable-sync --user-data-dir=" +
                          dir.file("profile") + " " + args + " >" + out + " 2>" +
                          dir.file("chromium.err");
  const int rc = std::system(cmd.c_str());
  EXPECT_EQ(rc, 0) << cmd << "\n" << testing::read_file(dir.file("chromium.err"));
  return testing::read_file(out);
}

// A tiny attribute scanner (std::regex trips GCC 12's -Wmaybe-uninitialized under sanitizers).
std::string after(const std::string& hay, const std::string& prefix, size_t from = 0) {
  const size_t p = hay.find(prefix, from);
  if (p == std::string::npos) return "<missing>";
  const size_t b = p + prefix.size();
  return hay.substr(b, hay.find('"', b) - b);
}

std::string dom_metric(const std::string& dom, const std::string& name) {
  return after(dom, "data-metric=\"" + name + "\" data-value=\"");
}

TEST(ReportBrowser, DomShowsTheManifestChartsAndEscapedLabels) {
  if (!std::filesystem::exists(kChromium))
    GTEST_SKIP() << "headless browser test skipped: " << kChromium
                 << " is missing (apt-get install -y chromium)";
  TempDir dir;
  auto s =
      testing::fit_jsonl(dir, testing::banking_subset(10, 80, true), testing::small_fit_options());
  ASSERT_TRUE(s.fit.deployed) << s.fit.manifest["gate"].dump();
  const std::string policy = dir.file("policy");
  write_artifact(policy, s.fit);
  write_report_files(policy, s.set, s.fit, testing::report_options(s.options));
  const json m = json::parse(testing::read_file(policy + "/manifest.json"));
  const std::string url = "file://" + policy + "/report.html";

  const std::string dom = chromium("--dump-dom " + url, dir);
  ASSERT_GT(dom.size(), 10000u) << dom.substr(0, 500);

  // Headline numbers as the browser sees them.
  const json& c = m["gate"]["certified"];
  EXPECT_EQ(std::stod(dom_metric(dom, "coverage")), c["coverage"].get<double>());
  EXPECT_EQ(std::stod(dom_metric(dom, "agreement")), c["agreement"].get<double>());
  EXPECT_EQ(std::stod(dom_metric(dom, "lower_bound")), c["lower_bound"].get<double>());
  EXPECT_EQ(std::stod(dom_metric(dom, "target")), m["gate"]["target"].get<double>());
  EXPECT_EQ(std::stoi(dom_metric(dom, "calibrate_rows")), c["rows"].get<int>());
  EXPECT_NE(dom.find("Certified: the surrogate answers"), std::string::npos);

  // Every chart has data marks, as many as it declares.
  int charts = 0;
  const std::string open = "<svg data-chart=\"";
  for (size_t p = dom.find(open); p != std::string::npos; p = dom.find(open, p + 1), ++charts) {
    const std::string name = after(dom, open, p);
    const std::string svg = dom.substr(p, dom.find("</svg>", p) - p);
    const int declared = std::stoi(after(dom, "data-marks=\"", p));
    EXPECT_GT(declared, 0) << name;
    EXPECT_EQ(static_cast<int>(count(svg, "class=\"mark\"")), declared) << name;
  }
  EXPECT_GE(charts, 5);

  // The hostile label is text: escaped in the DOM, and no script or img element came from it.
  EXPECT_GT(count(dom, "&lt;script&gt;alert(1)&lt;/script&gt;"), 2u);
  EXPECT_EQ(count(dom, "<script"), 1u);
  EXPECT_EQ(dom.find("<script>alert"), std::string::npos);
  EXPECT_EQ(dom.find("<img"), std::string::npos);
  // The page's own script ran: it reveals the label filter (hidden without JavaScript).
  const size_t filter = dom.find("id=\"label-filter\"");
  ASSERT_NE(filter, std::string::npos);
  const std::string tag =
      dom.substr(dom.rfind('<', filter), dom.find('>', filter) - dom.rfind('<', filter));
  EXPECT_EQ(tag.find("hidden"), std::string::npos) << tag;

  // A screenshot renders: a real PNG of the requested size with content.
  const std::string png = dir.file("report.png");
  chromium("--screenshot=" + png + " --window-size=1280,2000 " + url, dir);
  ASSERT_TRUE(std::filesystem::exists(png));
  const std::string bytes = testing::read_file(png);
  ASSERT_GT(bytes.size(), 24u);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  auto be32 = [&](size_t at) {
    return (uint32_t(uint8_t(bytes[at])) << 24) | (uint32_t(uint8_t(bytes[at + 1])) << 16) |
           (uint32_t(uint8_t(bytes[at + 2])) << 8) | uint32_t(uint8_t(bytes[at + 3]));
  };
  EXPECT_EQ(be32(16), 1280u);       // IHDR width
  EXPECT_EQ(be32(20), 2000u);       // IHDR height
  EXPECT_GT(bytes.size(), 40000u);  // a blank page compresses to a few kilobytes
}

}  // namespace
}  // namespace tracer
