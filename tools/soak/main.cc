// loopserve-soak: a bounded soak and fault test of loopserve-server on
// loopback. Starts the server from its binary and a config with several
// deployments and a small KV pool, computes the greedy reference of every
// prompt template on the idle server, then sends a fixed number of requests
// from concurrent workers: unary and streaming, client cancels, short
// deadlines, malformed requests, undecodable bytes, bursts past the queue
// limit, prompts that overfill the KV pool, live exit-policy changes and
// slow readers, and ends with a SIGTERM drain. Exits non-zero when any
// assertion fails (see docs/reliability.md "Soak").
//   loopserve-soak --server build/server/loopserve-server --config deploy/soak.json
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "nlohmann/json.hpp"
#include "tools/soak/drain_phase.h"
#include "tools/soak/server_monitor.h"
#include "tools/soak/slow_readers.h"
#include "tools/soak/soak_report.h"

ABSL_FLAG(std::string, server, "", "path of the loopserve-server binary");
ABSL_FLAG(std::string, config, "deploy/soak.json", "server config (deployments, small KV pool)");
ABSL_FLAG(std::string, model, "", "model directory (overrides the config's model_dir)");
ABSL_FLAG(int, threads, 0, "server CPU threads (0 = the config's)");
ABSL_FLAG(int64_t, requests, 10000, "planned requests (a burst counts once, sends burst_size)");
ABSL_FLAG(int, concurrency, 12, "concurrent client workers");
ABSL_FLAG(int, templates, 24, "distinct prompt templates (a quarter of them long)");
ABSL_FLAG(int, burst_size, 24, "requests per burst (every 250th planned request)");
ABSL_FLAG(int, slow_readers, 3, "streams left unread during the load (the last is abandoned)");
ABSL_FLAG(int, policy_flip_ms, 150, "period of live exit-policy changes on the live deployment");
ABSL_FLAG(int, drain_streams, 6, "streams in flight at the SIGTERM");
ABSL_FLAG(uint64_t, seed, 1, "workload seed");
ABSL_FLAG(double, max_seconds, 1800, "hard time bound of the load phase");
ABSL_FLAG(double, warmup_fraction, 0.1, "share of the load after which RSS is the baseline");
ABSL_FLAG(double, max_rss_growth_mib, 64, "allowed VmRSS growth from warm-up to the end (MiB)");
ABSL_FLAG(bool, exact_after_preemption, true,
          "compare preempted replies of early-exit deployments exactly too (false: count them "
          "as drift; the engine recomputes preempted tokens at full depth)");
ABSL_FLAG(bool, require_preemption, true, "fail when the KV pool never forced a preemption");
ABSL_FLAG(std::string, server_log, "/tmp/loopserve-soak-server.log", "server stderr (JSON logs)");
ABSL_FLAG(std::string, summary_json, "", "also write the summary as JSON here");

