#include "serve/connection_loop.hpp"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace tracer::serve {
namespace {

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool starts_with_ci(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i)
    if (lower(s[i]) != prefix[i]) return false;
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

// Calls `visit` with each header line of `head` (the request line skipped, "\r" kept) until it
// returns false.
template <typename Visit>
void for_each_header_line(std::string_view head, Visit visit) {
  size_t pos = head.find('\n');  // skip the request line
  while (pos != std::string_view::npos && pos + 1 < head.size()) {
    const size_t end = head.find('\n', pos + 1);
    if (!visit(head.substr(pos + 1, (end == std::string_view::npos ? head.size() : end) - pos - 1)))
      return;
    pos = end;
  }
}

// Content-Length of a head whose framing the loop can wait out by itself: exactly one
// Content-Length made of digits, no Transfer-Encoding, no Expect. -1 when there is none (no
// body), -2 when a worker must read the body (or refuse the framing).
long long buffered_body_length(std::string_view head) {
  long long length = -1;
  for_each_header_line(head, [&length](std::string_view line) {
    if (starts_with_ci(line, "transfer-encoding:") || starts_with_ci(line, "expect:")) {
      length = -2;
      return false;
    }
    if (!starts_with_ci(line, "content-length:")) return true;
    const std::string_view value = trim(line.substr(15));
    if (length != -1 || value.empty() || value.size() > 18 ||
        !std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      length = -2;
      return false;
    }
    length = std::stoll(std::string(value));
    return true;
  });
  return length;
}

void close_socket(int fd) {
  ::shutdown(fd, SHUT_RDWR);
  ::close(fd);
}

// How often held connections are checked against their timeouts: the precision of the idle
// timeout, the read timeout and the request deadline.
constexpr auto kSweepPeriod = std::chrono::milliseconds(25);

}  // namespace

void add_missing_length(std::string& bytes) {
  const size_t blank = bytes.find("\r\n\r\n");
  if (blank == std::string::npos) return;
  const std::string_view head = std::string_view(bytes).substr(0, blank + 2);
  if (!(head.starts_with("POST ") || head.starts_with("PUT ") || head.starts_with("PATCH ")))
    return;
  bool framed = false;
  for_each_header_line(head, [&framed](std::string_view line) {
    framed = starts_with_ci(line, "content-length:") || starts_with_ci(line, "transfer-encoding:");
    return !framed;
  });
  if (!framed) bytes.insert(blank + 2, "Content-Length: 0\r\n");
}

bool head_without_end(std::string_view bytes, size_t max_head_bytes) {
  return bytes.find("\r\n\r\n") == std::string_view::npos && bytes.size() >= max_head_bytes;
}

bool request_arrived(std::string_view bytes, size_t max_buffered_bytes, size_t max_head_bytes) {
  const size_t blank = bytes.find("\r\n\r\n");
  if (blank == std::string_view::npos) return head_without_end(bytes, max_head_bytes);
  const size_t head_end = blank + 4;
  const long long body = buffered_body_length(bytes.substr(0, head_end));
  if (body < 0) return true;  // no body, or one the worker reads
  const size_t whole = head_end + static_cast<size_t>(body);
  if (static_cast<unsigned long long>(body) > max_buffered_bytes || whole > max_buffered_bytes)
    return true;
  return bytes.size() >= whole;
}

struct ConnectionLoop::State {
  struct Held {
    PendingConnection connection;
    SteadyClock::time_point last_activity;
  };

  ConnectionLimits limits;
  std::string busy_response;
  Ready ready;
  int epoll_fd = -1;
  int wake_fd = -1;
  std::mutex mu;
  std::vector<PendingConnection> inbox;  // guarded by mu
  bool stopped = false;                  // guarded by mu
  std::atomic<size_t> open{0};
  std::atomic<size_t> refused{0};
  std::unordered_map<int, Held> held;  // the loop thread's alone
  std::thread thread;

