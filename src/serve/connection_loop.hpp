#pragma once
// The connections no worker thread is serving: idle keep-alive connections between requests,
// and connections whose request is still arriving. One thread waits on all of them with epoll
// and hands a connection to a worker (through `Ready`) only once its request has arrived:
// the head, and a small body with it. So a worker thread is busy only while a request is
// handled and answered; thousands of idle or slow clients cost a socket and a buffer each,
// never a thread, and cannot delay anyone else's request.
//
// Limits: an idle connection is closed after the idle timeout; a request that has not arrived
// within the request deadline (from its first byte), or that sends nothing for the read timeout,
// goes to a worker marked timed out (which answers 408 or closes); at most `max_connections`
// are open (more are answered 503 and closed). A body over `max_buffered_bytes`, chunked, or
// announced with `Expect: 100-continue` is read by the worker instead, under the same deadline.
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace tracer::serve {

using SteadyClock = std::chrono::steady_clock;

// One connection as it passes between the loop and a worker. Owns `fd` while it is held.
struct PendingConnection {
  int fd = -1;
  std::string bytes;                   // received and not consumed: the next request, or its start
  SteadyClock::time_point first_byte;  // when `bytes` began to arrive (valid if !bytes.empty())
  size_t served = 0;                   // requests answered on this connection so far
  bool timed_out = false;              // the request deadline passed before it arrived
};

// Whether `bytes` (the start of a connection's input) holds a request a worker can serve without
// waiting: its whole head (up to the blank line), and the body too when its Content-Length is
// at most `max_buffered_bytes` in all. Anything a worker must handle itself counts as arrived:
// a head larger than `max_head_bytes` (refused there), a chunked body, `Expect: 100-continue`,
// several or malformed Content-Length headers (refused there), a body too large to buffer.
bool request_arrived(std::string_view bytes, size_t max_buffered_bytes, size_t max_head_bytes);

// Whether `bytes` ran to `max_head_bytes` without the blank line that ends a head (refused 431).
bool head_without_end(std::string_view bytes, size_t max_head_bytes);

// RFC 9112 §6.3: a request with neither Content-Length nor Transfer-Encoding has no body.
// cpp-httplib 0.11 instead reads a POST, PUT or PATCH body until the client closes (or the read
// times out). When `bytes` holds a whole head of such a request, inserts "Content-Length: 0"
// so that it is answered at once (`curl -X POST URL` without -d). Anything else is unchanged.
void add_missing_length(std::string& bytes);

struct ConnectionLimits {
  int idle_timeout_ms = 5000;      // a connection with no request pending is closed after this
  int read_timeout_ms = 5000;      // a request that sends nothing for this long is cut
  int request_timeout_ms = 0;      // whole request, from its first byte (0: none)
  size_t max_connections = 10000;  // open at once, the ones workers hold included
  size_t max_buffered_bytes = 64 * 1024;  // request bytes held per connection before a worker
  size_t max_head_bytes = 64 * 1024;
};

class ConnectionLoop {
 public:
  // Called on the loop thread with a connection whose request arrived (or timed out). Returns
  // false when no worker can take it (saturated): the loop then answers `busy_response` and
  // closes it. On true it owns the connection.
  using Ready = std::function<bool(PendingConnection&)>;

  // `busy_response`: a whole HTTP response (status line to body) sent to connections refused
  // for saturation or for `max_connections`. Starts the loop thread; throws std::runtime_error
  // if epoll or eventfd cannot be created.
  ConnectionLoop(ConnectionLimits limits, std::string busy_response, Ready ready);
  ~ConnectionLoop();  // stop()
  ConnectionLoop(const ConnectionLoop&) = delete;
  ConnectionLoop& operator=(const ConnectionLoop&) = delete;

  // Any thread: a new connection from accept(). Over `max_connections` it is answered
  // `busy_response` and closed at once.
  void accept(int fd);
  // Any thread: a connection a worker has answered and keeps alive (with the bytes it read past
  // its request). After stop() the connection is closed instead.
  void adopt(PendingConnection connection);
  // Any thread: a worker closed a connection it held (keeps the open count right).
  void closed();
  // Closes every connection the loop holds and joins its thread; idempotent. Connections that
  // workers hold are closed by them when adopt() refuses them.
  void stop();

  size_t open_connections() const;  // held by the loop or by workers
  size_t refused_busy() const;      // answered busy_response since start

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace tracer::serve
