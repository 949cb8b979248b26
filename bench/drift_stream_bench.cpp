// Drift false alarms over a long no-drift stream through `tracer serve` (issue #17 item 7).
//
// For each stream: fit a policy on traces, start `tracer serve` on it (default drift flags:
// looks of 2,000 routed inputs, lifetime level 0.01), route --requests texts drawn from the
// same distribution as the traces through POST /v1/route/batch, and poll GET /v1/drift after
// every batch so that every block of inputs is looked at (the most looks a server can take).
// Counts looks, and looks whose p-value fell below (a) their own spent level (what the server
// reports), (b) a fixed 1e-4 (the old sliding check's level, re-tested without spending),
// (c) a fixed 0.01 (how calibrated the asymptotic p-value is: about 1% if exact).
//
// Streams:
//   synthetic  20 labels, 6,000 traces; the stream is fresh texts of the same generator, so it
//              is exactly iid from the traces' distribution (a true no-drift stream).
//   banking77  Banking77 train shuffled: fit on 7,000 lines, stream drawn with replacement from
//              the other 3,003 (real texts; the finite pool adds a little shared noise).
//
//   drift_stream_bench [--requests 2000000] [--streams synthetic,banking77] [--tracer PATH]
// Writes bench/results/drift_stream_bench.json.
#include <CLI/CLI.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <poll.h>
#include <random>
#include <spawn.h>
#include <sstream>
#include <sys/wait.h>
#include <unistd.h>

#include "../tests/fit/synthetic_traces.hpp"
#include "bench_util.hpp"
#include "io/traces.hpp"
#include "serve/http.hpp"

extern char** environ;

