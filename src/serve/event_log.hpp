#pragma once
// The server's operational log on stderr: one line per event an operator acts on (policy load
// and reload, audit trip and recovery, upstream errors, shutdown). `--log-format text` writes
// "tracer serve: <message>"; `json` writes one JSON object per line with "time" (ISO-8601 UTC,
// milliseconds), "event", "message" and the event's fields, for log collectors.
#include <chrono>
#include <cstdint>
#include <mutex>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <string_view>

namespace tracer::serve {

enum class LogFormat { kText, kJson };
LogFormat parse_log_format(std::string_view name);  // "text" | "json"; throws InputError

class EventLog {
 public:
  explicit EventLog(LogFormat format, std::ostream& out);
  // Writes one line (thread-safe): `event` names it ("policy_reload"), `message` says it in
  // words, `fields` (an object) carries the details.
  void event(std::string_view event, std::string_view message,
             nlohmann::json fields = nlohmann::json::object());
  // As event(), at most once per `every` for this `event` name family: lines in between are
  // counted and the next written line carries "suppressed": N. For errors that can repeat at
  // request rate (an upstream that is down).
  void throttled(std::string_view event, std::string_view message, nlohmann::json fields,
                 std::chrono::milliseconds every = std::chrono::seconds(1));
  LogFormat format() const { return format_; }

 private:
  void write_locked(std::string_view event, std::string_view message, nlohmann::json fields);

  LogFormat format_;
  std::ostream& out_;
  std::mutex mu_;
  std::chrono::steady_clock::time_point last_throttled_{};
  int64_t suppressed_ = 0;
};

}  // namespace tracer::serve
