// Watches the server under soak from a background thread: resident memory
// (VmRSS), KV blocks in use and liveness, sampled every `period`.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "tools/soak/server_child.h"

namespace loopserve::soak {

class ServerMonitor {
 public:
  ServerMonitor(ServerChild* server, std::chrono::milliseconds period);
  ~ServerMonitor();  // stops the thread

  struct Figures {
    int64_t rss_first_kib = 0;  // first sample
    int64_t rss_last_kib = 0;   // latest sample
    int64_t rss_peak_kib = 0;
    int64_t kv_peak_blocks = 0;
    int64_t kv_last_blocks = -1;
    int64_t samples = 0;
    bool died = false;  // the server process ended while watched
  };
  Figures figures() const;

 private:
  void Run();

  ServerChild* server_;
  std::chrono::milliseconds period_;
  mutable absl::Mutex mu_;
  Figures figures_ ABSL_GUARDED_BY(mu_);
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace loopserve::soak
