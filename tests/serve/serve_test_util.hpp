#pragma once
// Helpers shared by the HTTP end-to-end tests (serve_test, audit_serve_test, drift_serve_test):
// polling, reading responses and Prometheus samples, an OpenAI-compatible LLM stand-in, an
// in-process ApiServer, and the Banking77 policy the in-process suites fit once and share.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "runtime/router.hpp"
#include "serve/http.hpp"
#include "serve/server.hpp"
#include "test_util.hpp"
#include "util/error.hpp"

namespace tracer::testing {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Polls `done` every 10 ms for up to `timeout_s`; returns its last answer.
inline bool eventually(const std::function<bool()>& done, double timeout_s = 20) {
  auto t0 = Clock::now();
  while (!done()) {
    if (seconds_since(t0) > timeout_s) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

// A new TCP connection to the loopback `port` (-1 when it fails).
inline int connect_loopback(int port) {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(s);
    return -1;
  }
  return s;
}

// The value of one Prometheus sample line (-1 when absent).
inline double metric(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  return -1;
}

// The JSON body of a response; throws when there is no response at all.
inline nlohmann::json body(const httplib::Result& r) {
  if (!r) throw std::runtime_error("no HTTP response: " + httplib::to_string(r.error()));
  return nlohmann::json::parse(r->body);
}

// A chat completion request classifying `text`; `parts` sends the user content as an array of
// content parts instead of a string.
inline std::string chat_body(const std::string& text, bool parts = false) {
  using nlohmann::json;
  json content = parts ? json::array({{{"type", "text"}, {"text", text}}}) : json(text);
  return json{{"model", "gpt-test"},
              {"messages", json::array({{{"role", "system"}, {"content", "Classify the intent."}},
                                        {{"role", "user"}, {"content", content}}})}}
      .dump();
}

// The assistant's answer in a chat completion response.
inline std::string answer_of(const httplib::Result& r) {
  return nlohmann::json::parse(r->body)["choices"][0]["message"]["content"];
}

// `tracer fit` flags that keep fitting affordable under the sanitizers.
inline std::string fast_zoo() { return sanitized() ? " --zoo logreg_strong,complement_nb" : ""; }

// An OpenAI-compatible stand-in for the LLM: answers each chat completion with `answer(last user
// message)`, streamed as OpenAI's chunks when asked. Test hooks: the headers OpenAI-Test-Delay-Ms
// (sleep first), OpenAI-Test-Chunk-Delay-Ms (sleep before each streamed event) and
// OpenAI-Test-Status (answer that status); the proxy forwards OpenAI-* headers, to audits too.
// Other /v1/ paths answer {"method", "path", "target", "body"} (418 for /v1/teapot), with a
// model list for /v1/models and a 3-dimensional embedding for /v1/embeddings.
class FakeLlm {
 public:
  using Answer = std::function<std::string(const std::string&)>;

  explicit FakeLlm(Answer answer) : answer_(std::move(answer)) {
    server_.Post("/v1/chat/completions", [this](const httplib::Request& req,
                                                httplib::Response& res) {
      using nlohmann::json;
      {
        std::lock_guard<std::mutex> lock(mu_);
        ++calls_;
        last_auth_ = req.get_header_value("Authorization");
        last_body_ = req.body;
        last_target_ = req.target;
      }
      if (req.has_header("OpenAI-Test-Delay-Ms"))
        std::this_thread::sleep_for(
            std::chrono::milliseconds(std::stoi(req.get_header_value("OpenAI-Test-Delay-Ms"))));
      if (req.has_header("OpenAI-Test-Status")) {
        res.status = std::stoi(req.get_header_value("OpenAI-Test-Status"));
        res.set_content(R"({"error": {"message": "test status", "type": "test"}})",
                        "application/json");
        return;
      }
      json in = json::parse(req.body);
      std::string text;
      for (const auto& m : in["messages"])
        if (m["role"] == "user") {
          if (m["content"].is_string()) text = m["content"].get<std::string>();
          for (const auto& part : m["content"])
            if (part.is_object() && part.value("type", "") == "text") text = part["text"];
        }
      const std::string content = answer_(text);
      const int n = in.value("n", 1);
      if (in.value("stream", false)) {
        // OpenAI's event stream: role, the answer in two pieces, finish, [usage], [DONE].
        const bool usage =
            in.contains("stream_options") && in["stream_options"].value("include_usage", false);
        const int pause_ms = req.has_header("OpenAI-Test-Chunk-Delay-Ms")
                                 ? std::stoi(req.get_header_value("OpenAI-Test-Chunk-Delay-Ms"))
                                 : 0;
        // With a charset, as vLLM and other FastAPI servers send it.
        res.set_chunked_content_provider(
            "text/event-stream; charset=utf-8",
            [content, usage, pause_ms, model = in.value("model", "fake")](size_t,
                                                                          httplib::DataSink& sink) {
              bool gone = false;  // the proxy hung up: stop writing (and sleeping)
              auto event = [&sink, &model, &gone, pause_ms](json choices,
                                                            json extra = json::object()) {
                if (gone) return;
                if (pause_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms));
                json j{{"id", "chatcmpl-fake"},
                       {"object", "chat.completion.chunk"},
                       {"model", model},
                       {"choices", std::move(choices)}};
                j.update(extra);
                std::string line = "data: " + j.dump() + "\n\n";
                gone = !sink.write(line.data(), line.size());
              };
              auto delta = [](json d, json finish) {
                return json::array(
                    {{{"index", 0}, {"delta", std::move(d)}, {"finish_reason", finish}}});
              };
              event(delta({{"role", "assistant"}, {"content", ""}}, nullptr));
              const size_t half = content.size() / 2;
              event(delta({{"content", content.substr(0, half)}}, nullptr));
              event(delta({{"content", content.substr(half)}}, nullptr));
              event(delta(json::object(), "stop"));
              if (usage)
                event(json::array(),
                      {{"usage",
                        {{"prompt_tokens", 12}, {"completion_tokens", 2}, {"total_tokens", 14}}}});
              const std::string done = "data: [DONE]\n\n";
              sink.write(done.data(), done.size());
              sink.done();
              return true;
            });
        return;
      }
      json choices = json::array();
      for (int i = 0; i < n; ++i)
        choices.push_back({{"index", i},
                           {"message", {{"role", "assistant"}, {"content", content}}},
                           {"finish_reason", "stop"}});
      json out{{"id", "chatcmpl-fake"},
               {"object", "chat.completion"},
               {"model", in.value("model", "fake")},
               {"choices", std::move(choices)},
               {"usage", {{"prompt_tokens", 12}, {"completion_tokens", 2}, {"total_tokens", 14}}}};
      res.set_content(out.dump(), "application/json");
    });
    // Other OpenAI endpoints, for pass-through: they answer what they were asked.
    auto other = [this](const httplib::Request& req, httplib::Response& res) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        ++other_calls_;
        last_other_ = req.method + " " + req.target + " " + req.body;
      }
      nlohmann::json j{{"object", "fake"},
                       {"method", req.method},
                       {"path", req.path},
                       {"target", req.target},
                       {"body", req.body}};
      // The shapes the OpenAI clients parse.
      if (req.path == "/v1/models")
        j.update({{"object", "list"},
                  {"data",
                   {{{"id", "fake-model"},
                     {"object", "model"},
                     {"created", 0},
                     {"owned_by", "test"}}}}});
      if (req.path == "/v1/embeddings")
        j.update(
            {{"object", "list"},
             {"model", "embed-test"},
             {"data", {{{"object", "embedding"}, {"index", 0}, {"embedding", {0.5, 0.25, 0.125}}}}},
             {"usage", {{"prompt_tokens", 1}, {"total_tokens", 1}}}});
      if (req.path == "/v1/gone") {  // an error without a body
        res.status = 404;
        return;
      }
      res.status = req.path == "/v1/teapot" ? 418 : 200;
      res.set_content(j.dump(), "application/json");
    };
    server_.Get(R"(/v1/(?!chat/completions).+)", other);
    server_.Post(R"(/v1/(?!chat/completions).+)", other);
    server_.Delete(R"(/v1/.+)", other);
    server_.set_tcp_nodelay(true);
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  // Answers with the dataset's teacher label ("not sure" for unknown texts).
  explicit FakeLlm(std::map<std::string, std::string> teacher)
      : FakeLlm([teacher = std::move(teacher)](const std::string& text) {
          auto it = teacher.find(text);
          return it == teacher.end() ? std::string("not sure") : it->second;
        }) {}
  ~FakeLlm() {
    server_.stop();
    thread_.join();
  }
  FakeLlm(const FakeLlm&) = delete;
  FakeLlm& operator=(const FakeLlm&) = delete;

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_;
  }
  std::string last_auth() {
    std::lock_guard<std::mutex> lock(mu_);
    return last_auth_;
  }
  std::string last_body() {
    std::lock_guard<std::mutex> lock(mu_);
    return last_body_;
  }
  std::string last_target() {  // of the last chat completion, with its query
    std::lock_guard<std::mutex> lock(mu_);
    return last_target_;
  }
  // Calls to the other endpoints, and the last one as "METHOD TARGET BODY".
  int other_calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return other_calls_;
  }
  std::string last_other() {
    std::lock_guard<std::mutex> lock(mu_);
    return last_other_;
  }

 private:
  Answer answer_;
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  std::mutex mu_;
  int calls_ = 0, other_calls_ = 0;
  std::string last_auth_, last_body_, last_other_, last_target_;
};

