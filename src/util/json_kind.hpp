#pragma once
// "an object", "a string", ... for error messages that say what a JSON value was instead of what
// was expected.
#include <nlohmann/json.hpp>
#include <string>

namespace tracer {

inline std::string json_kind(const nlohmann::json& j) {
  using T = nlohmann::json::value_t;
  switch (j.type()) {
    case T::null:
      return "null";
    case T::object:
      return "an object";
    case T::array:
      return "an array";
    case T::string:
      return "a string";
    case T::boolean:
      return "a boolean";
    case T::number_integer:
    case T::number_unsigned:
    case T::number_float:
      return "a number";
    default:
      return "not text";
  }
}

}  // namespace tracer
