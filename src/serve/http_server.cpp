#include "serve/http_server.hpp"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <utility>

namespace tracer::serve {
namespace {

// Waits until `fd` is ready for `events`; false on timeout or error.
bool wait_fd(int fd, short events, int timeout_ms) {
  pollfd p{fd, events, 0};
  for (;;) {
    int n = ::poll(&p, 1, timeout_ms);
    if (n < 0 && errno == EINTR) continue;
    return n > 0;
  }
}

void address_of(int fd, bool peer, std::string& ip, int& port) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  auto* a = reinterpret_cast<sockaddr*>(&addr);
  if ((peer ? ::getpeername(fd, a, &len) : ::getsockname(fd, a, &len)) != 0) return;
  std::array<char, NI_MAXHOST> host{};
  std::array<char, NI_MAXSERV> serv{};
  if (::getnameinfo(a, len, host.data(), host.size(), serv.data(), serv.size(),
                    NI_NUMERICHOST | NI_NUMERICSERV) == 0) {
    ip = host.data();
    port = std::atoi(serv.data());
  }
}

// Set by close_after_response() on the thread that serves the connection; read and cleared by
// that connection's loop after each request.
thread_local bool t_close_after_response = false;
// Set when the request being read ran past its byte budget; cleared before each request.
thread_local bool t_request_over_budget = false;
// Set when reading the request ran past its deadline; cleared before each request.
thread_local bool t_request_timed_out = false;
// Set when the request's head has no end within the loop's head limit.
thread_local bool t_head_too_large = false;
// The connection this worker thread serves now (-1: none).
thread_local int t_client_fd = -1;

// One connection, read through a small buffer (httplib reads request lines byte by byte).
class ConnectionStream : public httplib::Stream {
 public:
  // `received`: bytes the connection loop already read (the start of the first request).
  ConnectionStream(int sock, int read_timeout_ms, int write_timeout_ms, std::string received)
      : sock_(sock),
        read_timeout_ms_(read_timeout_ms),
        write_timeout_ms_(write_timeout_ms),
        buf_(std::move(received)) {}

  bool buffered() const { return off_ < buf_.size(); }
  size_t buffered_size() const { return buf_.size() - off_; }
  bool is_readable() const override { return buffered() || wait_readable(); }
  bool is_writable() const override { return wait_fd(sock_, POLLOUT, write_timeout_ms_); }

  // Bytes one request may deliver to httplib (request line, headers, body, chunk framing): past
  // it, reads fail and the request is refused. Bounds memory for bodies whose size is not
  // announced (Transfer-Encoding: chunked), which httplib 0.11 reads whole whatever the limit.
  // `deadline` bounds the time the whole request may take to arrive (`has_deadline` false:
  // none): a client that trickles bytes (each within the read timeout) is cut there.
  void start_request(size_t budget, bool has_deadline, SteadyClock::time_point deadline) {
    left_ = budget;
    has_deadline_ = has_deadline;
    deadline_ = deadline;
  }

  // Makes `bytes` the next ones read (what take_buffered() took).
  void put_back(std::string bytes) {
    buf_ = std::move(bytes);
    off_ = 0;
  }

  // Bytes received past the request just answered (the start of the next one), taken out.
  std::string take_buffered() {
    std::string rest = buf_.substr(off_);
    buf_.clear();
    off_ = 0;
    return rest;
  }

  ssize_t read(char* ptr, size_t size) override {
    if (left_ == 0) {
      t_request_over_budget = true;
      return -1;
    }
    size = std::min(size, left_);
    const ssize_t n = read_unbudgeted(ptr, size);
    if (n > 0) left_ -= static_cast<size_t>(n);
    return n;
  }