// An ApiServer serving on a free loopback port from a thread; stopped and joined on destruction.
class RunningServer {
 public:
  explicit RunningServer(serve::ServeOptions o) : server_(std::move(o)) {
    port_ = server_.bind();
    thread_ = std::thread([this] { server_.run(); });
  }
  ~RunningServer() { stop(); }
  RunningServer(const RunningServer&) = delete;
  RunningServer& operator=(const RunningServer&) = delete;

  // Stops serving (flushing what the server buffers, e.g. traces); idempotent.
  void stop() {
    if (!thread_.joinable()) return;
    server_.stop();
    thread_.join();
  }
  int port() const { return port_; }
  std::unique_ptr<httplib::Client> client() const {
    auto c = std::make_unique<httplib::Client>("127.0.0.1", port_);
    c->set_read_timeout(std::chrono::seconds(30));
    c->set_tcp_nodelay(true);  // else Nagle + delayed ACKs add 40 ms per request
    return c;
  }

 private:
  serve::ApiServer server_;
  std::thread thread_;
  int port_ = 0;
};

// What constructing an ApiServer from `o` throws: the InputError message ("other: ..." for any
// other exception), or "" when the options are accepted.
inline std::string options_error(serve::ServeOptions o) {
  try {
    serve::ApiServer s(std::move(o));
  } catch (const InputError& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("other: ") + e.what();
  }
  return "";
}