  void run();
  void take_inbox(SteadyClock::time_point now);
  void hold(PendingConnection c, SteadyClock::time_point now);
  void on_readable(int fd, SteadyClock::time_point now);
  void sweep(SteadyClock::time_point now);
  void dispatch(PendingConnection& c);
  void refuse(int fd);
  void close_held(int fd);
  void wake() {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_fd, &one, sizeof one);
  }
  bool arrived(const std::string& bytes) const {
    return request_arrived(bytes, limits.max_buffered_bytes, limits.max_head_bytes);
  }
};

ConnectionLoop::ConnectionLoop(ConnectionLimits limits, std::string busy_response, Ready ready)
    : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.limits = limits;
  s.busy_response = std::move(busy_response);
  s.ready = std::move(ready);
  s.epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
  if (s.epoll_fd < 0)
    throw std::runtime_error(std::string("epoll_create1: ") + std::strerror(errno));
  s.wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (s.wake_fd < 0) {
    ::close(s.epoll_fd);
    throw std::runtime_error(std::string("eventfd: ") + std::strerror(errno));
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = s.wake_fd;
  ::epoll_ctl(s.epoll_fd, EPOLL_CTL_ADD, s.wake_fd, &ev);
  s.thread = std::thread([&s] { s.run(); });
}

ConnectionLoop::~ConnectionLoop() {
  stop();
  ::close(state_->wake_fd);
  ::close(state_->epoll_fd);
}

void ConnectionLoop::adopt(PendingConnection connection) {
  State& s = *state_;
  bool first = false;
  {
    std::lock_guard lock(s.mu);
    if (!s.stopped) {
      first = s.inbox.empty();
      s.inbox.push_back(std::move(connection));
      connection.fd = -1;
    }
  }
  if (connection.fd >= 0) {  // stopped: nothing will serve it
    close_socket(connection.fd);
    closed();
    return;
  }
  if (first) s.wake();  // later ones find the loop already woken for the inbox
}

void ConnectionLoop::accept(int fd) {
  State& s = *state_;
  if (s.open.fetch_add(1) + 1 > s.limits.max_connections) {
    s.open.fetch_sub(1);
    s.refuse(fd);
    return;
  }
  adopt(PendingConnection{fd, {}, {}, 0, false});
}

void ConnectionLoop::closed() { state_->open.fetch_sub(1); }

void ConnectionLoop::stop() {
  State& s = *state_;
  {
    std::lock_guard lock(s.mu);
    if (s.stopped) return;
    s.stopped = true;
  }
  s.wake();
  if (s.thread.joinable()) s.thread.join();
}

size_t ConnectionLoop::open_connections() const { return state_->open.load(); }
size_t ConnectionLoop::refused_busy() const { return state_->refused.load(); }

void ConnectionLoop::State::run() {
  std::array<epoll_event, 256> events{};
  auto next_sweep = SteadyClock::now() + kSweepPeriod;
  for (;;) {
    const auto wait = std::chrono::ceil<std::chrono::milliseconds>(next_sweep - SteadyClock::now());
    const int n = ::epoll_wait(epoll_fd, events.data(), static_cast<int>(events.size()),
                               static_cast<int>(std::max<int64_t>(wait.count(), 0)));
    if (n < 0 && errno != EINTR) break;
    const auto now = SteadyClock::now();
    for (int i = 0; i < n; ++i) {
      if (events[static_cast<size_t>(i)].data.fd == wake_fd) {
        uint64_t drained = 0;
        [[maybe_unused]] ssize_t r = ::read(wake_fd, &drained, sizeof drained);
        take_inbox(now);
      } else {
        on_readable(events[static_cast<size_t>(i)].data.fd, now);
      }
    }
    {
      std::lock_guard lock(mu);
      if (stopped) break;
    }
    if (now >= next_sweep) {
      sweep(now);
      next_sweep = now + kSweepPeriod;
    }
  }
  // Stopped: close what the loop holds and what is still on its way in.
  std::vector<PendingConnection> late;
  {
    std::lock_guard lock(mu);
    late.swap(inbox);
  }
  for (auto& c : late) {
    close_socket(c.fd);
    open.fetch_sub(1);
  }
  for (auto& [fd, h] : held) {
    close_socket(fd);
    open.fetch_sub(1);
  }
  held.clear();
}

