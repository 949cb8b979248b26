#include "fit/cross_fit.hpp"

#include <algorithm>
#include <thread>

#include "util/error.hpp"

namespace tracer {
namespace {

// Featurizes units in parallel, keeping order, with per-row stats for the gate.
SparseMatrix featurize(const Featurizer& f, const TraceSet& set, const TraceUnits& units,
                       std::span<const size_t> rows, std::vector<FeatureStats>& stats,
                       int threads) {
  const size_t n = rows.size();
  stats.assign(n, {});
  const int t_count = std::max(1, std::min<int>(threads, static_cast<int>(n / 256 + 1)));
  std::vector<SparseMatrix> parts(t_count, SparseMatrix(f.dim()));
  {
    std::vector<std::jthread> pool;
    for (int t = 0; t < t_count; ++t) {
      pool.emplace_back([&, t] {
        const size_t b = n * t / t_count, e = n * (t + 1) / t_count;
        SparseVector v;
        for (size_t i = b; i < e; ++i) {
          f.transform(set.traces[units.first[rows[i]]].input, v, &stats[i]);
          parts[t].add_row(v.row());
        }
      });
    }
  }
  SparseMatrix out(f.dim());
  for (auto& p : parts)
    for (size_t i = 0; i < p.rows(); ++i) out.add_row(p.row(i));
  return out;
}

std::vector<int> pick(const std::vector<int>& labels, std::span<const size_t> rows) {
  std::vector<int> y(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) y[i] = labels[rows[i]];
  return y;
}

// One fit of the featurizer, the centroids and the zoo on `train`, scoring `held` and `cal`.
struct Pass {
  std::unique_ptr<Featurizer> featurizer;
  OodGate centroids;
  std::vector<Candidate> zoo;
  std::vector<FeatureStats> held_stats, cal_stats;
  std::vector<float> held_sim, cal_sim;
};

void ood_signals(const OodGate& g, const SparseMatrix& X, std::vector<float>& sim) {
  std::vector<float> scratch(std::max<size_t>(1, g.num_classes()));
  sim.resize(X.rows());
  for (size_t i = 0; i < X.rows(); ++i) sim[i] = g.similarity(X.row(i), scratch);
}

Pass run_pass(const TraceSet& set, const TraceUnits& units, std::span<const size_t> train,
              std::span<const size_t> held, std::span<const size_t> cal, const CrossFitOptions& o,
              const std::vector<std::string>& names, int num_classes) {
  Pass p;
  p.featurizer = make_featurizer(o.featurizer);
  {
    std::vector<std::string> texts;
    texts.reserve(train.size());
    for (size_t u : train) texts.push_back(set.traces[units.first[u]].input);
    p.featurizer->fit(texts);
  }
  std::vector<FeatureStats> train_stats;
  SparseMatrix Xtr = featurize(*p.featurizer, set, units, train, train_stats, o.threads);
  SparseMatrix Xheld = featurize(*p.featurizer, set, units, held, p.held_stats, o.threads);
  SparseMatrix Xcal = featurize(*p.featurizer, set, units, cal, p.cal_stats, o.threads);
  const std::vector<int> ytr = pick(units.majority, train);
  const std::vector<int> yheld = pick(units.drawn, held);
  if (o.ood) {
    p.centroids.fit_centroids(Xtr, ytr, num_classes);
    ood_signals(p.centroids, Xheld, p.held_sim);
    ood_signals(p.centroids, Xcal, p.cal_sim);
  } else {
    p.centroids.disable();
  }
  ZooData zd{&Xtr, ytr, &Xheld, yheld, &Xcal, num_classes};
  p.zoo = sweep_zoo(names, zd, o.seed, o.threads);
  return p;
}

void fill_known(HeldOut& h) {
  h.known.resize(h.stats.size());
  for (size_t i = 0; i < h.stats.size(); ++i) h.known[i] = OodGate::known_fraction(h.stats[i]);
}

}  // namespace

CrossFitResult cross_fit(const TraceSet& set, const TraceUnits& units, const UnitSplit& split,
                         const CrossFitOptions& o, Progress& progress) {
  const int K = static_cast<int>(set.labels.size());
  CrossFitResult r;
  r.folds = split.folds;
  r.cal_units = split.calibrate;
  r.cal.y = pick(units.drawn, split.calibrate);

  // The deployed models' training units.
  std::vector<size_t> deployed_train;
  for (size_t i = 0; i < split.pool.size(); ++i)
    if (split.folds >= 2 || split.fold[i] < 0) deployed_train.push_back(split.pool[i]);
  {
    std::vector<int> y = pick(units.majority, deployed_train);
    std::sort(y.begin(), y.end());
    if (y.empty() || y.front() == y.back())
      throw InputError(
          "the traces left for training hold fewer than two distinct teacher labels; a "
          "classifier needs at least two (collect traces of more labels)");
    r.train_label_units.assign(set.labels.size(), 0);
    for (int l : y) ++r.train_label_units[static_cast<size_t>(l)];
    r.train_units = deployed_train.size();
  }

  const size_t n_cand = o.zoo.size();
  r.zoo.resize(n_cand);
  for (size_t c = 0; c < n_cand; ++c) r.zoo[c].name = o.zoo[c];

  if (split.folds == 1) {
    for (size_t i = 0; i < split.pool.size(); ++i)
      if (split.fold[i] == 0) r.sel_units.push_back(split.pool[i]);
    progress.note("fitting " + std::to_string(n_cand) + " surrogates on " +
                  std::to_string(deployed_train.size()) + " traces, scoring " +
                  std::to_string(r.sel_units.size()) + " select traces");
    Pass p = run_pass(set, units, deployed_train, r.sel_units, split.calibrate, o, o.zoo, K);
    r.featurizer = std::move(p.featurizer);
    r.centroids = std::move(p.centroids);
    r.zoo = std::move(p.zoo);
    r.sel.stats = std::move(p.held_stats);
    r.sel.similarity = std::move(p.held_sim);
    r.cal.stats = std::move(p.cal_stats);
    r.cal.similarity = std::move(p.cal_sim);
  } else {
    // Out of fold: select rows are the pool, in pool order.
    r.sel_units = split.pool;
    const size_t n_sel = split.pool.size();
    r.sel.stats.resize(n_sel);
    r.sel.similarity.assign(n_sel, 1.f);
    for (auto& c : r.zoo) {
      c.select_probs.assign(n_sel * static_cast<size_t>(K), 0.f);
      c.select_pred.assign(n_sel, 0);
    }
    std::vector<size_t> active(n_cand);  // candidates still fitted, by index into r.zoo
    for (size_t c = 0; c < n_cand; ++c) active[c] = c;
    auto active_names = [&] {
      std::vector<std::string> names;
      for (size_t c : active) names.push_back(o.zoo[c]);
      return names;
    };
    for (int f = 0; f < split.folds; ++f) {
      std::vector<size_t> train, held, held_pos;
      for (size_t i = 0; i < n_sel; ++i) {
        if (split.fold[i] == f) {
          held.push_back(split.pool[i]);
          held_pos.push_back(i);
        } else {
          train.push_back(split.pool[i]);
        }
      }
      progress.note("fold " + std::to_string(f + 1) + "/" + std::to_string(split.folds) + ": " +
                    std::to_string(active.size()) + " surrogates on " +
                    std::to_string(train.size()) + " inputs, scoring " +
                    std::to_string(held.size()));
      if (held.empty()) continue;
      Pass p = run_pass(set, units, train, held, {}, o, active_names(), K);
      for (size_t j = 0; j < held.size(); ++j) {
        r.sel.stats[held_pos[j]] = p.held_stats[j];
        if (o.ood) r.sel.similarity[held_pos[j]] = p.held_sim[j];
      }
      for (size_t a = 0; a < active.size(); ++a) {
        Candidate& dst = r.zoo[active[a]];
        Candidate& src = p.zoo[a];
        dst.fit_seconds += src.fit_seconds;
        if (!src.model) {
          if (dst.error.empty()) dst.error = src.error;
          continue;
        }
        for (size_t j = 0; j < held.size(); ++j) {
          std::copy_n(src.select_probs.begin() + static_cast<std::ptrdiff_t>(j * K), K,
                      dst.select_probs.begin() + static_cast<std::ptrdiff_t>(held_pos[j] * K));
          dst.select_pred[held_pos[j]] = src.select_pred[j];
        }
      }
      if (f == 0 && o.screen_keep > 0 && active.size() > o.screen_keep) {
        // Screening on the first fold's held-out inputs (select data only).
        std::vector<std::pair<double, size_t>> ranked;
        for (size_t a = 0; a < active.size(); ++a) {
          const Candidate& src = p.zoo[a];
          if (!src.model) continue;
          size_t agree = 0;
          for (size_t j = 0; j < held.size(); ++j)
            agree += src.select_pred[j] == units.drawn[held[j]];
          ranked.emplace_back(double(agree) / held.size(), active[a]);
        }
        std::stable_sort(ranked.begin(), ranked.end(),
                         [](auto& x, auto& y) { return x.first > y.first; });
        std::vector<size_t> keep;
        for (size_t i = 0; i < ranked.size() && keep.size() < o.screen_keep; ++i)
          keep.push_back(ranked[i].second);
        std::sort(keep.begin(), keep.end());
        for (const auto& [agreement, c] : ranked)
          if (!std::binary_search(keep.begin(), keep.end(), c) && r.zoo[c].error.empty()) {
            r.zoo[c].screened_out = true;
            r.zoo[c].screen_agreement = agreement;
          }
        active = keep;
      }
    }
    progress.note("refitting " + std::to_string(active.size()) + " surrogates on all " +
                  std::to_string(deployed_train.size()) + " training traces");
    Pass p = run_pass(set, units, deployed_train, {}, split.calibrate, o, active_names(), K);
    r.featurizer = std::move(p.featurizer);
    r.centroids = std::move(p.centroids);
    r.cal.stats = std::move(p.cal_stats);
    r.cal.similarity = std::move(p.cal_sim);
    for (size_t c = 0; c < n_cand; ++c) {
      Candidate& dst = r.zoo[c];
      const auto pos = std::find(active.begin(), active.end(), c);
      if (pos == active.end()) {
        dst.model.reset();
        continue;
      }
      Candidate& src = p.zoo[static_cast<size_t>(pos - active.begin())];
      dst.fit_seconds += src.fit_seconds;
      if (!src.model || !dst.error.empty()) {
        if (dst.error.empty()) dst.error = src.error;
        dst.model.reset();
        continue;
      }
      dst.model = std::move(src.model);
      dst.calib_probs = std::move(src.calib_probs);
      dst.calib_pred = std::move(src.calib_pred);
    }
  }
  r.sel.y = pick(units.drawn, r.sel_units);
  fill_known(r.sel);
  fill_known(r.cal);
  if (!o.ood) r.cal.similarity.assign(r.cal.size(), 1.f);
  if (!o.ood) r.sel.similarity.assign(r.sel.size(), 1.f);
  for (auto& c : r.zoo) {
    if (!c.model) continue;
    size_t agree = 0;
    for (size_t i = 0; i < c.select_pred.size(); ++i) agree += c.select_pred[i] == r.sel.y[i];
    c.select_agreement = c.select_pred.empty() ? 0 : double(agree) / c.select_pred.size();
  }
  if (o.ensemble_members >= 2) add_ensemble(r.zoo, r.sel.y, K, o.ensemble_members);
  return r;
}

}  // namespace tracer
