// Real-trace benchmark (issue #9): fits on real zero-shot LLM traces (Banking77 open intent,
// qwen3:8b and mistral:7b via Ollama) and on Banking77 gold labels, routes each dataset's test
// file as fresh traffic, and checks validity over random re-splits, including a
// production-like pool with heavy duplicates (issue #17).
//
// Table 1 "cases": one fit per case (default FitOptions but target; delta 0.05): coverage on
// test, agreement on handled test rows, fit time, certified / refused / error, and the goal.
// Duplicates check: the qwen3 2,000 sample with every line 5 times against the sample once.
// Table 2 "validity": per dataset, --resplits random re-splits of train+test at the original
// sizes; counts test agreement < alpha (raw) and its 95% Clopper–Pearson upper bound < alpha
// (significant).
//
// The samples (Python's random.Random(seed).shuffle of a file's lines) are written by
// bench/make_real_trace_samples.py, which this benchmark runs unless --samples DIR is given.
// Writes bench/results/real_traces_bench.json (after each section, so a cut run keeps what it
// finished).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <unordered_set>

#include "bench_util.hpp"
#include "fit/fitter.hpp"
#include "gate/bounds.hpp"
#include "io/traces.hpp"
#include "runtime/router.hpp"
#include "util/progress.hpp"

using namespace tracer;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr double kDelta = 0.05;
constexpr uint64_t kZipfSeed = 17;  // the duplicated pool is built once, with this seed
int g_threads = 2;
// Surrogates for the validity re-splits (the guarantee does not depend on the surrogate; a
// small zoo keeps 400 fits within the time budget). Empty: the default zoo.
std::vector<std::string> g_validity_zoo = {"logreg_strong", "linear_svm"};

// ---- manifest fields, read defensively (the manifest layout may change) ----

json field(const json& j, std::initializer_list<const char*> path) {
  const json* cur = &j;
  for (const char* k : path) {
    if (!cur->is_object()) return nullptr;
    auto it = cur->find(k);
    if (it == cur->end()) return nullptr;
    cur = &*it;
  }
  return *cur;
}