void ConnectionLoop::State::take_inbox(SteadyClock::time_point now) {
  std::vector<PendingConnection> arrived_now;
  {
    std::lock_guard lock(mu);
    arrived_now.swap(inbox);
  }
  for (auto& c : arrived_now) {
    if (arrived(c.bytes))
      dispatch(c);  // a pipelined request already in the buffer
    else
      hold(std::move(c), now);
  }
}

void ConnectionLoop::State::hold(PendingConnection c, SteadyClock::time_point now) {
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP;
  ev.data.fd = c.fd;
  if (::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, c.fd, &ev) != 0) {
    close_socket(c.fd);
    open.fetch_sub(1);
    return;
  }
  const int fd = c.fd;
  held.insert_or_assign(fd, Held{std::move(c), now});
}

void ConnectionLoop::State::on_readable(int fd, SteadyClock::time_point now) {
  auto it = held.find(fd);
  if (it == held.end()) return;
  PendingConnection& c = it->second.connection;
  // Read what is there, never more than a worker would be handed.
  const size_t cap = std::max(limits.max_buffered_bytes, limits.max_head_bytes);
  bool peer_done = false;
  std::array<char, 16 * 1024> chunk{};
  while (c.bytes.size() < cap) {
    const ssize_t n =
        ::recv(fd, chunk.data(), std::min(chunk.size(), cap - c.bytes.size()), MSG_DONTWAIT);
    if (n > 0) {
      if (c.bytes.empty()) c.first_byte = now;
      c.bytes.append(chunk.data(), static_cast<size_t>(n));
      it->second.last_activity = now;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    peer_done = true;  // closed (0) or failed
    break;
  }
  if (arrived(c.bytes)) {  // a request a worker can answer, even if the peer then closed
    ::epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, nullptr);
    PendingConnection ready_one = std::move(c);
    held.erase(it);
    dispatch(ready_one);
  } else if (peer_done) {
    close_held(fd);
  }
}

void ConnectionLoop::State::sweep(SteadyClock::time_point now) {
  const auto ms = [](int v) { return std::chrono::milliseconds(v); };
  std::vector<int> to_close;
  std::vector<int> late;
  for (auto& [fd, h] : held) {
    const PendingConnection& c = h.connection;
    if (c.bytes.empty()) {
      if (now - h.last_activity >= ms(limits.idle_timeout_ms)) to_close.push_back(fd);
    } else if ((limits.request_timeout_ms > 0 &&
                now - c.first_byte >= ms(limits.request_timeout_ms)) ||
               now - h.last_activity >= ms(limits.read_timeout_ms)) {
      late.push_back(fd);  // past the deadline, or stalled
    }
  }
  for (int fd : to_close) close_held(fd);
  for (int fd : late) {  // a worker answers 408 (or closes, if not even the request line came)
    auto it = held.find(fd);
    ::epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, nullptr);
    PendingConnection c = std::move(it->second.connection);
    held.erase(it);
    c.timed_out = true;
    dispatch(c);
  }
}

void ConnectionLoop::State::dispatch(PendingConnection& c) {
  if (!ready(c)) {
    refuse(c.fd);
    open.fetch_sub(1);
  }
}

void ConnectionLoop::State::refuse(int fd) {
  refused.fetch_add(1);
  [[maybe_unused]] ssize_t n =
      ::send(fd, busy_response.data(), busy_response.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  close_socket(fd);
}

void ConnectionLoop::State::close_held(int fd) {
  held.erase(fd);
  close_socket(fd);  // closing removes it from the epoll set
  open.fetch_sub(1);
}

}  // namespace tracer::serve
