#include "tools/soak/drain_phase.h"

#include <atomic>
#include <fstream>
#include <set>
#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "grpcpp/client_context.h"

namespace loopserve::soak {
namespace {

constexpr int64_t kFirstDrainIndex = 2'000'000'000;
constexpr int kDrainSenders = 4;
constexpr int kMaxRequestsPerSender = 5000;

// Request ids named by any line of the server's log.
std::set<std::string> RequestIdsInLog(const std::string& path) {
  std::set<std::string> ids;
  std::ifstream in(path);
  std::string line;
  const std::string key = "\"request_id\":\"";
  while (std::getline(in, line)) {
    const size_t at = line.find(key);
    if (at == std::string::npos) continue;
    const size_t from = at + key.size();
    ids.insert(line.substr(from, line.find('"', from) - from));
  }
  return ids;
}

}  // namespace

DrainResult RunDrainPhase(ServerChild& server, SoakClient& client, const References& refs,
                          const std::string& deployment, const std::vector<int>& templates,
                          double wait_for_exit_seconds, const std::string& server_log,
                          Tally& tally) {
  DrainResult result;
  result.in_flight = static_cast<int>(templates.size());
  // Streams that are running when the signal comes: each signals once it has
  // its first message, and the signal waits for all of them.
  std::vector<Outcome> streamed(templates.size());
  std::vector<std::unique_ptr<absl::Notification>> started;
  std::vector<std::thread> threads;
  for (size_t i = 0; i < templates.size(); ++i) {
    started.push_back(std::make_unique<absl::Notification>());
    threads.emplace_back([&, i] {
      RequestSpec spec;
      spec.index = kFirstDrainIndex + static_cast<int64_t>(i);
      spec.kind = RequestKind::kStream;
      spec.stream = true;
      spec.deployment = deployment;
      spec.template_index = templates[i];
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(2));
      auto reader = client.StartStream(client.ValidRequest(spec), &ctx);
      streamed[i] = client.ReadStream(spec, &ctx, reader.get(), -1, started[i].get());
    });
  }
  for (auto& s : started) s->WaitForNotificationWithTimeout(absl::Seconds(60));
  const auto signalled = std::chrono::steady_clock::now();
  server.SendSigterm();
  // New requests while the server drains and after it is gone, back to back
  // from several threads so that some land in every phase of the shutdown.
  std::vector<Outcome> after;
  absl::Mutex after_mu;
  std::vector<std::thread> senders;
  for (int s = 0; s < kDrainSenders; ++s) {
    senders.emplace_back([&, s] {
      for (int i = 0; i < kMaxRequestsPerSender && server.Alive(); ++i) {
        RequestSpec spec;
        spec.index = kFirstDrainIndex + 1000 + s * kMaxRequestsPerSender + i;
        spec.kind = RequestKind::kUnary;
        spec.deployment = deployment;
        spec.template_index = templates[static_cast<size_t>(i) % templates.size()];
        Outcome o = client.Unary(spec, client.ValidRequest(spec), 10'000);
        absl::MutexLock lock(&after_mu);
        after.push_back(std::move(o));
      }
    });
  }
  for (std::thread& t : senders) t.join();
  for (std::thread& t : threads) t.join();
  const bool exited = server.WaitForExit(std::chrono::milliseconds(
      static_cast<int64_t>(wait_for_exit_seconds * 1000)));
  result.exit_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - signalled).count();
  result.exit = server.exit_description();
  if (!exited || server.exit_code() != 0) {
    result.violations.push_back(absl::StrCat("drain: server ", result.exit, " after SIGTERM"));
  }
  for (const Outcome& o : streamed) {
    result.in_flight_ok += o.code == 0;
    const std::string v = tally.Record(o, refs, "", "");
    if (!v.empty() || o.code != 0) {
      result.violations.push_back(absl::StrCat("drain: in-flight stream ", o.spec.index, ": ",
                                               v.empty() ? CodeLabel(o.code) + " " + o.message
                                                         : v));
    }
  }
  int bad_after = 0;
  const std::set<std::string> seen = RequestIdsInLog(server_log);
  for (const Outcome& o : after) {
    ++result.after_signal;
    if (o.code == static_cast<int>(grpc::StatusCode::UNAVAILABLE)) {
      ++result.after_unavailable;  // refused: the documented answer while draining
      continue;
    }
    if (o.code == static_cast<int>(grpc::StatusCode::CANCELLED) &&
        seen.count(absl::StrCat("soak-", o.spec.index)) == 0) {
      // Arrived while gRPC itself was stopping: gRPC cancels calls that no
      // handler has taken yet. loopserve never admitted it, so nothing of it
      // was lost; a client retries it like UNAVAILABLE.
      ++result.after_cut;
      continue;
    }
    result.after_ok += o.code == 0;
    const std::string v = tally.Record(o, refs, "", "");
    if (!v.empty() && ++bad_after <= 3) {
      result.violations.push_back(absl::StrCat("drain: request after SIGTERM: ", v));
    }
  }
  if (bad_after > 3) {
    result.violations.push_back(
        absl::StrCat("drain: ", bad_after, " requests after SIGTERM neither OK nor UNAVAILABLE"));
  }
  return result;
}

}  // namespace loopserve::soak
