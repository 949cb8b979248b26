#pragma once
// Exceptions carry messages written for the user: what went wrong and what to do about it.
#include <stdexcept>
#include <string>

namespace tracer {

// Bad user input (trace files, flags, requests): the message says what to fix.
class InputError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A stored artifact that cannot be used (corrupted, wrong version, wrong featurizer).
class FormatError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace tracer
