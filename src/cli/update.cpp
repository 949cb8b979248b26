// `tracer update DIR`: refit a policy folder on its traces plus what the trace store recorded
// since, with the options of the last fit, and optionally tell a running server to reload.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>
#include <unordered_map>

#include "cli/commands.hpp"
#include "cli/fit.hpp"
#include "cli/reload_client.hpp"
#include "io/trace_selection.hpp"
#include "io/trace_store.hpp"
#include "io/traces.hpp"
#include "policy/manifest.hpp"
#include "policy/policy.hpp"
#include "policy/versions.hpp"
#include "serve/audit_state_file.hpp"
#include "util/error.hpp"
#include "util/time_text.hpp"

namespace tracer::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct UpdateArgs {
  std::string policy;
  std::vector<std::string> traces;
  std::string db;
  bool no_db = false;
  std::string reload;
  std::string api_key;
  int threads = 1;
  bool quiet = false;
  bool json = false;
  bool no_report = false;
  std::string promote = "auto";
  std::string window;  // --window: a duration, e.g. 30d
  FitRun run;          // the version options (--promote, --max-coverage-drop, --keep), --max-traces
};

json read_json(const fs::path& p) {
  try {
    return json::parse(read_whole_file(p.string()));
  } catch (const json::exception& e) {
    throw FormatError(p.string() + " is not valid JSON (" + e.what() +
                      "); refit with `tracer fit`");
  }
}

// Removes the trace-store export when the update ends, however it ends.
struct TempFile {
  fs::path path;
  ~TempFile() {
    std::error_code ec;
    if (!path.empty()) fs::remove(path, ec);
  }
};

// The identity of a trace when two sources are merged: its input and teacher label.
std::string pair_key(const std::string& input, const std::string& teacher) {
  return std::to_string(input.size()) + ':' + input + teacher;
}

struct StoreExport {
  size_t rows = 0;     // written to the export
  size_t dropped = 0;  // left out: already in the trace files
};

// The store's traces whose label is the LLM's (see TraceStore::export_jsonl, llm_labels_only),
// less those already in `files`. A trace of the files and a store row with the same input and
// label are one trace (the store imported the file, or the file is an export of the store), so
// each line of the files cancels one such store row; store rows beyond the files' copies
// (traffic the proxy recorded again since) are kept.
// With a window (since_ms), only store rows and file lines recorded since then count: a file
// line the window leaves out cancels nothing.
StoreExport export_llm_traces(const std::string& db, const std::vector<std::string>& files,
                              bool skip_invalid, int64_t since_ms, const fs::path& out) {
  std::unordered_map<std::string, uint32_t> in_files;
  ReadOptions ro;
  ro.skip_invalid = skip_invalid;
  for (const auto& file : files)
    stream_traces(file, ro, [&](Trace&& t) {
      if (since_ms == INT64_MIN || trace_time_ms(t) >= since_ms)
        ++in_files[pair_key(t.input, t.teacher)];
    });
  std::ofstream f(out);
  if (!f) throw InputError("cannot write " + out.string());
  StoreExport e;
  {
    TraceStore store(db);
    TraceStore::ExportOptions eo;
    eo.llm_labels_only = true;  // all times: the window is applied when the fit reads the
                                // export, so rows before it are counted as left out
    eo.keep = [&](const std::string& input, const std::string& teacher) {
      auto it = in_files.find(pair_key(input, teacher));
      if (it == in_files.end() || it->second == 0) return true;
      --it->second;
      ++e.dropped;
      return false;
    };
    e.rows = store.export_jsonl(f, eo);
  }
  f.close();
  if (!f) throw InputError("failed writing " + out.string());
  return e;
}

// Whether `tracer serve` saved a tripped shadow audit for the active version (DIR/
// audit_state.json, serve/audit_state_file.hpp). An unreadable state file counts as not tripped
// and is reported.
bool active_audit_tripped(const std::string& dir, const json& manifest) {
  try {
    const auto saved =
        serve::AuditStateFile(dir).load(manifest.value("policy_version", std::string()));
    return saved && saved->state.tripped;
  } catch (const std::exception& e) {
    std::cerr << "warning: " << e.what() << "\n";
    return false;
  }
}

