// Scrapes a live ServerMetrics exposer over HTTP and checks every metric of
// DESIGN.md "Metrics" with the values recorded.
#include "server/metrics.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "tests/unit/testing/http_get.h"

namespace loopserve {
namespace {

struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

// Prometheus text format, as prometheus-cpp writes it (no escapes in our labels).
std::vector<Sample> ParseExposition(const std::string& text) {
  std::vector<Sample> samples;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (line.empty() || line.front() == '#') continue;
    Sample s;
    const size_t brace = line.find('{');
    const size_t space = line.rfind(' ');
    if (space == absl::string_view::npos) continue;
    if (brace != absl::string_view::npos && brace < space) {
      s.name = std::string(line.substr(0, brace));
      const size_t close = line.rfind('}');
      absl::string_view body = line.substr(brace + 1, close - brace - 1);
      for (absl::string_view pair : absl::StrSplit(body, "\",", absl::SkipEmpty())) {
        const size_t eq = pair.find("=\"");
        std::string value(pair.substr(eq + 2));
        if (!value.empty() && value.back() == '"') value.pop_back();
        s.labels[std::string(pair.substr(0, eq))] = value;
      }
    } else {
      s.name = std::string(line.substr(0, space));
    }
    std::string number(line.substr(space + 1));
    if (number == "+Inf") {
      s.value = INFINITY;
    } else {
      EXPECT_TRUE(absl::SimpleAtod(number, &s.value)) << line;
    }
    samples.push_back(s);
  }
  return samples;
}

class Scrape {
 public:
  explicit Scrape(const std::string& address) {
    auto response = testing::HttpGet(address, "/metrics");
    EXPECT_TRUE(response.ok()) << response.status();
    if (!response.ok()) return;
    EXPECT_EQ(response->status, 200);
    text_ = response->body;
    samples_ = ParseExposition(text_);
  }
  const std::string& text() const { return text_; }

  // Sum of the samples named `name` whose labels include `want`; -1 if none.
  double Value(const std::string& name, const std::map<std::string, std::string>& want) const {
    double sum = 0;
    bool found = false;
    for (const Sample& s : samples_) {
      if (s.name != name) continue;
      bool match = true;
      for (const auto& [k, v] : want) {
        auto it = s.labels.find(k);
        if (it == s.labels.end() || it->second != v) match = false;
      }
      if (!match) continue;
      sum += s.value;
      found = true;
    }
    return found ? sum : -1;
  }
  bool Has(const std::string& name) const { return Value(name, {}) >= 0; }

 private:
  std::string text_;
  std::vector<Sample> samples_;
};

const std::map<std::string, std::string> kReq = {
    {"deployment", "fast"}, {"model", "tiny"}, {"policy", "max_prob@0.9"}};

std::map<std::string, std::string> With(std::map<std::string, std::string> labels,
                                        const std::string& key, const std::string& value) {
  labels[key] = value;
  return labels;
}

RequestEvent FinishedEvent() {
  RequestEvent e;
  e.finished = true;
  e.finish_reason = FinishReason::kLength;
  e.usage.prompt_tokens = 5;
  e.usage.completion_tokens = 3;
  e.usage.loops_executed = 10;
  e.usage.loops_full = 32;
  e.usage.flops_done = 100;
  e.usage.flops_full = 400;
  e.timing.queue_seconds = 0.002;
  e.timing.first_token_seconds = 0.03;
  e.timing.per_token_seconds = 0.004;
  e.timing.total_seconds = 0.7;
  return e;
}

std::unique_ptr<ServerMetrics> MakeMetrics() {
  auto metrics = ServerMetrics::Create("127.0.0.1:0", "tiny", /*num_loops=*/4);
  EXPECT_TRUE(metrics.ok()) << metrics.status();
  return metrics.ok() ? std::move(*metrics) : nullptr;
}

TEST(ServerMetricsTest, BindsAnEphemeralPort) {
  auto metrics = MakeMetrics();
  ASSERT_NE(metrics, nullptr);
  const std::string address = metrics->address();
  EXPECT_EQ(address.rfind("127.0.0.1:", 0), 0u) << address;
  EXPECT_NE(address, "127.0.0.1:0");
  auto response = testing::HttpGet(address, "/metrics");
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status, 200);
}

