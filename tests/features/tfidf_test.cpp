#include "features/tfidf.hpp"

#include <gtest/gtest.h>
#include <utf8proc.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>

#include "test_util.hpp"
#include "util/error.hpp"

namespace tracer {
namespace {

using Grams = std::vector<std::pair<NgramKind, std::string>>;

TfidfConfig words_only(uint32_t max_n = 1, uint32_t min_df = 1) {
  TfidfConfig c;
  c.word_max_n = max_n;
  c.char_max_n = 0;
  c.min_df = min_df;
  return c;
}

TfidfConfig chars_only(uint32_t min_n = 2, uint32_t max_n = 5) {
  TfidfConfig c;
  c.word_max_n = 0;
  c.char_min_n = min_n;
  c.char_max_n = max_n;
  return c;
}

std::vector<std::string> strings_of(const Grams& g) {
  std::vector<std::string> out;
  for (const auto& [kind, s] : g) out.push_back(s);
  return out;
}

std::vector<std::string> sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

double norm2(const SparseVector& v) {
  double s = 0;
  for (float x : v.val) s += static_cast<double>(x) * x;
  return s;
}

float value_at(const SparseVector& v, uint32_t col) {
  for (size_t i = 0; i < v.idx.size(); ++i)
    if (v.idx[i] == col) return v.val[i];
  return 0.0f;
}

std::vector<std::string> read_inputs(const std::string& rel) {
  std::ifstream in(testing::source_path(rel));
  EXPECT_TRUE(in) << rel;
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(nlohmann::json::parse(line).at("input").get<std::string>());
  return out;
}

const std::vector<std::string>& banking_train() {
  static const auto texts = read_inputs("data/banking77/train.jsonl");
  return texts;
}

std::string saved(const Featurizer& f) {
  BinaryWriter w;
  f.save(w);
  return w.take();
}

TEST(Tfidf, HandComputedWeightsOnTinyCorpus) {
  TfidfFeaturizer f(words_only());
  std::vector<std::string> docs = {"a b", "a c", "a a b"};
  f.fit(docs);
  ASSERT_EQ(f.dim(), 3u);
  auto a = f.column_of("a", NgramKind::kWord), b = f.column_of("b", NgramKind::kWord),
       c = f.column_of("c", NgramKind::kWord);
  ASSERT_TRUE(a && b && c);
  // N = 3, df(a) = 3, df(b) = 2, df(c) = 1: idf = ln((1 + N) / (1 + df)) + 1.
  EXPECT_NEAR(f.idf()[*a], 1.0, 1e-6);
  EXPECT_NEAR(f.idf()[*b], std::log(4.0 / 3.0) + 1, 1e-6);
  EXPECT_NEAR(f.idf()[*c], std::log(2.0) + 1, 1e-6);

  // "a a b": tf(a) = 2 -> 1 + ln 2 (sublinear), tf(b) = 1 -> 1; then L2 normalised.
  SparseVector v;
  f.transform("a a b", v);
  double wa = (1 + std::log(2.0)) * 1.0, wb = 1.0 * (std::log(4.0 / 3.0) + 1);
  double n = std::sqrt(wa * wa + wb * wb);
  ASSERT_EQ(v.idx.size(), 2u);
  EXPECT_TRUE(std::is_sorted(v.idx.begin(), v.idx.end()));
  EXPECT_NEAR(value_at(v, *a), wa / n, 1e-6);
  EXPECT_NEAR(value_at(v, *b), wb / n, 1e-6);
  EXPECT_NEAR(norm2(v), 1.0, 1e-6);

  // A single known word is a unit vector; unknown words add nothing.
  f.transform("zzz C qqq", v);
  ASSERT_EQ(v.idx.size(), 1u);
  EXPECT_EQ(v.idx[0], *c);
  EXPECT_NEAR(v.val[0], 1.0f, 1e-6);
}

TEST(Tfidf, CharWbNgramsOfAKnownWord) {
  // Padded " card ": 5 bigrams, 4 trigrams, 3 four-grams, 2 five-grams, as sklearn's char_wb.
  auto g = TfidfFeaturizer::ngrams("card", chars_only());
  std::vector<std::string> expected = {" c",  "ca",  "ar",   "rd",   "d ",   " ca",   "car",
                                       "ard", "rd ", " car", "card", "ard ", " card", "card "};
  EXPECT_EQ(sorted(strings_of(g)), sorted(expected));
  for (const auto& [kind, s] : g) EXPECT_EQ(kind, NgramKind::kChar);
  // A word shorter than n contributes the whole padded word once.
  EXPECT_EQ(sorted(strings_of(TfidfFeaturizer::ngrams("a", chars_only()))),
            sorted({" a", "a ", " a "}));
  // N-grams count code points, not bytes, and stay inside each word.
  EXPECT_EQ(sorted(strings_of(TfidfFeaturizer::ngrams("é x", chars_only(3, 3)))),
            sorted({" é ", " x "}));
}

TEST(Tfidf, WordNgramsSkipPunctuationAndKeepSymbols) {
  auto g = TfidfFeaturizer::ngrams("Hello, World!! $5", words_only(2));
  EXPECT_EQ(strings_of(g), (std::vector<std::string>{"hello", "world", "hello world", "$",
                                                     "world $", "5", "$ 5"}));
  for (const auto& [kind, s] : g) EXPECT_EQ(kind, NgramKind::kWord);
  // Default: words 1-2 and chars 2-5 together.
  auto all = TfidfFeaturizer::ngrams("my card", TfidfConfig{});
  auto n_word = std::count_if(all.begin(), all.end(),
                              [](const auto& p) { return p.first == NgramKind::kWord; });
  EXPECT_EQ(n_word, 3);                      // "my", "card", "my card"
  EXPECT_EQ(all.size() - n_word, 6u + 14u);  // " my " gives 3+2+1, " card " gives 14
  // Non-ASCII letters are word characters; CJK runs stay one token.
  EXPECT_EQ(strings_of(TfidfFeaturizer::ngrams("naïve 東京タワー", words_only(1))),
            (std::vector<std::string>{"naïve", "東京タワー"}));
}

TEST(Tfidf, AsciiFastPathAgreesWithUnicodeCategories) {
  for (int c = 0; c < 128; ++c) {
    std::string text = "x";
    text.push_back(static_cast<char>(c));
    text += "y";
    auto got = strings_of(TfidfFeaturizer::ngrams(text, words_only(1)));
    auto cat = utf8proc_category(c);
    std::vector<std::string> expected;
    bool word =
        cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_ND;
    bool symbol =
        cat == UTF8PROC_CATEGORY_SM || cat == UTF8PROC_CATEGORY_SC || cat == UTF8PROC_CATEGORY_SO;
    if (word) {
      expected = {"x" + std::string(1, static_cast<char>(std::tolower(c))) + "y"};
    } else if (symbol) {
      expected = {"x", std::string(1, static_cast<char>(c)), "y"};
    } else {
      expected = {"x", "y"};
    }
    EXPECT_EQ(got, expected) << "byte " << c;
  }
}

TEST(Tfidf, LowercaseAndNfkc) {
  auto g = [](const std::string& s) { return TfidfFeaturizer::ngrams(s, TfidfConfig{}); };
  EXPECT_EQ(g("ＡＢＣ"), g("abc"));  // full-width
  EXPECT_EQ(g("HeLLo World"), g("hello world"));
  EXPECT_EQ(g("ﬁle"), g("file"));                     // ligature
  EXPECT_EQ(g("Straße"), g("STRASSE"));               // casefold
  EXPECT_EQ(g("cafe\u0301"), g("café"));              // composed == decomposed
  EXPECT_EQ(g("soft\u00ADhyphen"), g("softhyphen"));  // default ignorable removed
  EXPECT_NE(g("café"), g("cafe"));                    // accents are kept

  // Normalising twice changes nothing: our pipeline agrees with utf8proc's NFKC_Casefold.
  for (std::string s : {"Ǆemal ΣΊΣΥΦΟΣ", "① ㎒ Ⅻ", "ＴＥＳＴ　ｔｅｓｔ", "Ångström İstanbul"}) {
    utf8proc_uint8_t* folded =
        utf8proc_NFKC_Casefold(reinterpret_cast<const utf8proc_uint8_t*>(s.c_str()));
    ASSERT_NE(folded, nullptr);
    std::string f(reinterpret_cast<char*>(folded));
    std::free(folded);
    EXPECT_EQ(g(s), g(f)) << s;
  }

  TfidfFeaturizer fz;
  std::vector<std::string> docs = {"abc def", "abc xyz", "def abc"};
  TfidfConfig cfg;
  cfg.min_df = 1;
  fz = TfidfFeaturizer(cfg);
  fz.fit(docs);
  SparseVector v1, v2;
  fz.transform("ＡＢＣ ＤＥＦ", v1);
  fz.transform("abc def", v2);
  ASSERT_FALSE(v1.idx.empty());
  EXPECT_EQ(v1.idx, v2.idx);
  EXPECT_EQ(v1.val, v2.val);
}

TEST(Tfidf, PrunesByMinDfThenMaxFeatures) {
  // df: x=4, y=3, z=2, w=1.
  std::vector<std::string> docs = {"x y z w", "x y z", "x y", "x"};
  TfidfFeaturizer f(words_only(1, 2));
  f.fit(docs);
  EXPECT_EQ(f.unpruned_vocabulary_size(), 4u);
  EXPECT_EQ(f.terms(), (std::vector<std::string>{"x", "y", "z"}));
  EXPECT_EQ(f.document_frequency(), (std::vector<uint32_t>{4, 3, 2}));

  TfidfConfig c = words_only(1, 1);
  c.max_features = 2;
  TfidfFeaturizer g(c);
  g.fit(docs);
  EXPECT_EQ(g.terms(), (std::vector<std::string>{"x", "y"}));

  // Ties at the cut are broken the same way every time.
  std::vector<std::string> tied = {"p q r s t", "p q r s t", "u"};
  c.max_features = 3;
  TfidfFeaturizer t1(c), t2(c);
  t1.fit(tied);
  t2.fit(tied);
  EXPECT_EQ(t1.dim(), 3u);
  EXPECT_EQ(t1.terms(), t2.terms());
  EXPECT_FALSE(t1.column_of("u", NgramKind::kWord));  // df 1 loses to df 2
}

TEST(Tfidf, FitIsDeterministic) {
  std::vector<std::string> docs(banking_train().begin(), banking_train().begin() + 2000);
  TfidfFeaturizer a, b;
  a.fit(docs);
  b.fit(docs);
  EXPECT_EQ(a.fingerprint(), b.fingerprint());
  EXPECT_EQ(a.fingerprint().size(), 16u);
  EXPECT_EQ(a.terms(), b.terms());
  EXPECT_EQ(saved(a), saved(b));

  TfidfConfig c;
  c.min_df = 3;
  TfidfFeaturizer other(c);
  other.fit(docs);
  EXPECT_NE(other.fingerprint(), a.fingerprint());
  docs.pop_back();
  b.fit(docs);
  EXPECT_NE(b.fingerprint(), a.fingerprint());
}

TEST(Tfidf, SaveLoadRoundTripGivesIdenticalTransforms) {
  std::vector<std::string> docs(banking_train().begin(), banking_train().begin() + 1500);
  TfidfFeaturizer f;
  f.fit(docs);
  std::string bytes = saved(f);
  auto g = make_featurizer("tfidf");
  BinaryReader r(bytes);
  g->load(r);
  EXPECT_TRUE(r.done());
  EXPECT_EQ(g->fingerprint(), f.fingerprint());
  EXPECT_EQ(g->describe(), f.describe());
  EXPECT_EQ(g->dim(), f.dim());
  EXPECT_EQ(saved(*g), bytes);
  SparseVector v1, v2;
  FeatureStats s1, s2;
  for (const auto& text : {std::string("I still have not received my new card!"),
                           std::string("Wie lange dauert die Überweisung? 🙂"), std::string()}) {
    f.transform(text, v1, &s1);
    g->transform(text, v2, &s2);
    EXPECT_EQ(v1.idx, v2.idx);
    EXPECT_EQ(v1.val, v2.val);
    EXPECT_EQ(s1.ngrams, s2.ngrams);
    EXPECT_EQ(s1.known_ngrams, s2.known_ngrams);
  }
}

TEST(Tfidf, LoadRejectsBadDataWithFormatError) {
  TfidfFeaturizer f(words_only(2));
  std::vector<std::string> docs = {"open an account", "close my account", "open the app"};
  f.fit(docs);
  const std::string good = saved(f);
  const std::string fp = f.fingerprint();

  // Every truncation fails cleanly, and a failed load leaves the featurizer as it was.
  for (size_t len = 0; len < good.size(); ++len) {
    BinaryReader r(std::string_view(good).substr(0, len));
    EXPECT_THROW(f.load(r), FormatError) << "prefix " << len;
  }
  EXPECT_EQ(f.fingerprint(), fp);

  std::string wrong_version = good;
  wrong_version[0] = 9;
  BinaryReader rv(wrong_version);
  try {
    f.load(rv);
    FAIL() << "expected FormatError";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("version 9"), std::string::npos) << e.what();
  }