int run_update(const UpdateArgs& a) {
  const fs::path dir(a.policy);
  if (!fs::exists(dir / "manifest.json"))
    throw InputError(a.policy +
                     " has no manifest.json; create the policy with `tracer fit "
                     "TRACES -o " +
                     a.policy + "` first");
  const fs::path active(resolve_policy_dir(a.policy));
  const json manifest = read_json(active / "manifest.json");
  check_manifest(manifest, (active / "manifest.json").string());
  const json frontier =
      fs::exists(active / "frontier.json") ? read_json(active / "frontier.json") : json();
  if (!frontier.is_null()) check_frontier(frontier, (active / "frontier.json").string());
  FitRun run;
  run.out = a.policy;
  run.event = "update";
  run.promotion = a.run.promotion;
  run.promotion.mode = parse_promotion_mode(a.promote);
  run.promotion.active_audit_tripped = active_audit_tripped(a.policy, manifest);
  run.keep = a.run.keep;
  run.fit = fit_options_from(manifest.value("options", json()), manifest, frontier);
  run.fit.threads = a.threads;
  run.quiet = a.quiet;
  run.json = a.json;
  run.no_report = a.no_report;
  run.selection.max_traces = a.run.selection.max_traces;
  run.selection.seed = run.fit.seed;
  if (!a.window.empty())
    run.selection.since_ms = unix_now_ms() - parse_duration_seconds(a.window, "--window") * 1000;

  if (!a.traces.empty()) {
    run.traces = a.traces;
  } else {
    const json t = manifest.value("traces", json::object());
    if (t.contains("paths") && t["paths"].is_array()) {
      for (const auto& p : t["paths"]) run.traces.push_back(p.get<std::string>());
    } else if (t.contains("path") && t["path"].is_string()) {
      run.traces.push_back(t["path"]);
    }
    if (run.traces.empty())
      throw InputError(
          "manifest.json does not say which traces the last fit used; pass them "
          "with --traces FILE");
    for (const auto& p : run.traces)
      if (!fs::exists(p))
        throw InputError("the last fit's trace file " + p +
                         " is gone; pass the traces to refit on with --traces FILE");
  }

  TempFile exported;
  size_t from_store = 0, dropped = 0;
  const std::string db = a.db.empty() ? (dir / "traces.db").string() : a.db;
  if (!a.no_db) {
    if (fs::exists(db)) {
      exported.path = dir / (".update-traces-" + std::to_string(::getpid()) + ".jsonl");
      const StoreExport e = export_llm_traces(db, run.traces, run.skip_invalid,
                                              run.selection.since_ms, exported.path);
      from_store = e.rows;
      dropped = e.dropped;
      if (from_store > 0) {
        run.traces.push_back(exported.path.string());
        run.store_path = db;
        run.store_rows = from_store;
      }
    } else if (!a.db.empty()) {
      throw InputError("no trace store at " + a.db);
    }
  }
  if (!a.quiet && !a.json) {
    std::cerr << "refitting " << a.policy << " on";
    for (size_t i = 0; i + (from_store > 0 ? 1 : 0) < run.traces.size(); ++i)
      std::cerr << " " << run.traces[i];
    if (!a.no_db) {
      std::cerr << " + " << from_store << " trace(s) from " << db;
      if (dropped > 0) std::cerr << " (" << dropped << " dropped as already in the trace files)";
    }
    std::cerr << " (target " << run.fit.target << ", delta " << run.fit.delta;
    if (!a.window.empty())
      std::cerr << "; traces recorded in the last " << a.window << " only, since "
                << format_utc_timestamp(run.selection.since_ms / 1000);
    std::cerr << ")\n";
  }
  const FitOutcome out = fit_and_write(run);
  if (!a.quiet && !a.json)
    std::cout << "policy " << manifest.value("policy_version", std::string("?")) << " -> "
              << (out.activated ? "version " + std::to_string(out.version)
                                : "unchanged (version " + std::to_string(out.version) +
                                      " written, not activated)")
              << "\n";
  if (!a.reload.empty()) {
    if (!out.activated) {
      if (!a.quiet && !a.json)
        std::cout << "not reloading " << a.reload << ": the active version did not change\n";
    } else {
      reload_server(a.reload, a.api_key, "the policy was updated");
      if (!a.quiet && !a.json) std::cout << "reloaded " << a.reload << "\n";
    }
  }
  return out.exit_code;
}

}  // namespace

Command add_update_command(CLI::App& app) {
  auto args = std::make_shared<UpdateArgs>();
  auto* sub = app.add_subcommand(
      "update",
      "Refit a policy folder as traces accumulate: its last fit's traces plus the LLM-labelled "
      "traces the proxy recorded in DIR/traces.db (requests it deferred and shadow audits; not "
      "answers of the surrogate itself; a store trace with the input and label of a line of the "
      "trace files is that line, used once), with the options of the last fit (target, delta, zoo, "
      "split, seed). Writes a new version DIR/versions/N/ and activates it only when it "
      "certifies at least the active version's share of traffic (--promote, "
      "--max-coverage-drop): a worse refit never replaces the good policy. history.json gains "
      "an entry either way. Exit codes: 0 certified and activated, 4 refused, 5 certified but "
      "not activated; --reload only reloads when the active version changed.");
  sub->add_option("policy", args->policy, "Policy folder written by `tracer fit`")
      ->required()
      ->check(CLI::ExistingDirectory);
  sub->add_option("--traces", args->traces,
                  "Trace file(s) to refit on instead of those the last fit read (recorded in "
                  "manifest.json)");
  sub->add_option("--db", args->db, "Trace store to add (default: POLICY/traces.db if present)");
  sub->add_flag("--no-db", args->no_db, "Do not add traces from the trace store");
  sub->add_option("--reload", args->reload,
                  "After writing, POST /v1/admin/reload to this running `tracer serve`, e.g. "
                  "http://127.0.0.1:8000");
  sub->add_option("--api-key", args->api_key, "API key of that server, if it has one");
  sub->add_option("--window", args->window,
                  "Refit on recent traces only: those recorded in this last duration (30d, 12h, "
                  "2w), by their metadata.time_ms. Trace-file lines without a time are left out "
                  "too. Use it when the LLM's answers changed, so old labels stop counting "
                  "(docs/versions.md, \"Windows and caps\")")
      ->check([](const std::string& v) {
        return v.empty() ? std::string("--window needs a duration such as 30d, 12h or 2w")
                         : std::string();
      });
  args->run.promotion.max_coverage_drop = 0.0;
  add_version_options(sub, args->run, args->promote);
  add_selection_options(sub, args->run);
  args->threads = std::max(1u, std::thread::hardware_concurrency());
  sub->add_option("--threads", args->threads, "Worker threads")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  sub->add_flag("--no-report", args->no_report,
                "Do not write qualitative_report.json and report.html");
  sub->add_flag("-q,--quiet", args->quiet, "No progress or summary output");
  sub->add_flag("--json", args->json, "Print the new manifest as JSON instead of the summary");
  return {sub, [args] { return run_update(*args); }};
}

}  // namespace tracer::cli
