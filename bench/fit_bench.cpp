// Fit benchmark (issue: foundation). Prints, per zoo candidate trained on all of Banking77 train,
// the fit time and agreement with the teacher on Banking77 test; then the whole `tracer fit`
// pipeline time and model file size. Writes bench/results/fit_bench.json.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>

#include "bench_util.hpp"
#include "features/featurizer.hpp"
#include "fit/fitter.hpp"
#include "io/traces.hpp"
#include "models/surrogate.hpp"

using namespace tracer;

int main(int argc, char** argv) {
  CLI::App app{"Fit benchmark: zoo fit times and test agreement, whole fit time, model size"};
  std::string train_path = std::string(TRACER_SOURCE_DIR) + "/data/banking77/train.jsonl";
  std::string test_path = std::string(TRACER_SOURCE_DIR) + "/data/banking77/test.jsonl";
  std::string out = bench::default_result_path("fit_bench");
  bool trees = false;
  app.add_option("--train", train_path);
  app.add_option("--test", test_path);
  app.add_option("--json-out", out);
  app.add_flag("--trees", trees, "Include xgboost");
  CLI11_PARSE(app, argc, argv);

  TraceSet train = read_traces(train_path);
  TraceSet test = read_traces(test_path);
  std::vector<std::string> train_texts, test_texts;
  for (auto& t : train.traces) train_texts.push_back(t.input);
  for (auto& t : test.traces) test_texts.push_back(t.input);
  nlohmann::json result;
  result["train"] = train_path;
  result["train_traces"] = train.size();
  result["test_traces"] = test.size();

  Stopwatch sw;
  auto feat = make_featurizer("tfidf");
  feat->fit(train_texts);
  SparseMatrix Xtr = feat->transform_all(train_texts, 2);
  SparseMatrix Xte = feat->transform_all(test_texts, 2);
  double feat_s = sw.seconds();
  std::printf("featurizer: %s, fit+transform %.2f s\n", feat->describe().c_str(), feat_s);
  result["featurize_seconds"] = feat_s;

  std::printf("\n%-16s %10s %14s %12s\n", "candidate", "fit (s)", "test agreement", "size (MB)");
  nlohmann::json cands = nlohmann::json::array();
  double best = 0;
  for (const auto& name : default_zoo(trees)) {
    auto m = make_surrogate(name);
    Stopwatch fw;
    m->fit(Xtr, train.y, static_cast<int>(train.labels.size()), FitContext{42, 1});
    double fit_s = fw.seconds();
    std::vector<float> probs(train.labels.size());
    size_t agree = 0;
    for (size_t i = 0; i < test.size(); ++i) {
      m->predict_proba(Xte.row(i), probs);
      size_t arg = std::max_element(probs.begin(), probs.end()) - probs.begin();
      agree += train.labels[arg] == test.traces[i].teacher;
    }
    BinaryWriter w;
    m->save(w);
    double acc = double(agree) / test.size();
    best = std::max(best, acc);
    std::printf("%-16s %10.2f %14.4f %12.2f\n", name.c_str(), fit_s, acc, w.bytes().size() / 1e6);
    cands.push_back({{"name", name},
                     {"fit_seconds", fit_s},
                     {"test_agreement", acc},
                     {"bytes", w.bytes().size()}});
  }
  result["candidates_full_train"] = cands;
  result["best_test_agreement"] = best;

  // The whole pipeline as `tracer fit` runs it (split, zoo in parallel, gate, frontier).
  auto dir = std::filesystem::temp_directory_path() / "tracer_fit_bench";
  Progress quiet(false);
  FitOptions fo;
  fo.trees = trees;
  Stopwatch pw;
  FitResult fr = fit_policy(train, fo, quiet);
  double pipeline_s = pw.seconds();
  write_artifact(dir.string(), fr);
  double total_s = pw.seconds();
  size_t model_bytes = std::filesystem::file_size(dir / "model.bin");
  std::printf(
      "\nwhole fit (tracer fit, %d targets x methods): %.2f s (+ %.2f s writing), model.bin %.2f "
      "MB\n",
      static_cast<int>(fr.frontier["rows"].size()), pipeline_s, total_s - pipeline_s,
      model_bytes / 1e6);
  std::printf("chosen: %s / %s, certified coverage %.4f at target %.2f\n",
              fr.manifest["surrogate"]["name"].get<std::string>().c_str(),
              fr.manifest["gate"]["method"].get<std::string>().c_str(),
              fr.manifest["gate"]["certified"]["coverage"].get<double>(), fo.target);
  result["whole_fit_seconds"] = total_s;
  result["model_bytes"] = model_bytes;
  result["manifest_timings"] = fr.manifest["timings"];
  result["zoo_in_pipeline"] = fr.manifest["zoo"];
  std::printf("wrote %s\n", bench::write_result(out, result).c_str());
  std::filesystem::remove_all(dir);
  return 0;
}
