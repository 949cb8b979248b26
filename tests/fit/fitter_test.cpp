#include "fit/fitter.hpp"

#include <gtest/gtest.h>

#include "gate/bounds.hpp"
#include "runtime/drift.hpp"
#include "runtime/router.hpp"
#include "synthetic_traces.hpp"
#include "test_util.hpp"
#include "util/error.hpp"

namespace tracer {
namespace {

using nlohmann::json;

FitOptions small_options(double target) {
  FitOptions o;
  o.target = target;
  o.zoo = {"logreg_strong", "complement_nb"};
  o.threads = 2;
  return o;
}

FitResult fit_quiet(const TraceSet& set, const FitOptions& o) {
  Progress quiet(false);
  return fit_policy(set, o, quiet);
}

TEST(Fitter, CertifiedPolicyIsConsistentWithTheRouter) {
  TraceSet set = testing::synthetic_traces(6, 250, 0.05, 1);
  FitResult r = fit_quiet(set, small_options(0.9));
  ASSERT_TRUE(r.deployed) << r.manifest["gate"].dump(2);
  const auto& cert = r.manifest["gate"]["certified"];
  EXPECT_GE(cert["lower_bound"].get<double>(), 0.9);
  EXPECT_GT(cert["coverage"].get<double>(), 0.5);

  // The policy as the router runs it (after a save/load round trip) decides every calibrate
  // row exactly as the certification counted it. (Known inputs are checked on their own below:
  // the traced inputs themselves are known, and the ones the LLM answered otherwise deferred.)
  Policy loaded = decode_policy(encode_policy(r.policy), "test");
  EXPECT_EQ(loaded.known_inputs, r.policy.known_inputs);
  EXPECT_EQ(loaded.known_labels, r.policy.known_labels);
  loaded.known_inputs.clear();
  loaded.known_labels.clear();
  Router router(std::move(loaded), r.manifest);
  RouteScratch scratch = router.make_scratch();
  int handled = 0, agree = 0;
  for (const auto& d : r.calibrate_rows) {
    RouteResult rr = router.route(set.traces[d.trace].input, scratch);
    ASSERT_EQ(rr.handled, d.handled) << set.traces[d.trace].input;
    if (rr.handled) {
      ASSERT_EQ(rr.label, d.predicted);
      ++handled;
      agree += rr.label == d.teacher;
    }
  }
  EXPECT_EQ(handled, cert["accepted"].get<int>());
  EXPECT_EQ(agree, cert["agreeing"].get<int>());

  // The drift reference is the calibrate rows' stage-1 scores as routed: routing the calibrate
  // rows again is, by construction, no drift at all.
  DriftReference ref = DriftReference::from_json(r.manifest["drift"]);
  ASSERT_FALSE(ref.empty());
  EXPECT_EQ(ref.rows, static_cast<int64_t>(r.calibrate_rows.size()));
  EXPECT_NEAR(ref.handled_share, cert["coverage"].get<double>(), 1e-4);  // rounded there
  std::vector<float> scores;
  size_t handled_again = 0;
  for (const auto& d : r.calibrate_rows) {
    RouteResult rr = router.route(set.traces[d.trace].input, scratch);
    scores.push_back(rr.stage1_score);
    handled_again += rr.handled;
  }
  DriftReport same = compare_drift(ref, scores, handled_again, 0, DriftOptions{0, 50, 1e-4});
  EXPECT_TRUE(same.available);
  EXPECT_LT(same.ks, 0.02);
  EXPECT_FALSE(same.drift);
}

// Every traced input is known with the label its copies agree on. Routing a traced input the
// surrogate would answer with another label defers it (reason known_disagreement); inputs the
// LLM answered like the surrogate, and inputs never traced, route as before.
TEST(Fitter, KnownInputsTheLlmAnsweredOtherwiseAreDeferred) {
  TraceSet set = testing::synthetic_traces(5, 240, 0.0, 11);
  // One input logged 6 times: 5 say label_1, 1 says label_2 (share 5/6 >= 0.8: label_1 agrees);
  // one logged 4 times split 2/2 (no label reaches the target share); both are made of label_0's
  // words.
  auto add = [&](const std::string& text, int label, int copies) {
    for (int i = 0; i < copies; ++i) {
      Trace t;
      t.input = text;
      t.teacher = set.labels[label];
      set.traces.push_back(std::move(t));
      set.y.push_back(label);
    }
  };
  const std::string mostly_one = "w0x1 w0x2 w0x3 w0x4 w0x5 #7", split = "w0x6 w0x7 w0x8 w0x9 #3";
  add(mostly_one, 1, 5);
  add(mostly_one, 2, 1);
  add(split, 3, 2);
  add(split, 4, 2);
  FitResult r = fit_quiet(set, small_options(0.8));
  ASSERT_TRUE(r.deployed) << r.manifest["gate"].dump(2);
  const json& known = r.manifest["units"]["known_inputs"];
  EXPECT_EQ(known["inputs"], r.manifest["units"]["distinct_inputs"]) << known.dump();
  EXPECT_GE(known["without_agreeing_label"].get<int>(), 1) << known.dump();
  ASSERT_TRUE(std::is_sorted(r.policy.known_inputs.begin(), r.policy.known_inputs.end()));
  const Featurizer& f = *r.policy.featurizer;
  EXPECT_EQ(r.policy.known_label(known_input_key(f, mostly_one)), 1);
  EXPECT_EQ(r.policy.known_label(known_input_key(f, "  W0X1 w0x2  w0x3 w0x4 w0x5 #7")), 1)
      << "keys are taken after the featurizer's normalisation";
  EXPECT_EQ(r.policy.known_label(known_input_key(f, split)), -1);
  EXPECT_EQ(r.policy.known_label(known_input_key(f, "never traced w0x1")), -2);

  Router router(decode_policy(encode_policy(r.policy), "test"), r.manifest);
  RouteScratch s = router.make_scratch();
  // Without the known inputs the surrogate handles both. With them, the split input (no label
  // reaches the target share) is deferred whatever the surrogate says; the other one stays
  // handled only if the surrogate answers label_1, the label its copies agree on.
  Policy bare = decode_policy(encode_policy(r.policy), "test");
  bare.known_inputs.clear();
  bare.known_labels.clear();
  Router unaware(std::move(bare), r.manifest);
  for (const std::string& text : {mostly_one, split}) {
    RouteResult plain = unaware.route(text, s);
    ASSERT_TRUE(plain.handled) << text << ": " << reason_name(plain.reason);
    RouteResult rr = router.route(text, s);
    const bool agrees = text == mostly_one && plain.label == 1;
    EXPECT_EQ(rr.handled, agrees) << text;
    if (!agrees) {
      EXPECT_EQ(rr.reason, DeferReason::kKnownDisagreement) << text;
      EXPECT_EQ(reason_name(rr.reason), "known_disagreement");
    }
  }
  // A model file whose known inputs are out of order or mislabelled is refused.
  Policy bad = decode_policy(encode_policy(r.policy), "test");
  ASSERT_GE(bad.known_inputs.size(), 2u);
  std::swap(bad.known_inputs[0], bad.known_inputs[1]);
  EXPECT_THROW(decode_policy(encode_policy(bad), "test"), FormatError);
  std::swap(bad.known_inputs[0], bad.known_inputs[1]);
  bad.known_labels[0] = 99;
  EXPECT_THROW(decode_policy(encode_policy(bad), "test"), FormatError);

  // Traced inputs answered like the surrogate stay handled exactly as certified.
  size_t handled = 0;
  for (const auto& d : r.calibrate_rows) {
    RouteResult rr = router.route(set.traces[d.trace].input, s);
    if (!d.handled) {
      EXPECT_FALSE(rr.handled);
      continue;
    }
    const bool llm_agrees = d.predicted == d.teacher;  // one copy each, no teacher noise
    EXPECT_EQ(rr.handled, llm_agrees) << set.traces[d.trace].input;
    if (!llm_agrees) {
      EXPECT_EQ(rr.reason, DeferReason::kKnownDisagreement);
    }
    handled += rr.handled;
  }
  EXPECT_GT(handled, 0u);
}

// Each frontier row is its own walk: nothing borrowed from a stricter row (choosing the best of
// several walks after seeing calibrate would spend delta more than once), and every certified
// row's counts pass its own test at the level it was tested at.
TEST(Fitter, FrontierRowsAreTheirOwnWalks) {
  TraceSet set = testing::synthetic_traces(5, 300, 0.08, 2);
  FitResult r = fit_quiet(set, small_options(0.9));
  ASSERT_EQ(r.frontier["rows"].size(), 3u * 6u);
  int certified = 0;
  for (const auto& row : r.frontier["rows"]) {
    EXPECT_FALSE(row.contains("from_target")) << row.dump();
    if (!row.value("certified", false)) continue;
    ++certified;
    const double p = binomial_upper_tail(row["accepted"].get<int>(), row["agreeing"].get<int>(),
                                         row["target"].get<double>());
    EXPECT_LE(p, 0.05) << row.dump();
  }
  EXPECT_GT(certified, 0);
}

// A trace file with every line repeated gives exactly the certificate of the file once: the
// unit of evidence is a distinct input.
TEST(Fitter, RepeatedLinesCertifyLikeTheFileOnce) {
  TraceSet once = testing::synthetic_traces(4, 150, 0.08, 5);
  TraceSet thrice;
  thrice.labels = once.labels;
  for (size_t i = 0; i < once.size(); ++i)
    for (int k = 0; k < 3; ++k) {
      thrice.traces.push_back(once.traces[i]);
      thrice.y.push_back(once.y[i]);
    }
  FitResult a = fit_quiet(once, small_options(0.85));
  FitResult b = fit_quiet(thrice, small_options(0.85));
  EXPECT_EQ(a.manifest["split"], b.manifest["split"]);
  EXPECT_EQ(b.manifest["units"]["distinct_inputs"], a.manifest["units"]["distinct_inputs"]);
  EXPECT_EQ(b.manifest["units"]["duplicate_traces"].get<size_t>(), 2 * once.size());
  EXPECT_EQ(a.manifest["units"]["duplicate_traces"].get<size_t>(), 0u);
  // Without the memory tier the gate certifies exactly as on the file once.
  FitOptions no_memory = small_options(0.85);
  no_memory.memory.enabled = false;
  FitResult c = fit_quiet(thrice, no_memory);
  EXPECT_EQ(a.manifest["gate"]["certified"], c.manifest["gate"]["certified"]);
  // With it (the default), the file once leaves it inactive and the gate all of delta; the file
  // thrice is remembered, certified with its share of delta, and the gate keeps the rest.
  EXPECT_FALSE(a.memory.active);
  EXPECT_DOUBLE_EQ(a.manifest["gate"]["delta"].get<double>(), no_memory.delta);
  ASSERT_TRUE(b.memory.certified) << b.manifest["memory"].dump();
  EXPECT_NEAR(b.manifest["gate"]["delta"].get<double>(), no_memory.delta * 0.8, 1e-12);
  EXPECT_NEAR(b.manifest["memory"]["delta"].get<double>(), no_memory.delta * 0.2, 1e-12);
  EXPECT_DOUBLE_EQ(b.manifest["options"]["delta"].get<double>(), no_memory.delta);
  EXPECT_TRUE(b.deployed);
  // model.bin keeps the table; a damaged table is refused.
  Policy loaded = decode_policy(encode_policy(b.policy), "test");
  EXPECT_EQ(loaded.memory_inputs, b.policy.memory_inputs);
  EXPECT_EQ(loaded.memory_labels, b.policy.memory_labels);
  ASSERT_GE(loaded.memory_inputs.size(), 2u);
  std::swap(loaded.memory_inputs[0], loaded.memory_inputs[1]);
  EXPECT_THROW(decode_policy(encode_policy(loaded), "test"), FormatError);
  std::swap(loaded.memory_inputs[0], loaded.memory_inputs[1]);
  loaded.memory_labels[0] = -1;
  EXPECT_THROW(decode_policy(encode_policy(loaded), "test"), FormatError);
  // A remembered input is answered from memory with its logged label; a new one is not.
  Router router(std::move(b.policy), b.manifest);
  RouteScratch s = router.make_scratch();
  size_t remembered = 0, right = 0;
  for (size_t i = 0; i < once.size(); ++i) {
    RouteResult r = router.route(once.traces[i].input, s);
    if (r.stage != 0) continue;
    ++remembered;
    EXPECT_TRUE(r.handled);
    EXPECT_EQ(decision_reason(r), "memory");
    right += r.label == once.y[i];
  }
  EXPECT_GT(remembered, once.size() * 9 / 10);  // the rest had every copy held out
  EXPECT_EQ(right, remembered);
  EXPECT_NE(router.route("an input nobody ever logged", s).stage, 0);
}

// A label with too few traces never aborts the fit: it is listed, and an input predicted as it
// is deferred (rare_label), by the fitter's held-out decisions and by the router alike.
TEST(Fitter, RareLabelsAreDeferredNotAnError) {
  TraceSet set = testing::synthetic_traces(4, 200, 0.05, 6);
  set.labels.push_back("zz_rare");
  const int rare = static_cast<int>(set.labels.size()) - 1;
  for (int i = 0; i < 2; ++i) {
    Trace t;
    t.input = "quantum refund wormhole " + std::to_string(i);
    t.teacher = "zz_rare";
    set.traces.push_back(t);
    set.y.push_back(rare);
  }
  FitResult r = fit_quiet(set, small_options(0.85));
  ASSERT_TRUE(r.deployed) << r.manifest["gate"].dump(2);
  bool listed = false;
  for (const auto& l : r.manifest["rare_labels"]) listed |= l["label"] == "zz_rare";
  EXPECT_TRUE(listed) << r.manifest["rare_labels"].dump();
  EXPECT_TRUE(r.policy.is_rare(rare));
  for (const auto& d : r.calibrate_rows) {
    if (d.predicted == rare) {
      EXPECT_FALSE(d.handled);
    }
  }
  Policy loaded = decode_policy(encode_policy(r.policy), "test");
  EXPECT_TRUE(loaded.is_rare(rare));
  Router router(std::move(loaded), r.manifest);
  RouteScratch scratch = router.make_scratch();
  RouteResult rr = router.route("quantum refund wormhole 0", scratch);
  if (rr.label == rare) {
    EXPECT_FALSE(rr.handled);
    EXPECT_EQ(rr.reason, DeferReason::kRareLabel);
  }
}

TEST(Fitter, OptionsRoundTripThroughTheManifest) {
  FitOptions o = small_options(0.93);
  o.delta = 0.01;
  o.zoo = {"mlp", "linear_svm"};
  o.methods = {Method::kL2D};
  o.fractions = {0.5, 0.25, 0.25};
  o.seed = 9;
  o.ood = false;
  FitOptions back = fit_options_from(fit_options_json(o), json::object(), json::object());
  EXPECT_EQ(back.target, o.target);
  EXPECT_EQ(back.delta, o.delta);
  EXPECT_EQ(back.zoo, o.zoo);
  EXPECT_EQ(back.methods, o.methods);
  ASSERT_TRUE(back.fractions.has_value());
  EXPECT_EQ(back.fractions->select, 0.25);
  EXPECT_EQ(back.seed, 9u);
  EXPECT_FALSE(back.ood);
  json bad = fit_options_json(o);
  bad["methods"] = json::array({"sideways"});
  EXPECT_THROW(fit_options_from(bad, json(), json()), FormatError);

  // What `tracer update` reads back: the fit records exactly the options it ran with.
  TraceSet set = testing::synthetic_traces(4, 150, 0.05, 5);
  FitOptions run = small_options(0.9);
  run.seed = 11;
  FitResult r = fit_quiet(set, run);
  EXPECT_EQ(r.manifest["options"], fit_options_json(run));
  EXPECT_EQ(fit_options_json(fit_options_from(r.manifest["options"], r.manifest, r.frontier)),
            fit_options_json(run));
}

TEST(Fitter, RandomLabelsAreRefusedWithAReason) {
  TraceSet set = testing::synthetic_traces(4, 150, 1.0, 3);  // teacher is pure noise
  FitResult r = fit_quiet(set, small_options(0.9));
  EXPECT_FALSE(r.deployed);
  EXPECT_EQ(r.policy.method, Method::kNone);
  const auto& refusal = r.manifest["gate"]["refusal"];
  EXPECT_TRUE(refusal["reason"].is_string());
  // Agreement below the target: no count of more traces is promised.
  EXPECT_TRUE(refusal["more_traces_needed"].is_null()) << refusal.dump();
  EXPECT_NE(refusal["advice"].get<std::string>().find("lower --target"), std::string::npos);
  EXPECT_LT(refusal["surrogate_agreement_on_calibrate"].get<double>(), 0.9);
  for (const auto& d : r.calibrate_rows) {
    EXPECT_FALSE(d.handled);
    EXPECT_EQ(d.reason, DeferReason::kNoPolicy);
  }
}

TEST(Fitter, TooFewTracesIsAClearError) {
  TraceSet set = testing::synthetic_traces(2, 10, 0.0, 4);
  EXPECT_THROW(fit_quiet(set, small_options(0.9)), InputError);
}

// 400 traces of one input: the message names the real cause (one distinct input), not "collect
// more traces" of the same kind.
TEST(Fitter, ManyCopiesOfFewInputsSayWhy) {
  TraceSet set = testing::synthetic_traces(2, 200, 0.0, 4);
  for (auto& t : set.traces) t.input = "the same request";
  try {
    fit_quiet(set, small_options(0.9));
    ADD_FAILURE() << "expected InputError";
  } catch (const InputError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("1 distinct inputs"), std::string::npos) << msg;
    EXPECT_NE(msg.find("repeat an input"), std::string::npos) << msg;
  }
}

// The promise itself, end to end: fit on traces, route fresh traffic from the same
// distribution, and count runs whose handled traffic agrees less than the target. Violations
// are judged by the test sample's one-sided 95% upper bound (so test-set noise alone does not
// count), and must stay within what δ = 0.05 allows.
TEST(Fitter, GuaranteeHoldsOnFreshTrafficOverManySeeds) {
  const int runs = testing::sanitized() ? 8 : 40;
  const double alpha = 0.88;
  int violations = 0, deployed = 0;
  for (int run = 0; run < runs; ++run) {
    TraceSet all = testing::synthetic_traces(5, 800, 0.06, 100 + run);
    // Half the traces to fit, the other half as fresh traffic (interleaved by label).
    TraceSet train, fresh;
    train.labels = fresh.labels = all.labels;
    for (size_t i = 0; i < all.size(); ++i) {
      TraceSet& dst = (i % 2 == 0) ? train : fresh;
      dst.traces.push_back(all.traces[i]);
      dst.y.push_back(all.y[i]);
    }
    FitOptions o = small_options(alpha);
    o.zoo = {"complement_nb"};  // fast; the promise does not depend on the surrogate
    o.ensemble_members = 0;
    o.seed = run;
    FitResult r = fit_quiet(train, o);
    if (!r.deployed) continue;
    ++deployed;
    Router router(std::move(r.policy), r.manifest);
    RouteScratch scratch = router.make_scratch();
    int n = 0, k = 0;
    for (size_t i = 0; i < fresh.size(); ++i) {
      RouteResult rr = router.route(fresh.traces[i].input, scratch);
      if (!rr.handled) continue;
      ++n;
      k += rr.label == fresh.y[i];
    }
    if (n > 0 && clopper_pearson_upper(n, k, 0.95) < alpha) ++violations;
  }
  EXPECT_GE(deployed, runs / 2) << "the fixture should usually certify something";
  // 99.9% quantile of Binomial(40, 0.05) is 7.
  EXPECT_LE(violations, testing::sanitized() ? 3 : 7);
  std::printf("guarantee check: %d deployed of %d runs, %d violations\n", deployed, runs,
              violations);
}

}  // namespace
}  // namespace tracer