  ssize_t read_unbudgeted(char* ptr, size_t size) {
    if (buffered()) {
      size_t n = std::min(size, buf_.size() - off_);
      std::memcpy(ptr, buf_.data() + off_, n);
      off_ += n;
      return static_cast<ssize_t>(n);
    }
    if (!wait_readable()) return -1;
    if (size >= kChunk) return recv_some(ptr, size);
    buf_.resize(kChunk);
    ssize_t n = recv_some(buf_.data(), kChunk);
    buf_.resize(n > 0 ? static_cast<size_t>(n) : 0);
    off_ = 0;
    if (n <= 0) return n;
    return read_unbudgeted(ptr, size);
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (!wait_fd(sock_, POLLOUT, 0)) {  // the client reads slowly: wait without a CPU slot
      WorkerPool::Blocking waiting;
      if (!wait_fd(sock_, POLLOUT, write_timeout_ms_)) return -1;
    }
    for (;;) {
      ssize_t n = ::send(sock_, ptr, size, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      return n;
    }
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    address_of(sock_, true, ip, port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    address_of(sock_, false, ip, port);
  }
  socket_t socket() const override { return sock_; }

 private:
  // Waits for bytes to read: at most the read timeout, and never past the request's deadline.
  // A worker only reads a request under way, so a wait that ends without bytes marks it timed
  // out (408): the deadline passed or the client stalled.
  bool wait_readable() const {
    if (wait_fd(sock_, POLLIN, 0)) return true;
    WorkerPool::Blocking waiting;  // a body still arriving: wait without a CPU slot
    if (!has_deadline_) {
      if (wait_fd(sock_, POLLIN, read_timeout_ms_)) return true;
      t_request_timed_out = true;
      return false;
    }
    // Milliseconds left, rounded up: a wait that ends early by a fraction is still the deadline.
    const auto left =
        std::chrono::ceil<std::chrono::milliseconds>(deadline_ - std::chrono::steady_clock::now())
            .count();
    if (left > 0 &&
        wait_fd(sock_, POLLIN, static_cast<int>(std::min<int64_t>(left, read_timeout_ms_))))
      return true;
    t_request_timed_out = true;
    return false;
  }

  ssize_t recv_some(char* ptr, size_t size) {
    for (;;) {
      ssize_t n = ::recv(sock_, ptr, size, 0);
      if (n < 0 && errno == EINTR) continue;
      return n;
    }
  }

  static constexpr size_t kChunk = 4096;  // httplib reads request lines byte by byte
  int sock_;
  int read_timeout_ms_, write_timeout_ms_;
  std::string buf_;  // buf_[off_..] not yet read
  size_t off_ = 0;
  size_t left_ = std::numeric_limits<size_t>::max();
  bool has_deadline_ = false;
  std::chrono::steady_clock::time_point deadline_{};
};

int to_ms(time_t sec, time_t usec) { return static_cast<int>(sec * 1000 + usec / 1000); }

}  // namespace

// The task queue httplib's accept loop hands each new socket to: process_and_close_socket runs
// inline on the accept thread and only gives the socket to the connection loop. Created when
// listening starts, shut down when it ends.
class HttpServer::Workers : public httplib::TaskQueue {
 public:
  explicit Workers(HttpServer& server) : server_(server) { server_.start_serving(); }
  void enqueue(std::function<void()> fn) override { fn(); }
  void shutdown() override { server_.finish_serving(); }

