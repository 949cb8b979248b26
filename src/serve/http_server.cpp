#include "serve/http_server.hpp"

#include <netdb.h>
#include <poll.h>
#include <sys/eventfd.h>
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

// One connection, read through a small buffer (httplib reads request lines byte by byte).
class ConnectionStream : public httplib::Stream {
 public:
  ConnectionStream(int sock, int read_timeout_ms, int write_timeout_ms)
      : sock_(sock), read_timeout_ms_(read_timeout_ms), write_timeout_ms_(write_timeout_ms) {}

  bool buffered() const { return off_ < len_; }
  bool is_readable() const override { return buffered() || wait_readable(); }
  bool is_writable() const override { return wait_fd(sock_, POLLOUT, write_timeout_ms_); }

  // Bytes one request may deliver to httplib (request line, headers, body, chunk framing): past
  // it, reads fail and the request is refused. Bounds memory for bodies whose size is not
  // announced (Transfer-Encoding: chunked), which httplib 0.11 reads whole whatever the limit.
  // `timeout_ms` (0: none) bounds the time the whole request may take to arrive: a client that
  // trickles bytes (one every few seconds, each within the read timeout) is cut there.
  void start_request(size_t budget, int timeout_ms) {
    left_ = budget;
    has_deadline_ = timeout_ms > 0;
    if (has_deadline_)
      deadline_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
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
      size_t n = std::min(size, len_ - off_);
      std::memcpy(ptr, buf_.data() + off_, n);
      off_ += n;
      return static_cast<ssize_t>(n);
    }
    if (!wait_readable()) return -1;
    if (size >= buf_.size()) return recv_some(ptr, size);
    ssize_t n = recv_some(buf_.data(), buf_.size());
    if (n <= 0) return n;
    off_ = 0;
    len_ = static_cast<size_t>(n);
    return read_unbudgeted(ptr, size);
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (!wait_fd(sock_, POLLOUT, write_timeout_ms_)) return -1;
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
  // Waits for bytes to read: at most the read timeout, and never past the request's deadline
  // (a wait cut by the deadline marks the request timed out).
  bool wait_readable() const {
    if (!has_deadline_) return wait_fd(sock_, POLLIN, read_timeout_ms_);
    // Milliseconds left, rounded up: a wait that ends early by a fraction is still the deadline.
    const auto left =
        std::chrono::ceil<std::chrono::milliseconds>(deadline_ - std::chrono::steady_clock::now())
            .count();
    if (left > 0 &&
        wait_fd(sock_, POLLIN, static_cast<int>(std::min<int64_t>(left, read_timeout_ms_))))
      return true;
    if (left <= read_timeout_ms_) t_request_timed_out = true;  // the deadline ended the wait
    return false;
  }

  ssize_t recv_some(char* ptr, size_t size) {
    for (;;) {
      ssize_t n = ::recv(sock_, ptr, size, 0);
      if (n < 0 && errno == EINTR) continue;
      return n;
    }
  }

  int sock_;
  int read_timeout_ms_, write_timeout_ms_;
  std::array<char, 4096> buf_{};
  size_t off_ = 0, len_ = 0;
  size_t left_ = std::numeric_limits<size_t>::max();
  bool has_deadline_ = false;
  std::chrono::steady_clock::time_point deadline_{};
};

int to_ms(time_t sec, time_t usec) { return static_cast<int>(sec * 1000 + usec / 1000); }

}  // namespace

// httplib's thread pool, counting connections that wait for a thread: when one waits while
// every thread is taken, it asks an idle connection to yield (one eventfd count each).
class HttpServer::YieldingPool : public httplib::TaskQueue {
 public:
  YieldingPool(HttpServer& server, int threads)
      : server_(server), pool_(static_cast<size_t>(threads)) {}

  void enqueue(std::function<void()> fn) override {
    const int waiting = server_.waiting_.fetch_add(1) + 1;
    if (server_.busy_.load() + waiting > server_.threads_) {
      server_.yields_wanted_.fetch_add(1);
      server_.signal_yield();
    }
    pool_.enqueue([this, fn = std::move(fn)] {
      server_.waiting_.fetch_sub(1);
      server_.busy_.fetch_add(1);
      // This connection has its thread: a yield asked for it and not yet given is no longer
      // needed (never more pending yields than waiting connections).
      int wanted = server_.yields_wanted_.load();
      while (wanted > server_.waiting_.load() &&
             !server_.yields_wanted_.compare_exchange_weak(wanted, wanted - 1)) {
      }
      struct Done {
        std::atomic<int>& busy;
        ~Done() { busy.fetch_sub(1); }
      } done{server_.busy_};
      fn();
    });
  }
  void shutdown() override { pool_.shutdown(); }

