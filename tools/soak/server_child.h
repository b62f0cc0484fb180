// The server under soak as a child process of the soak tool: started from
// its binary and config, its gRPC and metrics addresses read from its
// "loopserve listening on ..." line, its resident memory read from
// /proc/<pid>/status, and its end (exit status or signal) observed.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace loopserve::soak {

class ServerChild {
 public:
  // Runs `binary args...` with stderr to `log_path`; waits up to `timeout`
  // for the listening line.
  static absl::StatusOr<std::unique_ptr<ServerChild>> Start(const std::string& binary,
                                                            const std::vector<std::string>& args,
                                                            const std::string& log_path,
                                                            std::chrono::seconds timeout);
  ~ServerChild();  // SIGKILL if still running

  pid_t pid() const { return pid_; }
  const std::string& address() const { return address_; }
  const std::string& metrics_address() const { return metrics_address_; }

  // Resident set size in KiB (VmRSS), or an error once it has exited.
  absl::StatusOr<int64_t> RssKib() const;
  // True while the process runs; after it ended, `exit_description()` says how.
  bool Alive();
  std::string exit_description();
  // Exit code when it exited normally, -1 when killed by a signal.
  int exit_code();

  void SendSigterm();
  // Waits up to `timeout` for the process to end; false on timeout.
  bool WaitForExit(std::chrono::milliseconds timeout);

 private:
  ServerChild() = default;
  void ReapLocked(bool block) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  std::string address_;
  std::string metrics_address_;
  absl::Mutex mu_;
  bool exited_ ABSL_GUARDED_BY(mu_) = false;
  int wait_status_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace loopserve::soak