namespace loopserve::soak {
namespace {

using SteadyClock = std::chrono::steady_clock;

v1::ExitPolicy LivePolicy(bool b) {
  v1::ExitPolicy p;
  if (!b) {
    p.set_criterion("never");
  } else {
    // An early-exit policy that does exit on the demo model, filling skipped
    // loops' K/V by propagation (the other deployments use reuse).
    p.set_criterion("max_prob");
    p.set_threshold(0.5);
    p.set_min_loops(1);
    p.set_kv_fill("propagate");
  }
  return p;
}

// One unary greedy request per (variant, template) on the idle server.
absl::Status ComputeReferences(SoakClient& client, const SoakPlan& plan, int num_loops,
                               const std::vector<std::string>& deployments,
                               const std::string& variant_prefix, References& refs) {
  for (const std::string& d : deployments) {
    for (int t = 0; t < static_cast<int>(plan.templates().size()); ++t) {
      RequestSpec spec;
      spec.index = -1 - t;
      spec.deployment = d;
      spec.template_index = t;
      const Outcome o = client.Unary(spec, client.ValidRequest(spec), 60'000);
      if (o.code != 0 || !o.shape_error.empty()) {
        return absl::InternalError(absl::StrCat("reference of template ", t, " on ", d, ": ",
                                                CodeLabel(o.code), " ", o.message, o.shape_error));
      }
      // Alone on the server nothing is preempted: usage must count exactly
      // the prompt and every token but the last (what WasRecomputed assumes).
      if (o.usage_loops_full_depth !=
          (o.usage_prompt_tokens + static_cast<int64_t>(o.tokens.size()) - 1) * num_loops) {
        return absl::InternalError(absl::StrCat("reference of template ", t, " on ", d,
                                                ": usage.loops_full_depth ",
                                                o.usage_loops_full_depth, " for ",
                                                o.usage_prompt_tokens, " prompt tokens and ",
                                                o.tokens.size(), " generated"));
      }
      refs.Set(variant_prefix.empty() ? d : variant_prefix, t, o.tokens);
    }
  }
  return absl::OkStatus();
}

// The ids among `ids` that have no "request finished" line in the log.
std::vector<std::string> UnfinishedInLog(const std::string& log_path,
                                         const std::vector<std::string>& ids) {
  std::ifstream in(log_path);
  std::set<std::string> missing(ids.begin(), ids.end());
  std::string line;
  while (std::getline(in, line)) {
    if (line.find("\"request finished\"") == std::string::npos) continue;
    for (auto it = missing.begin(); it != missing.end();) {
      if (line.find(absl::StrCat("\"request_id\":\"", *it, "\"")) != std::string::npos) {
        it = missing.erase(it);
      } else {
        ++it;
      }
    }
  }
  return {missing.begin(), missing.end()};
}

// Waits until the engine is idle and every counter has settled: KV blocks,
// running and waiting at 0, and two scrapes in a row with equal totals.
absl::StatusOr<MetricsSnapshot> ScrapeWhenIdle(const std::string& address, double timeout_s) {
  const auto until = SteadyClock::now() + std::chrono::duration<double>(timeout_s);
  double last_total = -1;
  absl::StatusOr<MetricsSnapshot> m = absl::UnavailableError("no scrape");
  while (SteadyClock::now() < until) {
    m = MetricsSnapshot::Scrape(address);
    if (m.ok()) {
      const double total = m->Sum("loopserve_requests_total");
      const bool idle = m->Sum("loopserve_kv_blocks_used") == 0 &&
                        m->Sum("loopserve_requests_running") == 0 &&
                        m->Sum("loopserve_requests_waiting") == 0;
      if (idle && total == last_total) return m;
      last_total = total;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  return m;  // not idle in time: the caller reports what it saw
}

int Main() {
  const std::string binary = absl::GetFlag(FLAGS_server);
  if (binary.empty()) {
    std::fprintf(stderr, "--server is required (the loopserve-server binary)\n");
    return 2;
  }
  SoakReport report;
  report.started_at = NowUtc();
  const auto t0 = SteadyClock::now();
  std::vector<std::string> args = {"--config", absl::GetFlag(FLAGS_config), "--listen",
                                   "127.0.0.1:0", "--metrics_listen", "127.0.0.1:0"};
  if (!absl::GetFlag(FLAGS_model).empty()) {
    args.insert(args.end(), {"--model", absl::GetFlag(FLAGS_model)});
  }
  if (absl::GetFlag(FLAGS_threads) > 0) {
    args.insert(args.end(), {"--threads", absl::StrCat(absl::GetFlag(FLAGS_threads))});
  }
  auto server = ServerChild::Start(binary, args, absl::GetFlag(FLAGS_server_log),
                                   std::chrono::seconds(120));
  if (!server.ok()) {
    std::fprintf(stderr, "%s\n", std::string(server.status().message()).c_str());
    return 1;
  }
  ServerChild& child = **server;
  ServerMonitor monitor(&child, std::chrono::milliseconds(200));
  auto channel = grpc::CreateChannel(child.address(), grpc::InsecureChannelCredentials());

  // The model and the deployments' limits shape the plan.
  PlanOptions po;
  po.seed = absl::GetFlag(FLAGS_seed);
  po.num_templates = absl::GetFlag(FLAGS_templates);
  po.burst_size = absl::GetFlag(FLAGS_burst_size);
  SoakClient probe(channel, nullptr);
  absl::StatusOr<v1::ModelInfoResponse> info = probe.ModelInfo();
  absl::StatusOr<v1::ListDeploymentsResponse> list = probe.ListDeployments();
  if (!info.ok() || !list.ok()) {
    std::fprintf(stderr, "cannot query the server: %s\n",
                 std::string((info.ok() ? list.status() : info.status()).message()).c_str());
    return 1;
  }
  po.vocab_size = info->vocab_size();
  po.context = nlohmann::json::parse(info->config_json())["max_position_embeddings"].get<int>();
  report.kv_blocks_total = info->kv_blocks_total();
  TallyOptions tally_options;
  tally_options.num_loops = info->num_loops();
  tally_options.exact_after_preemption = absl::GetFlag(FLAGS_exact_after_preemption);
  for (const std::string name : {"full", "fast", "calib", "live"}) {
    bool found = false;
    for (const v1::DeploymentInfo& d : list->deployments()) {
      if (d.name() != name) continue;
      found = true;
      const v1::ExitPolicy& p = d.exit_policy();
      if (p.criterion() == "never" && (p.max_loops() == 0 || p.max_loops() == info->num_loops())) {
        tally_options.full_depth.insert(name);
      }
      if (name == std::string("calib")) {
        po.deployments.faulty_max_prompt_tokens = d.max_prompt_tokens();
      }
      if (name == std::string("full")) po.deployments.max_tokens_limit = d.max_tokens_limit();
    }
    if (!found) {
      std::fprintf(stderr, "the soak config must define deployment `%s`\n", name.c_str());
      return 2;
    }
  }
  const SoakPlan plan(po);
  SoakClient client(channel, &plan);

  // References, one request at a time on the idle server.
  References refs;
  std::vector<std::string> checked = po.deployments.clean;
  checked.push_back(po.deployments.faulty);
  const std::string live = po.deployments.live;
  const int num_loops = info->num_loops();
  absl::Status refs_status = ComputeReferences(client, plan, num_loops, checked, "", refs);
  for (bool b : {true, false}) {  // ends on policy A
    if (!refs_status.ok()) break;
    refs_status = client.SetExitPolicy(live, LivePolicy(b));
    if (refs_status.ok()) {
      refs_status =
          ComputeReferences(client, plan, num_loops, {live}, b ? "live@B" : "live@A", refs);
    }
  }
  if (!refs_status.ok()) {
    std::fprintf(stderr, "%s\n", std::string(refs_status.message()).c_str());
    return 1;
  }
  report.reference_seconds = std::chrono::duration<double>(SteadyClock::now() - t0).count();

  absl::StatusOr<MetricsSnapshot> before = MetricsSnapshot::Scrape(child.metrics_address());
  if (!before.ok()) {
    std::fprintf(stderr, "metrics: %s\n", std::string(before.status().message()).c_str());
    return 1;
  }
  report.rss_start_kib = monitor.figures().rss_last_kib;
  const auto load_start = SteadyClock::now();

  // Slow readers: opened now, read only after the load.
  int slow_template = 0;
  for (int t = 0; t < static_cast<int>(plan.templates().size()); ++t) {
    if (plan.templates()[t].max_tokens > plan.templates()[slow_template].max_tokens) {
      slow_template = t;
    }
  }
  auto slow = std::make_unique<SlowReaders>(child.address(), client, po.deployments.faulty,
                                            slow_template, absl::GetFlag(FLAGS_slow_readers));

  // Live policy changes on the live deployment.
  std::atomic<bool> load_done{false};
  std::atomic<int64_t> flips{0}, flip_errors{0};
  std::thread flipper([&] {
    bool b = false;
    while (!load_done.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(absl::GetFlag(FLAGS_policy_flip_ms)));
      b = !b;
      if (client.SetExitPolicy(live, LivePolicy(b)).ok()) {
        ++flips;
      } else {
        ++flip_errors;
      }
    }
    if (!client.SetExitPolicy(live, LivePolicy(false)).ok()) ++flip_errors;
  });

  // The load.
  Tally tally(tally_options);
  const int64_t planned = absl::GetFlag(FLAGS_requests);
  const double max_seconds = absl::GetFlag(FLAGS_max_seconds);
  std::atomic<int64_t> next{0}, done{0};
  std::atomic<bool> timed_out{false};
  std::vector<std::thread> workers;
  for (int w = 0; w < absl::GetFlag(FLAGS_concurrency); ++w) {
    workers.emplace_back([&] {
      for (;;) {
        const int64_t i = next.fetch_add(1);
        if (i >= planned || monitor.figures().died) return;
        if (std::chrono::duration<double>(SteadyClock::now() - load_start).count() > max_seconds) {
          timed_out.store(true);
          return;
        }
        for (const Outcome& o : client.Run(plan.SpecFor(i))) {
          tally.Record(o, refs, "live@A", "live@B");
        }
        done.fetch_add(1);
      }
    });
  }
  const int64_t warm = static_cast<int64_t>(planned * absl::GetFlag(FLAGS_warmup_fraction));
  bool warm_recorded = false;
  int64_t last_progress = -1;
  while (done.load() < planned && !timed_out.load() && !monitor.figures().died) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (!warm_recorded && done.load() >= warm) {
      warm_recorded = true;
      report.rss_warm_kib = monitor.figures().rss_last_kib;
    }
    const int64_t progress = done.load() * 10 / std::max<int64_t>(planned, 1);
    if (progress != last_progress) {
      last_progress = progress;
      std::fprintf(stderr, "soak: %lld/%lld planned requests done\n",
                   static_cast<long long>(done.load()), static_cast<long long>(planned));
    }
  }
  for (std::thread& t : workers) t.join();
  load_done.store(true);
  flipper.join();
  // The engine must have finished the unread streams long ago: it queues
  // their output instead of waiting for the client.
  std::vector<std::string> stalled_unfinished =
      UnfinishedInLog(absl::GetFlag(FLAGS_server_log), slow->request_ids());
  for (const Outcome& o : slow->Finish()) {
    tally.Record(o, refs, "live@A", "live@B");
    if (o.code == static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED)) {
      // Refused at admission (queue full): it never ran, so no log line.
      std::erase(stalled_unfinished, absl::StrCat("soak-", o.spec.index));
    }
  }
  slow.reset();
  report.load_seconds = std::chrono::duration<double>(SteadyClock::now() - load_start).count();
  report.policy_flips = flips.load();

  // After the load: idle engine, KV back to 0, counters against the client.
  std::vector<std::string> violations;
  auto violate = [&](const std::string& v) { violations.push_back(v); };
  for (const std::string& id : stalled_unfinished) {
    violate(absl::StrCat("slow reader ", id, ": the engine did not finish it while it was unread"));
  }
  report.slow_readers = absl::GetFlag(FLAGS_slow_readers);
  if (timed_out.load()) violate(absl::StrCat("load not finished within --max_seconds"));
  if (flip_errors.load() > 0) violate(absl::StrCat(flip_errors.load(), " SetExitPolicy failed"));
  absl::StatusOr<MetricsSnapshot> after = ScrapeWhenIdle(child.metrics_address(), 20);
  ServerMonitor::Figures fig = monitor.figures();
  if (fig.died || !child.Alive()) {
    violate(absl::StrCat("server died during the load: ", child.exit_description()));
  }
  if (!after.ok()) {
    violate(absl::StrCat("final scrape: ", after.status().message()));
  } else {
    report.kv_final_blocks = static_cast<int64_t>(after->Sum("loopserve_kv_blocks_used"));
    if (report.kv_final_blocks != 0 || after->Sum("loopserve_requests_running") != 0 ||
        after->Sum("loopserve_requests_waiting") != 0) {
      violate(absl::StrCat("engine not idle after the load: kv_blocks_used ",
                           report.kv_final_blocks));
    }
    report.preemptions = static_cast<int64_t>(after->Sum("loopserve_preemptions_total") -
                                              before->Sum("loopserve_preemptions_total"));
    for (const std::string& v :
         CheckMetricsAgreement(*before, *after, tally.deployments(), report.metrics_lines)) {
      violate(v);
    }
  }
  if (absl::GetFlag(FLAGS_require_preemption) && report.preemptions == 0) {
    violate("no preemption: the KV pool never ran out (config too large for the load?)");
  }
  fig = monitor.figures();
  report.rss_end_kib = fig.rss_last_kib;
  report.rss_peak_kib = fig.rss_peak_kib;
  report.kv_peak_blocks = fig.kv_peak_blocks;
  const double growth_mib = (report.rss_end_kib - report.rss_warm_kib) / 1024.0;
  if (growth_mib > absl::GetFlag(FLAGS_max_rss_growth_mib)) {
    violate(absl::StrCat("VmRSS grew ", growth_mib, " MiB after warm-up (limit ",
                         absl::GetFlag(FLAGS_max_rss_growth_mib), ")"));
  }
  report.load = tally.counts();

  // SIGTERM with streams in flight (long prompts on a clean deployment).
  Tally drain_tally(tally_options);
  std::vector<int> drain_templates;
  for (int t = 0; t < static_cast<int>(plan.templates().size()) &&
                  static_cast<int>(drain_templates.size()) < absl::GetFlag(FLAGS_drain_streams);
       ++t) {
    if (plan.templates()[t].max_tokens >= 16) drain_templates.push_back(t);
  }
  if (child.Alive()) {
    report.drain = RunDrainPhase(child, client, refs, po.deployments.clean.front(),
                                 drain_templates, 60, absl::GetFlag(FLAGS_server_log),
                                 drain_tally);
    for (const std::string& v : report.drain.violations) violate(v);
  }
  report.duration_seconds = std::chrono::duration<double>(SteadyClock::now() - t0).count();
  for (const std::string& v : tally.first_violations()) violate(v);
  if (report.load.violations > static_cast<int64_t>(tally.first_violations().size())) {
    violate(absl::StrCat(report.load.violations, " request violations in all (first ",
                         tally.first_violations().size(), " listed)"));
  }
  report.violations = violations;
  report.planned = planned;
  report.concurrency = absl::GetFlag(FLAGS_concurrency);
  PrintReport(report, stdout);
  if (!absl::GetFlag(FLAGS_summary_json).empty()) {
    WriteReportJson(report, absl::GetFlag(FLAGS_summary_json));
  }
  return violations.empty() ? 0 : 1;
}

}  // namespace
}  // namespace loopserve::soak

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "loopserve-soak --server PATH/loopserve-server [--config deploy/soak.json] [flags]");
  absl::ParseCommandLine(argc, argv);
  return loopserve::soak::Main();
}
