// The HTTP layer under many connections (src/serve/http_server, connection_loop): idle and
// trickling clients hold no worker thread, so other clients are answered at once; the limits
// on open connections and queued requests answer 503. Real sockets on loopback against an
// in-process server.
#include "serve/http_server.hpp"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "serve/server.hpp"
#include "serve_test_util.hpp"

namespace tracer {
namespace {

using nlohmann::json;
using testing::FakeLlm;
using testing::RunningServer;
using testing::seconds_since;
using Clock = std::chrono::steady_clock;

// An open loopback connection, closed on destruction.
class RawConnection {
 public:
  explicit RawConnection(int port) : fd_(testing::connect_loopback(port)) {}
  ~RawConnection() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  bool ok() const { return fd_ >= 0; }
  bool send(const std::string& bytes) {
    return ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
           static_cast<ssize_t>(bytes.size());
  }
  // Reads until the peer closes or `timeout_ms` passes.
  std::string read_to_end(int timeout_ms) {
    std::string out;
    const auto end = Clock::now() + std::chrono::milliseconds(timeout_ms);
    while (!closed_ && Clock::now() < end) out += read_some(end);
    return out;
  }
  // Reads one whole response (head and its Content-Length body); what came if it is cut short.
  std::string response(int timeout_ms) {
    const auto end = Clock::now() + std::chrono::milliseconds(timeout_ms);
    std::string out = std::move(pending_);
    pending_.clear();
    size_t head = std::string::npos;
    while ((head = out.find("\r\n\r\n")) == std::string::npos && !closed_ && Clock::now() < end)
      out += read_some(end);
    if (head == std::string::npos) return out;
    const size_t at = out.find("Content-Length: ");
    const size_t whole = head + 4 + (at < head ? std::stoul(out.substr(at + 16)) : 0);
    while (out.size() < whole && !closed_ && Clock::now() < end) out += read_some(end);
    if (out.size() > whole) pending_ = out.substr(whole);
    return out.substr(0, std::min(out.size(), whole));
  }
  bool closed() const { return closed_; }

 private:
  // What one recv returns, waiting at most until `end` ("" on timeout; sets closed_ at EOF).
  std::string read_some(Clock::time_point end) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now()).count();
    pollfd p{fd_, POLLIN, 0};
    if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) return "";
    char buf[4096];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) {
      closed_ = true;
      return "";
    }
    return std::string(buf, static_cast<size_t>(n));
  }

  int fd_;
  bool closed_ = false;
  std::string pending_;  // read past the last response
};

const std::string kHealthz = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

class HttpServerLoad : public testing::SharedPolicySuite<testing::RoutedPolicy> {
 protected:
  serve::ServeOptions options() const {
    serve::ServeOptions o;
    o.policy_dir = policy_->path;
    o.port = 0;
    return o;
  }
};