 private:
  HttpServer& server_;
  httplib::ThreadPool pool_;
};

HttpServer::HttpServer() {
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) throw std::runtime_error(std::string("eventfd: ") + std::strerror(errno));
  yield_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (yield_fd_ < 0) {
    ::close(wake_fd_);
    throw std::runtime_error(std::string("eventfd: ") + std::strerror(errno));
  }
  set_worker_threads(threads_);
}

HttpServer::~HttpServer() {
  ::close(wake_fd_);
  ::close(yield_fd_);
}

void HttpServer::set_worker_threads(int threads) {
  threads_ = std::max(threads, 1);
  new_task_queue = [this] { return new YieldingPool(*this, threads_); };
}

void HttpServer::signal_yield() {
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(yield_fd_, &one, sizeof one);
}

bool HttpServer::take_yield() {
  int wanted = yields_wanted_.load();
  while (wanted > 0)
    if (yields_wanted_.compare_exchange_weak(wanted, wanted - 1)) return true;
  return false;
}

namespace {

// Whether the peer already sent something (the next request): then the connection must not
// yield, or closing it would reset a request in flight.
bool has_input(int sock) { return wait_fd(sock, POLLIN, 0); }

}  // namespace

bool HttpServer::wait_for_next_request(int sock, bool may_yield) {
  // A connection already waits for a thread: give this one up rather than idle on it.
  if (may_yield && waiting_.load() > 0 && !has_input(sock) && take_yield()) return false;
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(idle_timeout_ms_);
  for (;;) {
    const auto left =
        std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now())
            .count();
    if (left <= 0) return false;  // idle timeout
    std::array<pollfd, 3> p{pollfd{sock, POLLIN, 0}, pollfd{wake_fd_, POLLIN, 0},
                            pollfd{yield_fd_, POLLIN, 0}};
    // A new connection is owed its first request: it does not listen for yield requests.
    const int n = ::poll(p.data(), may_yield ? 3 : 2, static_cast<int>(left));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;             // timeout or error
    if (p[0].revents != 0) return true;   // the next request (or the peer closed)
    if (p[1].revents != 0) return false;  // shutdown
    uint64_t drained = 0;                 // the wake-up; the count is in yields_wanted_
    [[maybe_unused]] ssize_t r = ::read(yield_fd_, &drained, sizeof drained);
    if (!has_input(sock) && take_yield()) {
      if (yields_wanted_.load() > 0) signal_yield();  // wake another idle connection
      return false;                                   // yield the thread
    }
  }
}

void HttpServer::widen_backlog(int backlog) { ::listen(svr_sock_, backlog); }

void HttpServer::close_after_response() { t_close_after_response = true; }

bool HttpServer::request_over_budget() { return t_request_over_budget; }

bool HttpServer::request_timed_out() { return t_request_timed_out; }

void HttpServer::begin_shutdown() {
  stopping_ = true;
  uint64_t one = 1;  // never read back: the eventfd stays readable and wakes every waiter
  [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof one);
}

bool HttpServer::process_and_close_socket(socket_t sock) {
  ConnectionStream strm(sock, to_ms(read_timeout_sec_, read_timeout_usec_),
                        to_ms(write_timeout_sec_, write_timeout_usec_));
  bool ok = false;
  for (size_t served = 0; served < keep_alive_max_count_; ++served) {
    // Idle between requests: wait for the next one, the idle timeout, shutdown, or a
    // connection that needs this thread.
    if (!strm.buffered() && !wait_for_next_request(sock, served > 0)) break;
    bool close_connection = stopping_ || served + 1 >= keep_alive_max_count_;
    bool connection_closed = false;
    t_close_after_response = false;
    t_request_over_budget = false;
    t_request_timed_out = false;
    strm.start_request(request_byte_limit_, request_timeout_ms_);
    ok = process_request(strm, close_connection, connection_closed, nullptr);
    const bool asked = std::exchange(t_close_after_response, false);
    if (!ok || connection_closed || close_connection || asked || t_request_over_budget ||
        t_request_timed_out)
      break;
  }
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
  return ok;
}

}  // namespace tracer::serve
