#include "sim/simulate.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <numeric>
#include <random>

#include "io/trace_selection.hpp"
#include "runtime/audit.hpp"
#include "runtime/router.hpp"
#include "util/error.hpp"

namespace tracer {
namespace {

using nlohmann::json;
constexpr int64_t kDayMs = 86'400'000;

void validate(const TraceSet& data, const SimulationOptions& o) {
  if (o.days < 1 || o.days > 3650) throw InputError("--days must be between 1 and 3650");
  if (o.seed_traces < 10) throw InputError("--seed-traces must be at least 10");
  if (!(o.audit_share >= 0 && o.audit_share <= 1))
    throw InputError("--audit-share must be between 0 and 1");
  if (o.window_days < 0) throw InputError("--window-days must be 0 (all traces) or more");
  if (o.flip_labels < 0 || static_cast<size_t>(o.flip_labels) > data.labels.size())
    throw InputError(fmt::format("--flip-labels must be between 0 and the number of labels ({})",
                                 data.labels.size()));
  if (o.flip_labels == 1) throw InputError("--flip-labels needs at least 2 labels to swap");
  if (o.flip_labels == 0 && o.flip_day != 0)
    throw InputError("--flip-day needs --flip-labels (how many labels flip)");
  if (o.flip_labels > 0 && (o.flip_day < 1 || o.flip_day > o.days))
    throw InputError(fmt::format("--flip-day must be between 1 and --days ({})", o.days));
  if (data.size() < o.seed_traces + static_cast<size_t>(o.days))
    throw InputError(fmt::format(
        "{} traces cannot give {} seed traces and {} days of traffic; lower --seed-traces or "
        "--days",
        data.size(), o.seed_traces, o.days));
}

// The LLM's answer to request i on `day`: the file's label, unless the flip has started and
// maps it to another.
struct Teacher {
  const TraceSet& data;
  std::vector<int> flip;  // per label: its answer after the flip (itself when not flipped)
  int flip_day = 0;
  int label(size_t i, int day) const {
    const int y = data.y[i];
    return flip_day > 0 && day >= flip_day ? flip[static_cast<size_t>(y)] : y;
  }
};

Teacher make_teacher(const TraceSet& data, const SimulationOptions& o, std::mt19937_64& rng,
                     std::vector<std::string>& flipped) {
  Teacher t{data, {}, o.flip_labels > 0 ? o.flip_day : 0};
  t.flip.resize(data.labels.size());
  std::iota(t.flip.begin(), t.flip.end(), 0);
  if (o.flip_labels == 0) return t;
  std::vector<int> pick(data.labels.size());
  std::iota(pick.begin(), pick.end(), 0);
  std::shuffle(pick.begin(), pick.end(), rng);
  pick.resize(static_cast<size_t>(o.flip_labels));
  for (size_t k = 0; k < pick.size(); ++k) {
    t.flip[static_cast<size_t>(pick[k])] = pick[(k + 1) % pick.size()];
    flipped.push_back(data.labels[static_cast<size_t>(pick[k])]);
  }
  return t;
}

// One recorded trace: the request, the LLM's label and what the proxy knew.
struct Recorded {
  size_t index = 0;  // into the data
  int label = 0;
  int64_t time_ms = 0;
  const char* decision = nullptr;  // nullptr: a seed trace (the user's log)
  bool sampled = false;
};

// The traces of the fit at the end of `day`: those in the window, as a TraceSet.
TraceSet fit_pool(const TraceSet& data, const std::vector<Recorded>& recorded, int day,
                  int64_t since_trip, const SimulationOptions& o) {
  TraceSet s;
  s.labels = data.labels;
  const int64_t since =
      std::max(o.window_days > 0 ? (day + 1 - o.window_days) * kDayMs : INT64_MIN, since_trip);
  for (const Recorded& r : recorded) {
    if (r.time_ms < since) continue;
    Trace t;
    t.input = data.traces[r.index].input;
    t.teacher = data.labels[static_cast<size_t>(r.label)];
    json m{{"time_ms", r.time_ms}};
    if (r.decision) m["decision"] = r.decision;
    if (r.sampled) m["sampled"] = true;
    t.metadata = m.dump();
    s.traces.push_back(std::move(t));
    s.y.push_back(r.label);
  }
  TraceSelection sel;  // drops labels no trace carries; caps
  sel.max_traces = o.max_traces;
  sel.seed = o.seed;
  select_traces(s, sel);
  drop_unused_labels(s);
  return s;
}

struct Active {
  std::unique_ptr<Router> router;  // null: nothing deployed
  json manifest;                   // null: no version yet
  std::unique_ptr<AuditMonitor> audit;
  int version = 0;
};

}  // namespace

json SimulationResult::to_json(const SimulationOptions& o) const {
  json days_json = json::array();
  for (const SimulatedDay& d : days)
    days_json.push_back({{"day", d.day},
                         {"served_by", d.served_by},
                         {"traces_before", d.traces_before},
                         {"traffic", d.traffic},
                         {"handled", d.handled},
                         {"agreed", d.agreed},
                         {"coverage", d.coverage()},
                         {"agreement_on_handled", d.handled ? json(d.agreement()) : json()},
                         {"audited", d.audited},
                         {"deferred", d.deferred},
                         {"llm_calls", d.llm_calls()},
                         {"llm_calls_saved", d.handled - d.audited},
                         {"audit_tripped", d.audit_tripped},
                         {"update",
                          {{"version", d.version},
                           {"certified", d.certified},
                           {"handled_share", d.version_share},
                           {"promoted", d.promoted},
                           {"reason", d.reason},
                           {"traces", d.fit_traces},
                           {"fit_seconds", d.fit_seconds}}}});
  return {{"format", "tracer-simulation"},
          {"format_version", 1},
          {"options",
           {{"days", o.days},
            {"seed_traces", o.seed_traces},
            {"target", o.fit.target},
            {"delta", o.fit.delta},
            {"audit_share", o.audit_share},
            {"seed", o.seed},
            {"window_days", o.window_days},
            {"window_after_trip", o.window_after_trip},
            {"max_traces", o.max_traces},
            {"flip_labels", o.flip_labels},
            {"flip_day", o.flip_day}}},
          {"flipped_labels", flipped_labels},
          {"days", std::move(days_json)}};
}

SimulationResult simulate(const TraceSet& data, const SimulationOptions& o, Progress& progress,
                          const std::function<void(const SimulatedDay&)>& on_day) {
  validate(data, o);
  std::mt19937_64 rng(o.seed);
  std::vector<size_t> order(data.size());
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  SimulationResult result;
  result.target = o.fit.target;
  const Teacher teacher = make_teacher(data, o, rng, result.flipped_labels);
  std::uniform_real_distribution<double> coin(0, 1);

  std::vector<Recorded> recorded;
  for (size_t k = 0; k < o.seed_traces; ++k)
    recorded.push_back(
        {order[k], teacher.label(order[k], 0), static_cast<int64_t>(k), nullptr, false});
  const size_t traffic_total = data.size() - o.seed_traces;
  Active active;
  int versions = 0;
  int64_t since_trip = INT64_MIN;  // window_after_trip: refit on traces from the trip day on

  for (int day = 0; day <= o.days; ++day) {
    SimulatedDay d;
    d.day = day;
    d.served_by = active.router ? active.version : 0;
    d.traces_before = recorded.size();
    const bool tripped_before = active.audit && active.audit->tripped();
    if (day > 0) {
      // The day's traffic through the active policy, recorded as the proxy records it.
      const size_t begin = o.seed_traces + traffic_total * static_cast<size_t>(day - 1) /
                                               static_cast<size_t>(o.days);
      const size_t end =
          o.seed_traces + traffic_total * static_cast<size_t>(day) / static_cast<size_t>(o.days);
      RouteScratch scratch;
      if (active.router) scratch = active.router->make_scratch();
      for (size_t k = begin; k < end; ++k) {
        const size_t i = order[k];
        const int llm = teacher.label(i, day);
        const int64_t time = day * kDayMs + static_cast<int64_t>(k - begin);
        const bool tripped = active.audit && active.audit->tripped();
        // As the proxy: the audit coin, or a policy that defers everything whatever the text
        // (nothing certified, or its audit tripped): then every request is in the sample.
        const bool sampled = coin(rng) < o.audit_share || !active.router || tripped;
        bool handled = false;
        int answer = -1;
        if (active.router && !tripped) {
          const RouteResult r = active.router->route(data.traces[i].input, scratch);
          handled = r.handled;
          answer = r.label;
        }
        ++d.traffic;
        if (handled) {
          ++d.handled;
          const bool agreed =
              active.router->label_name(answer) == data.labels[static_cast<size_t>(llm)];
          d.agreed += agreed;
          if (!sampled) continue;
          ++d.audited;
          if (active.audit) active.audit->record(agreed, AuditSource::kShadow);
          recorded.push_back({i, llm, time, "handled", true});
        } else {
          ++d.deferred;
          recorded.push_back({i, llm, time, "deferred", sampled});
        }
      }
      d.audit_tripped = active.audit && active.audit->tripped();
      if (d.audit_tripped && !tripped_before && o.window_after_trip) since_trip = day * kDayMs;
    }

    // The update at the end of the day.
    const auto t0 = std::chrono::steady_clock::now();
    Progress quiet(false);
    FitResult fit;
    try {
      TraceSet pool = fit_pool(data, recorded, day, since_trip, o);
      d.fit_traces = pool.size();
      progress.step(
          fmt::format("day {}: fitting version {} on {} traces", day, versions + 1, pool.size()));
      fit = fit_policy(pool, o.fit, quiet);
    } catch (const InputError& e) {
      // Too few traces (e.g. a window with little in it): no version is written, as `update`
      // exits 2; the active one, if any, stays.
      d.reason = std::string("no version written, the fit failed: ") + e.what();
      d.fit_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      result.days.push_back(d);
      if (on_day) on_day(d);
      continue;
    }
    d.fit_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    d.version = ++versions;
    d.certified = fit.deployed;
    d.version_share = handled_share(fit.manifest);
    PromotionRule rule = o.promotion;
    rule.active_audit_tripped = active.audit && active.audit->tripped();
    const Promotion p = decide_promotion(fit.manifest, active.manifest, rule);
    d.promoted = p.activate;
    d.reason = p.reason;
    if (p.activate) {
      active.manifest = fit.manifest;
      active.version = versions;
      active.router =
          fit.deployed ? std::make_unique<Router>(std::move(fit.policy), fit.manifest) : nullptr;
      AuditOptions ao;
      ao.share = o.audit_share;
      ao.min_rows = o.audit_min_rows;
      ao.seed = o.seed ^ static_cast<uint64_t>(versions);
      active.audit = o.audit_share > 0
                         ? std::make_unique<AuditMonitor>(o.fit.target, o.fit.delta, ao)
                         : nullptr;
    }
    result.days.push_back(d);
    if (on_day) on_day(d);
  }
  progress.finish();
  return result;
}

}  // namespace tracer
