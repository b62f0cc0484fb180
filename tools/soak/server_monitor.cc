#include "tools/soak/server_monitor.h"

#include <algorithm>

#include "tools/soak/metrics_scrape.h"

namespace loopserve::soak {

ServerMonitor::ServerMonitor(ServerChild* server, std::chrono::milliseconds period)
    : server_(server), period_(period) {
  thread_ = std::thread([this] { Run(); });
}

ServerMonitor::~ServerMonitor() {
  stop_.Notify();
  thread_.join();
}

ServerMonitor::Figures ServerMonitor::figures() const {
  absl::MutexLock lock(&mu_);
  return figures_;
}

void ServerMonitor::Run() {
  do {
    if (!server_->Alive()) {
      absl::MutexLock lock(&mu_);
      figures_.died = true;
      return;
    }
    absl::StatusOr<int64_t> rss = server_->RssKib();
    int64_t kv = -1;
    if (!server_->metrics_address().empty()) {
      absl::StatusOr<MetricsSnapshot> m = MetricsSnapshot::Scrape(server_->metrics_address());
      if (m.ok()) kv = static_cast<int64_t>(m->Sum("loopserve_kv_blocks_used"));
    }
    absl::MutexLock lock(&mu_);
    Figures& f = figures_;
    if (rss.ok()) {
      if (f.samples == 0) f.rss_first_kib = *rss;
      f.rss_last_kib = *rss;
      f.rss_peak_kib = std::max(f.rss_peak_kib, *rss);
    }
    if (kv >= 0) {
      f.kv_last_blocks = kv;
      f.kv_peak_blocks = std::max(f.kv_peak_blocks, kv);
    }
    ++f.samples;
  } while (!stop_.WaitForNotificationWithTimeout(absl::FromChrono(period_)));
}

}  // namespace loopserve::soak
