// `tracer traces export|count|import`: inspect and move the traces in the trace store.
#include "io/traces.hpp"

#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "io/trace_store.hpp"
#include "util/error.hpp"
#include "util/time_text.hpp"

namespace tracer::cli {
namespace {

constexpr const char* kDefaultDb = ".tracer/traces.db";

struct TracesArgs {
  std::string db = kDefaultDb;
  std::string output;
  bool include_unknown = false;
  int64_t since_ms = -1;
  std::string since;  // --since / --until: parse_time_point_ms forms
  std::string until;
  std::string file;
  bool skip_invalid = false;
};

// Reading commands must not create an empty store at a mistyped path.
void require_store(const std::string& db) {
  if (!std::filesystem::is_regular_file(db)) {
    throw InputError("no trace store at " + db +
                     "; give its path with --db, or create one with "
                     "`tracer traces import FILE.jsonl --db " +
                     db + "`");
  }
}

struct TimeRange {
  int64_t since_ms = INT64_MIN;
  int64_t until_ms = INT64_MAX;
  bool bounded() const { return since_ms != INT64_MIN || until_ms != INT64_MAX; }
};

// --since / --until (and count's --since-ms) as one half-open range [since, until).
TimeRange time_range(const TracesArgs& a) {
  TimeRange r;
  const int64_t now = unix_now_ms();
  if (!a.since.empty()) r.since_ms = parse_time_point_ms(a.since, now, "--since");
  if (a.since_ms >= 0) r.since_ms = a.since_ms;
  if (!a.until.empty()) r.until_ms = parse_time_point_ms(a.until, now, "--until");
  if (r.since_ms >= r.until_ms)
    throw InputError("--since (" + format_utc_timestamp(r.since_ms / 1000) +
                     ") must be before --until (" + format_utc_timestamp(r.until_ms / 1000) + ")");
  return r;
}

std::string describe(const TimeRange& r) {
  std::string s;
  if (r.since_ms != INT64_MIN) s += " since " + format_utc_timestamp(r.since_ms / 1000);
  if (r.until_ms != INT64_MAX) s += " until " + format_utc_timestamp(r.until_ms / 1000);
  return s;
}

int run_export(const TracesArgs& a) {
  require_store(a.db);
  const TimeRange range = time_range(a);
  TraceStore store(a.db);
  const int64_t total = store.count_between(range.since_ms, range.until_ms);
  TraceStore::ExportOptions eo;
  eo.include_unknown = a.include_unknown;
  eo.since_ms = range.since_ms;
  eo.until_ms = range.until_ms;
  size_t written = 0;
  if (a.output.empty()) {
    written = store.export_jsonl(std::cout, eo);
  } else {
    // Temporary file + rename: a failed export never leaves a truncated trace file behind.
    const std::string tmp = a.output + ".tmp";
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      if (!out) throw InputError("cannot write " + tmp + "; check that the folder exists");
      try {
        written = store.export_jsonl(out, eo);
      } catch (...) {
        out.close();
        std::filesystem::remove(tmp);
        throw;
      }
    }
    std::error_code ec;
    std::filesystem::rename(tmp, a.output, ec);
    if (ec) throw InputError("cannot rename " + tmp + " to " + a.output + ": " + ec.message());
  }
  std::cerr << "exported " << written << " of the " << total << " stored traces" << describe(range);
  if (range.bounded()) std::cerr << " (" << store.count() << " in the store)";
  std::cerr << (a.output.empty() ? std::string() : " to " + a.output);
  if (static_cast<int64_t>(written) < total)
    std::cerr << " (" << total - static_cast<int64_t>(written)
              << " with an unknown label or blank input skipped; --include-unknown keeps them)";
  std::cerr << "\n";
  return 0;
}

int run_count(const TracesArgs& a) {
  require_store(a.db);
  const TimeRange range = time_range(a);
  TraceStore store(a.db);
  std::cout << (range.bounded() ? store.count_between(range.since_ms, range.until_ms)
                                : store.count())
            << "\n";
  return 0;
}

// What a line's metadata says about it: traces exported earlier keep their time, policy version
// and decision; `source` (with the line's integer `id`) marks a line of a store's own export.
struct LineMetadata {
  std::string source;  // "" when absent
};

LineMetadata apply_metadata(const std::string& metadata, StoredTrace& row) {
  LineMetadata m;
  if (metadata.empty()) return m;
  const auto j = nlohmann::json::parse(metadata, nullptr, false);
  if (!j.is_object()) return m;
  if (auto it = j.find("time_ms"); it != j.end() && it->is_number_integer())
    row.time_ms = it->get<int64_t>();
  if (auto it = j.find("policy_version"); it != j.end() && it->is_string())
    row.policy_version = it->get<std::string>();
  if (auto it = j.find("decision"); it != j.end() && it->is_string())
    row.decision = it->get<std::string>();
  if (auto it = j.find("source"); it != j.end() && it->is_string())
    m.source = it->get<std::string>();
  if (auto it = j.find("sampled"); it != j.end() && it->is_boolean()) row.sampled = it->get<bool>();
  return m;
}

// The row id of a line exported from a trace store ("id" a positive integer, metadata with a
// source and a time), or 0.
int64_t exported_row_id(const Trace& t, const LineMetadata& m, const StoredTrace& row) {
  if (m.source.empty() || row.time_ms == 0 || t.id.empty() || t.id.size() > 18) return 0;
  for (char c : t.id)
    if (c < '0' || c > '9') return 0;
  return std::stoll(t.id);
}

int run_import(const TracesArgs& a) {
  ReadOptions options;
  options.skip_invalid = a.skip_invalid;
  ReadReport report;
  // All-or-nothing: the whole file is validated before the first row is stored.
  TraceSet set = read_traces(a.file, options, &report);
  // Import keys are hashes, so a batch's index entries land all over the UNIQUE index; larger
  // transactions write each touched index page fewer times (about 2x faster than 256 rows).
  TraceStoreOptions store_options;
  store_options.batch_rows = 8192;
  TraceStore store(a.db, store_options);
  // A record already in the store is not stored again: a line of this store's own export is
  // recognised by its row; any other line by its import key (docs/trace_store.md, "Imports are
  // idempotent").
  ImportKeyer keyer;
  size_t own_rows = 0;
  for (Trace& t : set.traces) {
    StoredTrace row;
    row.source = "import";
    const LineMetadata m = apply_metadata(t.metadata, row);
    ImportedLine line;
    line.id = t.id;
    line.input = t.input;
    line.teacher = t.teacher;
    line.policy_version = row.policy_version;
    line.decision = row.decision;
    if (row.time_ms != 0) line.time_ms = row.time_ms;
    row.import_key = keyer.next(line);
    row.input = std::move(t.input);
    row.teacher = std::move(t.teacher);
    if (const int64_t id = exported_row_id(t, m, row); id > 0) {
      StoredTrace same = row;
      same.source = m.source;
      if (store.has_row(id, same)) {
        ++own_rows;
        continue;
      }
    }
    store.append(std::move(row));
  }
  store.flush();
  const uint64_t already = own_rows + store.already_stored();
  std::cerr << "imported " << set.size() << " traces from " << a.file << " into " << a.db << ": "
            << set.size() - already << " new, " << already << " already in the store ("
            << store.count() << " stored)";
  if (report.skipped > 0) std::cerr << "; skipped " << report.skipped << " invalid lines";
  std::cerr << "\n";
  for (const auto& e : report.errors) std::cerr << "  " << e << "\n";
  return 0;
}

void add_db_option(CLI::App* app, TracesArgs& args) {
  app->add_option("--db", args.db, "Trace store (SQLite file) to use")->default_str(kDefaultDb);
}

void add_time_options(CLI::App* app, TracesArgs& args) {
  app->add_option("--since", args.since,
                  "Only traces recorded at or after this time: a duration back from now (7d, "
                  "12h, 2w), a date (2026-11-30, UTC midnight) or an ISO-8601 date-time "
                  "(2026-11-30T14:05:09Z, 2026-11-30T16:05+02:00; no zone = UTC)");
  app->add_option("--until", args.until,
                  "Only traces recorded before this time (same forms as --since)");
}

}  // namespace

