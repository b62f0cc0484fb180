// ServerMetrics on prometheus-cpp: one Registry, one pull Exposer, and a cache
// of the per-(deployment, policy) series so that recording a request is a few
// atomic adds. prometheus-cpp counters/gauges are atomic and histograms lock
// internally; our own mutex only guards the series cache and the preemption
// baseline, so engine thread and gRPC threads may call in concurrently.
#include "server/metrics.h"

#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <cctype>
#include <exception>
#include <map>
#include <set>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "kernels/common/check.h"

namespace loopserve {
namespace {

using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Histogram;
using prometheus::Labels;

// Seconds, 1 ms .. 60 s in 1-2.5-5 steps: covers CPU decode steps (ms) up to
// long generations (tens of seconds) with ~2x resolution everywhere.
const Histogram::BucketBoundaries& LatencyBuckets() {
  static const Histogram::BucketBoundaries kBuckets = {
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60};
  return kBuckets;
}

// "DEADLINE_EXCEEDED" -> "deadline_exceeded".
std::string StatusLabel(absl::StatusCode code) {
  std::string name = absl::StatusCodeToString(code);
  if (name.empty()) name = absl::StrCat("code_", static_cast<int>(code));
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return name;
}

}  // namespace

struct ServerMetrics::Impl {
  // Series of one (deployment, policy) pair.
  struct RequestSeries {
    Histogram* ttft = nullptr;
    Histogram* tpot = nullptr;
    Histogram* duration = nullptr;
    Histogram* queue_wait = nullptr;
    Histogram* exit_loop = nullptr;
    Counter* prompt_tokens = nullptr;
    Counter* generated_tokens = nullptr;
    Counter* loops_executed = nullptr;
    Counter* loops_skipped = nullptr;
    Counter* flops_done = nullptr;
    Counter* flops_full = nullptr;
  };

  std::string model;
  int num_loops = 0;
  std::string host;
  std::shared_ptr<prometheus::Registry> registry;
  std::unique_ptr<prometheus::Exposer> exposer;

  Family<Histogram>* ttft = nullptr;
  Family<Histogram>* tpot = nullptr;
  Family<Histogram>* duration = nullptr;
  Family<Histogram>* queue_wait = nullptr;
  Family<Histogram>* exit_loop = nullptr;
  Family<Counter>* requests = nullptr;
  Family<Counter>* prompt_tokens = nullptr;
  Family<Counter>* generated_tokens = nullptr;
  Family<Counter>* loops_executed = nullptr;
  Family<Counter>* loops_skipped = nullptr;
  Family<Counter>* flops_done = nullptr;
  Family<Counter>* flops_full = nullptr;

  // Engine-wide (label model only).
  Counter* preemptions = nullptr;
  Gauge* running = nullptr;
  Gauge* waiting = nullptr;
  Gauge* kv_used = nullptr;
  Gauge* kv_total = nullptr;
  Gauge* batch_size = nullptr;
  Counter* stream_write_timeouts = nullptr;
  Counter* tls_reloads_ok = nullptr;
  Counter* tls_reloads_failed = nullptr;
  Family<Gauge>* tls_expiry_family = nullptr;
  Counter* reloads_ok = nullptr;
  Counter* reloads_failed = nullptr;
  Gauge* last_reload_ok = nullptr;

  absl::Mutex mu;
  std::map<std::pair<std::string, std::string>, RequestSeries> series ABSL_GUARDED_BY(mu);
  std::set<std::string> known_deployments ABSL_GUARDED_BY(mu);
  int64_t last_preemptions ABSL_GUARDED_BY(mu) = 0;

