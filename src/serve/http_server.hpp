#pragma once
// httplib::Server with its connection loop replaced, for two reasons:
//  - stop() must not wait for idle keep-alive connections: httplib 0.11 polls each one until its
//    keep-alive timeout (5 s) before noticing the server stopped. Here every idle connection
//    waits in poll() on its socket and on a shutdown eventfd, so it closes at once, while a
//    request being handled still finishes and gets its answer.
//  - the listen backlog: httplib's compiled-in 5 drops bursts of new connections.
//  - idle keep-alive connections yield: with one thread per connection, a client that keeps its
//    connection open between requests holds a thread while idle. When a new connection waits
//    for a thread and every thread is taken, one idle connection closes and gives its thread up
//    (clients reconnect on their next request, as HTTP allows), so idle clients cannot starve
//    new ones: a request waits only behind requests in progress.
//  - a handler can ask for its connection to be closed after the response (close_after_response):
//    httplib 0.11 keeps it open whatever the response says, and then reads the unread body of a
//    refused request as the next request.
#include <atomic>
#include <cstddef>

#include "serve/http.hpp"

namespace tracer::serve {

class HttpServer : public httplib::Server {
 public:
  HttpServer();
  ~HttpServer() override;
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  void set_idle_timeout_ms(int ms) { idle_timeout_ms_ = ms; }
  // Most bytes one request may send, headers and chunk framing included (default: unbounded).
  // Past it the read fails, the connection is closed after the answer, and
  // request_over_budget() tells the error handler why.
  void set_request_byte_limit(size_t bytes) { request_byte_limit_ = bytes; }
  // On the connection's thread, while answering: whether the current request ran past the limit.
  static bool request_over_budget();
  // Longest time one request (request line, headers and body) may take to arrive, from its
  // first byte (0: no limit; each read still has the read timeout). Past it the read fails and
  // the connection is closed: a client trickling bytes cannot hold a worker thread for long.
  void set_request_timeout_ms(int ms) { request_timeout_ms_ = ms; }
  // On the connection's thread, while answering: whether reading the request ran out of time.
  static bool request_timed_out();
  // After bind_to_port / bind_to_any_port.
  void widen_backlog(int backlog = 1024);
  // Serves connections on `threads` worker threads (>= 1), idle ones yielding (see above).
  void set_worker_threads(int threads);
  // Wakes every idle connection and closes it; requests in progress finish. Call with stop().
  void begin_shutdown();
  // From a handler (or the pre-routing handler): close this connection once the response is
  // written. Handlers run on their connection's thread, so the request is a thread-local flag
  // that the connection loop reads and clears after each request.
  static void close_after_response();

 private:
  class YieldingPool;
  bool process_and_close_socket(socket_t sock) override;
  // Waits while the connection is idle; false when it should close (idle timeout, shutdown, or
  // it yields its thread to a waiting connection: only after its first request, `may_yield`).
  bool wait_for_next_request(int sock, bool may_yield);
  void signal_yield();  // wakes idle connections to look at yields_wanted_
  bool take_yield();    // claims one pending yield; false when none is pending

  int wake_fd_ = -1;
  int yield_fd_ = -1;                  // eventfd: wakes idle connections when a yield is wanted
  std::atomic<int> yields_wanted_{0};  // connections waiting for a thread that asked for one
  int threads_ = 8;
  std::atomic<int> waiting_{0};  // connections accepted, not yet on a thread
  std::atomic<int> busy_{0};     // threads serving a connection
  std::atomic<bool> stopping_{false};
  int idle_timeout_ms_ = 5000;
  size_t request_byte_limit_ = static_cast<size_t>(-1);
  int request_timeout_ms_ = 0;
};

}  // namespace tracer::serve
