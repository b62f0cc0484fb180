#include "tools/bench/load_driver.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace loopserve::bench {
namespace {

using BenchClock = std::chrono::steady_clock;

// Shared stop rule: request index `i` may start at time `now`.
class Budget {
 public:
  Budget(const BenchConfig& config, BenchClock::time_point start)
      : num_requests_(config.num_requests),
        end_(config.duration_s > 0 ? start + std::chrono::duration_cast<BenchClock::duration>(
                                                 std::chrono::duration<double>(config.duration_s))
                                   : BenchClock::time_point::max()) {}
  bool Allows(int64_t index, BenchClock::time_point now) const {
    return (num_requests_ == 0 || index < num_requests_) && now < end_;
  }

 private:
  int64_t num_requests_;
  BenchClock::time_point end_;
};

}  // namespace

double RunClosedLoop(const BenchConfig& config, const Workload& workload, BenchClient& client,
                     StatsCollector& stats) {
  const auto start = BenchClock::now();
  const Budget budget(config, start);
  std::atomic<int64_t> next{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < config.concurrency; ++c) {
    clients.emplace_back([&] {
      while (true) {
        const int64_t index = next.fetch_add(1);
        if (!budget.Allows(index, BenchClock::now())) return;
        stats.Add(client.Send(workload.Make(index)));
      }
    });
  }
  for (std::thread& t : clients) t.join();
  return std::chrono::duration<double>(BenchClock::now() - start).count();
}

double RunOpenLoop(const BenchConfig& config, const Workload& workload, BenchClient& client,
                   StatsCollector& stats) {
  Workload::Arrivals arrivals = workload.MakeArrivals();
  std::mutex mu;
  std::condition_variable below_cap;
  int inflight = 0;
  std::vector<std::thread> senders;
  const auto start = BenchClock::now();
  const Budget budget(config, start);
  auto due = start;
  for (int64_t index = 0;; ++index) {
    due += std::chrono::duration_cast<BenchClock::duration>(
        std::chrono::duration<double>(index == 0 ? 0.0 : arrivals.NextGap()));
    if (!budget.Allows(index, due)) break;
    std::this_thread::sleep_until(due);
    {
      // Past the cap the generator falls behind the schedule (reported as a
      // lower achieved rate) rather than spawning without bound.
      std::unique_lock<std::mutex> lock(mu);
      below_cap.wait(lock, [&] { return inflight < config.max_inflight; });
      ++inflight;
    }
    senders.emplace_back([&, index] {
      stats.Add(client.Send(workload.Make(index)));
      std::lock_guard<std::mutex> lock(mu);
      --inflight;
      below_cap.notify_one();
    });
  }
  for (std::thread& t : senders) t.join();
  return std::chrono::duration<double>(BenchClock::now() - start).count();
}

}  // namespace loopserve::bench
