#include "serve/event_log.hpp"

#include <fmt/chrono.h>
#include <fmt/format.h>

#include "util/error.hpp"

namespace tracer::serve {

LogFormat parse_log_format(std::string_view name) {
  if (name == "text") return LogFormat::kText;
  if (name == "json") return LogFormat::kJson;
  throw InputError("unknown --log-format '" + std::string(name) + "'; choose text or json");
}

EventLog::EventLog(LogFormat format, std::ostream& out) : format_(format), out_(out) {}

void EventLog::event(std::string_view event, std::string_view message, nlohmann::json fields) {
  std::lock_guard lock(mu_);
  write_locked(event, message, std::move(fields));
}

void EventLog::throttled(std::string_view event, std::string_view message, nlohmann::json fields,
                         std::chrono::milliseconds every) {
  std::lock_guard lock(mu_);
  const auto now = std::chrono::steady_clock::now();
  if (last_throttled_.time_since_epoch().count() != 0 && now - last_throttled_ < every) {
    ++suppressed_;
    return;
  }
  last_throttled_ = now;
  if (suppressed_ > 0) fields["suppressed"] = suppressed_;
  std::string text(message);
  if (suppressed_ > 0) text += fmt::format(" ({} more like it not logged)", suppressed_);
  suppressed_ = 0;
  write_locked(event, text, std::move(fields));
}

void EventLog::write_locked(std::string_view event, std::string_view message,
                            nlohmann::json fields) {
  if (format_ == LogFormat::kText) {
    out_ << "tracer serve: " << message << "\n" << std::flush;
    return;
  }
  const auto now = std::chrono::system_clock::now();
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  nlohmann::json line{
      {"time", fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:03d}Z",
                           fmt::gmtime(std::chrono::system_clock::to_time_t(now)), ms)},
      {"event", event},
      {"message", message}};
  if (fields.is_object()) line.update(fields);
  out_ << line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n" << std::flush;
}

}  // namespace tracer::serve
