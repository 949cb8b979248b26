#pragma once
// httplib::Server with its connection handling replaced (httplib still parses requests, routes
// and writes responses):
//  - worker threads serve requests, not connections. A ConnectionLoop (one epoll thread) holds
//    every connection between requests and while its request arrives; a worker takes it only
//    once the request is there and gives it back after the answer. Idle keep-alive clients and
//    clients that trickle their bytes hold no thread, so they cannot delay other clients or the
//    admin endpoints (httplib 0.11 pins one thread per connection for its whole life).
//  - bounded: at most `max_connections` open and `max_queued` requests waiting for a worker;
//    past either, the client gets a 503 with the configured body and the connection is closed.
//    So does a request that waited for a worker longer than the request timeout.
//  - stop() does not wait for idle keep-alive connections (the loop closes them at once), while
//    requests being handled finish and get their answer.
//  - the listen backlog: httplib's compiled-in 5 drops bursts of new connections.
//  - a handler can ask for its connection to be closed after the response (close_after_response):
//    httplib 0.11 keeps it open whatever the response says, and then reads the unread body of a
//    refused request as the next request.
#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>

#include "serve/connection_loop.hpp"
#include "serve/http.hpp"
#include "serve/worker_pool.hpp"

namespace tracer::serve {

class HttpServer : public httplib::Server {
 public:
  HttpServer();
  ~HttpServer() override;
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Setters take effect when listening starts.
  void set_idle_timeout_ms(int ms) { limits_.idle_timeout_ms = ms; }
  // Most bytes one request may send, headers and chunk framing included (default: unbounded).
  // Past it the read fails, the connection is closed after the answer, and
  // request_over_budget() tells the error handler why.
  void set_request_byte_limit(size_t bytes) { request_byte_limit_ = bytes; }
  // On the connection's thread, while answering: whether the current request ran past the limit.
  static bool request_over_budget();
  // Longest time one request (request line, headers and body) may take to arrive, from its
  // first byte (0: no limit; each read still has the read timeout). Past it the request is
  // answered 408 (request_timed_out() tells the error handler) and the connection is closed.
  void set_request_timeout_ms(int ms) { limits_.request_timeout_ms = ms; }
  // On the connection's thread, while answering: whether reading the request ran out of time.
  static bool request_timed_out();
  // On the connection's thread, while answering: whether the request line and headers ran past
  // the head limit (64 KiB) without their blank line.
  static bool head_too_large();
  // After bind_to_port / bind_to_any_port.
  void widen_backlog(int backlog = 1024);
  // Requests that may wait on I/O (the LLM) at once (>= 1); the pool has
  // WorkerPool::default_cpu_slots() more threads so that routing goes on meanwhile.
  void set_worker_threads(int threads) { threads_ = threads < 1 ? 1 : threads; }
  // Open connections at most (idle, arriving and being answered; >= 1).
  void set_max_connections(size_t n) { limits_.max_connections = n < 1 ? 1 : n; }
  // Requests that have arrived and wait for a worker, at most (>= 1).
  void set_max_queued(size_t n) { max_queued_ = n < 1 ? 1 : n; }
  // JSON body of the 503 sent when a limit above is reached.
  void set_busy_body(std::string json);
  // Wakes every idle connection and closes it; requests in progress finish. Call with stop().
  void begin_shutdown();
  // From a handler (or the pre-routing handler): close this connection once the response is
  // written. Handlers run on their connection's thread, so the request is a thread-local flag
  // that the connection loop reads and clears after each request.
  static void close_after_response();
  // From a handler or a content provider: whether the client of this thread's connection has
  // closed it (or shut down its sending side), e.g. while a long stream waits for its next
  // piece. False on threads that serve no connection.
  static bool client_gone();

  size_t open_connections() const;                  // 0 before listening
  size_t queued() const { return queued_.load(); }  // arrived, waiting for a worker
  // Requests queued or being answered (streams being relayed included).
  size_t busy() const { return queued_.load() + serving_.load(); }
  size_t refused_busy() const;  // 503s for saturation since listening started

 private:
  class Workers;
  bool process_and_close_socket(socket_t sock) override;  // hands the socket to the loop
  void start_serving();
  void finish_serving();
  bool take(PendingConnection& c);  // the loop's Ready: queue it for a worker
  void serve(PendingConnection c);  // on a worker: answer requests while they have arrived
  void drop(int fd);
  // After an answer: the next request if it comes at once, whole (read off the socket), or "".
  std::string next_request_soon(int fd);
  static constexpr int kLingerMs = 2;  // closes a connection a worker holds

  ConnectionLimits limits_;
  int threads_ = 8;
  size_t max_queued_ = 1024;
  size_t request_byte_limit_ = static_cast<size_t>(-1);
  std::string busy_response_;
  std::atomic<size_t> queued_{0};
  std::atomic<size_t> serving_{0};         // connections a worker is answering
  std::atomic<size_t> stale_refusals_{0};  // waited for a worker past the request timeout
  std::atomic<bool> stopping_{false};
  std::mutex life_mu_;  // loop_ is created on the listening thread, stopped from any
  std::unique_ptr<WorkerPool> pool_;
  std::unique_ptr<ConnectionLoop> loop_;
};

}  // namespace tracer::serve