 private:
  HttpServer& server_;
};

HttpServer::HttpServer() {
  set_busy_body(R"({"error": {"message": "the server is busy; retry later"}})");
  new_task_queue = [this] { return new Workers(*this); };
}

HttpServer::~HttpServer() { finish_serving(); }

void HttpServer::set_busy_body(std::string json) {
  busy_response_ =
      "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: "
      "1\r\nConnection: close\r\nContent-Length: " +
      std::to_string(json.size()) + "\r\n\r\n" + json;
}

void HttpServer::start_serving() {
  std::lock_guard lock(life_mu_);
  // `threads_` requests may wait on the LLM at once and routing still has its CPU slots.
  pool_ =
      std::make_unique<WorkerPool>(static_cast<size_t>(threads_) + WorkerPool::default_cpu_slots());
  limits_.read_timeout_ms = to_ms(read_timeout_sec_, read_timeout_usec_);
  loop_ = std::make_unique<ConnectionLoop>(limits_, busy_response_,
                                           [this](PendingConnection& c) { return take(c); });
  if (stopping_) loop_->stop();
}

void HttpServer::finish_serving() {
  {
    std::lock_guard lock(life_mu_);
    if (loop_) loop_->stop();  // closes idle connections; answered ones are closed by workers
  }
  if (pool_) pool_->shutdown();  // requests in progress finish
  pool_.reset();
}

bool HttpServer::take(PendingConnection& c) {
  if (queued_.fetch_add(1) >= max_queued_) {
    queued_.fetch_sub(1);
    return false;
  }
  pool_->submit([this, c = std::move(c), queued_at = SteadyClock::now()]() mutable {
    queued_.fetch_sub(1);
    // A request that waited for a worker longer than a whole request may take to arrive is
    // answered busy rather than late: its client has likely given up, and serving stale work
    // first only makes every later request late too.
    if (limits_.request_timeout_ms > 0 &&
        SteadyClock::now() - queued_at > std::chrono::milliseconds(limits_.request_timeout_ms)) {
      stale_refusals_.fetch_add(1);
      [[maybe_unused]] ssize_t n =
          ::send(c.fd, busy_response_.data(), busy_response_.size(), MSG_NOSIGNAL);
      drop(c.fd);
      return;
    }
    serve(std::move(c));
  });
  return true;
}

bool HttpServer::process_and_close_socket(socket_t sock) {
  loop_->accept(sock);
  return true;
}

void HttpServer::widen_backlog(int backlog) { ::listen(svr_sock_, backlog); }

void HttpServer::close_after_response() { t_close_after_response = true; }

bool HttpServer::request_over_budget() { return t_request_over_budget; }

bool HttpServer::request_timed_out() { return t_request_timed_out; }

bool HttpServer::head_too_large() { return t_head_too_large; }

bool HttpServer::client_gone() {
  if (t_client_fd < 0) return false;
  pollfd p{t_client_fd, POLLRDHUP, 0};
  return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

size_t HttpServer::open_connections() const { return loop_ ? loop_->open_connections() : 0; }

size_t HttpServer::refused_busy() const {
  return (loop_ ? loop_->refused_busy() : 0) + stale_refusals_.load();
}

void HttpServer::begin_shutdown() {
  stopping_ = true;
  std::lock_guard lock(life_mu_);
  if (loop_) loop_->stop();
}

void HttpServer::drop(int fd) {
  ::shutdown(fd, SHUT_RDWR);
  ::close(fd);
  loop_->closed();
}

// A client that sends its next request right after the answer (a sequential client, a
// benchmark) is served by the same worker, which saves the two thread hand-offs through the
// loop. Only when no request waits for a worker, and only briefly: the wait does not hold a CPU
// slot, and a connection that stays quiet goes back to the loop.
std::string HttpServer::next_request_soon(int fd) {
  if (stopping_ || queued_.load() > 0) return {};
  {
    WorkerPool::Blocking waiting;
    if (!wait_fd(fd, POLLIN, kLingerMs)) return {};
  }
  // Only a request that is all there: one that starts arriving and then trickles goes back to
  // the loop (peeked, so nothing is consumed), or it would hold this worker while it trickles.
  std::string next(limits_.max_buffered_bytes, '\0');
  const ssize_t n = ::recv(fd, next.data(), next.size(), MSG_PEEK | MSG_DONTWAIT);
  if (n <= 0) return {};
  next.resize(static_cast<size_t>(n));
  if (head_without_end(next, limits_.max_head_bytes) ||
      !request_arrived(next, limits_.max_buffered_bytes, limits_.max_head_bytes))
    return {};
  const ssize_t taken = ::recv(fd, next.data(), next.size(), MSG_DONTWAIT);  // the same bytes
  if (taken <= 0) return {};
  next.resize(static_cast<size_t>(taken));
  return next;
}

void HttpServer::serve(PendingConnection c) {
  bool oversized_head = head_without_end(c.bytes, limits_.max_head_bytes);
  add_missing_length(c.bytes);
  serving_.fetch_add(1);
  struct Done {
    std::atomic<size_t>& n;
    ~Done() { n.fetch_sub(1); }
  } done{serving_};
  ConnectionStream strm(c.fd, to_ms(read_timeout_sec_, read_timeout_usec_),
                        to_ms(write_timeout_sec_, write_timeout_usec_), std::move(c.bytes));
  for (;;) {
    const bool close_connection = stopping_ || c.served + 1 >= keep_alive_max_count_;
    bool connection_closed = false;
    t_close_after_response = false;
    t_request_over_budget = false;
    t_request_timed_out = false;
    const bool has_deadline = limits_.request_timeout_ms > 0;
    // A head without its end within max_head_bytes: httplib may read only what is here, so
    // the read fails (431) instead of taking in headers without bound.
    t_head_too_large = oversized_head;
    strm.start_request(oversized_head ? strm.buffered_size() : request_byte_limit_, has_deadline,
                       c.timed_out
                           ? SteadyClock::time_point{}
                           : c.first_byte + std::chrono::milliseconds(limits_.request_timeout_ms));
    t_client_fd = c.fd;
    const bool ok = process_request(strm, close_connection, connection_closed, nullptr);
    t_client_fd = -1;
    ++c.served;
    const bool asked = std::exchange(t_close_after_response, false);
    if (!ok || connection_closed || close_connection || asked || t_request_over_budget ||
        t_request_timed_out) {
      drop(c.fd);
      return;
    }
    // Kept alive: answer a pipelined request that is already here, else give the connection
    // back to the loop until the next one arrives.
    std::string rest = strm.take_buffered();
    c.first_byte = SteadyClock::now();
    if (!rest.empty() &&
        request_arrived(rest, limits_.max_buffered_bytes, limits_.max_head_bytes)) {
      oversized_head = head_without_end(rest, limits_.max_head_bytes);
      add_missing_length(rest);
      strm.put_back(std::move(rest));
      continue;
    }
    if (rest.empty()) {
      if (std::string next = next_request_soon(c.fd); !next.empty()) {
        oversized_head = false;  // its head ended within the peek
        add_missing_length(next);
        strm.put_back(std::move(next));
        continue;
      }
    }
    c.bytes = std::move(rest);
    loop_->adopt(std::move(c));
    return;
  }
}

}  // namespace tracer::serve