// Every Banking77 test line as (input, teacher), in file order.
inline std::vector<std::pair<std::string, std::string>> banking77_test() {
  std::vector<std::pair<std::string, std::string>> out;
  std::ifstream test(source_path("data/banking77/test.jsonl"));
  for (std::string line; std::getline(test, line);) {
    nlohmann::json j = nlohmann::json::parse(line);
    out.emplace_back(j["input"], j["teacher"]);
  }
  return out;
}

// A Banking77 policy (10 labels, 80 train lines each) fitted with `tracer fit --target 0.95`
// into a temporary folder, and loaded. Fitting is the slow part: suites share one (see
// SharedPolicySuite) and derive their own test texts from it.
struct BankingPolicy {
  TempDir dir;
  std::string path = dir.file("policy");
  std::string train = dir.file("train.jsonl");
  std::set<std::string> labels;  // the teacher labels of the train lines
  std::unique_ptr<Router> router;

  BankingPolicy() {
    std::string out;
    for (const auto& l : banking77_lines(10, 80)) {
      labels.insert(nlohmann::json::parse(l)["teacher"].get<std::string>());
      out += l + "\n";
    }
    write_file(train, out);
    auto r = fit(path, "0.95");
    if (r.exit_code != 0) throw std::runtime_error("fit failed: " + r.err);
    router = std::make_unique<Router>(Router::load(path));
  }
  BankingPolicy(const BankingPolicy&) = delete;
  BankingPolicy& operator=(const BankingPolicy&) = delete;

  // Runs `tracer fit` on the same traces into `folder` (exit 4: target not met).
  CommandResult fit(const std::string& folder, const std::string& target) const {
    return run_cli("fit " + train + " -o " + folder + " --quiet --target " + target + fast_zoo());
  }
  std::string version() const { return router->policy().policy_version; }
};

// A BankingPolicy with the Banking77 test texts of its labels split by the router's decision.
struct RoutedPolicy : BankingPolicy {
  std::vector<std::string> handled, deferred;  // test texts by the router's decision

  RoutedPolicy() {
    RouteScratch s = router->make_scratch();
    for (const auto& [input, teacher] : banking77_test()) {
      if (!labels.count(teacher)) continue;
      (router->route(input, s).handled ? handled : deferred).push_back(input);
    }
  }
  // The surrogate's label for `text`.
  std::string surrogate(const std::string& text) const {
    RouteScratch s = router->make_scratch();
    return router->label_name(router->route(text, s).label);
  }
  // A label of the policy other than the surrogate's answer for `text`.
  std::string other_label(const std::string& text) const {
    std::string mine = surrogate(text);
    for (const auto& l : router->policy().labels)
      if (l != mine) return l;
    return "";
  }
};

// The data events of a server-sent event stream, parsed ("[DONE]" kept as a string).
inline std::vector<nlohmann::json> sse_events(const std::string& sse) {
  std::vector<nlohmann::json> out;
  size_t pos = 0;
  while ((pos = sse.find("data:", pos)) != std::string::npos) {
    size_t end = sse.find("\n\n", pos);
    std::string data = sse.substr(pos + 5, end - pos - 5);
    if (!data.empty() && data[0] == ' ') data.erase(0, 1);
    out.push_back(data == "[DONE]" ? nlohmann::json(data) : nlohmann::json::parse(data));
    pos = end;
  }
  return out;
}

// A test suite sharing one `P` (e.g. a BankingPolicy) across its tests: built before the first
// test, destroyed after the last.
template <class P>
class SharedPolicySuite : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { policy_ = std::make_unique<P>(); }
  static void TearDownTestSuite() { policy_.reset(); }
  static inline std::unique_ptr<P> policy_;
};

}  // namespace tracer::testing