  void BuildFamilies();
  std::string DeploymentLabel(const std::string& deployment) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  RequestSeries& Series(const std::string& deployment, const std::string& policy)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  Histogram::BucketBoundaries ExitLoopBuckets() const;
};

void ServerMetrics::Impl::BuildFamilies() {
  prometheus::Registry& r = *registry;
  ttft = &prometheus::BuildHistogram()
              .Name("loopserve_time_to_first_token_seconds")
              .Help("Submit to first generated token (server side), per request.")
              .Register(r);
  tpot = &prometheus::BuildHistogram()
              .Name("loopserve_time_per_output_token_seconds")
              .Help(
                  "Mean gap between generated tokens after the first, per request "
                  "with at least two tokens.")
              .Register(r);
  duration = &prometheus::BuildHistogram()
                  .Name("loopserve_request_duration_seconds")
                  .Help("Submit to finished (end to end inside the server), per request.")
                  .Register(r);
  queue_wait = &prometheus::BuildHistogram()
                    .Name("loopserve_queue_wait_seconds")
                    .Help("Submit to first scheduled engine step, per request that was scheduled.")
                    .Register(r);
  exit_loop = &prometheus::BuildHistogram()
                   .Name("loopserve_exit_loop")
                   .Help("Loops of the shared block (1..L) that each generated token ran.")
                   .Register(r);
  requests = &prometheus::BuildCounter()
                  .Name("loopserve_requests_total")
                  .Help(
                      "Requests by final status (gRPC code name) and finish reason; "
                      "refused requests have finish_reason=\"none\" and policy=\"\".")
                  .Register(r);
  prompt_tokens = &prometheus::BuildCounter()
                       .Name("loopserve_prompt_tokens_total")
                       .Help("Prompt tokens of finished requests.")
                       .Register(r);
  generated_tokens = &prometheus::BuildCounter()
                          .Name("loopserve_generated_tokens_total")
                          .Help("Generated (completion) tokens of finished requests.")
                          .Register(r);
  loops_executed = &prometheus::BuildCounter()
                        .Name("loopserve_loops_executed_total")
                        .Help("Recurrent-block passes run, over prompt and generated tokens.")
                        .Register(r);
  loops_skipped =
      &prometheus::BuildCounter()
           .Name("loopserve_loops_skipped_total")
           .Help("Recurrent-block passes skipped by early exit (full depth - executed).")
           .Register(r);
  flops_done = &prometheus::BuildCounter()
                    .Name("loopserve_flops_done_total")
                    .Help("FLOPs actually spent, exit checks included.")
                    .Register(r);
  flops_full = &prometheus::BuildCounter()
                    .Name("loopserve_flops_full_depth_total")
                    .Help("FLOPs the same tokens would have cost at full depth.")
                    .Register(r);

  const Labels engine_labels = {{"model", model}};
  preemptions = &prometheus::BuildCounter()
                     .Name("loopserve_preemptions_total")
                     .Help("Sequences preempted (KV recomputed later), engine-wide.")
                     .Register(r)
                     .Add(engine_labels);
  running = &prometheus::BuildGauge()
                 .Name("loopserve_requests_running")
                 .Help("Requests in the engine's running set after the last step (engine-wide).")
                 .Register(r)
                 .Add(engine_labels);
  waiting = &prometheus::BuildGauge()
                 .Name("loopserve_requests_waiting")
                 .Help("Requests waiting for admission after the last step (engine-wide).")
                 .Register(r)
                 .Add(engine_labels);
  kv_used = &prometheus::BuildGauge()
                 .Name("loopserve_kv_blocks_used")
                 .Help("KV cache blocks in use after the last step (engine-wide).")
                 .Register(r)
                 .Add(engine_labels);
  kv_total = &prometheus::BuildGauge()
                  .Name("loopserve_kv_blocks_capacity")
                  .Help("KV cache blocks in the pool (engine-wide).")
                  .Register(r)
                  .Add(engine_labels);
  batch_size = &prometheus::BuildGauge()
                    .Name("loopserve_batch_size")
                    .Help("Tokens (prefill + decode) in the last engine step (engine-wide).")
                    .Register(r)
                    .Add(engine_labels);
  stream_write_timeouts =
      &prometheus::BuildCounter()
           .Name("loopserve_stream_write_timeouts_total")
           .Help(
               "GenerateStream calls cancelled because the client left a write unread for "
               "limits.stream_write_timeout_seconds.")
           .Register(r)
           .Add(engine_labels);
  Family<Counter>& tls_reloads =
      prometheus::BuildCounter()
          .Name("loopserve_tls_reloads_total")
          .Help(
              "Changes of the TLS files found by tls.reload_interval_seconds, by result: ok "
              "(installed) or error (refused; the previous certificate stays).")
          .Register(r);
  tls_reloads_ok = &tls_reloads.Add({{"model", model}, {"result", "ok"}});
  tls_reloads_failed = &tls_reloads.Add({{"model", model}, {"result", "error"}});
  tls_expiry_family = &prometheus::BuildGauge()
                           .Name("loopserve_tls_certificate_expiry_timestamp_seconds")
                           .Help("notAfter of the server certificate in service (Unix seconds).")
                           .Register(r);
  Family<Counter>& reloads =
      prometheus::BuildCounter()
          .Name("loopserve_config_reloads_total")
          .Help("Config reloads (SIGHUP) by result: ok, or error (the running config stays).")
          .Register(r);
  reloads_ok = &reloads.Add({{"model", model}, {"result", "ok"}});
  reloads_failed = &reloads.Add({{"model", model}, {"result", "error"}});
  // As Prometheus' own prometheus_config_last_reload_successful: 1 until a
  // reload fails, so an alert can catch a config that no longer parses.
  last_reload_ok = &prometheus::BuildGauge()
                        .Name("loopserve_config_last_reload_successful")
                        .Help("1 when the last config reload succeeded (or none was tried), else 0.")
                        .Register(r)
                        .Add(engine_labels);
  last_reload_ok->Set(1);
}

Histogram::BucketBoundaries ServerMetrics::Impl::ExitLoopBuckets() const {
  Histogram::BucketBoundaries buckets;
  for (int l = 1; l <= num_loops; ++l) buckets.push_back(l);
  return buckets;
}

std::string ServerMetrics::Impl::DeploymentLabel(const std::string& deployment) {
  // Bounded cardinality: names a client made up share one series.
  if (!known_deployments.empty() && known_deployments.count(deployment) == 0) return "unknown";
  return deployment;
}

ServerMetrics::Impl::RequestSeries& ServerMetrics::Impl::Series(const std::string& deployment,
                                                                const std::string& policy) {
  auto [it, inserted] = series.try_emplace({deployment, policy});
  RequestSeries& s = it->second;
  if (!inserted) return s;
  const Labels labels = {{"deployment", deployment}, {"model", model}, {"policy", policy}};
  s.ttft = &ttft->Add(labels, LatencyBuckets());
  s.tpot = &tpot->Add(labels, LatencyBuckets());
  s.duration = &duration->Add(labels, LatencyBuckets());
  s.queue_wait = &queue_wait->Add(labels, LatencyBuckets());
  s.exit_loop = &exit_loop->Add(labels, ExitLoopBuckets());
  s.prompt_tokens = &prompt_tokens->Add(labels);
  s.generated_tokens = &generated_tokens->Add(labels);
  s.loops_executed = &loops_executed->Add(labels);
  s.loops_skipped = &loops_skipped->Add(labels);
  s.flops_done = &flops_done->Add(labels);
  s.flops_full = &flops_full->Add(labels);
  return s;
}

absl::StatusOr<std::unique_ptr<ServerMetrics>> ServerMetrics::Create(
    const std::string& listen_address, const std::string& model_name, int num_loops) {
  if (num_loops < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics: num_loops must be >= 1, got ", num_loops));
  }
  const size_t colon = listen_address.rfind(':');
  if (colon == std::string::npos || colon + 1 == listen_address.size()) {
    return absl::InvalidArgumentError(absl::StrCat("metrics: listen address `", listen_address,
                                                   "` is not host:port (e.g. 0.0.0.0:9464)"));
  }
  auto impl = std::make_unique<Impl>();
  impl->model = model_name;
  impl->num_loops = num_loops;
  impl->host = listen_address.substr(0, colon);
  impl->registry = std::make_shared<prometheus::Registry>();
  impl->BuildFamilies();
  try {
    // civetweb takes "host:port"; two workers: a scrape never waits behind a slow one.
    impl->exposer = std::make_unique<prometheus::Exposer>(listen_address, /*num_threads=*/2);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("metrics: cannot listen on `", listen_address, "`: ", e.what()));
  }
  if (impl->exposer->GetListeningPorts().empty()) {
    return absl::UnavailableError(
        absl::StrCat("metrics: exposer on `", listen_address, "` has no listening port"));
  }
  impl->exposer->RegisterCollectable(impl->registry);
  return std::unique_ptr<ServerMetrics>(new ServerMetrics(std::move(impl)));
}

