#pragma once
// Seeded synthetic trace sets for fit-level tests: each label has its own vocabulary, texts mix
// label words with shared filler, and the teacher flips to a random label with probability
// `noise`, so agreement is learnable but imperfect.
#include <random>
#include <string>

#include "io/traces.hpp"

namespace tracer::testing {

// Text number `i` of label `l` (of `labels`): 4 to 9 words, mostly from the label's own
// vocabulary, some from the next label's (hard cases) or shared filler, then " #i".
inline std::string synthetic_text(std::mt19937_64& rng, int labels, int l, int i,
                                  int words_per_label = 12) {
  std::uniform_real_distribution<double> u(0, 1);
  const int filler = 40;
  std::string text;
  int len = 4 + static_cast<int>(rng() % 6);
  for (int w = 0; w < len; ++w) {
    if (!text.empty()) text += ' ';
    double r = u(rng);
    int owner = r < 0.7 ? l : r < 0.85 ? (l + 1) % labels : -1;
    if (owner < 0)
      text += "fill" + std::to_string(rng() % filler);
    else
      text += "w" + std::to_string(owner) + "x" + std::to_string(rng() % words_per_label);
  }
  text += " #" + std::to_string(i);  // unique texts within a label
  return text;
}

inline TraceSet synthetic_traces(int labels, int per_label, double noise, uint64_t seed,
                                 int words_per_label = 12) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  TraceSet s;
  for (int l = 0; l < labels; ++l) s.labels.push_back("label_" + std::to_string(l));
  for (int l = 0; l < labels; ++l) {
    for (int i = 0; i < per_label; ++i) {
      Trace t;
      t.input = synthetic_text(rng, labels, l, i, words_per_label);
      int y = u(rng) < noise ? static_cast<int>(rng() % labels) : l;
      t.teacher = s.labels[y];
      s.traces.push_back(std::move(t));
      s.y.push_back(y);
    }
  }
  return s;
}

}  // namespace tracer::testing