  // A duplicated term (same text and kind twice) is corrupt.
  TfidfFeaturizer dup_src(words_only(1));
  std::vector<std::string> two = {"aa ab"};
  dup_src.fit(two);
  std::string dup = saved(dup_src);
  auto pos = dup.rfind("ab");
  ASSERT_NE(pos, std::string::npos);
  dup[pos + 1] = 'a';
  BinaryReader rd(dup);
  EXPECT_THROW(f.load(rd), FormatError);

  // Random garbage never crashes and never loads.
  std::mt19937 rng(7);
  for (int i = 0; i < 200; ++i) {
    std::string junk(rng() % 64, '\0');
    for (char& ch : junk) ch = static_cast<char>(rng());
    BinaryReader r(junk);
    EXPECT_THROW(f.load(r), FormatError);
  }
  EXPECT_EQ(f.fingerprint(), fp);
}

TEST(Tfidf, EmptyTextGivesEmptyVector) {
  TfidfFeaturizer f;
  std::vector<std::string> docs = {"hello there", "hello again"};
  f.fit(docs);
  SparseVector v;
  FeatureStats st{99, 99};
  f.transform("hello", v);  // leave something to clear
  f.transform("", v, &st);
  EXPECT_TRUE(v.idx.empty());
  EXPECT_TRUE(v.val.empty());
  EXPECT_EQ(st.ngrams, 0u);
  EXPECT_EQ(st.known_ngrams, 0u);
  f.transform(" ,.;!? \t\n ", v, &st);
  EXPECT_TRUE(v.idx.empty());
  EXPECT_EQ(st.ngrams, 0u);
}

TEST(Tfidf, StatsCountKnownAndUnknownNgrams) {
  TfidfFeaturizer f(words_only(2));
  std::vector<std::string> docs = {"a b", "a b"};
  f.fit(docs);  // vocabulary: a, b, "a b"
  ASSERT_EQ(f.dim(), 3u);
  SparseVector v;
  FeatureStats st;
  f.transform("a zz b", v, &st);  // unigrams a zz b, bigrams "a zz" "zz b"
  EXPECT_EQ(st.ngrams, 5u);
  EXPECT_EQ(st.known_ngrams, 2u);
  EXPECT_EQ(v.idx.size(), 2u);
  f.transform("a b a b", v, &st);  // 4 unigrams + 3 bigrams, of which "b a" is unknown
  EXPECT_EQ(st.ngrams, 7u);
  EXPECT_EQ(st.known_ngrams, 6u);
  EXPECT_EQ(v.idx.size(), 3u);
}

TEST(Tfidf, InvalidUtf8DoesNotCrash) {
  TfidfFeaturizer f;
  std::vector<std::string> docs = {"café au lait", "café noir", "ab cd"};
  TfidfConfig c;
  c.min_df = 1;
  f = TfidfFeaturizer(c);
  f.fit(docs);
  SparseVector v;
  FeatureStats st;
  for (std::string bad :
       {std::string("\xff\xfe\xfd"), std::string("caf\xc3"), std::string("\xed\xa0\x80 surrogate"),
        std::string("\xc0\xaf overlong"), std::string("caf\xc3\xa9\xff noir"),
        std::string("a\0b", 3), std::string("\xf4\x90\x80\x80 too big")}) {
    f.transform(bad, v, &st);
    EXPECT_NEAR(v.idx.empty() ? 1.0 : norm2(v), 1.0, 1e-5);
    EXPECT_LE(st.known_ngrams, st.ngrams);
  }
  // Invalid bytes become U+FFFD, a one-character token.
  auto cfg = words_only(1);
  EXPECT_EQ(TfidfFeaturizer::ngrams("ab\xff"
                                    "cd é",
                                    cfg),
            TfidfFeaturizer::ngrams("ab\xEF\xBF\xBD"
                                    "cd é",
                                    cfg));
  EXPECT_EQ(strings_of(TfidfFeaturizer::ngrams("caf\xc3\xa9\xff", cfg)),
            (std::vector<std::string>{"café", "\xEF\xBF\xBD"}));
  f.transform("caf\xc3\xa9\xff noir", v, &st);
  EXPECT_GT(st.known_ngrams, 0u);
}

TEST(Tfidf, TransformAllMatchesRowByRow) {
  const auto& train = banking_train();
  std::vector<std::string> docs(train.begin(), train.begin() + 301);
  TfidfFeaturizer f;
  f.fit(docs);
  for (int threads : {1, 2, 3}) {
    SparseMatrix m = f.transform_all(docs, threads);
    ASSERT_EQ(m.rows(), docs.size());
    EXPECT_EQ(m.cols(), f.dim());
    SparseVector v;
    for (size_t i = 0; i < docs.size(); ++i) {
      f.transform(docs[i], v);
      auto row = m.row(i);
      ASSERT_EQ(std::vector<uint32_t>(row.idx.begin(), row.idx.end()), v.idx) << i;
      ASSERT_EQ(std::vector<float>(row.val.begin(), row.val.end()), v.val) << i;
    }
  }
  EXPECT_EQ(f.transform_all(std::span<const std::string>(), 2).rows(), 0u);
  std::vector<std::string> one = {"card"};
  EXPECT_EQ(f.transform_all(one, 4).rows(), 1u);
}

TEST(Tfidf, TransformReusesBuffersOnceWarm) {
  TfidfFeaturizer f;
  std::vector<std::string> docs(banking_train().begin(), banking_train().begin() + 500);
  f.fit(docs);
  SparseVector v;
  f.transform(std::string(400, 'x') + " Überweisung " + docs[0] + docs[1] + docs[2], v);
  const auto* idx = v.idx.data();
  const auto* val = v.val.data();
  const auto* text = v.scratch.data();
  const auto* cps = v.scratch_cp.data();
  for (size_t i = 0; i < 50; ++i) {
    f.transform(docs[i] + " über", v);
    f.transform(docs[i], v);
  }
  EXPECT_EQ(v.idx.data(), idx);
  EXPECT_EQ(v.val.data(), val);
  EXPECT_EQ(v.scratch.data(), text);
  EXPECT_EQ(v.scratch_cp.data(), cps);
}

TEST(Tfidf, ReportsTermsAndDescription) {
  TfidfFeaturizer f;
  TfidfConfig c;
  c.min_df = 1;
  f = TfidfFeaturizer(c);
  std::vector<std::string> docs = {"my card"};
  f.fit(docs);
  auto word = f.column_of("my card", NgramKind::kWord);
  auto chr = f.column_of(" car", NgramKind::kChar);
  ASSERT_TRUE(word && chr);
  EXPECT_EQ(f.term_label(*word), "my card");
  EXPECT_EQ(f.term_label(*chr), "' car'");
  EXPECT_EQ(f.term_kind(*chr), NgramKind::kChar);
  EXPECT_FALSE(f.column_of(" car", NgramKind::kWord));
  EXPECT_EQ(f.describe().find('\n'), std::string::npos);
  EXPECT_NE(f.describe().find("tfidf"), std::string::npos);
  EXPECT_NE(f.describe().find(std::to_string(f.dim()) + " features"), std::string::npos);
}

TEST(Tfidf, RejectsBadConfigAndEmptyFit) {
  TfidfConfig c;
  c.min_df = 0;
  EXPECT_THROW(TfidfFeaturizer{c}, InputError);
  c = {};
  c.char_min_n = 6;
  EXPECT_THROW(TfidfFeaturizer{c}, InputError);
  c = {};
  c.word_max_n = 0;
  c.char_max_n = 0;
  EXPECT_THROW(TfidfFeaturizer{c}, InputError);
  TfidfFeaturizer f;
  EXPECT_THROW(f.fit(std::span<const std::string>()), InputError);
}

TEST(FeaturizerRegistry, MakesTfidfAndListsKindsOnError) {
  auto f = make_featurizer("tfidf");
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->kind(), "tfidf");
  try {
    make_featurizer("word2vec");
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("word2vec"), std::string::npos) << msg;
    EXPECT_NE(msg.find("tfidf"), std::string::npos) << msg;
  }
}