// With two worker threads, 300 idle keep-alive clients and 300 clients stuck in their headers
// do not delay anyone: every probe is answered at once (the thread-per-connection server
// answered none until the stuck ones timed out). The idle ones still work on their own
// connections; the stuck ones are cut at --request-timeout.
TEST_F(HttpServerLoad, IdleAndTricklingClientsHoldNoThread) {
  serve::ServeOptions o = options();
  o.threads = 2;
  o.request_timeout_s = 3;
  RunningServer server(o);
  constexpr int kEach = 300;
  std::vector<std::unique_ptr<RawConnection>> idle, stuck;
  for (int i = 0; i < kEach; ++i) {
    idle.push_back(std::make_unique<RawConnection>(server.port()));
    ASSERT_TRUE(idle.back()->ok());
    ASSERT_TRUE(idle.back()->send(kHealthz));
    ASSERT_EQ(idle.back()->response(5000).rfind("HTTP/1.1 200", 0), 0u) << i;
  }
  const auto stuck_since = Clock::now();
  for (int i = 0; i < kEach; ++i) {
    stuck.push_back(std::make_unique<RawConnection>(server.port()));
    ASSERT_TRUE(stuck.back()->ok());
    ASSERT_TRUE(stuck.back()->send("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: a"));
  }
  auto client = server.client();
  for (int i = 0; i < 10; ++i) {
    const auto t0 = Clock::now();
    auto h = client->Get("/healthz");
    ASSERT_TRUE(h);
    EXPECT_EQ(h->status, 200);
    auto r = client->Post("/v1/route", json{{"text", policy_->handled.at(0)}}.dump(),
                          "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_LT(seconds_since(t0), 1.0) << "probe " << i;  // not held until the 3 s deadline
  }
  EXPECT_LT(seconds_since(stuck_since), 2.5);  // all of the above came before any deadline
  // The idle ones work on their own connections (the latest ones: the first may have reached
  // the 5 s idle timeout on a slow machine).
  for (int i = kEach - 20; i < kEach; ++i) {
    ASSERT_TRUE(idle[static_cast<size_t>(i)]->send(kHealthz));
    const std::string again = idle[static_cast<size_t>(i)]->response(5000);
    EXPECT_EQ(again.rfind("HTTP/1.1 200", 0), 0u)
        << i << " closed " << idle[static_cast<size_t>(i)]->closed() << ": " << again << " after "
        << seconds_since(stuck_since);
  }
  for (auto& c : stuck) {  // each ends at the deadline: a 408 and the connection closed
    const std::string out = c->read_to_end(10000);
    EXPECT_EQ(out.rfind("HTTP/1.1 408", 0), 0u) << out;
    EXPECT_TRUE(c->closed());
  }
}

// A request that stalls once its request line is in is answered 408, whether the loop holds it
// (small body) or a worker reads it (body over 64 KiB); a head that runs past 64 KiB without
// its end is answered 431; all three connections are closed.
TEST_F(HttpServerLoad, StalledAndOversizedRequestsAreAnsweredNotDropped) {
  RunningServer server(options());
  const std::string post =
      "POST /v1/route HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n";
  RawConnection small(server.port()), big(server.port()), huge_head(server.port());
  ASSERT_TRUE(small.send(post + "Content-Length: 100\r\n\r\n{\"text\""));
  ASSERT_TRUE(big.send(post + "Content-Length: 200000\r\n\r\n" + std::string(100000, ' ')));
  std::string head = "GET /healthz HTTP/1.1\r\nHost: x\r\n";
  for (int i = 0; head.size() < 100 * 1024; ++i)
    head += "X-Pad-" + std::to_string(i) + ": " + std::string(1000, 'a') + "\r\n";
  ASSERT_TRUE(huge_head.send(head + "\r\n"));
  const std::string too_large = huge_head.read_to_end(5000);
  EXPECT_EQ(too_large.rfind("HTTP/1.1 431", 0), 0u) << too_large.substr(0, 300);
  EXPECT_NE(too_large.find("request_headers_too_large"), std::string::npos);
  EXPECT_TRUE(huge_head.closed());
  for (RawConnection* c : {&small, &big}) {
    const std::string out = c->read_to_end(15000);  // the 5 s stall, not the 10 s deadline
    EXPECT_EQ(out.rfind("HTTP/1.1 408", 0), 0u) << out;
    EXPECT_NE(out.find("request_timeout"), std::string::npos) << out;
    EXPECT_TRUE(c->closed());
  }
  EXPECT_EQ(server.client()->Get("/healthz")->status, 200);  // and serving goes on
}

// Over --max-connections, a new connection gets a 503 in OpenAI's error shape and is closed;
// once a connection closes there is room again.
TEST_F(HttpServerLoad, ConnectionsOverTheLimitGet503) {
  serve::ServeOptions o = options();
  o.max_connections = 4;
  RunningServer server(o);
  std::vector<std::unique_ptr<RawConnection>> open;
  for (int i = 0; i < 4; ++i) {
    open.push_back(std::make_unique<RawConnection>(server.port()));
    ASSERT_TRUE(open.back()->send(kHealthz));
    ASSERT_EQ(open.back()->response(5000).rfind("HTTP/1.1 200", 0), 0u);
  }
  RawConnection extra(server.port());
  extra.send(kHealthz);
  const std::string out = extra.read_to_end(5000);
  EXPECT_EQ(out.rfind("HTTP/1.1 503", 0), 0u) << out;
  EXPECT_NE(out.find("Retry-After: 1"), std::string::npos) << out;
  const json err = json::parse(out.substr(out.find("\r\n\r\n") + 4));
  EXPECT_EQ(err["error"]["type"], "server_busy") << out;
  EXPECT_NE(err["error"]["message"].get<std::string>().find("--max-connections"),
            std::string::npos);
  EXPECT_TRUE(extra.closed());
  open.pop_back();
  EXPECT_TRUE(testing::eventually([&] {
    RawConnection again(server.port());
    again.send("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    return again.read_to_end(2000).rfind("HTTP/1.1 200", 0) == 0;
  }));
  std::string metrics;
  EXPECT_TRUE(testing::eventually([&] {
    auto m = server.client()->Get("/metrics");
    if (m && m->status == 200) metrics = m->body;
    return !metrics.empty();
  }));
  // At least the one above (a retry of `again` may have come before the slot was freed).
  EXPECT_GE(testing::metric(metrics, "tracer_http_busy_refusals_total"), 1) << metrics;
  EXPECT_GE(testing::metric(metrics, "tracer_http_connections"), 4) << metrics;  // 3 + this one
  EXPECT_EQ(testing::metric(metrics, "tracer_http_queued_requests"), 0) << metrics;
}

// Over --max-queued, a request that arrived while every worker is busy gets a 503 at once
// rather than waiting without bound. --threads 1 lets one request wait on the LLM, and the
// pool keeps cores + 2 more threads for routing: that many slow deferred requests take every
// worker, one request waits for one, the next is refused; the waiting one is answered.
TEST_F(HttpServerLoad, RequestsOverTheQueueLimitGet503) {
  const size_t workers = 1 + serve::WorkerPool::default_cpu_slots();
  ASSERT_GE(policy_->deferred.size(), workers);
  FakeLlm llm([](const std::string&) { return "llm"; });
  serve::ServeOptions o = options();
  o.threads = 1;
  o.max_queued = 1;
  o.upstream = llm.url();
  testing::TempDir tmp;
  o.trace_db = tmp.file("t.db");
  RunningServer server(o);
  const auto chat = [](const std::string& text) {
    return json{{"model", "m"}, {"messages", {{{"role", "user"}, {"content", text}}}}}.dump();
  };
  std::vector<std::thread> slow;
  for (size_t i = 0; i < workers; ++i) {  // one at a time: the queue holds only one
    slow.emplace_back([&, i] {
      auto c = server.client();
      auto r = c->Post("/v1/chat/completions", {{"OpenAI-Test-Delay-Ms", "4000"}},
                       chat(policy_->deferred[i]), "application/json");
      ASSERT_TRUE(r);
      EXPECT_EQ(r->status, 200);
    });
    ASSERT_TRUE(testing::eventually([&] { return llm.calls() >= static_cast<int>(i + 1); }));
  }
  RawConnection queued(server.port());
  queued.send(kHealthz);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // let the loop queue it
  RawConnection refused(server.port());
  refused.send(kHealthz);
  const std::string out = refused.read_to_end(2000);
  EXPECT_EQ(out.rfind("HTTP/1.1 503", 0), 0u) << out;
  EXPECT_NE(out.find("server_busy"), std::string::npos) << out;
  EXPECT_EQ(queued.response(10000).rfind("HTTP/1.1 200", 0), 0u);
  for (auto& t : slow) t.join();
}

// A slow LLM does not take routing down: with --threads 2 and two deferred requests waiting on
// the LLM, /healthz and /v1/route are still answered at once.
TEST_F(HttpServerLoad, RoutingGoesOnWhileTheLlmIsSlow) {
  FakeLlm llm([](const std::string&) { return "llm"; });
  serve::ServeOptions o = options();
  o.threads = 2;
  o.upstream = llm.url();
  testing::TempDir tmp;
  o.trace_db = tmp.file("t.db");
  RunningServer server(o);
  std::vector<std::thread> slow;
  for (size_t i = 0; i < 2; ++i)
    slow.emplace_back([&, i] {
      auto c = server.client();
      const json body{{"model", "m"},
                      {"messages", {{{"role", "user"}, {"content", policy_->deferred.at(i)}}}}};
      auto r = c->Post("/v1/chat/completions", {{"OpenAI-Test-Delay-Ms", "3000"}}, body.dump(),
                       "application/json");
      ASSERT_TRUE(r);
      EXPECT_EQ(r->status, 200);
    });
  ASSERT_TRUE(testing::eventually([&] { return llm.calls() >= 2; }));
  const auto t0 = Clock::now();
  auto client = server.client();
  auto h = client->Get("/healthz");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  auto r =
      client->Post("/v1/route", json{{"text", policy_->handled.at(0)}}.dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_LT(seconds_since(t0), 1.5);  // not after the LLM's 3 s
  for (auto& t : slow) t.join();
}

}  // namespace
}  // namespace tracer
