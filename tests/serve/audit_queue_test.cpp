// The pieces of the shadow audit that need no server: the bounded worker queue, the
// POST /v1/audit body and the audit block of /metrics.
#include "serve/audit_queue.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "serve/metrics.hpp"
#include "serve/requests.hpp"
#include "util/error.hpp"

namespace tracer::serve {
namespace {

TEST(ServeAuditQueue, RunsJobsAndRefusesWhenFull) {
  EXPECT_THROW(AuditQueue(0, 4), InputError);
  EXPECT_THROW(AuditQueue(1, 0), InputError);

  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  std::atomic<int> started{0}, done{0};
  auto blocked = [&] {
    ++started;
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return release; });
    ++done;
  };
  AuditQueue q(1, 2);
  ASSERT_TRUE(q.try_submit(blocked));
  while (started == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_TRUE(q.try_submit(blocked));   // queued
  EXPECT_TRUE(q.try_submit(blocked));   // queued
  EXPECT_FALSE(q.try_submit(blocked));  // full: refused, never waits
  EXPECT_EQ(q.pending(), 2u);
  {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
  }
  cv.notify_all();
  while (done < 3) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(q.pending(), 0u);
  EXPECT_EQ(q.stop(), 0u);
  EXPECT_FALSE(q.try_submit([] {}));  // stopped
}

TEST(ServeAuditQueue, StopWaitsForRunningJobsAndDropsQueuedOnes) {
  std::atomic<bool> finished{false};
  std::atomic<int> ran{0};
  AuditQueue q(1, 8);
  std::atomic<bool> started{false};
  q.try_submit([&] {
    started = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    finished = true;
  });
  while (!started) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  for (int i = 0; i < 3; ++i) q.try_submit([&] { ++ran; });
  EXPECT_EQ(q.stop(), 3u);
  EXPECT_TRUE(finished);
  EXPECT_EQ(ran, 0);
  EXPECT_EQ(q.stop(), 0u);  // idempotent
}

TEST(ServeRequests, AuditFeedbackNeedsTextAndLabel) {
  RequestLimits limits;
  AuditRequest r =
      parse_audit_request(R"({"text": "hi", "label": " card_arrival ", "id": 3})", limits);
  EXPECT_EQ(r.text, "hi");
  EXPECT_EQ(r.label, "card_arrival");
  EXPECT_EQ(r.id, 3);
  AuditRequest alias = parse_audit_request(R"({"input": "x", "teacher": "y"})", limits);
  EXPECT_EQ(alias.text, "x");
  EXPECT_EQ(alias.label, "y");
  auto status = [&](const std::string& body) {
    try {
      parse_audit_request(body, limits);
    } catch (const ApiError& e) {
      return e.status();
    }
    return 200;
  };
  EXPECT_EQ(status(R"({"text": "hi"})"), 400);
  EXPECT_EQ(status(R"({"label": "a"})"), 400);
  EXPECT_EQ(status(R"({"text": "hi", "label": 3})"), 400);
  EXPECT_EQ(status(R"({"text": "hi", "label": ""})"), 400);
  EXPECT_EQ(status("[1]"), 400);
  limits.max_text_bytes = 4;
  EXPECT_EQ(status(R"({"text": "hi", "label": "too long"})"), 413);
}

TEST(ServeMetrics, RendersTheAuditState) {
  Metrics m;
  m.count_audit(AuditOutcome::kAgreed, AuditSource::kShadow);
  m.count_audit(AuditOutcome::kDropped, AuditSource::kShadow);
  m.count_audit(AuditOutcome::kDisagreed, AuditSource::kFeedback, 3);
  m.count_audit_deferral();
  AuditState a;
  a.alpha = 0.95;
  a.rows = 60;
  a.agreed = 45;
  a.agreement = 0.75;
  a.upper_bound = 0.875;
  a.tripped = true;
  a.feedback_rows = 12;
  a.unusable = 2;
  a.dropped = 1;
  std::string text = m.render("v1", "l2d", 10, &a);
  auto has = [&](const std::string& line) { return text.find(line + "\n") != std::string::npos; };
  EXPECT_TRUE(has(R"(tracer_decisions_total{decision="deferred",reason="audit"} 1)")) << text;
  EXPECT_TRUE(has(R"(tracer_audit_requests_total{source="shadow",outcome="agreed"} 1)")) << text;
  EXPECT_TRUE(has(R"(tracer_audit_requests_total{source="shadow",outcome="dropped"} 1)")) << text;
  EXPECT_TRUE(has(R"(tracer_audit_requests_total{source="shadow",outcome="disagreed"} 0)")) << text;
  EXPECT_TRUE(has(R"(tracer_audit_requests_total{source="feedback",outcome="disagreed"} 3)"))
      << text;
  EXPECT_TRUE(has("tracer_audit_rows 60")) << text;
  EXPECT_TRUE(has("tracer_audit_agreed_rows 45")) << text;
  EXPECT_TRUE(has("tracer_audit_agreement 0.75")) << text;
  EXPECT_TRUE(has("tracer_audit_agreement_upper_bound 0.875")) << text;
  EXPECT_TRUE(has("tracer_audit_target 0.95")) << text;
  EXPECT_TRUE(has("tracer_audit_tripped 1")) << text;
  EXPECT_TRUE(has("tracer_audit_feedback_rows 12")) << text;
  EXPECT_TRUE(has("tracer_audit_lost_rows 3")) << text;
  EXPECT_EQ(m.render("v1", "l2d", 10).find("tracer_audit_rows"), std::string::npos);
  EXPECT_EQ(endpoint_of("/v1/audit"), Endpoint::kAudit);
}

}  // namespace
}  // namespace tracer::serve
