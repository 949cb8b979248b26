#pragma once
// A streamed (server-sent events) upstream answer relayed to the client as it arrives. A worker
// thread reads the upstream; the connection's thread waits for the upstream's status, then
// pulls the pieces as they come. Owned by the response's content provider: destroying the relay
// stops the upstream read (when the client went away) and joins the worker.
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "serve/upstream.hpp"

namespace tracer::serve {

class StreamRelay {
 public:
  // Starts POST `target` on the upstream. `on_finish` runs on the worker once the upstream's
  // answer is over (or failed), with the whole reply: its body holds every byte relayed.
  StreamRelay(const Upstream& upstream, std::string target, std::string body,
              Upstream::Headers headers, std::function<void(const UpstreamReply&)> on_finish);
  ~StreamRelay();
  StreamRelay(const StreamRelay&) = delete;
  StreamRelay& operator=(const StreamRelay&) = delete;

  // Blocks until the upstream's 2xx headers are in (true: status and content_type set) or the
  // call ended without them (false: failure() has the reply: no answer, or a non-2xx one with
  // its whole body, after the retries).
  bool wait_start(int& status, std::string& content_type);
  // Blocks for the next piece of the body; false once the answer is over, or when
  // `client_gone` (asked every 100 ms while waiting) says the client went away.
  bool next(std::string& piece, const std::function<bool()>& client_gone = {});
  // After next() returned false: whether the relayed answer was cut short (the upstream timed
  // out or failed mid-stream, or the client went away), so it must not end as a complete one.
  bool ended_badly();
  // The reply of a call that ended without a 2xx answer (valid after wait_start returned false).
  const UpstreamReply& failure() const { return reply_; }

 private:
  void run(const Upstream& upstream, const std::string& target, const std::string& body,
           const Upstream::Headers& headers);

  std::function<void(const UpstreamReply&)> on_finish_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> pieces_;  // guarded by mu_, as the flags below
  bool started_ = false, done_ = false, cancelled_ = false, client_went_away_ = false;
  int status_ = 0;
  std::string content_type_;
  UpstreamReply reply_;
  UpstreamCancel cancel_;  // stops the upstream read at once when the relay is destroyed
  std::thread worker_;     // last: started once everything above exists
};

}  // namespace tracer::serve
