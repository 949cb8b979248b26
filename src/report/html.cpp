#include "report/html.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <tuple>

#include "policy/manifest.hpp"
#include "policy/policy.hpp"
#include "policy/versions.hpp"
#include "report/qualitative.hpp"
#include "util/error.hpp"

namespace tracer {
namespace {

using nlohmann::json;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// ---- small accessors: the JSON comes from disk and may be from an older version ----

double num(const json& j, const char* key, double fallback = kNaN) {
  if (j.is_object()) {
    auto it = j.find(key);
    if (it != j.end() && it->is_number()) return it->get<double>();
  }
  return fallback;
}
std::string str(const json& j, const char* key, const std::string& fallback = "") {
  if (j.is_object()) {
    auto it = j.find(key);
    if (it != j.end() && it->is_string()) return it->get<std::string>();
  }
  return fallback;
}
bool flag(const json& j, const char* key) {
  if (!j.is_object()) return false;
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() && it->get<bool>();
}
const json& sub(const json& j, const char* key) {
  static const json kNull;  // immutable: shared empty value for missing keys
  if (j.is_object()) {
    auto it = j.find(key);
    if (it != j.end()) return *it;
  }
  return kNull;
}
const json& arr(const json& j, const char* key) {
  static const json kEmpty = json::array();
  const json& v = sub(j, key);
  return v.is_array() ? v : kEmpty;
}

std::string pct(double v, int digits = 1) {
  if (!std::isfinite(v)) return "\u2014";
  return fmt::format("{:.{}f}%", v * 100, digits);
}
std::string raw(double v) { return std::isfinite(v) ? fmt::format("{:g}", v) : ""; }
// Sort key for table cells: missing numbers sort first.
std::string key(double v) { return std::isfinite(v) ? fmt::format("{:g}", v) : "-1"; }
std::string esc(std::string_view s) { return html_escape(s); }

std::string label_color(size_t i) {
  // Golden-angle hues keep neighbouring label indices apart.
  const int hue = static_cast<int>(std::fmod(double(i) * 137.508, 360.0));
  return fmt::format("hsl({},62%,{}%)", hue, 38 + static_cast<int>(i % 3) * 8);
}
std::string method_color(const std::string& m) {
  if (m == "global") return "#8c6bb1";
  if (m == "l2d") return "#2b8cbe";
  if (m == "rsb") return "#e6550d";
  return "#555";
}
constexpr const char* kHandled = "#1b9e77";
constexpr const char* kDeferred = "#d95f02";
std::string status_color(const std::string& s) {
  if (s == "fully_handled" || s == "handled") return kHandled;
  if (s == "partly_handled") return "#e6ab02";
  return kDeferred;
}
std::string status_words(const std::string& s) {
  if (s == "fully_handled" || s == "handled") return "fully handled";
  if (s == "partly_handled") return "partly handled";
  return "deferred";
}

// ---- SVG charts: every data mark has class "mark"; the count goes on the <svg> ----

struct Chart {
  std::string name, aria;
  double w = 760, h = 320, left = 56, right = 18, top = 32, bottom = 46;
  std::string body;
  int marks = 0;
  double x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  bool log_x = false;

