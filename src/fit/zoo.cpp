#include "fit/zoo.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <numeric>
#include <queue>
#include <thread>

#include "models/ensemble.hpp"
#include "util/error.hpp"
#include "util/progress.hpp"

namespace tracer {
namespace {

void predict_all(const Surrogate& m, const SparseMatrix& X, int k, std::vector<float>& probs,
                 std::vector<int>& pred) {
  probs.assign(X.rows() * static_cast<size_t>(k), 0.f);
  pred.assign(X.rows(), 0);
  for (size_t i = 0; i < X.rows(); ++i) {
    std::span<float> out(probs.data() + i * k, k);
    m.predict_proba(X.row(i), out);
    int best = 0;
    for (int c = 1; c < k; ++c)
      if (out[c] > out[best]) best = c;
    pred[i] = best;
  }
}

void fit_one(Candidate& c, const ZooData& d, uint64_t seed) {
  try {
    Stopwatch sw;
    c.model = make_surrogate(c.name);
    c.model->fit(*d.train, d.train_y, d.num_classes, FitContext{seed, 1});
    c.fit_seconds = sw.seconds();
    predict_all(*c.model, *d.select, d.num_classes, c.select_probs, c.select_pred);
    predict_all(*c.model, *d.calibrate, d.num_classes, c.calib_probs, c.calib_pred);
    size_t agree = 0;
    for (size_t i = 0; i < c.select_pred.size(); ++i) agree += c.select_pred[i] == d.select_y[i];
    c.select_agreement = c.select_pred.empty() ? 0 : double(agree) / c.select_pred.size();
  } catch (const std::exception& e) {
    c.model.reset();
    c.error = e.what();
  }
}

}  // namespace

std::vector<Candidate> sweep_zoo(const std::vector<std::string>& names, const ZooData& data,
                                 uint64_t seed, int threads,
                                 const std::function<void(const Candidate&)>& on_done) {
  std::vector<Candidate> zoo(names.size());
  for (size_t i = 0; i < names.size(); ++i) zoo[i].name = names[i];
  for (const auto& n : names) make_surrogate(n);  // unknown names fail before any work

  std::atomic<size_t> next{0};
  std::mutex mu;
  std::condition_variable cv;
  std::queue<size_t> finished;
  auto worker = [&] {
    for (size_t i = next++; i < zoo.size(); i = next++) {
      fit_one(zoo[i], data, seed);
      std::lock_guard lock(mu);
      finished.push(i);
      cv.notify_one();
    }
  };
  int n_threads = std::max(1, std::min<int>(threads, static_cast<int>(zoo.size())));
  std::vector<std::jthread> pool;
  for (int t = 0; t < n_threads; ++t) pool.emplace_back(worker);
  for (size_t reported = 0; reported < zoo.size(); ++reported) {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return !finished.empty(); });
    size_t i = finished.front();
    finished.pop();
    lock.unlock();
    if (on_done) on_done(zoo[i]);
  }
  return zoo;
}

void add_ensemble(std::vector<Candidate>& zoo, std::span<const int> select_y, int num_classes,
                  size_t members) {
  std::vector<size_t> ok;
  for (size_t i = 0; i < zoo.size(); ++i)
    if (zoo[i].model) ok.push_back(i);
  // EnsembleSurrogate combines at most kMaxEnsembleClasses labels (the fitter says so up front).
  if (ok.size() < 2 || members < 2 || num_classes > kMaxEnsembleClasses) return;
  std::stable_sort(ok.begin(), ok.end(), [&](size_t a, size_t b) {
    return zoo[a].select_agreement > zoo[b].select_agreement;
  });
  ok.resize(std::min(members, ok.size()));
  Candidate e;
  e.name = "ensemble";
  std::vector<std::unique_ptr<Surrogate>> parts;
  for (size_t i : ok) {
    parts.push_back(clone_surrogate(*zoo[i].model));
    e.fit_seconds += zoo[i].fit_seconds;
  }
  e.model = std::make_unique<EnsembleSurrogate>(std::move(parts));
  const int k = num_classes;
  const float w = 1.f / static_cast<float>(ok.size());
  auto combine = [&](auto member_probs, std::vector<float>& probs, std::vector<int>& pred,
                     size_t rows) {
    probs.assign(rows * k, 0.f);
    for (size_t i : ok) {
      const std::vector<float>& p = member_probs(zoo[i]);
      for (size_t j = 0; j < probs.size(); ++j) probs[j] += w * p[j];
    }
    pred.assign(rows, 0);
    for (size_t r = 0; r < rows; ++r) {
      const float* row = probs.data() + r * k;
      pred[r] = static_cast<int>(std::max_element(row, row + k) - row);
    }
  };
  combine([](const Candidate& c) -> const std::vector<float>& { return c.select_probs; },
          e.select_probs, e.select_pred, zoo[ok.front()].select_pred.size());
  combine([](const Candidate& c) -> const std::vector<float>& { return c.calib_probs; },
          e.calib_probs, e.calib_pred, zoo[ok.front()].calib_pred.size());
  size_t agree = 0;
  for (size_t i = 0; i < e.select_pred.size(); ++i) agree += e.select_pred[i] == select_y[i];
  e.select_agreement = e.select_pred.empty() ? 0 : double(agree) / e.select_pred.size();
  zoo.push_back(std::move(e));
}

size_t best_candidate(const std::vector<Candidate>& zoo) {
  size_t best = zoo.size();
  for (size_t i = 0; i < zoo.size(); ++i) {
    if (!zoo[i].model) continue;
    if (best == zoo.size() || zoo[i].select_agreement > zoo[best].select_agreement) best = i;
  }
  if (best == zoo.size()) {
    std::string why;
    for (const auto& c : zoo) why += "\n  " + c.name + ": " + c.error;
    throw InputError("every surrogate failed to fit:" + why);
  }
  return best;
}

}  // namespace tracer