Command add_traces_command(CLI::App& app) {
  auto args = std::make_shared<TracesArgs>();
  auto* sub = app.add_subcommand(
      "traces",
      "Inspect and move the traces in the trace store (the SQLite file where `tracer serve` "
      "records the LLM's answers): export them for `tracer fit`, count them, import a file.");
  sub->require_subcommand(1);

  auto* exp = sub->add_subcommand(
      "export",
      "Write the stored traces as JSONL trace lines, oldest first, readable by `tracer fit`: "
      "{\"input\", \"teacher\", \"id\", \"metadata\": {\"time_ms\", \"source\", "
      "\"policy_version\", \"decision\", \"sampled\" (only when true: part of the proxy's "
      "traffic sample)}}. A summary goes to stderr.");
  add_db_option(exp, *args);
  exp->add_option("-o,--output", args->output,
                  "Write the JSONL here (atomically: temporary file + rename) instead of stdout");
  exp->add_flag("--include-unknown", args->include_unknown,
                "Also write traces whose LLM answer was outside the label space, with "
                "\"teacher\": null, \"label_known\": false and \"raw_output\"; `tracer fit` then "
                "needs --skip-invalid");
  add_time_options(exp, *args);

  auto* cnt = sub->add_subcommand("count", "Print the number of stored traces");
  add_db_option(cnt, *args);
  add_time_options(cnt, *args);
  cnt->add_option("--since-ms", args->since_ms,
                  "Count only traces recorded at or after this time (unix epoch milliseconds; "
                  "overrides --since)")
      ->check(CLI::NonNegativeNumber);

  auto* imp = sub->add_subcommand(
      "import",
      "Append the traces of a JSONL or CSV trace file to the store (source \"import\"; "
      "time_ms, policy_version, decision and sampled are kept from their metadata when present). "
      "Idempotent: records already in the store (a line with the same id, input, label and "
      "metadata, or the store's own exported rows) are not stored again, so importing a file "
      "twice stores it once; repeated lines of one file are all kept. "
      "The file is validated as a whole first: nothing is stored unless every line is valid "
      "(or --skip-invalid).");
  imp->add_option("file", args->file, "Trace file (.jsonl or .csv) to import")
      ->required()
      ->check(CLI::ExistingFile);
  add_db_option(imp, *args);
  imp->add_flag("--skip-invalid", args->skip_invalid,
                "Skip invalid lines (reporting how many and why) instead of rejecting the file");

  return {sub, [args, exp, cnt, imp]() -> int {
            if (exp->parsed()) return run_export(*args);
            if (cnt->parsed()) return run_count(*args);
            if (imp->parsed()) return run_import(*args);
            throw InputError("tracer traces needs a subcommand: export, count or import");
          }};
}

}  // namespace tracer::cli
