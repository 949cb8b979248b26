#pragma once
// report.html: one self-contained page (inline CSS and SVG, a few lines of optional vanilla JS,
// no network) rendered from the policy folder's JSON files. Every user string is escaped.
//
// Stable hooks for tests and scripts: headline numbers carry data-metric="NAME" and
// data-value="RAW"; every chart is <svg data-chart="NAME" data-marks="N"> whose N data marks
// have class "mark"; sections have ids (headline, frontier, labels, pairs, defer, slices, curve,
// map, examples, history, zoo).
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace tracer {

struct ReportInputs {
  nlohmann::json manifest;     // required
  nlohmann::json frontier;     // may be null
  nlohmann::json history;      // array (may be empty)
  nlohmann::json qualitative;  // qualitative_report.json; null renders the manifest-only parts
};

// Reads manifest.json (required), frontier.json, history.json and qualitative_report.json from
// a policy folder. Throws InputError when the folder or its manifest is missing, FormatError
// when a present file is not valid JSON.
ReportInputs load_report_inputs(const std::string& dir);
// history.json of a policy folder, or an empty array when absent or unreadable.
nlohmann::json read_history(const std::string& dir);

std::string render_report_html(const ReportInputs& inputs);

// Escapes & < > " ' for HTML text and attribute values.
std::string html_escape(std::string_view s);

}  // namespace tracer
