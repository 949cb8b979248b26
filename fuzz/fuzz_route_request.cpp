// libFuzzer target for the request-body parsers of `tracer serve` (src/serve/requests.cpp). Not
// part of the CMake build; build with e.g.
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Isrc \
//     fuzz/fuzz_route_request.cpp src/serve/requests.cpp src/serve/completions.cpp \
//     -lre2 -o fuzz_route_request &&
//     ./fuzz_route_request -max_total_time=60
// The first input byte picks the parser (route, batch, chat completion, upstream answer + label
// parsers, audit feedback, streamed upstream answer) and the limits; the rest is the body. ApiError
// (a 4xx answer) is the expected way to refuse a body; anything else (a crash, another exception, a
// broken invariant) is a bug.
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "serve/completions.hpp"
#include "serve/requests.hpp"

namespace {

void require(bool ok) {
  if (!ok) std::abort();
}

using tracer::serve::ApiError;

void check_error(const ApiError& e) {
  require(e.status() == 400 || e.status() == 413);
  require(!e.type().empty());
  // The error body must always be valid JSON, whatever bytes the message quotes.
  auto j = nlohmann::json::parse(tracer::serve::error_body(e.what(), e.type()));
  require(j["error"]["message"].is_string());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  tracer::serve::RequestLimits limits;
  if (mode & 0x10) {  // tiny limits reach the too-large paths
    limits.max_text_bytes = 8;
    limits.max_batch = 2;
  }
  try {
    switch (mode % 6) {
      case 0: {
        auto r = tracer::serve::parse_route_request(body, limits);
        require(r.text.size() <= limits.max_text_bytes);
        require(r.id.is_null() || r.id.is_string() || r.id.is_number());
        break;
      }
      case 1: {
        auto texts = tracer::serve::parse_batch_request(body, limits);
        require(texts.size() <= limits.max_batch);
        for (const auto& t : texts) require(t.size() <= limits.max_text_bytes);
        break;
      }
      case 2: {
        auto from = static_cast<tracer::serve::TextFrom>((mode >> 2) % 3);
        auto c = tracer::serve::parse_chat_request(body, from, limits);
        require(c.text.size() <= limits.max_text_bytes);
        // Only a request with a user message and nothing a label cannot honour is routed.
        require(!c.unsupported.empty() || !c.recordable || c.prompt_bytes >= c.text.size());
        break;
      }
      case 3: {
        std::string answer;
        if (tracer::serve::chat_answer_text(body, answer)) {
          std::string plain = tracer::serve::LabelParser().extract(answer);
          require(plain == tracer::serve::trim(plain));
        }
        tracer::serve::LabelParser field("label", "");
        std::string f = field.extract(body);
        require(f == tracer::serve::trim(f));
        tracer::serve::LabelParser regex("", "label: *([A-Za-z_]+)");
        std::string r = regex.extract(body);
        for (char ch : r) require(ch == '_' || std::isalpha(static_cast<unsigned char>(ch)));
        break;
      }
      case 4: {
        auto a = tracer::serve::parse_audit_request(body, limits);
        require(a.text.size() <= limits.max_text_bytes);
        require(!a.label.empty());
        break;
      }
      case 5: {
        std::string answer;
        if (tracer::serve::sse_answer_text(body, answer)) require(answer.size() <= body.size());
        std::string audit = tracer::serve::audit_body(body);
        auto j = nlohmann::json::parse(audit, nullptr, false);
        require(audit == body ||
                (j.is_object() && !j.contains("stream") && !j.contains("stream_options")));
        break;
      }
    }
  } catch (const ApiError& e) {
    check_error(e);
  }
  return 0;
}
