// Gate benchmark (issue: parity gate). Trains on each dataset's train file and routes its test
// file as fresh traffic: coverage and agreement on test per target; the OOD gate on CLINC150's
// out-of-scope inputs; and validity over random re-splits. Writes bench/results/gate_bench.json.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <random>
#include <sstream>

#include "bench_util.hpp"
#include "fit/fitter.hpp"
#include "gate/bounds.hpp"
#include "io/traces.hpp"
#include "runtime/drift.hpp"
#include "runtime/router.hpp"

using namespace tracer;
using nlohmann::json;

namespace {

struct TestEval {
  double coverage = 0, agreement = 0;
  size_t n = 0, handled = 0, agree = 0;
  DriftReport drift;  // label-free: test's stage-1 scores against the calibrate split's
};

TestEval evaluate(const Router& router, const std::vector<Trace>& test) {
  RouteScratch s = router.make_scratch();
  TestEval e;
  DriftSample sample;
  for (const auto& t : test) {
    RouteResult r = router.route(t.input, s);
    ++e.n;
    sample.add(r);
    if (!r.handled) continue;
    ++e.handled;
    e.agree += router.label_name(r.label) == t.teacher;
  }
  e.coverage = e.n ? double(e.handled) / e.n : 0;
  e.agreement = e.handled ? double(e.agree) / e.handled : 0;
  e.drift = compare_drift(DriftReference::from_manifest(router.manifest()), sample, DriftOptions{});
  return e;
}

TraceSet from_traces(std::vector<Trace> traces) {
  TraceSet s;
  std::map<std::string, int> idx;
  for (auto& t : traces) idx[t.teacher] = 0;
  for (auto& [l, i] : idx) i = static_cast<int>(s.labels.size()), s.labels.push_back(l);
  for (auto& t : traces) s.y.push_back(idx[t.teacher]);
  s.traces = std::move(traces);
  return s;
}

std::vector<Trace> without(const std::vector<Trace>& v, const std::string& label, bool keep_only) {
  std::vector<Trace> out;
  for (const auto& t : v)
    if ((t.teacher == label) == keep_only) out.push_back(t);
  return out;
}

double g_ood_quantile = 0;  // set once from the command line before any fit

Router fit_router(const TraceSet& train, FitOptions fo, json* manifest = nullptr) {
  Progress quiet(false);
  fo.ood_quantile = g_ood_quantile;
  FitResult r = fit_policy(train, fo, quiet);
  if (manifest) *manifest = r.manifest;
  return Router(std::move(r.policy), r.manifest);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Gate benchmark: coverage/agreement on test, OOD, validity over re-splits"};
  std::string data = bench::shared_data_dir();
  std::string out = bench::default_result_path("gate_bench");
  int resplits = 0;
  bool skip_table = false;
  std::string zoo;
  double ood_quantile = FitOptions().ood_quantile;
  std::string table_sets = "banking77,clinc150_inscope,snli,clinc150_ood";
  app.add_option("--table-datasets", table_sets,
                 "Rows of the coverage table to run (banking77, clinc150_inscope, snli, "
                 "clinc150_ood)");
  app.add_option("--ood-quantile", ood_quantile,
                 "Share of in-distribution rows the OOD gate flags");
  app.add_option("--data", data, "Folder holding banking77/, clinc150/, snli/");
  app.add_option("--json-out", out);
  app.add_option("--validity", resplits,
                 "Random re-splits per dataset for the validity check (0: skip)");
  app.add_flag("--skip-table", skip_table, "Only run the validity check");
  app.add_option("--zoo", zoo, "Comma-separated zoo for the validity runs (default: default zoo)");
  std::string validity_sets = "banking77,clinc150";
  app.add_option("--validity-datasets", validity_sets, "Datasets for the validity check");
  CLI11_PARSE(app, argc, argv);
  g_ood_quantile = ood_quantile;
  json result;
  result["ood_quantile"] = ood_quantile;
  auto in_table = [&](const std::string& name) {
    std::stringstream ss(table_sets);
    for (std::string d; std::getline(ss, d, ',');)
      if (d == name) return true;
    return false;
  };

  auto load = [&](const std::string& rel) { return read_traces(data + "/" + rel); };
  if (!skip_table) {
    TraceSet b_train = load("banking77/train.jsonl"), b_test = load("banking77/test.jsonl");
    TraceSet c_train_all = load("clinc150/train.jsonl"), c_test_all = load("clinc150/test.jsonl");
    TraceSet s_train = load("snli/train.jsonl"), s_test = load("snli/test.jsonl");
    TraceSet c_train = from_traces(without(c_train_all.traces, "oos", false));
    auto c_test_in = without(c_test_all.traces, "oos", false);
    auto c_test_oos = without(c_test_all.traces, "oos", true);

    struct Row {
      const char* name;
      const TraceSet* train;
      const std::vector<Trace>* test;
      double target;
    };
    std::vector<Row> rows = {{"banking77", &b_train, &b_test.traces, 0.90},
                             {"banking77", &b_train, &b_test.traces, 0.95},
                             {"clinc150_inscope", &c_train, &c_test_in, 0.95},
                             {"snli", &s_train, &s_test.traces, 0.90}};
    std::printf("%-18s %6s %-7s %-8s %10s %10s %10s %8s %7s %9s\n", "dataset", "target", "method",
                "deployed", "cal_cov", "test_cov", "test_agr", "fit_s", "drift_D", "drift_p");
    json table = json::array();
    for (const auto& r : rows) {
      if (!in_table(r.name)) continue;
      FitOptions fo;
      fo.target = r.target;
      json m;
      Stopwatch sw;
      Router router = fit_router(*r.train, fo, &m);
      double fit_s = sw.seconds();
      TestEval e = evaluate(router, *r.test);
      bool deployed = m["gate"]["deployed"];
      std::printf("%-18s %6.2f %-7s %-8s %10.4f %10.4f %10.4f %8.2f %7.4f %9.2g\n", r.name,
                  r.target, m["gate"]["method"].get<std::string>().c_str(),
                  deployed ? "yes" : "REFUSED", m["gate"]["certified"]["coverage"].get<double>(),
                  e.coverage, e.agreement, fit_s, e.drift.ks, e.drift.p_value);
      table.push_back({{"dataset", r.name},
                       {"target", r.target},
                       {"deployed", deployed},
                       {"method", m["gate"]["method"]},
                       {"surrogate", m["surrogate"]["name"]},
                       {"calibrate_coverage", m["gate"]["certified"]["coverage"]},
                       {"test_coverage", e.coverage},
                       {"test_agreement", e.agreement},
                       {"test_rows", e.n},
                       {"fit_seconds", fit_s},
                       {"drift", e.drift.to_json()}});
    }
    result["table"] = table;

    // OOD: CLINC150 trained on in-scope only; out-of-scope test inputs should be deferred.
    json ood = json::array();
    for (bool on : {true, false}) {
      if (!in_table("clinc150_ood")) break;
      FitOptions fo;
      fo.target = 0.95;
      fo.ood = on;
      Router router = fit_router(c_train, fo);
      TestEval in = evaluate(router, c_test_in);
      TestEval oos = evaluate(router, c_test_oos);
      double deferred = 1 - oos.coverage;
      std::printf(
          "clinc150 OOD gate %-3s: in-scope coverage %.4f (agreement %.4f), "
          "out-of-scope deferred %.4f of %zu\n",
          on ? "on" : "off", in.coverage, in.agreement, deferred, oos.n);
      ood.push_back({{"ood_gate", on},
                     {"inscope_coverage", in.coverage},
                     {"inscope_agreement", in.agreement},
                     {"oos_deferred", deferred},
                     {"oos_rows", oos.n}});
    }
    result["clinc150_ood"] = ood;
  }

  if (resplits > 0) {
    json validity = json::array();
    std::vector<std::string> sets;
    std::stringstream vs(validity_sets);
    for (std::string d; std::getline(vs, d, ',');) sets.push_back(d);
    for (const std::string& ds_name : sets) {
      const char* ds = ds_name.c_str();
      TraceSet tr = load(std::string(ds) + "/train.jsonl"),
               te = load(std::string(ds) + "/test.jsonl");
      std::vector<Trace> pool = tr.traces;
      pool.insert(pool.end(), te.traces.begin(), te.traces.end());
      if (std::string(ds) == "clinc150") pool = without(pool, "oos", false);
      const size_t n_train = std::string(ds) == "clinc150" ? 15000 : tr.size();
      int below = 0, upper_below = 0, refused = 0;
      double cov_sum = 0;
      Stopwatch sw;
      for (int run = 0; run < resplits; ++run) {
        std::mt19937_64 rng(1000 + run);
        std::vector<Trace> shuffled = pool;
        std::shuffle(shuffled.begin(), shuffled.end(), rng);
        std::vector<Trace> test(shuffled.begin() + n_train, shuffled.end());
        shuffled.resize(n_train);
        FitOptions fo;
        fo.target = 0.95;
        fo.seed = 7 + run;
        if (!zoo.empty()) {
          std::stringstream ss(zoo);
          for (std::string z; std::getline(ss, z, ',');) fo.zoo.push_back(z);
        }
        Router router = fit_router(from_traces(std::move(shuffled)), fo);
        TestEval e = evaluate(router, test);
        if (e.handled == 0) {
          ++refused;
          continue;
        }
        cov_sum += e.coverage;
        if (e.agreement < 0.95) ++below;
        if (clopper_pearson_upper(int(e.handled), int(e.agree), 0.95) < 0.95) ++upper_below;
        std::fprintf(stderr, "\r%s run %d/%d: coverage %.4f agreement %.4f (%.0f s)", ds, run + 1,
                     resplits, e.coverage, e.agreement, sw.seconds());
      }
      std::fprintf(stderr, "\n");
      std::printf(
          "validity %-10s runs %d: test agreement < 0.95 in %d, upper bound < 0.95 in %d, "
          "refused %d, mean coverage %.4f\n",
          ds, resplits, below, upper_below, refused, cov_sum / std::max(1, resplits - refused));
      validity.push_back({{"dataset", ds},
                          {"runs", resplits},
                          {"agreement_below_target", below},
                          {"upper_bound_below_target", upper_below},
                          {"refused", refused},
                          {"mean_coverage", cov_sum / std::max(1, resplits - refused)},
                          {"zoo", zoo.empty() ? "default" : zoo}});
    }
    result["validity"] = validity;
  }
  std::printf("wrote %s\n", bench::write_result(out, result).c_str());
  return 0;
}