TEST(ServerMetricsTest, RejectsBadAddresses) {
  EXPECT_EQ(ServerMetrics::Create("no-port", "m", 4).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ServerMetrics::Create("127.0.0.1:0", "m", 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto first = MakeMetrics();
  ASSERT_NE(first, nullptr);
  auto second = ServerMetrics::Create(first->address(), "m", 4);
  EXPECT_FALSE(second.ok());
}

TEST(ServerMetricsTest, EveryMetricIsExportedWithTheRecordedValues) {
  auto metrics = MakeMetrics();
  ASSERT_NE(metrics, nullptr);
  // Three generated tokens exiting after loops 1, 2 and 4 (0-based 0, 1, 3).
  metrics->RecordRequest("fast", "max_prob@0.9", absl::StatusCode::kOk, FinishedEvent(), {0, 1, 3});
  RequestEvent cancelled;  // cancelled while queued: no step, no tokens
  cancelled.finished = true;
  cancelled.finish_reason = FinishReason::kCancelled;
  cancelled.status = absl::CancelledError("client");
  cancelled.timing.total_seconds = 0.1;
  metrics->RecordRequest("fast", "max_prob@0.9", absl::StatusCode::kCancelled, cancelled, {});
  metrics->RecordRejected("fast", absl::StatusCode::kInvalidArgument);
  StepStats step;
  step.running = 3;
  step.waiting = 2;
  step.batch_tokens = 17;
  step.kv_blocks_used = 9;
  step.kv_blocks_total = 64;
  step.preemptions_total = 2;
  metrics->ObserveStep(step);
  step.preemptions_total = 5;
  metrics->ObserveStep(step);

  Scrape scrape(metrics->address());
  for (const char* name : {
           "loopserve_time_to_first_token_seconds_count",
           "loopserve_time_per_output_token_seconds_count",
           "loopserve_request_duration_seconds_count",
           "loopserve_queue_wait_seconds_count",
           "loopserve_exit_loop_count",
           "loopserve_requests_total",
           "loopserve_prompt_tokens_total",
           "loopserve_generated_tokens_total",
           "loopserve_loops_executed_total",
           "loopserve_loops_skipped_total",
           "loopserve_flops_done_total",
           "loopserve_flops_full_depth_total",
           "loopserve_preemptions_total",
           "loopserve_requests_running",
           "loopserve_requests_waiting",
           "loopserve_kv_blocks_used",
           "loopserve_kv_blocks_capacity",
           "loopserve_batch_size",
       }) {
    EXPECT_TRUE(scrape.Has(name)) << name << " missing from\n" << scrape.text();
  }

  // Requests by status and finish reason.
  EXPECT_EQ(scrape.Value("loopserve_requests_total",
                         With(With(kReq, "status", "ok"), "finish_reason", "length")),
            1);
  EXPECT_EQ(scrape.Value("loopserve_requests_total",
                         With(With(kReq, "status", "cancelled"), "finish_reason", "cancelled")),
            1);
  EXPECT_EQ(scrape.Value("loopserve_requests_total", {{"deployment", "fast"},
                                                      {"policy", ""},
                                                      {"status", "invalid_argument"},
                                                      {"finish_reason", "none"}}),
            1);

  // Latency histograms: both requests have a duration; only the served one a
  // queue wait, a TTFT and a TPOT.
  EXPECT_EQ(scrape.Value("loopserve_request_duration_seconds_count", kReq), 2);
  EXPECT_NEAR(scrape.Value("loopserve_request_duration_seconds_sum", kReq), 0.8, 1e-9);
  EXPECT_EQ(scrape.Value("loopserve_request_duration_seconds_bucket", With(kReq, "le", "0.5")), 1);
  EXPECT_EQ(scrape.Value("loopserve_request_duration_seconds_bucket", With(kReq, "le", "1")), 2);
  EXPECT_EQ(scrape.Value("loopserve_queue_wait_seconds_count", kReq), 1);
  EXPECT_NEAR(scrape.Value("loopserve_queue_wait_seconds_sum", kReq), 0.002, 1e-12);
  EXPECT_EQ(scrape.Value("loopserve_time_to_first_token_seconds_count", kReq), 1);
  EXPECT_EQ(scrape.Value("loopserve_time_to_first_token_seconds_bucket", With(kReq, "le", "0.025")),
            0);
  EXPECT_EQ(scrape.Value("loopserve_time_to_first_token_seconds_bucket", With(kReq, "le", "0.05")),
            1);
  EXPECT_EQ(scrape.Value("loopserve_time_per_output_token_seconds_count", kReq), 1);
  EXPECT_NEAR(scrape.Value("loopserve_time_per_output_token_seconds_sum", kReq), 0.004, 1e-12);
  EXPECT_EQ(scrape.Value("loopserve_time_to_first_token_seconds_bucket", With(kReq, "le", "60")),
            1);

  // Exit loops 1, 2, 4 in buckets le=1..4 (cumulative).
  EXPECT_EQ(scrape.Value("loopserve_exit_loop_count", kReq), 3);
  EXPECT_EQ(scrape.Value("loopserve_exit_loop_sum", kReq), 7);
  EXPECT_EQ(scrape.Value("loopserve_exit_loop_bucket", With(kReq, "le", "1")), 1);
  EXPECT_EQ(scrape.Value("loopserve_exit_loop_bucket", With(kReq, "le", "2")), 2);
  EXPECT_EQ(scrape.Value("loopserve_exit_loop_bucket", With(kReq, "le", "3")), 2);
  EXPECT_EQ(scrape.Value("loopserve_exit_loop_bucket", With(kReq, "le", "4")), 3);
  EXPECT_EQ(scrape.Value("loopserve_exit_loop_bucket", With(kReq, "le", "+Inf")), 3);

  // Token and compute counters.
  EXPECT_EQ(scrape.Value("loopserve_prompt_tokens_total", kReq), 5);
  EXPECT_EQ(scrape.Value("loopserve_generated_tokens_total", kReq), 3);
  EXPECT_EQ(scrape.Value("loopserve_loops_executed_total", kReq), 10);
  EXPECT_EQ(scrape.Value("loopserve_loops_skipped_total", kReq), 22);
  EXPECT_EQ(scrape.Value("loopserve_flops_done_total", kReq), 100);
  EXPECT_EQ(scrape.Value("loopserve_flops_full_depth_total", kReq), 400);

  // Engine-wide series carry only the model label.
  const std::map<std::string, std::string> engine = {{"model", "tiny"}};
  EXPECT_EQ(scrape.Value("loopserve_preemptions_total", engine), 5);
  EXPECT_EQ(scrape.Value("loopserve_requests_running", engine), 3);
  EXPECT_EQ(scrape.Value("loopserve_requests_waiting", engine), 2);
  EXPECT_EQ(scrape.Value("loopserve_kv_blocks_used", engine), 9);
  EXPECT_EQ(scrape.Value("loopserve_kv_blocks_capacity", engine), 64);
  EXPECT_EQ(scrape.Value("loopserve_batch_size", engine), 17);
  EXPECT_EQ(scrape.Value("loopserve_batch_size", {{"deployment", "fast"}}), -1);
}

TEST(ServerMetricsTest, ReloadsTimeoutsAndCertificateExpiry) {
  auto metrics = MakeMetrics();
  ASSERT_NE(metrics, nullptr);
  const std::map<std::string, std::string> engine = {{"model", "tiny"}};
  {
    Scrape scrape(metrics->address());
    EXPECT_EQ(scrape.Value("loopserve_config_last_reload_successful", engine), 1);
    EXPECT_EQ(scrape.Value("loopserve_config_reloads_total", With(engine, "result", "ok")), 0);
    EXPECT_EQ(scrape.Value("loopserve_stream_write_timeouts_total", engine), 0);
    // No TLS (or no date): no expiry series at all.
    EXPECT_FALSE(scrape.Has("loopserve_tls_certificate_expiry_timestamp_seconds"));
  }
  metrics->RecordConfigReload(true);
  metrics->RecordConfigReload(false);
  metrics->RecordStreamWriteTimeout();
  metrics->RecordTlsReload(true);
  metrics->RecordTlsReload(false);
  metrics->RecordTlsReload(false);
  metrics->SetTlsCertificateExpiry(1'900'000'000);
  metrics->SetTlsCertificateExpiry(0);  // unknown: keeps the last known date
  Scrape scrape(metrics->address());
  EXPECT_EQ(scrape.Value("loopserve_config_reloads_total", With(engine, "result", "ok")), 1);
  EXPECT_EQ(scrape.Value("loopserve_config_reloads_total", With(engine, "result", "error")), 1);
  EXPECT_EQ(scrape.Value("loopserve_config_last_reload_successful", engine), 0);
  EXPECT_EQ(scrape.Value("loopserve_stream_write_timeouts_total", engine), 1);
  EXPECT_EQ(scrape.Value("loopserve_tls_reloads_total", With(engine, "result", "ok")), 1);
  EXPECT_EQ(scrape.Value("loopserve_tls_reloads_total", With(engine, "result", "error")), 2);
  EXPECT_EQ(scrape.Value("loopserve_tls_certificate_expiry_timestamp_seconds", engine),
            1'900'000'000);
}

TEST(ServerMetricsTest, PolicyChangeStartsNewSeries) {
  auto metrics = MakeMetrics();
  ASSERT_NE(metrics, nullptr);
  metrics->RecordRequest("fast", "max_prob@0.9", absl::StatusCode::kOk, FinishedEvent(), {0});
  metrics->RecordRequest("fast", "never", absl::StatusCode::kOk, FinishedEvent(), {3});
  Scrape scrape(metrics->address());
  EXPECT_EQ(scrape.Value("loopserve_exit_loop_sum", kReq), 1);
  EXPECT_EQ(scrape.Value("loopserve_exit_loop_sum", With(kReq, "policy", "never")), 4);
  EXPECT_EQ(scrape.Value("loopserve_flops_done_total", {{"deployment", "fast"}}), 200);
}

TEST(ServerMetricsTest, UnknownDeploymentsShareOneSeries) {
  auto metrics = MakeMetrics();
  ASSERT_NE(metrics, nullptr);
  metrics->SetKnownDeployments({"fast", "exact"});
  metrics->RecordRejected("typo-1", absl::StatusCode::kNotFound);
  metrics->RecordRejected("typo-2", absl::StatusCode::kNotFound);
  metrics->RecordRejected("exact", absl::StatusCode::kResourceExhausted);
  Scrape scrape(metrics->address());
  EXPECT_EQ(scrape.Value("loopserve_requests_total",
                         {{"deployment", "unknown"}, {"status", "not_found"}}),
            2);
  EXPECT_EQ(scrape.Value("loopserve_requests_total", {{"deployment", "typo-1"}}), -1);
  EXPECT_EQ(scrape.Value("loopserve_requests_total",
                         {{"deployment", "exact"}, {"status", "resource_exhausted"}}),
            1);
}

TEST(ServerMetricsTest, ConcurrentRecordingLosesNothing) {
  auto metrics = MakeMetrics();
  ASSERT_NE(metrics, nullptr);
  constexpr int kThreads = 4;
  constexpr int kPerThread = 200;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&metrics, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const std::string dep = t % 2 == 0 ? "fast" : "exact";
        metrics->RecordRequest(dep, "max_prob@0.9", absl::StatusCode::kOk, FinishedEvent(),
                               {0, 1, 3});
        StepStats step;
        step.preemptions_total = i;
        metrics->ObserveStep(step);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  Scrape scrape(metrics->address());
  EXPECT_EQ(scrape.Value("loopserve_requests_total", {{"status", "ok"}}), kThreads * kPerThread);
  EXPECT_EQ(scrape.Value("loopserve_exit_loop_count", {}), 3 * kThreads * kPerThread);
  EXPECT_EQ(scrape.Value("loopserve_generated_tokens_total", {}), 3 * kThreads * kPerThread);
}

// promtool is optional (Debian package `prometheus`); the test skips without it.
TEST(ServerMetricsTest, PromtoolAcceptsTheScrape) {
  std::string promtool;
  if (const char* path = std::getenv("PATH")) {
    for (absl::string_view dir : absl::StrSplit(path, ':', absl::SkipEmpty())) {
      const std::filesystem::path candidate = std::filesystem::path(std::string(dir)) / "promtool";
      if (access(candidate.c_str(), X_OK) == 0) {
        promtool = candidate.string();
        break;
      }
    }
  }
  if (promtool.empty()) GTEST_SKIP() << "promtool not installed (Debian package `prometheus`)";
  auto metrics = MakeMetrics();
  ASSERT_NE(metrics, nullptr);
  metrics->RecordRequest("fast", "max_prob@0.9", absl::StatusCode::kOk, FinishedEvent(), {0, 1, 3});
  metrics->RecordRejected("fast", absl::StatusCode::kInvalidArgument);
  StepStats step;
  step.kv_blocks_total = 64;
  metrics->ObserveStep(step);
  Scrape scrape(metrics->address());
  const std::filesystem::path file = std::filesystem::temp_directory_path() /
                                     ("loopserve_metrics_" + std::to_string(getpid()) + ".txt");
  std::ofstream(file) << scrape.text();
  const std::string command = promtool + " check metrics < " + file.string() + " 2>&1";
  const int rc = std::system(command.c_str());
  std::filesystem::remove(file);
  EXPECT_EQ(rc, 0) << command << "\n" << scrape.text();
}

}  // namespace
}  // namespace loopserve