std::string show(const json& v, const char* fmt = "%.4f") {
  if (v.is_null()) return "-";
  if (v.is_number_float()) {
    char b[64];
    std::snprintf(b, sizeof b, fmt, v.get<double>());
    return b;
  }
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

// ---- traces ----

TraceSet from_traces(std::vector<Trace> traces) {
  TraceSet s;
  std::map<std::string, int> idx;
  for (auto& t : traces) idx[t.teacher] = 0;
  for (auto& [l, i] : idx) i = static_cast<int>(s.labels.size()), s.labels.push_back(l);
  for (auto& t : traces) s.y.push_back(idx[t.teacher]);
  s.traces = std::move(traces);
  return s;
}

std::vector<Trace> concat(const std::vector<Trace>& a, const std::vector<Trace>& b) {
  std::vector<Trace> out = a;
  out.insert(out.end(), b.begin(), b.end());
  return out;
}

std::vector<Trace> filter_labels(const std::vector<Trace>& v, const std::set<std::string>& labels,
                                 bool keep) {
  std::vector<Trace> out;
  for (const auto& t : v)
    if (labels.count(t.teacher) == (keep ? 1u : 0u)) out.push_back(t);
  return out;
}

// ---- fit and route ----

struct TestEval {
  size_t n = 0, handled = 0, agree = 0;
  double coverage = 0, agreement = 0;
  double upper = 1;  // one-sided 95% Clopper–Pearson upper bound on the handled agreement
  json to_json() const {
    return {{"rows", n},
            {"handled", handled},
            {"agree", agree},
            {"coverage", coverage},
            {"agreement", agreement},
            {"agreement_upper95", upper}};
  }
};

TestEval evaluate(const Router& router, const std::vector<Trace>& test) {
  RouteScratch s = router.make_scratch();
  TestEval e;
  for (const auto& t : test) {
    RouteResult r = router.route(t.input, s);
    ++e.n;
    if (!r.handled) continue;
    ++e.handled;
    e.agree += router.label_name(r.label) == t.teacher;
  }
  e.coverage = e.n ? double(e.handled) / e.n : 0;
  e.agreement = e.handled ? double(e.agree) / e.handled : 0;
  if (e.handled) e.upper = clopper_pearson_upper(int(e.handled), int(e.agree), 0.95);
  return e;
}

struct FitRun {
  bool ok = false, deployed = false;
  std::string error;
  double fit_seconds = 0;
  json manifest;
  std::optional<Router> router;

  std::string status() const {
    if (!ok) return "error: " + error;
    if (deployed) return "certified";
    return "refused: " + show(field(manifest, {"gate", "refusal", "reason"}));
  }
  std::string status_short() const { return !ok ? "ERROR" : deployed ? "certified" : "REFUSED"; }
};

FitRun run_fit(const TraceSet& train, double alpha, const std::vector<std::string>& zoo = {}) {
  FitRun f;
  FitOptions fo;
  fo.zoo = zoo;
  fo.target = alpha;
  fo.delta = kDelta;
  fo.threads = g_threads;
  Stopwatch sw;
  try {
    Progress quiet(false);
    FitResult r = fit_policy(train, fo, quiet);
    f.fit_seconds = sw.seconds();
    f.ok = true;
    f.deployed = field(r.manifest, {"gate", "deployed"}).is_boolean()
                     ? field(r.manifest, {"gate", "deployed"}).get<bool>()
                     : r.deployed;
    f.manifest = r.manifest;
    f.router.emplace(std::move(r.policy), std::move(r.manifest));
  } catch (const std::exception& e) {
    f.fit_seconds = sw.seconds();
    f.error = e.what();
  }
  return f;
}

// ---- table 1 ----

struct Goal {
  double min_coverage = 0;   // on test
  double min_agreement = 0;  // on handled test rows
  bool must_certify = false;
  std::string text;
  bool met(const FitRun& f, const TestEval& e) const {
    if (!f.ok) return false;
    if (must_certify && !f.deployed) return false;
    return e.coverage >= min_coverage && (min_agreement <= 0 || e.agreement >= min_agreement);
  }
};

struct Case {
  std::string name;
  std::string train_desc;
  const TraceSet* train;
  const std::vector<Trace>* test;
  double alpha;
  Goal goal;
};

json manifest_summary(const json& m) {
  json certified = field(m, {"gate", "certified"});
  return {{"method", field(m, {"gate", "method"})},
          {"surrogate", field(m, {"surrogate", "name"})},
          {"certified", certified},
          {"split", field(m, {"split"})}};
}

// ---- table 2 ----

struct ValiditySpec {
  std::string name, desc;
  std::vector<Trace> pool;
  size_t n_train = 0, n_test = 0;
  double alpha = 0.9;
  json pool_info;
};

json run_validity(const ValiditySpec& v, int runs) {
  int raw = 0, significant = 0, refused = 0, errors = 0, no_handled = 0;
  double cov_sum = 0, agr_sum = 0, fit_sum = 0;
  int deployed_runs = 0, agr_runs = 0;
  json per_run = json::array();
  Stopwatch sw;
  const size_t n_test = std::min(v.n_test, v.pool.size() - std::min(v.pool.size(), v.n_train));
  for (int run = 0; run < runs; ++run) {
    std::mt19937_64 rng(static_cast<uint64_t>(run));
    std::vector<Trace> shuffled = v.pool;
    std::shuffle(shuffled.begin(), shuffled.end(), rng);
    std::vector<Trace> test(shuffled.begin() + v.n_train, shuffled.begin() + v.n_train + n_test);
    shuffled.resize(v.n_train);
    FitRun f = run_fit(from_traces(std::move(shuffled)), v.alpha, g_validity_zoo);
    fit_sum += f.fit_seconds;
    json row{{"run", run}, {"status", f.status_short()}, {"fit_seconds", f.fit_seconds}};
    std::string line;
    if (!f.ok) {
      ++errors;
      row["error"] = f.error;
      line = "ERROR " + f.error;
    } else if (!f.deployed) {
      ++refused;
      line = "refused";
    } else {
      ++deployed_runs;
      TestEval e = evaluate(*f.router, test);
      row.update(e.to_json());
      row["calibrate_coverage"] = field(f.manifest, {"gate", "certified", "coverage"});
      cov_sum += e.coverage;
      bool r = false, s = false;
      if (e.handled == 0) {
        ++no_handled;
      } else {
        ++agr_runs;
        agr_sum += e.agreement;
        r = e.agreement < v.alpha;
        s = e.upper < v.alpha;
        raw += r;
        significant += s;
      }
      row["raw_violation"] = r;
      row["significant_violation"] = s;
      char b[200];
      std::snprintf(b, sizeof b, "coverage %.4f agreement %.4f (%zu/%zu) upper %.4f%s%s",
                    e.coverage, e.agreement, e.agree, e.handled, e.upper, r ? " RAW" : "",
                    s ? " SIGNIFICANT" : "");
      line = b;
    }
    per_run.push_back(row);
    double el = sw.seconds();
    std::fprintf(stderr, "[validity %s] run %d/%d: %s; fit %.1f s, elapsed %.0f s, eta %.0f s\n",
                 v.name.c_str(), run + 1, runs, line.c_str(), f.fit_seconds, el,
                 el / (run + 1) * (runs - run - 1));
  }
  double mean_cov = deployed_runs ? cov_sum / deployed_runs : 0;
  double mean_agr = agr_runs ? agr_sum / agr_runs : 0;
  std::printf("%-16s %5.2f %6zu %6zu %5d %6d %6d %8d %8d %9.4f %9.4f %8.2f\n", v.name.c_str(),
              v.alpha, v.n_train, n_test, runs, raw, significant, refused, errors, mean_cov,
              mean_agr, runs ? fit_sum / runs : 0.0);
  std::fflush(stdout);
  return {{"name", v.name},
          {"description", v.desc},
          {"alpha", v.alpha},
          {"delta", kDelta},
          {"pool_rows", v.pool.size()},
          {"train_rows", v.n_train},
          {"test_rows", n_test},
          {"runs", runs},
          {"raw_violations", raw},
          {"significant_violations", significant},
          {"refused", refused},
          {"errors", errors},
          {"deployed_without_handled_test_rows", no_handled},
          {"mean_coverage_deployed", mean_cov},
          {"mean_agreement_deployed", mean_agr},
          {"mean_fit_seconds", runs ? fit_sum / runs : 0.0},
          {"seconds", sw.seconds()},
          {"pool", v.pool_info},
          {"per_run", per_run}};
}

// One input is `hot_share` of the rows; the rest are drawn from a Zipf(s) law over the other
// distinct texts, whose ranks are a seeded random order. Copies keep their trace's teacher.
std::vector<Trace> zipf_pool(const std::vector<Trace>& base, size_t rows, double hot_share,
                             double s, uint64_t seed, json& info) {
  std::vector<const Trace*> distinct;
  std::unordered_set<std::string> seen;
  for (const auto& t : base)
    if (seen.insert(t.input).second) distinct.push_back(&t);
  std::mt19937_64 rng(seed);
  std::shuffle(distinct.begin(), distinct.end(), rng);
  const size_t n_hot = static_cast<size_t>(std::llround(hot_share * double(rows)));
  std::vector<double> w(distinct.size() - 1);
  for (size_t k = 0; k < w.size(); ++k) w[k] = std::pow(double(k + 1), -s);
  std::discrete_distribution<size_t> zipf(w.begin(), w.end());
  std::vector<Trace> pool(n_hot, *distinct[0]);
  std::map<size_t, size_t> counts;
  for (size_t i = n_hot; i < rows; ++i) {
    size_t k = zipf(rng);
    ++counts[k];
    pool.push_back(*distinct[k + 1]);
  }
  std::vector<size_t> top;
  for (auto& [k, c] : counts) top.push_back(c);
  std::sort(top.rbegin(), top.rend());
  top.resize(std::min<size_t>(top.size(), 5));
  info = {{"rows", rows},
          {"seed", seed},
          {"zipf_exponent", s},
          {"hot_share", hot_share},
          {"hot_rows", n_hot},
          {"hot_input", distinct[0]->input},
          {"hot_teacher", distinct[0]->teacher},
          {"base_distinct_texts", distinct.size()},
          {"distinct_texts", counts.size() + 1},
          {"top_tail_counts", top}};
  return pool;
}

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Real-trace benchmark (issue #9): LLM-trace cases and validity over re-splits"};
  std::string data = bench::shared_data_dir();
  std::string out = bench::default_result_path("real_traces_bench");
  std::string samples;
  std::string python = "python3";
  int resplits = 100;
  bool quick = false, skip_table = false;
  std::string validity_sets = "qwen3_2k,banking77,clinc150_inscope,qwen3_zipf";
  app.add_option("--data", data,
                 "Folder holding banking77/, clinc150/, banking77_open_intent_ollama/");
  app.add_option("--samples", samples,
                 "Folder with the samples of bench/make_real_trace_samples.py (default: run it "
                 "into bench/results/samples/)");
  app.add_option("--python", python, "Python interpreter for make_real_trace_samples.py");
  app.add_option("--json-out", out);
  app.add_option("--resplits", resplits, "Random re-splits per validity dataset (0: skip)");
  app.add_flag("--quick", quick, "10 re-splits per validity dataset");
  app.add_flag("--skip-table", skip_table, "Only run the validity check");
  app.add_option("--validity-datasets", validity_sets,
                 "Comma-separated: qwen3_2k, banking77, clinc150_inscope, qwen3_zipf");
  app.add_option("--threads", g_threads, "FitOptions.threads for every fit");
  app.add_option("--validity-zoo", g_validity_zoo,
                 "Surrogates for the validity re-splits (comma-separated; 'default' for the "
                 "default zoo)")
      ->delimiter(',')
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (g_validity_zoo.size() == 1 && g_validity_zoo[0] == "default") g_validity_zoo.clear();
  if (quick) resplits = 10;

  json result;
  result["data"] = data;
  result["delta"] = kDelta;
  auto save = [&] { bench::write_result(out, result); };
  auto load = [&](const std::string& path) { return read_traces(path); };
  const std::string llm = data + "/banking77_open_intent_ollama/";

  if (!skip_table) {
    if (samples.empty()) {
      samples = std::string(TRACER_SOURCE_DIR) + "/bench/results/samples";
      std::string cmd =
          quote(python) + " " +
          quote(std::string(TRACER_SOURCE_DIR) + "/bench/make_real_trace_samples.py") + " --data " +
          quote(data) + " --out " + quote(samples);
      if (std::system(cmd.c_str()) != 0) {
        std::fprintf(stderr, "failed: %s\n(pass --samples DIR with the script's output)\n",
                     cmd.c_str());
        return 1;
      }
    }
    result["samples"] = samples;
    TraceSet q_full = load(llm + "qwen3_8b/train.jsonl"),
             q_test = load(llm + "qwen3_8b/test.jsonl");
    TraceSet m_full = load(llm + "mistral_7b/train.jsonl"),
             m_test = load(llm + "mistral_7b/test.jsonl");
    TraceSet q_2k = load(samples + "/qwen3_8b_train_2000_seed1.jsonl");
    TraceSet q_2k_x5 = load(samples + "/qwen3_8b_train_2000_seed1_x5.jsonl");
    TraceSet m_2k = load(samples + "/mistral_7b_train_2000_seed1.jsonl");
    TraceSet b5 = load(samples + "/banking77_5labels_600_seed3.jsonl");
    TraceSet b_train = load(data + "/banking77/train.jsonl"),
             b_test = load(data + "/banking77/test.jsonl");
    if (q_2k.size() != 2000 || m_2k.size() != 2000 || q_2k_x5.size() != 10000 || b5.size() != 600 ||
        b5.labels.size() != 5)
      std::fprintf(stderr, "warning: the samples in %s do not have the expected sizes\n",
                   samples.c_str());
    std::set<std::string> b5_labels(b5.labels.begin(), b5.labels.end());
    std::vector<Trace> b5_test = filter_labels(b_test.traces, b5_labels, true);

    std::vector<Case> cases = {
        {"qwen3_8b",
         "2000 random (seed 1)",
         &q_2k,
         &q_test.traces,
         0.80,
         {0.60, 0.80, false, "cov>=0.60 agr>=0.80"}},
        {"qwen3_8b",
         "2000 random (seed 1)",
         &q_2k,
         &q_test.traces,
         0.90,
         {0.35, 0, false, "cov>=0.35"}},
        {"mistral_7b",
         "2000 random (seed 1)",
         &m_2k,
         &m_test.traces,
         0.80,
         {0.50, 0, false, "cov>=0.50, no error"}},
        {"qwen3_8b", "full train", &q_full, &q_test.traces, 0.90, {0.78, 0, false, "cov>=0.78"}},
        {"mistral_7b", "full train", &m_full, &m_test.traces, 0.95, {0.45, 0, false, "cov>=0.45"}},
        {"banking77_5labels",
         "600 of 5 labels (seed 3)",
         &b5,
         &b5_test,
         0.95,
         {0, 0, true, "certifies"}},
        {"banking77_gold",
         "full train",
         &b_train,
         &b_test.traces,
         0.90,
         {0.97, 0, false, "cov>=0.97"}},
        {"banking77_gold",
         "full train",
         &b_train,
         &b_test.traces,
         0.95,
         {0.85, 0, false, "cov>=0.85"}},
    };
    std::printf("\nTable 1: cases (delta %.2f; coverage and agreement on the test file)\n", kDelta);
    std::printf("%-18s %-25s %6s %5s %-9s %-6s %8s %8s %8s %11s %7s  %-20s %s\n", "dataset",
                "train", "traces", "alpha", "status", "method", "cal_cov", "test_cov", "test_agr",
                "handled/n", "fit_s", "goal", "met");
    json table = json::array();
    json once_manifest;
    for (const Case& c : cases) {
      FitRun f = run_fit(*c.train, c.alpha);
      TestEval e;
      if (f.router) e = evaluate(*f.router, *c.test);
      bool met = c.goal.met(f, e);
      char hn[32];
      std::snprintf(hn, sizeof hn, "%zu/%zu", e.handled, e.n);
      std::printf("%-18s %-25s %6zu %5.2f %-9s %-6s %8s %8.4f %8.4f %11s %7.2f  %-20s %s\n",
                  c.name.c_str(), c.train_desc.c_str(), c.train->size(), c.alpha,
                  f.status_short().c_str(), show(field(f.manifest, {"gate", "method"})).c_str(),
                  show(field(f.manifest, {"gate", "certified", "coverage"})).c_str(), e.coverage,
                  e.agreement, hn, f.fit_seconds, c.goal.text.c_str(), met ? "yes" : "NO");
      if (f.status_short() != "certified") std::printf("    %s\n", f.status().c_str());
      std::fflush(stdout);
      json row{{"dataset", c.name},
               {"train", c.train_desc},
               {"traces", c.train->size()},
               {"alpha", c.alpha},
               {"status", f.status()},
               {"deployed", f.ok && f.deployed},
               {"fit_seconds", f.fit_seconds},
               {"test", e.to_json()},
               {"goal", c.goal.text},
               {"goal_met", met}};
      if (f.ok) row["manifest"] = manifest_summary(f.manifest);
      table.push_back(row);
      if (c.train == &q_2k && c.alpha == 0.80) once_manifest = f.manifest;
    }
    result["cases"] = table;
    save();

    // Duplicates: every line 5 times in a row should not buy more calibration units.
    std::printf(
        "\nDuplicates check: qwen3_8b 2000 sample once vs every line 5 times, alpha 0.80\n");
    FitRun x5 = run_fit(q_2k_x5, 0.80);
    TestEval ex5;
    if (x5.router) ex5 = evaluate(*x5.router, q_test.traces);
    json dup = json::object();
    for (auto [name, m, status, e] :
         {std::tuple{"once", &once_manifest, std::string("(see table 1)"), TestEval{}},
          std::tuple{"x5", &x5.manifest, x5.status(), ex5}}) {
      json cert = field(*m, {"gate", "certified"});
      json split = field(*m, {"split"});
      std::printf("  %-4s certified: coverage %s accepted %s rows %s | split %s\n", name,
                  show(field(cert, {"coverage"})).c_str(), show(field(cert, {"accepted"})).c_str(),
                  show(field(cert, {"rows"})).c_str(), split.dump().c_str());
      dup[name] = {{"certified", cert}, {"split", split}};
      if (std::string(name) == "x5") {
        std::printf("  x5   status %s, test coverage %.4f agreement %.4f, fit %.2f s\n",
                    status.c_str(), e.coverage, e.agreement, x5.fit_seconds);
        dup[name]["status"] = status;
        dup[name]["test"] = e.to_json();
        dup[name]["fit_seconds"] = x5.fit_seconds;
      }
    }
    json r1 = field(dup, {"once", "certified", "rows"}),
         r5 = field(dup, {"x5", "certified", "rows"});
    std::printf("  calibration rows once %s, x5 %s (expected after the rework: the same units)\n",
                show(r1).c_str(), show(r5).c_str());
    result["duplicates"] = dup;
    save();
  }

  if (resplits > 0) {
    std::set<std::string> want;
    std::stringstream ss(validity_sets);
    for (std::string d; std::getline(ss, d, ',');) want.insert(d);
    std::vector<ValiditySpec> specs;
    if (want.count("qwen3_2k")) {
      TraceSet tr = load(llm + "qwen3_8b/train.jsonl"), te = load(llm + "qwen3_8b/test.jsonl");
      specs.push_back({"qwen3_2k", "qwen3_8b train+test, 2000 train, test-file-sized test",
                       concat(tr.traces, te.traces), 2000, te.size(), 0.90, nullptr});
    }
    if (want.count("banking77")) {
      TraceSet tr = load(data + "/banking77/train.jsonl"),
               te = load(data + "/banking77/test.jsonl");
      specs.push_back({"banking77", "Banking77 gold train+test at the original sizes",
                       concat(tr.traces, te.traces), tr.size(), te.size(), 0.95, nullptr});
    }
    if (want.count("clinc150_inscope")) {
      TraceSet tr = load(data + "/clinc150/train.jsonl"), te = load(data + "/clinc150/test.jsonl");
      auto tr_in = filter_labels(tr.traces, {"oos"}, false);
      auto te_in = filter_labels(te.traces, {"oos"}, false);
      size_t n_tr = tr_in.size(), n_te = te_in.size();
      specs.push_back({"clinc150_inscope",
                       "CLINC150 in-scope train+test (no oos) at the original in-scope sizes",
                       concat(tr_in, te_in), n_tr, n_te, 0.95, nullptr});
    }
    if (want.count("qwen3_zipf")) {
      TraceSet tr = load(llm + "qwen3_8b/train.jsonl"), te = load(llm + "qwen3_8b/test.jsonl");
      std::vector<Trace> base = concat(tr.traces, te.traces);
      json info;
      std::vector<Trace> pool = zipf_pool(base, base.size(), 0.05, 1.1, kZipfSeed, info);
      // 8,000 logged rows hold about 2,000 distinct inputs: fewer (the first design took 2,000
      // rows, about 700 distinct) refused every run at 0.90, which tests nothing.
      const size_t n_train = 8000, n_test = pool.size() - n_train;
      specs.push_back({"qwen3_zipf",
                       "qwen3_8b train+test re-drawn with one input at 5% of rows and a Zipf(1.1) "
                       "tail over the distinct texts; 8000 train rows, the rest test (with copies)",
                       std::move(pool), n_train, n_test, 0.85, info});
      std::printf("\nqwen3_zipf pool: %s\n", info.dump().c_str());
    }
    // Seconds per run measured at the baseline (commit c358f4b) on 2 shared cores, load ~2;
    // an idle machine is roughly half that. Only for the printed estimate.
    std::map<std::string, double> per_run = {
        {"qwen3_2k", 3.5}, {"banking77", 6.5}, {"clinc150_inscope", 9}, {"qwen3_zipf", 3}};
    double est = 0;
    for (const auto& v : specs) est += per_run[v.name] * resplits;
    std::printf("\nTable 2: validity over %d re-splits per dataset (estimated %.0f min)\n",
                resplits, est / 60);
    std::printf("%-16s %5s %6s %6s %5s %6s %6s %8s %8s %9s %9s %8s\n", "dataset", "alpha", "train",
                "test", "runs", "raw_v", "sig_v", "refused", "errors", "mean_cov", "mean_agr",
                "fit_s");
    std::fflush(stdout);
    json validity = json::array();
    for (const auto& v : specs) {
      validity.push_back(run_validity(v, resplits));
      result["validity"] = validity;
      save();
    }
    std::printf(
        "raw_v: runs with test agreement on handled rows < alpha; sig_v: runs whose one-sided "
        "95%% Clopper-Pearson upper bound is < alpha. Means over deployed runs.\n");
  }
  save();
  std::printf("wrote %s\n", out.c_str());
  return 0;
}