ServerMetrics::ServerMetrics(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ServerMetrics::~ServerMetrics() {
  // Stop serving scrapes before the registry and series go away. (civetweb's
  // shutdown takes ~2 s once it has served a connection.)
  if (impl_ != nullptr) impl_->exposer.reset();
}

void ServerMetrics::SetKnownDeployments(const std::vector<std::string>& deployments) {
  absl::MutexLock lock(&impl_->mu);
  impl_->known_deployments = std::set<std::string>(deployments.begin(), deployments.end());
}

void ServerMetrics::RecordRequest(const std::string& deployment, const std::string& policy,
                                  absl::StatusCode code, const RequestEvent& final_event,
                                  const std::vector<int>& exit_loops) {
  const Usage& usage = final_event.usage;
  const RequestTiming& timing = final_event.timing;
  absl::MutexLock lock(&impl_->mu);
  const std::string dep = impl_->DeploymentLabel(deployment);
  Impl::RequestSeries& s = impl_->Series(dep, policy);

  impl_->requests
      ->Add({{"deployment", dep},
             {"model", impl_->model},
             {"policy", policy},
             {"status", StatusLabel(code)},
             {"finish_reason", FinishReasonName(final_event.finish_reason)}})
      .Increment();

  s.duration->Observe(std::max(0.0, timing.total_seconds));
  // A request cancelled while queued never got a step: no queue wait, no TTFT.
  const bool scheduled = timing.queue_seconds > 0 || !exit_loops.empty() ||
                         usage.completion_tokens > 0 || usage.loops_executed > 0;
  if (scheduled) s.queue_wait->Observe(std::max(0.0, timing.queue_seconds));
  const int64_t generated =
      std::max<int64_t>(usage.completion_tokens, static_cast<int64_t>(exit_loops.size()));
  if (generated >= 1) s.ttft->Observe(std::max(0.0, timing.first_token_seconds));
  if (generated >= 2) s.tpot->Observe(std::max(0.0, timing.per_token_seconds));

  if (!exit_loops.empty()) {
    // Buckets le=1..L plus +Inf; a 0-based exit loop e ran e+1 loops.
    const int num_loops = impl_->num_loops;
    std::vector<double> increments(static_cast<size_t>(num_loops) + 1, 0.0);
    double sum = 0;
    for (int exit_loop : exit_loops) {
      const int loops = exit_loop + 1;
      LOOPSERVE_CHECK(loops >= 1);
      increments[static_cast<size_t>(std::min(loops, num_loops + 1) - 1)] += 1;
      sum += loops;
    }
    s.exit_loop->ObserveMultiple(increments, sum);
  }

  s.prompt_tokens->Increment(static_cast<double>(std::max<int64_t>(0, usage.prompt_tokens)));
  s.generated_tokens->Increment(static_cast<double>(std::max<int64_t>(0, generated)));
  s.loops_executed->Increment(static_cast<double>(std::max<int64_t>(0, usage.loops_executed)));
  s.loops_skipped->Increment(
      static_cast<double>(std::max<int64_t>(0, usage.loops_full - usage.loops_executed)));
  s.flops_done->Increment(std::max(0.0, usage.flops_done));
  s.flops_full->Increment(std::max(0.0, usage.flops_full));
}

void ServerMetrics::RecordRejected(const std::string& deployment, absl::StatusCode code) {
  absl::MutexLock lock(&impl_->mu);
  impl_->requests
      ->Add({{"deployment", impl_->DeploymentLabel(deployment)},
             {"model", impl_->model},
             {"policy", ""},
             {"status", StatusLabel(code)},
             {"finish_reason", "none"}})
      .Increment();
}

void ServerMetrics::RecordStreamWriteTimeout() { impl_->stream_write_timeouts->Increment(); }

void ServerMetrics::RecordTlsReload(bool ok) {
  (ok ? impl_->tls_reloads_ok : impl_->tls_reloads_failed)->Increment();
}

void ServerMetrics::SetTlsCertificateExpiry(int64_t not_after_unix_seconds) {
  // Only with TLS on and a readable date: no series at all otherwise.
  if (not_after_unix_seconds <= 0) return;
  impl_->tls_expiry_family->Add({{"model", impl_->model}})
      .Set(static_cast<double>(not_after_unix_seconds));
}

void ServerMetrics::RecordConfigReload(bool ok) {
  (ok ? impl_->reloads_ok : impl_->reloads_failed)->Increment();
  impl_->last_reload_ok->Set(ok ? 1 : 0);
}

void ServerMetrics::ObserveStep(const StepStats& stats) {
  impl_->running->Set(static_cast<double>(stats.running));
  impl_->waiting->Set(static_cast<double>(stats.waiting));
  impl_->kv_used->Set(static_cast<double>(stats.kv_blocks_used));
  impl_->kv_total->Set(static_cast<double>(stats.kv_blocks_total));
  impl_->batch_size->Set(static_cast<double>(stats.batch_tokens));
  absl::MutexLock lock(&impl_->mu);
  // preemptions_total is the engine's running count; export its increase.
  const int64_t delta = stats.preemptions_total - impl_->last_preemptions;
  if (delta > 0) impl_->preemptions->Increment(static_cast<double>(delta));
  impl_->last_preemptions = stats.preemptions_total;
}

std::string ServerMetrics::address() const {
  const std::vector<int> ports = impl_->exposer->GetListeningPorts();
  return absl::StrCat(impl_->host, ":", ports.empty() ? 0 : ports.front());
}

}  // namespace loopserve