  double px(double x) const {
    double a = log_x ? std::log(x) : x, lo = log_x ? std::log(x0) : x0,
           hi = log_x ? std::log(x1) : x1;
    return left + (hi > lo ? (a - lo) / (hi - lo) : 0.5) * (w - left - right);
  }
  double py(double y) const {
    return top + (y1 > y0 ? (y1 - y) / (y1 - y0) : 0.5) * (h - top - bottom);
  }
  void grid_y(int ticks, bool percent) {
    for (int i = 0; i <= ticks; ++i) {
      double v = y0 + (y1 - y0) * i / ticks;
      body += fmt::format(
          "<line x1='{:.1f}' x2='{:.1f}' y1='{:.1f}' y2='{:.1f}' class='grid'/>"
          "<text x='{:.1f}' y='{:.1f}' class='tick' text-anchor='end'>{}</text>",
          left, w - right, py(v), py(v), left - 6, py(v) + 4,
          percent ? fmt::format("{:.0f}%", v * 100) : fmt::format("{:g}", v));
    }
  }
  void tick_x(double x, const std::string& text) {
    body += fmt::format(
        "<line x1='{0:.1f}' x2='{0:.1f}' y1='{1:.1f}' y2='{2:.1f}' class='axis'/>"
        "<text x='{0:.1f}' y='{3:.1f}' class='tick' text-anchor='middle'>{4}</text>",
        px(x), h - bottom, h - bottom + 4, h - bottom + 17, esc(text));
  }
  void axis_titles(const std::string& xt, const std::string& yt) {
    body += fmt::format(
        "<text x='{:.1f}' y='{:.1f}' class='axis-title' text-anchor='middle'>{}"
        "</text>",
        left + (w - left - right) / 2, h - 8, esc(xt));
    body += fmt::format(
        "<text transform='translate(14 {:.1f}) rotate(-90)' class='axis-title' "
        "text-anchor='middle'>{}</text>",
        top + (h - top - bottom) / 2, esc(yt));
  }
  void polyline(const std::vector<std::pair<double, double>>& pts, const std::string& color,
                bool dashed = false) {
    if (pts.size() < 2) return;
    std::string d;
    for (auto [x, y] : pts) d += fmt::format("{:.1f},{:.1f} ", px(x), py(y));
    body += fmt::format("<polyline points='{}' fill='none' stroke='{}' stroke-width='2'{}/>", d,
                        color, dashed ? " stroke-dasharray='5 4'" : "");
  }
  void dot(double x, double y, const std::string& color, const std::string& tip, double r = 4,
           bool hollow = false) {
    ++marks;
    body += fmt::format(
        "<circle class='mark' cx='{:.1f}' cy='{:.1f}' r='{:g}' fill='{}' stroke='{}'"
        " stroke-width='1.5'><title>{}</title></circle>",
        px(x), py(y), r, hollow ? "#fff" : color, color, esc(tip));
  }
  void hline(double y, const std::string& text, const std::string& color) {
    body += fmt::format(
        "<line x1='{:.1f}' x2='{:.1f}' y1='{:.1f}' y2='{:.1f}' stroke='{}' stroke-dasharray='6 4'/>"
        "<text x='{:.1f}' y='{:.1f}' class='note' text-anchor='end' fill='{}'>{}</text>",
        left, w - right, py(y), py(y), color, w - right - 2, py(y) - 4, color, esc(text));
  }
  void vline(double x, const std::string& text, const std::string& color) {
    body += fmt::format(
        "<line x1='{0:.1f}' x2='{0:.1f}' y1='{1:.1f}' y2='{2:.1f}' stroke='{3}' "
        "stroke-dasharray='6 4'/><text x='{4:.1f}' y='{5:.1f}' class='note' fill='{3}'>{6}</text>",
        px(x), top, h - bottom, color, px(x) + 4, top + 12, esc(text));
  }
  // Drawn in the band above the plot area (charts with a legend reserve top >= 30).
  void legend(const std::vector<std::pair<std::string, std::string>>& items) {
    double x = left;
    for (const auto& [text, color] : items) {
      body += fmt::format(
          "<rect x='{:.1f}' y='4' width='12' height='12' fill='{}'/>"
          "<text x='{:.1f}' y='14' class='legend'>{}</text>",
          x, color, x + 16, esc(text));
      x += 28 + 7.0 * static_cast<double>(text.size());
    }
  }
  std::string svg() const {
    return fmt::format(
        "<svg data-chart='{}' data-marks='{}' viewBox='0 0 {:g} {:g}' width='{:g}' "
        "class='chart' role='img' aria-label='{}' xmlns='http://www.w3.org/2000/svg'>{}</svg>",
        esc(name), marks, w, h, w, esc(aria), body);
  }
};

// ---- page pieces ----

std::string metric(const std::string& id, const std::string& label, const std::string& shown,
                   const std::string& value, const std::string& hint = "") {
  return fmt::format(
      "<div class='metric'><div class='metric-label'>{}</div>"
      "<div class='metric-value' data-metric='{}' data-value='{}'>{}</div>{}</div>",
      esc(label), esc(id), esc(value), esc(shown),
      hint.empty() ? "" : "<div class='metric-hint'>" + esc(hint) + "</div>");
}

// The memory tier (manifest.json → memory): what it answers and the LLM's measured
// self-consistency, or why it is inactive or refused.
std::string memory_note(const json& m) {
  const json& mem = sub(m, "memory");
  if (!mem.is_object()) return "";
  if (!mem.value("certified", false))
    return "<p class='meta' id='memory'>Memory tier: " + esc(str(mem, "reason", "not certified")) +
           "</p>";
  return fmt::format(
      "<p class='meta' id='memory'><b>Memory tier</b>: {:g} repeated requests are answered with "
      "the LLM's remembered label, about <b>{}</b> of traffic (share of held-out traces they "
      "answer); the LLM agreed with its remembered answer on {} of {:g} held-out repeats "
      "(self-consistency, lower bound {} at δ {:g}). Certified separately from the surrogate; "
      "together they keep the target.</p>",
      num(mem, "entries", 0), pct(num(mem, "hit_share")), pct(num(mem, "self_consistency"), 2),
      num(mem, "hits", 0), pct(num(mem, "bound"), 2), num(mem, "delta", 0));
}

// Distinct inputs (the unit of evidence), duplicates, and the labels too rare to answer.
std::string units_note(const json& m) {
  const json& u = sub(m, "units");
  if (!u.is_object()) return "";
  std::string s = fmt::format(
      "<p class='meta' id='units'>{:g} traces, <b>{:g} distinct inputs</b> (the unit of "
      "evidence: {:g} duplicate traces counted once",
      num(u, "traces", 0), num(u, "distinct_inputs", 0), num(u, "duplicate_traces", 0));
  if (num(u, "conflicting_inputs", 0) > 0)
    s +=
        fmt::format("; {:g} inputs carry more than one LLM label", num(u, "conflicting_inputs", 0));
  s += ")</p>";
  const json& rare = sub(m, "rare_labels");
  if (rare.is_array() && !rare.empty()) {
    s += fmt::format(
        "<p class='meta' id='rare-labels'><b>{} label(s) too rare to answer</b> (inputs predicted "
        "as one are deferred to the LLM; the guarantee still covers their traffic):",
        rare.size());
    for (const auto& r : rare)
      s += fmt::format(" {} ({:g} training inputs, needs {:g} more);", esc(str(r, "label")),
                       num(r, "training_inputs", 0), num(r, "needs", 0));
    s += "</p>";
  }
  return s;
}

std::string headline_section(const ReportInputs& in) {
  const json& m = in.manifest;
  const json& g = sub(m, "gate");
  const json& c = sub(g, "certified");
  const json h = report_headline(m, in.frontier.is_null() ? json::object() : in.frontier);
  const bool deployed = flag(g, "deployed");
  std::string s = "<section id='headline'>";
  s += fmt::format("<div class='verdict {}' data-deployed='{}'><h1>{}</h1><p>{}</p>{}</div>",
                   deployed ? "deployed" : "refused", deployed ? "true" : "false",
                   esc(str(h, "verdict")), esc(str(h, "explanation")),
                   str(h, "advice").empty()
                       ? ""
                       : "<p class='advice'><b>What to do:</b> " + esc(str(h, "advice")) + "</p>");
  s += "<div class='metrics'>";
  const double target = num(g, "target"), delta = num(g, "delta");
  if (deployed) {
    s += metric("coverage", "Traffic answered by the surrogate", pct(num(c, "coverage")),
                raw(num(c, "coverage")), "certified share of inputs");
    s += metric("agreement", "Agreement with the LLM (held out)", pct(num(c, "agreement"), 2),
                raw(num(c, "agreement")), "on the answered inputs");
    s += metric("lower_bound", "Lower bound", pct(num(c, "lower_bound"), 2),
                raw(num(c, "lower_bound")),
                fmt::format("{:g}% confidence (Clopper\u2013Pearson)", (1 - delta) * 100));
  } else {
    const json& r = sub(g, "refusal");
    s += metric("coverage", "Traffic answered by the surrogate", pct(0.0), "0",
                "nothing certified: all inputs go to the LLM");
    s += metric("surrogate_agreement", "Best surrogate's agreement (held out)",
                pct(num(r, "surrogate_agreement_on_calibrate"), 2),
                raw(num(r, "surrogate_agreement_on_calibrate")), "on all calibrate inputs");
    s += metric("surrogate_lower_bound", "Its lower bound",
                pct(num(r, "surrogate_lower_bound_on_calibrate"), 2),
                raw(num(r, "surrogate_lower_bound_on_calibrate")),
                fmt::format("{:g}% confidence", (1 - delta) * 100));
  }
  s += metric("target", "Target agreement", pct(target, 1), raw(target), "set with --target");
  const double memory_delta = num(sub(m, "memory"), "delta", 0);
  if (memory_delta > 0) {  // the memory tier spent a share of the user's delta
    const double total = delta + memory_delta;
    s += metric("delta", "Risk \u03b4", fmt::format("{:g}", total), raw(total),
                fmt::format("surrogate gate {:g} + memory tier {:g}: both hold with {:g}% "
                            "probability",
                            delta, memory_delta, (1 - total) * 100));
  } else {
    s += metric("delta", "Risk \u03b4", fmt::format("{:g}", delta), raw(delta),
                fmt::format("guarantee holds with {:g}% probability", (1 - delta) * 100));
  }
  s += metric("method", "Method", str(g, "method", "none"), str(g, "method", "none"),
              "surrogate " + str(sub(g, "stage1"), "surrogate", "?"));
  s += metric(
      "calibrate_rows", "Held-out traces", fmt::format("{:g}", num(c, "rows", 0)),
      raw(num(c, "rows", 0)),
      fmt::format("{:g} answered, {:g} agreeing", num(c, "accepted", 0), num(c, "agreeing", 0)));
  s += "</div>";
  s += fmt::format(
      "<p class='meta'>Policy <code>{}</code> \u00b7 created {} \u00b7 traces <code>{}</code> "
      "({:g}) \u00b7 featurizer: {}</p>",
      esc(str(m, "policy_version", "(unsaved)")), esc(str(m, "created_at")),
      esc(str(sub(m, "traces"), "path", "?")), num(sub(m, "traces"), "accepted", 0),
      esc(str(sub(m, "featurizer"), "description", str(sub(m, "featurizer"), "kind"))));
  s += units_note(m);
  s += memory_note(m);
  s += "</section>";
  return s;
}

std::string frontier_section(const ReportInputs& in) {
  std::string s =
      "<section id='frontier'><h2>Frontier: how much traffic each target allows</h2>"
      "<p class='explain'>For each target agreement (x) and routing method, the share "
      "of held-out traffic the surrogate may answer with the guarantee (y). Hollow "
      "points at 0% could not be certified. Stricter targets leave less traffic to "
      "the surrogate; the dashed line is the target this policy was fit at.</p>";
  const json& rows = arr(in.frontier, "rows");
  if (rows.empty()) return s + "<p class='muted'>frontier.json is missing.</p></section>";
  std::map<std::string, std::vector<json>> by;
  double lo = 1, hi = 0;
  for (const auto& r : rows) {
    by[str(r, "method")].push_back(r);
    lo = std::min(lo, num(r, "target", 1));
    hi = std::max(hi, num(r, "target", 0));
  }
  Chart ch;
  ch.name = "frontier";
  ch.aria = "certified coverage by target agreement and method";
  ch.x0 = lo - 0.01, ch.x1 = hi + 0.01;
  ch.grid_y(5, true);
  std::vector<double> ticks;
  for (const auto& r : rows) {
    double t = num(r, "target", 0);
    if (std::find(ticks.begin(), ticks.end(), t) == ticks.end())
      ticks.push_back(t), ch.tick_x(t, fmt::format("{:g}", t));
  }
  const double target = num(sub(in.manifest, "gate"), "target");
  if (std::isfinite(target)) ch.vline(target, fmt::format("target {:g}", target), "#444");
  std::vector<std::pair<std::string, std::string>> legend;
  for (auto& [method, list] : by) {
    std::sort(list.begin(), list.end(),
              [](const json& a, const json& b) { return num(a, "target") < num(b, "target"); });
    std::vector<std::pair<double, double>> line;
    for (const auto& r : list) {
      if (!flag(r, "available")) continue;
      const double t = num(r, "target"), cov = flag(r, "certified") ? num(r, "coverage", 0) : 0;
      line.emplace_back(t, cov);
    }
    ch.polyline(line, method_color(method));
    for (const auto& r : list) {
      if (!flag(r, "available")) continue;
      const bool ok = flag(r, "certified");
      const double t = num(r, "target"), cov = ok ? num(r, "coverage", 0) : 0;
      ch.dot(t, cov, method_color(method),
             ok ? fmt::format("{} at target {:g}: {} of traffic (agreement {}, lower bound {})",
                              method, t, pct(cov), pct(num(r, "agreement"), 2),
                              pct(num(r, "lower_bound"), 2))
                : fmt::format("{} at target {:g}: not certifiable", method, t),
             4.5, !ok);
    }
    legend.emplace_back(method, method_color(method));
  }
  ch.legend(legend);
  ch.axis_titles("target agreement with the LLM", "certified coverage");
  s += ch.svg();
  // The same numbers as a table (readable by anyone, copyable).
  s += "<table class='compact'><thead><tr><th>method</th>";
  std::sort(ticks.begin(), ticks.end());
  for (double t : ticks) s += fmt::format("<th>{:g}</th>", t);
  s += "</tr></thead><tbody>";
  for (const auto& [method, list] : by) {
    s += "<tr><td>" + esc(method) + "</td>";
    for (double t : ticks) {
      auto it = std::find_if(list.begin(), list.end(),
                             [&](const json& r) { return num(r, "target") == t; });
      std::string cell = "n/a";
      if (it != list.end() && flag(*it, "available"))
        cell = flag(*it, "certified") ? pct(num(*it, "coverage")) : "refused";
      s += "<td>" + esc(cell) + "</td>";
    }
    s += "</tr>";
  }
  s += "</tbody></table></section>";
  return s;
}

std::string bar_cell(double v, const std::string& color) {
  const double w = std::isfinite(v) ? std::clamp(v, 0.0, 1.0) * 100 : 0;
  return fmt::format(
      "<td class='num' data-value='{}'><div class='bar'><span class='mark' style='width:{:.1f}%;"
      "background:{}'></span></div><span class='bar-text'>{}</span></td>",
      key(v), w, color, esc(pct(v)));
}

enum class Detail { kText, kTeacher, kFull };

std::string example_list(const json& list, Detail detail = Detail::kFull, size_t limit = 3) {
  if (!list.is_array() || list.empty()) return "<span class='muted'>none</span>";
  std::string s = "<ul class='examples'>";
  for (size_t i = 0; i < list.size() && i < limit; ++i) {
    const json& e = list[i];
    s += "<li><q>" + esc(str(e, "input")) + "</q>";
    if (detail == Detail::kTeacher) {
      s += " <span class='small'>LLM: " + esc(str(e, "teacher")) + "</span>";
    } else if (detail == Detail::kFull) {
      s += fmt::format(" <span class='small'>LLM: <b>{}</b> \u00b7 surrogate: <b>{}</b> (p={:.2f}",
                       esc(str(e, "teacher")), esc(str(e, "predicted")), num(e, "probability", 0));
      if (!flag(e, "handled")) {
        s += fmt::format(", runner-up {}) \u00b7 deferred: {}", esc(str(e, "runner_up")),
                         esc(str(e, "reason")));
      } else {
        s += ") \u00b7 answered";
      }
      s += "</span>";
    }
    s += "</li>";
  }
  return s + "</ul>";
}

std::string labels_section(const ReportInputs& in) {
  const bool have_q = in.qualitative.is_object() && in.qualitative.contains("per_label");
  const json& labels = have_q ? arr(in.qualitative, "per_label") : arr(in.manifest, "per_label");
  std::string s =
      "<section id='labels'><h2>Per label</h2><p class='explain'>Held-out (calibrate) traces of "
      "each LLM label: the share the surrogate answers (coverage), how often those answers agree "
      "with the LLM and the lowest agreement consistent with the sample (lower bound). "
      "\u201cSurrogate alone\u201d is the surrogate's agreement on all of the label's traces, "
      "before the gate filters them. Status: fully handled \u2265 90% coverage, partly handled "
      "> 0%, deferred 0%. Click a column to sort.</p>";
  if (labels.empty()) return s + "<p class='muted'>no per-label data.</p></section>";
  // Overview: one column per label, sorted by coverage.
  std::vector<const json*> sorted;
  for (const auto& l : labels) sorted.push_back(&l);
  std::stable_sort(sorted.begin(), sorted.end(), [](const json* a, const json* b) {
    return num(*a, "coverage", 0) > num(*b, "coverage", 0);
  });
  // After a refusal every coverage is 0: chart what the surrogate knows per label instead.
  const bool any_handled = std::any_of(sorted.begin(), sorted.end(),
                                       [](const json* l) { return num(*l, "coverage", 0) > 0; });
  const char* metric_key = any_handled ? "coverage" : "surrogate_agreement";
  if (!any_handled) {
    std::stable_sort(sorted.begin(), sorted.end(), [](const json* a, const json* b) {
      return num(*a, "surrogate_agreement", 0) > num(*b, "surrogate_agreement", 0);
    });
    s += "<p class='explain'>Nothing is answered, so the chart shows the surrogate's agreement "
         "with the LLM per label before any gating, against the target.</p>";
  }
  Chart ch;
  ch.name = "label-coverage";
  ch.aria = any_handled ? "coverage per label, sorted" : "surrogate agreement per label, sorted";
  ch.h = 230;
  ch.bottom = 30;
  ch.w = 1030;
  ch.grid_y(4, true);
  const double slot = (ch.w - ch.left - ch.right) / double(sorted.size());
  for (size_t i = 0; i < sorted.size(); ++i) {
    const json& l = *sorted[i];
    const double v = num(l, metric_key, 0);
    ++ch.marks;
    ch.body += fmt::format(
        "<rect class='mark' x='{:.2f}' y='{:.1f}' width='{:.2f}' height='{:.1f}' fill='{}'>"
        "<title>{}: {} {} ({} held-out traces)</title></rect>",
        ch.left + slot * i + slot * 0.1, ch.py(v), std::max(0.5, slot * 0.8),
        std::max(0.0, ch.py(0) - ch.py(v)),
        any_handled ? status_color(str(l, "status")) : std::string("#999"), esc(str(l, "label")),
        pct(v), any_handled ? "answered" : "surrogate agreement", num(l, "calibrate_rows", 0));
    if (sorted.size() <= 12)  // few labels: name them under their bars
      ch.body += fmt::format(
          "<text x='{:.1f}' y='{:.1f}' class='tick' text-anchor='middle'>{}"
          "</text>",
          ch.left + slot * (i + 0.5), ch.py(0) + 14, esc(clip_text(str(l, "label"), 24)));
  }
  if (sorted.size() > 12)
    ch.body += fmt::format(
        "<text x='{:.1f}' y='{:.1f}' class='tick'>labels, most {} first "
        "(hover for names)</text>",
        ch.left, ch.h - 10, any_handled ? "answered" : "agreed");
  if (any_handled) {
    ch.legend(
        {{"fully handled", kHandled}, {"partly handled", "#e6ab02"}, {"deferred", kDeferred}});
  } else {
    const double target = num(sub(in.manifest, "gate"), "target");
    if (std::isfinite(target)) ch.hline(target, fmt::format("target {:g}", target), "#444");
    ch.legend({{"surrogate agreement (nothing answered)", "#999"}});
  }
  s += ch.svg();

  s += "<div class='filters'><input id='label-filter' type='search' placeholder='filter labels' "
       "hidden> <select id='status-filter' hidden><option value=''>all statuses</option>"
       "<option value='fully_handled'>fully handled</option><option value='partly_handled'>"
       "partly handled</option><option value='deferred'>deferred</option></select></div>";
  s += "<div class='scroll'><table id='label-table' class='sortable fixed'><colgroup>"
       "<col style='width:19.5%'><col style='width:5.5%'><col style='width:5.5%'>"
       "<col style='width:5.5%'><col style='width:13%'><col style='width:8.5%'>"
       "<col style='width:8%'><col style='width:8%'><col style='width:10%'>"
       "<col style='width:16.5%'></colgroup>"
       "<thead><tr><th>label</th><th>traces</th><th>train</th><th>held out</th><th>coverage</th>"
       "<th>agreement</th><th>lower bound</th><th>surrogate alone</th><th>status</th>"
       "<th>confused with</th></tr></thead><tbody>";
  for (const auto& l : labels) {
    std::string status = str(l, "status");
    if (status == "handled") status = "fully_handled";
    std::string conf;
    int listed = 0;
    for (const auto& c : arr(l, "confused_with")) {
      if (listed++ == 3) break;  // three are enough in the table; the JSON has up to five
      if (!conf.empty()) conf += ", ";
      conf += fmt::format("{} ({:g})", esc(str(c, "label")), num(c, "count", 0));
    }
    s += fmt::format("<tr data-label='{}' data-status='{}'><td data-value='{}'>{}</td>",
                     esc(str(l, "label")), esc(status), esc(str(l, "label")), esc(str(l, "label")));
    for (const char* k : {"traces", "train_traces", "calibrate_rows"}) {
      double v = num(l, k);
      s += fmt::format("<td data-value='{}'>{}</td>", key(v),
                       std::isfinite(v) ? fmt::format("{:g}", v) : "\u2014");
    }
    s += bar_cell(num(l, "coverage"), status_color(status));
    for (const char* k : {"agreement", "lower_bound", "surrogate_agreement"})
      s += fmt::format("<td data-value='{}'>{}</td>", key(num(l, k)), pct(num(l, k), 1));
    s += fmt::format(
        "<td data-value='{}'><span class='pill' style='background:{}'>{}</span></td>"
        "<td data-value='{}'>{}</td></tr>",
        esc(status), status_color(status), esc(status_words(status)),
        key(num(arr(l, "confused_with").empty() ? json() : l["confused_with"][0], "count")),
        conf.empty() ? "\u2014" : "<span class='small'>" + conf + "</span>");
  }
  s += "</tbody></table></div></section>";
  return s;
}

std::string pairs_section(const json& q) {
  const json& b = sub(q, "boundary_pairs");
  std::string s = fmt::format(
      "<section id='pairs'><h2>Boundary pairs: labels the surrogate mixes up</h2>"
      "<p class='explain'>Held-out traces where the surrogate's label differs from the LLM's, "
      "grouped by the pair of labels (both directions together). \u201cLet through\u201d counts "
      "the confusions the gate did not catch (answered wrongly): {:g} of {:g} disagreements "
      "were answered, the rest were deferred. Pairs that are genuinely ambiguous are usually "
      "better merged or clarified in the LLM prompt.</p>",
      num(b, "handled_errors", 0), num(b, "errors", 0));
  const json& pairs = arr(b, "pairs");
  if (pairs.empty())
    return s + "<p class='muted'>no disagreements on held-out traces.</p></section>";
  double top = 1;
  for (const auto& p : pairs) top = std::max(top, num(p, "count", 0));
  s += "<table class='pairs'><thead><tr><th>labels</th><th>count</th><th>let through</th>"
       "<th>examples</th></tr></thead><tbody>";
  for (size_t i = 0; i < pairs.size() && i < 10; ++i) {
    const json& p = pairs[i];
    const std::string a = str(p, "a"), bb = str(p, "b");
    s += fmt::format(
        "<tr data-pair='{0} | {1}'><td><b>{0}</b> \u2194 <b>{1}</b><div class='small'>{2:g} "
        "{0} \u2192 {1}, {3:g} {1} \u2192 {0}</div></td>",
        esc(a), esc(bb), num(p, "a_as_b", 0), num(p, "b_as_a", 0));
    s += fmt::format(
        "<td data-value='{0:g}'><div class='bar'><span class='mark' style='width:"
        "{1:.1f}%;background:#7570b3'></span></div><span class='bar-text'>{0:g}"
        "</span></td><td>{2:g}</td>",
        num(p, "count", 0), 100 * num(p, "count", 0) / top, num(p, "handled", 0));
    s += "<td>";
    for (const auto& [said, other, list] :
         {std::tuple{a, bb, "examples_a"}, std::tuple{bb, a, "examples_b"}}) {
      const json& ex = sub(p, list);
      if (!ex.is_array() || ex.empty()) continue;  // this direction never happened
      s += "<div class='small'>LLM said <b>" + esc(said) + "</b>, surrogate <b>" + esc(other) +
           "</b>:</div>" + example_list(ex, Detail::kText, 2);
    }
    s += "</td></tr>";
  }
  return s + "</tbody></table></section>";
}

std::string defer_section(const json& q) {
  const json& d = sub(q, "defer_reasons");
  std::string s = fmt::format(
      "<section id='defer'><h2>Why it defers</h2><p class='explain'>{:g} of {:g} held-out traces "
      "({}) go to the LLM. Low confidence: the surrogate was torn between two labels (its top "
      "label and the runner-up). Out of distribution: the input looks unlike the traces. Rare "
      "label: the LLM's label had fewer than {:g} training traces. Method refused: no policy "
      "was certified.</p>",
      num(d, "deferred", 0), num(d, "rows", 0), pct(num(d, "deferred_share", 0)),
      num(d, "rare_label_train_traces", 0));
  const json& reasons = arr(d, "reasons");
  Chart ch;
  ch.name = "defer-reasons";
  ch.aria = "share of deferred traces by reason";
  ch.h = 40 + 34 * static_cast<double>(std::max<size_t>(reasons.size(), 1));
  ch.left = 210;
  ch.right = 90;
  ch.top = 10;
  ch.bottom = 26;
  const double bar_w = ch.w - ch.left - ch.right;
  for (size_t i = 0; i < reasons.size(); ++i) {
    const json& r = reasons[i];
    const double share = num(r, "share", 0);
    const double y = ch.top + 34.0 * static_cast<double>(i);
    const std::string name = str(r, "reason");
    ch.body += fmt::format("<text x='{:.1f}' y='{:.1f}' class='tick' text-anchor='end'>{}</text>",
                           ch.left - 8, y + 17,
                           esc(name == "low_confidence"        ? "low confidence"
                               : name == "out_of_distribution" ? "out of distribution"
                               : name == "rare_label"          ? "rare label"
                               : name == "no_policy"           ? "method refused"
                                                               : name));
    ++ch.marks;
    ch.body += fmt::format(
        "<rect class='mark' x='{:.1f}' y='{:.1f}' width='{:.1f}' height='22' fill='{}'>"
        "<title>{}: {:g} traces</title></rect><text x='{:.1f}' y='{:.1f}' class='tick'>{} "
        "({:g})</text>",
        ch.left, y + 2, std::max(1.0, share * bar_w), share > 0 ? kDeferred : "#ccc",
        esc(str(r, "description")), num(r, "count", 0), ch.left + std::max(1.0, share * bar_w) + 6,
        y + 17, pct(share), num(r, "count", 0));
  }
  s += ch.svg();
  for (const auto& r : reasons) {
    if (num(r, "count", 0) <= 0) continue;
    s += "<details><summary>" + esc(str(r, "description")) +
         fmt::format(" \u2014 {:g} traces", num(r, "count", 0)) + "</summary>" +
         example_list(sub(r, "examples")) + "</details>";
  }
  const json& pairs = arr(d, "low_confidence_pairs");
  if (!pairs.empty()) {
    s += "<h3>Low confidence between which labels</h3><table class='compact'><thead><tr><th>"
         "top label \u2194 runner-up</th><th>deferred</th><th>share</th><th>examples</th></tr>"
         "</thead><tbody>";
    for (size_t i = 0; i < pairs.size() && i < 8; ++i) {
      const json& p = pairs[i];
      s += fmt::format(
          "<tr><td><b>{}</b> \u2194 <b>{}</b></td><td>{:g}</td><td>{}</td><td>{}"
          "</td></tr>",
          esc(str(p, "a")), esc(str(p, "b")), num(p, "count", 0), pct(num(p, "share", 0)),
          example_list(sub(p, "examples"), Detail::kTeacher, 2));
    }
    s += "</tbody></table>";
  }
  return s + "</section>";
}

std::string slices_section(const json& q) {
  std::string s =
      "<section id='slices'><h2>Slices of traffic</h2><p class='explain'>The same held-out "
      "numbers on subsets of inputs: does the surrogate handle short inputs, numbers, other "
      "scripts as well as the rest? A slice with low coverage is traffic that mostly goes to "
      "the LLM; low agreement on a small slice is noisy (see its lower bound).</p>"
      "<table class='compact' id='slice-table'><thead><tr><th>slice</th><th>traces</th>"
      "<th>share</th><th>coverage</th><th>agreement</th><th>lower bound</th>"
      "<th>surrogate alone</th></tr></thead><tbody>";
  for (const auto& r : arr(q, "slices")) {
    s += fmt::format("<tr data-slice='{}'><td>{}</td><td>{:g}</td><td>{}</td>", esc(str(r, "id")),
                     esc(str(r, "name")), num(r, "rows", 0), pct(num(r, "share", 0)));
    s += bar_cell(num(r, "coverage"), kHandled);
    for (const char* k : {"agreement", "lower_bound", "surrogate_agreement"})
      s += "<td>" + pct(num(r, k)) + "</td>";
    s += "</tr>";
  }
  return s + "</tbody></table></section>";
}

std::string curve_section(const ReportInputs& in) {
  const json& q = in.qualitative;
  std::string s = "<section id='curve'><h2>Learning curve: would more traces help?</h2>";
  const json& c = sub(q, "learning_curve");
  if (!c.is_object())
    return s +
           "<p class='muted'>Not computed (it refits the policy ten times). Run <code>tracer "
           "report POLICY_DIR --learning-curve</code> or <code>tracer fit ... "
           "--learning-curve</code> to add it.</p></section>";
  std::string zoo = "the whole zoo";
  if (sub(c, "zoo").is_array()) {
    zoo.clear();
    for (const auto& n : sub(c, "zoo"))
      if (n.is_string()) zoo += (zoo.empty() ? "" : ", ") + n.get<std::string>();
  }
  s += "<p class='explain'>The policy refit on growing, stratified shares of the traces (same "
       "options; surrogates tried: " +
       esc(zoo) +
       "), with the certified coverage at the target for each (solid) and the surrogate's "
       "agreement with the LLM on the select split (dashed). The last point is this policy. A "
       "curve still rising at the right means more traces would let the surrogate answer "
       "more.</p>";
  const json& pts = arr(c, "points");
  double xmax = 1, xmin = 1e18;
  for (const auto& p : pts)
    xmax = std::max(xmax, num(p, "traces", 1)), xmin = std::min(xmin, num(p, "traces", 1));
  Chart ch;
  ch.name = "learning-curve";
  ch.aria = "certified coverage by number of traces";
  ch.x0 = 0, ch.x1 = xmax * 1.03;
  ch.grid_y(5, true);
  for (const auto& p : pts)
    ch.tick_x(num(p, "traces", 0), fmt::format("{:g}", num(p, "traces", 0)));
  const double target = num(c, "target");
  if (std::isfinite(target)) ch.hline(target, fmt::format("target {:g}", target), "#444");
  std::vector<std::pair<double, double>> cov, agr;
  for (const auto& p : pts) {
    if (p.contains("error")) continue;
    cov.emplace_back(num(p, "traces", 0), num(p, "coverage", 0));
    if (std::isfinite(num(p, "surrogate_agreement")))
      agr.emplace_back(num(p, "traces", 0), num(p, "surrogate_agreement"));
  }
  ch.polyline(agr, "#999", true);
  ch.polyline(cov, "#2b8cbe");
  for (const auto& p : pts) {
    const double x = num(p, "traces", 0);
    if (p.contains("error")) {
      ch.dot(x, 0, "#c00", fmt::format("{:g} traces: {}", x, str(p, "error")), 4, true);
      continue;
    }
    ch.dot(x, num(p, "coverage", 0), "#2b8cbe",
           fmt::format("{:g} traces ({:.0f}%): coverage {}{}, surrogate agreement {}", x,
                       num(p, "share", 0) * 100, pct(num(p, "coverage", 0)),
                       flag(p, "deployed") ? "" : " (refused)", pct(num(p, "surrogate_agreement"))),
           4.5, !flag(p, "deployed"));
  }
  ch.legend({{"certified coverage", "#2b8cbe"}, {"surrogate agreement", "#999"}});
  ch.axis_titles("traces used", "share");
  s += ch.svg();
  const json& a = sub(c, "assessment");
  s += fmt::format("<p class='assessment' data-curve-status='{}'><b>{}</b> {}</p>",
                   esc(str(a, "status")),
                   str(a, "status") == "rising"    ? "Still rising."
                   : str(a, "status") == "plateau" ? "Plateau."
                                                   : "",
                   esc(str(a, "message")));
  const json& need = arr(c, "labels_needing_traces");
  if (!need.empty()) {
    s += "<h3>Labels that need more traces</h3><p class='explain'>Low coverage and no more "
         "traces than the median label; trend is the change in coverage over the second half of "
         "the curve.</p><table class='compact'><thead><tr><th>label</th><th>traces</th>"
         "<th>coverage</th><th>trend</th></tr></thead><tbody>";
    for (size_t i = 0; i < need.size() && i < 15; ++i)
      s += fmt::format("<tr><td>{}</td><td>{:g}</td><td>{}</td><td>{}</td></tr>",
                       esc(str(need[i], "label")), num(need[i], "traces", 0),
                       pct(num(need[i], "coverage")),
                       std::isfinite(num(need[i], "trend"))
                           ? fmt::format("{:+.1f} pts", num(need[i], "trend") * 100)
                           : "\u2014");
    s += "</tbody></table>";
  }
  return s + "</section>";
}

std::string map_section(const ReportInputs& in) {
  const json& mp = sub(in.qualitative, "map");
  std::string s = "<section id='map'><h2>Map of held-out traces</h2>";
  if (!flag(mp, "available"))
    return s + "<p class='muted'>Not available" +
           (str(mp, "reason").empty() ? "" : ": " + esc(str(mp, "reason"))) + ".</p></section>";
  const json& ex = sub(mp, "explained_variance");
  s += fmt::format(
      "<p class='explain'>Each dot is a held-out trace, placed by the first two principal "
      "components of its features ({} and {} of the variance), so similar inputs sit close "
      "together. Left: answered (green) or deferred (orange). Right: coloured by the LLM's "
      "label. Deferred traces usually sit where labels overlap. {:g} of {:g} traces shown; "
      "hover for details.</p><div class='maps'>",
      ex.is_array() && ex.size() == 2 && ex[0].is_number() ? pct(ex[0].get<double>()) : "?",
      ex.is_array() && ex.size() == 2 && ex[1].is_number() ? pct(ex[1].get<double>()) : "?",
      num(mp, "shown", 0), num(mp, "rows", 0));
  const json& pts = arr(mp, "points");
  const json& labels = arr(in.manifest, "labels");
  auto name_of = [&](const json& idx) {
    if (!idx.is_number()) return std::string("?");
    const auto i = static_cast<long long>(std::llround(idx.get<double>()));
    return i >= 0 && static_cast<size_t>(i) < labels.size() && labels[i].is_string()
               ? labels[i].get<std::string>()
               : std::string("?");
  };
  // [x, y, teacher, predicted, handled]; anything else (a damaged file) is skipped.
  auto valid = [](const json& p) {
    return p.is_array() && p.size() >= 5 && p[0].is_number() && p[1].is_number() &&
           p[4].is_number();
  };
  double xl = 0, xh = 0, yl = 0, yh = 0;
  for (const auto& p : pts) {
    if (!valid(p)) continue;
    double x = p[0].get<double>(), y = p[1].get<double>();
    xl = std::min(xl, x), xh = std::max(xh, x), yl = std::min(yl, y), yh = std::max(yh, y);
  }
  for (int mode = 0; mode < 2; ++mode) {
    Chart ch;
    ch.name = mode == 0 ? "map-decision" : "map-label";
    ch.aria = mode == 0 ? "held-out traces, answered or deferred" : "held-out traces by label";
    ch.w = 520, ch.h = 440, ch.left = 10, ch.right = 10, ch.top = 28, ch.bottom = 10;
    const double padx = (xh - xl) * 0.03 + 1e-9, pady = (yh - yl) * 0.03 + 1e-9;
    ch.x0 = xl - padx, ch.x1 = xh + padx, ch.y0 = yl - pady, ch.y1 = yh + pady;
    ch.body += fmt::format("<rect x='{:g}' y='{:g}' width='{:g}' height='{:g}' class='frame'/>",
                           ch.left, ch.top, ch.w - ch.left - ch.right, ch.h - ch.top - ch.bottom);
    for (const auto& p : pts) {
      if (!valid(p)) continue;
      const bool handled = p[4].get<double>() != 0;
      const std::string teacher = name_of(p[2]);
      const std::string color =
          mode == 0 ? (handled ? kHandled : kDeferred)
                    : label_color(static_cast<size_t>(
                          // A reloaded report may hold the index as a float ("12.0").
                          p[2].is_number() ? std::max(0.0, std::round(p[2].get<double>())) : 0.0));
      ++ch.marks;
      ch.body += fmt::format(
          "<circle class='mark' cx='{:.1f}' cy='{:.1f}' r='2.6' fill='{}' fill-opacity='0.75'>"
          "<title>{}{}</title></circle>",
          ch.px(p[0].get<double>()), ch.py(p[1].get<double>()), color, esc(teacher),
          handled ? " \u00b7 answered"
                  : " \u00b7 deferred (surrogate: " + esc(name_of(p[3])) + ")");
    }
    if (mode == 0)
      ch.legend({{"answered", kHandled}, {"deferred", kDeferred}});
    else
      ch.body += fmt::format(
          "<text x='{:g}' y='16' class='legend'>colour = LLM label ({} labels)"
          "</text>",
          ch.left + 4, labels.size());
    s += ch.svg();
  }
  return s + "</div></section>";
}

std::string examples_section(const json& q) {
  std::string s =
      "<section id='examples'><h2>Examples per label</h2><p class='explain'>Real "
      "held-out inputs of each LLM label that the surrogate answered and that it "
      "deferred (with its guess and the reason).</p>";
  s += "<div class='label-examples'>";
  for (const auto& l : arr(q, "per_label")) {
    const json& ex = sub(l, "examples");
    s += fmt::format(
        "<details data-label='{}'><summary><b>{}</b> \u2014 {} answered of {:g}"
        "</summary><div class='cols'><div><h4>answered</h4>{}</div><div><h4>deferred"
        "</h4>{}</div></div></details>",
        esc(str(l, "label")), esc(str(l, "label")), pct(num(l, "coverage", 0)),
        num(l, "calibrate_rows", 0), example_list(sub(ex, "handled")),
        example_list(sub(ex, "deferred")));
  }
  return s + "</div></section>";
}

// The versions written (fit and update entries of history.json); rollbacks are events, not fits.
json fit_entries(const json& all) {
  json out = json::array();
  if (!all.is_array()) return out;
  for (const auto& h : all)
    if (h.is_object() && str(h, "event") != "rollback") out.push_back(h);
  return out;
}

// "+2 / -1 (v3)": labels a version answers that the version active before it did not, and
// the reverse; the names in the tooltip.
std::string label_changes_cell(const json& c) {
  if (!c.is_object()) return "<td>-</td>";
  auto names = [](const json& a) {
    std::string out;
    if (a.is_array())
      for (const auto& l : a)
        if (l.is_string()) out += (out.empty() ? "" : ", ") + l.get<std::string>();
    return out;
  };
  const json gained = c.value("labels_gained", json::array());
  const json lost = c.value("labels_lost", json::array());
  const std::string title = "gained: " + (gained.empty() ? "none" : names(gained)) +
                            "; lost: " + (lost.empty() ? "none" : names(lost));
  return fmt::format("<td title='{}'>+{} / &minus;{} (v{:g})</td>", esc(title), gained.size(),
                     lost.size(), num(c, "against_version", 0));
}

// The newest version's largest per-label changes, in words.
std::string latest_changes(const json& h) {
  const json c = sub(h, "changes");
  if (!c.is_object() || !c.contains("largest_changes") || c["largest_changes"].empty()) return "";
  std::string s = fmt::format(
      "<p class='explain'>Largest per-label changes of version {:g} against version {:g} "
      "(coverage on calibrate, not separately certified; distinct training inputs the new "
      "traces added): ",
      num(h, "version", 0), num(c, "against_version", 0));
  bool first = true;
  for (const json& r : c["largest_changes"]) {
    s += fmt::format("{}<b>{}</b> {} &rarr; {} ({:+g} inputs)", first ? "" : "; ",
                     esc(str(r, "label")), pct(num(r, "coverage_before", 0)),
                     pct(num(r, "coverage", 0)), num(r, "training_inputs_added", 0));
    first = false;
  }
  return s + ".</p>";
}

std::string history_section(const json& all) {
  const json history = fit_entries(all);
  if (history.size() < 2) return "";
  size_t rollbacks = 0;
  for (const auto& h : all) rollbacks += h.is_object() && str(h, "event") == "rollback";
  std::string s =
      "<section id='history'><h2>Refit history</h2><p class='explain'>One point per "
      "version written to this folder: certified coverage over time. Hollow points certified "
      "nothing. A version that was not activated (it certified less than the active one, see "
      "<code>tracer versions</code>) is marked in the table." +
      (rollbacks > 0 ? fmt::format(" {} rollback(s) are not drawn.", rollbacks) : std::string()) +
      "</p>";
  Chart ch;
  ch.name = "history";
  ch.aria = "certified coverage per refit";
  ch.x0 = -0.5, ch.x1 = static_cast<double>(history.size()) - 0.5;
  ch.grid_y(5, true);
  std::vector<std::pair<double, double>> line;
  for (size_t i = 0; i < history.size(); ++i) {
    const json& h = history[i];
    const double cov = flag(h, "deployed") ? num(h, "coverage", 0) : 0;
    line.emplace_back(double(i), cov);
    ch.tick_x(double(i), str(h, "created_at").substr(0, 10));
  }
  ch.polyline(line, "#2b8cbe");
  for (size_t i = 0; i < history.size(); ++i) {
    const json& h = history[i];
    ch.dot(double(i), line[i].second, "#2b8cbe",
           fmt::format("{} {}: {} at target {:g}", str(h, "created_at"),
                       flag(h, "deployed") ? str(h, "method") : "refused", pct(line[i].second),
                       num(h, "target", 0)),
           4.5, !flag(h, "deployed"));
  }
  ch.axis_titles("refit", "certified coverage");
  s += ch.svg();
  s += "<table class='compact'><thead><tr><th>version</th><th>created</th><th>policy</th>"
       "<th>deployed</th><th>activated</th><th>method</th><th>target</th><th>coverage</th>"
       "<th>agreement</th><th>lower bound</th><th>labels vs the version active "
       "before</th></tr></thead><tbody>";
  for (auto it = history.rbegin(); it != history.rend(); ++it) {
    const bool kept_out = it->contains("activated") && !flag(*it, "activated");
    s += fmt::format(
        "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td{}>{}</td><td>{}</td>"
        "<td>{:g}</td><td>{}</td><td>{}</td><td>{}</td>{}</tr>",
        it->contains("version") ? fmt::format("{:g}", num(*it, "version", 0)) : "-",
        esc(str(*it, "created_at")), esc(str(*it, "policy_version")),
        flag(*it, "deployed") ? "yes" : "no",
        kept_out ? " title='" + esc(str(*it, "reason")) + "'" : std::string(),
        kept_out ? "no" : "yes", esc(str(*it, "method")), num(*it, "target", 0),
        pct(num(*it, "coverage")), pct(num(*it, "agreement"), 2), pct(num(*it, "lower_bound"), 2),
        label_changes_cell(sub(*it, "changes")));
  }
  return s + "</tbody></table>" + latest_changes(history.back()) + "</section>";
}

std::string zoo_section(const json& m) {
  std::string s =
      "<section id='zoo'><h2>Surrogates tried</h2><p class='explain'>Each candidate "
      "was trained on the train split and scored on the select split; the chosen one "
      "is marked. The calibrate split was used only to certify.</p><table "
      "class='compact'><thead><tr><th>surrogate</th><th>agreement on select</th>"
      "<th>fit time</th></tr></thead><tbody>";
  const std::string chosen = str(sub(m, "surrogate"), "name");
  for (const auto& c : arr(m, "zoo"))
    s += fmt::format("<tr{}><td>{}{}</td><td>{}</td><td>{:.2f} s</td></tr>",
                     str(c, "name") == chosen ? " class='chosen'" : "", esc(str(c, "name")),
                     str(c, "name") == chosen ? " \u2190 chosen" : "",
                     c.contains("error") ? "failed: " + esc(str(c, "error"))
                                         : pct(num(c, "select_agreement"), 2),
                     num(c, "fit_seconds", 0));
  return s + "</tbody></table></section>";
}

constexpr const char* kStyle = R"css(
:root{--fg:#1d2330;--muted:#667085;--line:#e4e7ec;--bg:#fff;--soft:#f6f7f9}
*{box-sizing:border-box}
body{margin:0;color:var(--fg);background:var(--bg);
  font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1080px;margin:0 auto;padding:20px 24px 60px}
header.top{display:flex;justify-content:space-between;align-items:baseline;
  border-bottom:1px solid var(--line);padding-bottom:8px}
header.top .brand{font-weight:700;font-size:18px}
nav a{margin-right:12px;color:#2b6cb0;text-decoration:none;font-size:13px}
h1{font-size:22px;margin:0 0 6px}
h2{font-size:18px;margin:34px 0 6px;border-bottom:1px solid var(--line);padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}h4{margin:6px 0}
.verdict{border-radius:8px;padding:14px 18px;margin:16px 0}
.verdict.deployed{background:#e8f6f0;border:1px solid #9fd8c2}
.verdict.refused{background:#fdf0e6;border:1px solid #f3c19c}
.verdict p{margin:4px 0}
.metrics{display:grid;grid-template-columns:repeat(auto-fill,minmax(132px,1fr));gap:10px}
.metric{background:var(--soft);border:1px solid var(--line);border-radius:8px;padding:10px}
.metric-label{font-size:12px;color:var(--muted)}.metric-value{font-size:22px;font-weight:650}
.metric-hint{font-size:11px;color:var(--muted)}
.meta,.muted,.small{color:var(--muted)}.small{font-size:12px}
.explain{color:#3d4556;max-width:900px}
svg.chart{max-width:100%;height:auto;display:block;margin:8px 0;background:#fff}
svg .grid{stroke:#eceef2}svg .axis{stroke:#98a2b3}svg .tick{font-size:11px;fill:#475467}
svg .axis-title,svg .legend{font-size:12px;fill:#344054}svg .note{font-size:11px}
svg .frame{fill:none;stroke:#e4e7ec}
table{border-collapse:collapse;width:100%;margin:8px 0;font-size:13px}
th,td{border-bottom:1px solid var(--line);padding:4px 6px;text-align:left;vertical-align:top}
th{background:var(--soft);font-weight:600;position:sticky;top:0}
table.fixed{table-layout:fixed}table.fixed td{overflow-wrap:anywhere}
.scroll{max-height:560px;overflow:auto;border:1px solid var(--line);border-radius:6px}
.scroll table{margin:0}td.num{white-space:nowrap;min-width:140px}
table.sortable th{cursor:pointer}table.sortable th[data-dir=asc]::after{content:" \25B2"}
table.sortable th[data-dir=desc]::after{content:" \25BC"}
.bar{display:inline-block;width:54%;height:10px;background:#eef0f3;border-radius:3px;
  margin-right:6px;vertical-align:middle}
.bar span{display:block;height:100%;border-radius:3px}
.pill{color:#fff;border-radius:10px;padding:1px 6px;font-size:11px;white-space:nowrap}
ul.examples{margin:2px 0 6px;padding-left:18px}ul.examples li{margin:2px 0}
q{font-style:italic}
details{margin:4px 0;border:1px solid var(--line);border-radius:6px;padding:4px 8px}
summary{cursor:pointer}
.cols{display:grid;grid-template-columns:1fr 1fr;gap:12px}
.label-examples{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:0 8px}
.label-examples details[open]{grid-column:1/-1}.label-examples summary{overflow-wrap:anywhere}
.maps{display:grid;grid-template-columns:1fr 1fr;gap:8px}
.filters{margin:8px 0}.filters input{padding:4px 8px;width:240px}
.assessment{background:var(--soft);border-left:4px solid #2b8cbe;padding:8px 12px}
tr.chosen td{font-weight:600}
code{background:var(--soft);padding:0 4px;border-radius:3px}
footer{margin-top:40px;color:var(--muted);font-size:12px}
)css";

// Sorting and filtering only; everything is readable without it.
constexpr const char* kScript = R"js(
(function(){
document.querySelectorAll('table.sortable').forEach(function(t){
  t.querySelectorAll('th').forEach(function(th,i){
    th.addEventListener('click',function(){
      var asc=th.dataset.dir!=='asc',b=t.tBodies[0],rows=Array.prototype.slice.call(b.rows);
      t.querySelectorAll('th').forEach(function(h){delete h.dataset.dir;});
      th.dataset.dir=asc?'asc':'desc';
      rows.sort(function(x,y){
        var a=x.cells[i].dataset.value,c=y.cells[i].dataset.value,na=parseFloat(a),nc=parseFloat(c);
        var r=(!isNaN(na)&&!isNaN(nc))?na-nc:String(a).localeCompare(String(c));
        return asc?r:-r;});
      rows.forEach(function(r){b.appendChild(r);});
    });
  });
});
var f=document.getElementById('label-filter'),s=document.getElementById('status-filter');
function apply(){var q=f.value.toLowerCase(),st=s.value;
  document.querySelectorAll('#label-table tbody tr').forEach(function(r){
    r.hidden=(q&&r.dataset.label.toLowerCase().indexOf(q)<0)||(st&&r.dataset.status!==st);});}
if(f&&s){f.hidden=false;s.hidden=false;
  f.addEventListener('input',apply);s.addEventListener('change',apply);}
})();
)js";

json parse_file(const std::filesystem::path& p) {
  try {
    return json::parse(read_whole_file(p.string()));
  } catch (const json::exception& e) {
    throw FormatError(p.string() + " is not valid JSON (" + e.what() +
                      "); refit the policy with `tracer fit`");
  }
}

}  // namespace

std::string html_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 16);
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

json read_history(const std::string& dir) {
  const auto p = std::filesystem::path(dir) / "history.json";
  if (!std::filesystem::exists(p)) return json::array();
  try {
    json h = json::parse(read_whole_file(p.string()));
    return h.is_array() ? h : json::array();
  } catch (const std::exception&) {
    return json::array();  // a damaged history only loses the history chart
  }
}

ReportInputs load_report_inputs(const std::string& dir) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(dir))
    throw InputError("policy folder " + dir +
                     " does not exist; create it with `tracer fit "
                     "TRACES -o " +
                     dir + "`");
  const fs::path base(resolve_policy_dir(dir));
  if (!fs::exists(base / "manifest.json"))
    throw InputError(dir + " has no manifest.json; is it a policy folder written by `tracer fit`?");
  ReportInputs in;
  in.manifest = parse_file(base / "manifest.json");
  check_manifest(in.manifest, (base / "manifest.json").string());
  if (fs::exists(base / "frontier.json")) {
    in.frontier = parse_file(base / "frontier.json");
    check_frontier(in.frontier, (base / "frontier.json").string());
  }
  in.history = read_history(dir);
  if (fs::exists(base / "qualitative_report.json"))
    in.qualitative = parse_file(base / "qualitative_report.json");
  return in;
}

std::string render_report_html(const ReportInputs& in) {
  const json& m = in.manifest;
  const json& q = in.qualitative;
  const bool have_q = q.is_object() && q.contains("per_label");
  std::string s;
  s.reserve(1 << 20);
  s += "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
       "<meta name='viewport' content='width=device-width,initial-scale=1'>"
       "<meta name='generator' content='tracer " +
       esc(str(m, "tracer_version")) + "'><title>tracer report \u2014 " +
       esc(str(m, "policy_version", "policy")) + "</title><style>" + kStyle +
       "</style></head><body><main>";
  s += "<header class='top'><span class='brand'>tracer report</span><nav>"
       "<a href='#frontier'>frontier</a><a href='#labels'>labels</a>";
  if (have_q)
    s += "<a href='#pairs'>confusions</a><a href='#defer'>deferrals</a><a href='#slices'>slices"
         "</a><a href='#curve'>learning curve</a><a href='#map'>map</a><a href='#examples'>"
         "examples</a>";
  if (fit_entries(in.history).size() > 1) s += "<a href='#history'>history</a>";
  s += "<a href='#zoo'>surrogates</a></nav></header>";
  s += headline_section(in);
  if (!have_q)
    s += "<p class='advice'>qualitative_report.json is missing from this policy folder, so only "
         "the manifest's numbers are shown. <code>tracer fit</code> writes it; refit to get "
         "confusions, deferral reasons, slices, the map and examples.</p>";
  s += frontier_section(in);
  s += labels_section(in);
  if (have_q) {
    s += pairs_section(q);
    s += defer_section(q);
    s += slices_section(q);
  }
  if (q.is_object()) s += curve_section(in);  // `report --learning-curve` without the rest
  if (have_q) {
    s += map_section(in);
    s += examples_section(q);
  }
  s += history_section(in.history);
  s += zoo_section(m);
  s += "<footer>All numbers are measured on held-out calibrate traces that were not used to "
       "train or choose the policy" +
       std::string(have_q ? " (split: " + esc(str(q, "split")) + ")" : "") +
       ". The guarantee assumes future traffic is like these traces; watch for drift. "
       "Generated by tracer " +
       esc(str(m, "tracer_version")) + ".</footer>";
  s += "</main><script>" + std::string(kScript) + "</script></body></html>\n";
  return s;
}

}  // namespace tracer