namespace tracer::bench {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// `tracer serve DIR --port 0 ARGS`: started by the constructor (which waits for its
// "listening on" line), stopped with SIGTERM by the destructor.
class Server {
 public:
  Server(const std::string& tracer, const std::string& policy, const std::string& err_path) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    std::vector<std::string> args = {tracer, "serve", policy, "--port", "0", "--threads", "4"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    int rc = posix_spawn(&pid_, tracer.c_str(), &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(fds[1]);
    if (rc != 0) throw std::runtime_error("cannot start " + tracer);
    std::string out;
    auto t0 = Clock::now();
    while (port_ == 0 && since(t0) < 60) {
      pollfd p{fds[0], POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char buf[256];
      ssize_t n = ::read(fds[0], buf, sizeof buf);
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
      auto at = out.find("listening on http://127.0.0.1:");
      if (at != std::string::npos && out.find('\n', at) != std::string::npos)
        port_ = std::stoi(out.substr(at + 30));
    }
    ::close(fds[0]);
    if (port_ == 0) throw std::runtime_error("tracer serve did not start; see " + err_path);
  }
  ~Server() {
    ::kill(pid_, SIGTERM);
    ::waitpid(pid_, nullptr, 0);
  }
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  int port() const { return port_; }

 private:
  pid_t pid_ = 0;
  int port_ = 0;
};

// A stream: the traces to fit on and a source of fresh texts from their distribution.
struct Stream {
  std::string name;
  std::vector<Trace> traces;
  std::function<std::string(std::mt19937_64&)> next;
};

Stream synthetic_stream() {
  constexpr int kLabels = 20, kPerLabel = 300;
  Stream s{"synthetic", testing::synthetic_traces(kLabels, kPerLabel, 0.15, 17).traces, {}};
  s.next = [](std::mt19937_64& rng) {
    int l = static_cast<int>(rng() % kLabels), i = static_cast<int>(rng() % kPerLabel);
    return testing::synthetic_text(rng, kLabels, l, i);
  };
  return s;
}

Stream banking77_stream(const std::string& data) {
  TraceSet all = read_traces(data + "/banking77/train.jsonl");
  std::vector<Trace> t = std::move(all.traces);
  std::mt19937_64 rng(23);
  std::shuffle(t.begin(), t.end(), rng);
  const size_t fit_rows = std::min<size_t>(7000, t.size() * 7 / 10);
  auto pool = std::make_shared<std::vector<std::string>>();
  for (size_t i = fit_rows; i < t.size(); ++i) pool->push_back(t[i].input);
  t.resize(fit_rows);
  Stream s{"banking77", std::move(t), {}};
  s.next = [pool](std::mt19937_64& r) { return (*pool)[r() % pool->size()]; };
  return s;
}

void write_traces(const std::vector<Trace>& traces, const std::string& path) {
  std::ofstream out(path);
  for (const auto& t : traces) out << json{{"input", t.input}, {"label", t.teacher}}.dump() << "\n";
}

json run_stream(const Stream& s, const std::string& tracer, const std::string& work,
                int64_t requests, size_t batch) {
  const std::string dir = work + "/" + s.name;
  std::filesystem::create_directories(dir);
  write_traces(s.traces, dir + "/traces.jsonl");
  auto t0 = Clock::now();
  const std::string fit = tracer + " fit " + dir + "/traces.jsonl -o " + dir +
                          "/policy --quiet --target 0.9 > " + dir + "/fit.log 2>&1";
  int rc = std::system(fit.c_str());
  if (!(WIFEXITED(rc) && (WEXITSTATUS(rc) == 0 || WEXITSTATUS(rc) == 4)))
    throw std::runtime_error("fit failed: see " + dir + "/fit.log");
  const double fit_s = since(t0);
  Server server(tracer, dir + "/policy", dir + "/serve.err");
  httplib::Client c("127.0.0.1", server.port());
  c.set_keep_alive(true);
  c.set_tcp_nodelay(true);
  c.set_read_timeout(std::chrono::seconds(60));

  std::mt19937_64 rng(99);
  int64_t sent = 0, looks = 0, missed = 0, spent_alarms = 0, fixed_1e4 = 0, fixed_1e2 = 0;
  double min_p = 1, max_ks = 0;
  json first_detection = nullptr, last;
  t0 = Clock::now();
  while (sent < requests) {
    json texts = json::array();
    for (size_t i = 0; i < batch && sent < requests; ++i, ++sent) texts.push_back(s.next(rng));
    auto r = c.Post("/v1/route/batch", json{{"texts", texts}}.dump(), "application/json");
    if (!r || r->status != 200) throw std::runtime_error("route/batch failed");
    auto d = c.Get("/v1/drift");
    if (!d || d->status != 200) throw std::runtime_error("GET /v1/drift failed");
    last = json::parse(d->body);
    const int64_t now = last["looks"].get<int64_t>();
    if (now == looks) continue;
    missed += now - looks - 1;  // looks the watcher took in between: their p-values are unseen
    looks = now;
    const double p = last["p_value"].get<double>();
    min_p = std::min(min_p, p);
    max_ks = std::max(max_ks, last["ks"].get<double>());
    spent_alarms += p < last["look_level"].get<double>();
    fixed_1e4 += p < 1e-4;
    fixed_1e2 += p < 1e-2;
    if (last["drift"] == true && first_detection.is_null()) first_detection = last;
    if (sent % (requests / 10 + 1) < static_cast<int64_t>(batch))
      std::fprintf(stderr, "[%s] %lld of %lld routed, %lld looks, %.0f s\n", s.name.c_str(),
                   static_cast<long long>(sent), static_cast<long long>(requests),
                   static_cast<long long>(looks), since(t0));
  }
  const double route_s = since(t0);
  json out{{"stream", s.name},
           {"traces", s.traces.size()},
           {"fit_seconds", fit_s},
           {"routed", sent},
           {"route_seconds", route_s},
           {"window", last["window"]},
           {"min_rows", last["min_rows"]},
           {"level", last["level"]},
           {"looks", looks},
           {"looks_unseen", missed},
           {"drift_reported", last["drift"]},
           {"alarms_at_spent_level", spent_alarms},
           {"alarms_at_fixed_1e-4", fixed_1e4},
           {"alarms_at_fixed_0.01", fixed_1e2},
           {"min_p_value", min_p},
           {"max_ks", max_ks},
           {"last_look_level", last["look_level"]},
           {"reference_handled_share", last["reference_handled_share"]},
           {"first_detection", first_detection}};
  return out;
}

}  // namespace
}  // namespace tracer::bench

int main(int argc, char** argv) {
  using namespace tracer::bench;
  CLI::App app{"Drift false alarms over a long no-drift stream through `tracer serve`"};
  std::string tracer = std::string(TRACER_SOURCE_DIR) + "/build/tracer";
  std::string data = shared_data_dir();
  std::string out = default_result_path("drift_stream_bench");
  std::string work = (std::filesystem::temp_directory_path() / "tracer_drift_stream").string();
  int64_t requests = 2'000'000;
  size_t batch = 256;
  std::vector<std::string> streams = {"synthetic", "banking77"};
  app.add_option("--tracer", tracer, "The tracer binary")->capture_default_str();
  app.add_option("--data", data, "Folder holding banking77/")->capture_default_str();
  app.add_option("--requests", requests, "Routed inputs per stream")->capture_default_str();
  app.add_option("--batch", batch, "Texts per POST /v1/route/batch (at most 256)")
      ->capture_default_str();
  app.add_option("--streams", streams, "synthetic, banking77")->delimiter(',');
  app.add_option("--work", work, "Scratch folder")->capture_default_str();
  app.add_option("--json-out", out)->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  json results = json::array();
  std::printf("%-10s %9s %6s %6s %10s %10s %10s %9s %8s\n", "stream", "routed", "looks", "drift",
              "alarms(l_k)", "p<1e-4", "p<0.01", "min p", "route s");
  for (const auto& name : streams) {
    Stream s = name == "synthetic" ? synthetic_stream() : banking77_stream(data);
    json r = run_stream(s, tracer, work, requests, batch);
    std::printf("%-10s %9lld %6lld %6s %10lld %10lld %10lld %9.2g %8.1f\n", name.c_str(),
                static_cast<long long>(r["routed"].get<int64_t>()),
                static_cast<long long>(r["looks"].get<int64_t>()),
                r["drift_reported"] == true ? "yes" : "no",
                static_cast<long long>(r["alarms_at_spent_level"].get<int64_t>()),
                static_cast<long long>(r["alarms_at_fixed_1e-4"].get<int64_t>()),
                static_cast<long long>(r["alarms_at_fixed_0.01"].get<int64_t>()),
                r["min_p_value"].get<double>(), r["route_seconds"].get<double>());
    std::fflush(stdout);
    results.push_back(r);
  }
  std::printf("wrote %s\n", write_result(out, json{{"streams", results}}).c_str());
}