TEST(Tfidf, Banking77VocabularyAndUnitRows) {
  const auto& train = banking_train();
  ASSERT_EQ(train.size(), 10003u);
  TfidfConfig c;
  c.max_features = 10000;
  TfidfFeaturizer f(c);
  f.fit(train);
  EXPECT_EQ(f.dim(), 10000u);
  EXPECT_GT(f.unpruned_vocabulary_size(), 30000u);
  SparseMatrix m = f.transform_all(train, 2);
  ASSERT_EQ(m.rows(), train.size());
  for (size_t i = 0; i < m.rows(); ++i) {
    auto row = m.row(i);
    ASSERT_GT(row.nnz(), 0u) << train[i];
    double s = 0;
    for (float x : row.val) s += static_cast<double>(x) * x;
    ASSERT_NEAR(s, 1.0, 1e-4) << train[i];
  }

  // Default settings: min_df 2 leaves fewer than max_features on this corpus.
  TfidfFeaturizer d;
  d.fit(train);
  EXPECT_GT(d.dim(), 10000u);
  EXPECT_LE(d.dim(), 30000u);
  auto test = read_inputs("data/banking77/test.jsonl");
  SparseVector v;
  FeatureStats st;
  uint64_t known = 0, total = 0;
  for (const auto& text : test) {
    d.transform(text, v, &st);
    ASSERT_FALSE(v.idx.empty()) << text;
    EXPECT_NEAR(norm2(v), 1.0, 1e-4);
    known += st.known_ngrams;
    total += st.ngrams;
  }
  EXPECT_GT(static_cast<double>(known) / static_cast<double>(total), 0.9);
}

}  // namespace
}  // namespace tracer
