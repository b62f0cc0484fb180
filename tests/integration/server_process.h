// Starts the real loopserve-server binary as a child process for the
// integration tests: waits for its "loopserve listening on ADDR (metrics on
// ADDR)" line, keeps its stderr (the JSON logs) in a file, and stops it with
// SIGTERM (or SIGKILL when it will not stop).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace loopserve::testing {

class ServerProcess {
 public:
  // `args` are passed after the binary name; `log_path` receives stderr.
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Start(const std::string& binary,
                                                              const std::vector<std::string>& args,
                                                              const std::string& log_path);
  ~ServerProcess();  // SIGKILL if still running

  const std::string& address() const { return address_; }
  const std::string& metrics_address() const { return metrics_address_; }
  // SIGTERM, then waits up to `timeout`: the exit status, or -1 when it had
  // to be killed, or -2 when it died from a signal.
  int Terminate(std::chrono::milliseconds timeout);
  // Sends `signal_number` (e.g. SIGHUP) to the server; false when it is gone.
  bool Signal(int signal_number);
  // Waits up to `timeout` for an exit by itself (same return values).
  int WaitForExit(std::chrono::milliseconds timeout);
  // Everything the server wrote to stderr so far.
  std::string Logs() const;

 private:
  ServerProcess() = default;

  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  std::string log_path_;
  std::string address_;
  std::string metrics_address_;
};

// A plain HTTP/1.0 GET of http://`address``path` over a socket: the body.
absl::StatusOr<std::string> HttpGet(const std::string& address, const std::string& path);

// Sum of the samples of `name` (exact metric name, any labels) in a
// Prometheus text exposition; NotFound when no sample has that name.
absl::StatusOr<double> MetricValue(const std::string& exposition, const std::string& name);

}  // namespace loopserve::testing
