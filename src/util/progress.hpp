#pragma once
// Step lines on stderr for long work. On a terminal: "[2/6] fitting the zoo ... 3.1 s", the time
// appended when the step ends. Elsewhere (a log file, a CI job): one whole line per step as it
// starts ("[2/6] fitting the zoo"), so a log shows what a long fit is doing. Silent when disabled
// (--quiet).
#include <chrono>
#include <cstdio>
#include <string>

namespace tracer {

class Progress {
 public:
  explicit Progress(bool enabled, int total_steps = 0, bool terminal = true)
      : enabled_(enabled), terminal_(terminal), total_(total_steps) {}

  // Starts a step; the previous one (if any) is closed with its duration.
  void step(const std::string& what) {
    finish();
    ++current_;
    start_ = std::chrono::steady_clock::now();
    open_ = true;
    if (!enabled_) return;
    if (total_ > 0)
      std::fprintf(stderr, "[%d/%d] %s", current_, total_, what.c_str());
    else
      std::fprintf(stderr, "%s", what.c_str());
    std::fprintf(stderr, terminal_ ? " ..." : "\n");
    std::fflush(stderr);
  }
  // A detail line inside the current step.
  void note(const std::string& line) {
    if (!enabled_) return;
    if (open_ && terminal_) std::fprintf(stderr, "\n");
    std::fprintf(stderr, terminal_ ? "      %s" : "      %s\n", line.c_str());
    std::fflush(stderr);
  }
  void finish() {
    if (!open_) return;
    open_ = false;
    if (!enabled_ || !terminal_) return;
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    std::fprintf(stderr, " %.2f s\n", s);
  }
  bool enabled() const { return enabled_; }
  ~Progress() { finish(); }
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

 private:
  bool enabled_;
  bool terminal_;
  int total_;
  int current_ = 0;
  bool open_ = false;
  std::chrono::steady_clock::time_point start_;
};

// Wall-clock stopwatch in seconds.
class Stopwatch {
 public:
  Stopwatch() : start_(std::chrono::steady_clock::now()) {}
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  std::chrono::steady_clock::time_point start_;
};

}  // namespace tracer
