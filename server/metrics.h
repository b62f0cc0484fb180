// Prometheus metrics of the server (DESIGN.md "Metrics"), exposed by a pull
// exposer on their own address. Names are prefixed `loopserve_`; every
// series carries `deployment` and `model` labels, request-level series also
// `policy` (the deployment's exit policy when the request was admitted, so a
// live policy change shows up as a new series).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/engine_loop.h"

namespace loopserve {

class ServerMetrics {
 public:
  // Binds the exposer (e.g. "127.0.0.1:9464"; port 0 picks a free one).
  static absl::StatusOr<std::unique_ptr<ServerMetrics>> Create(const std::string& listen_address,
                                                               const std::string& model_name,
                                                               int num_loops);
  ~ServerMetrics();

  // A request ended (any way). `exit_loops` are the 0-based exit loops of
  // its generated tokens; `code` is the gRPC-facing status.
  void RecordRequest(const std::string& deployment, const std::string& policy,
                     absl::StatusCode code, const RequestEvent& final_event,
                     const std::vector<int>& exit_loops);
  // A request refused before it reached the engine (bad input, queue full,
  // unknown deployment, draining).
  void RecordRejected(const std::string& deployment, absl::StatusCode code);
  // Engine gauges after a step (running, waiting, KV blocks, batch size,
  // preemptions).
  void ObserveStep(const StepStats& stats);
  // A stream was cancelled because its client left a write unread for
  // `limits.stream_write_timeout_seconds`.
  void RecordStreamWriteTimeout();
  // A change of the TLS files was installed (ok) or refused; and the expiry
  // of the certificate in service (Unix seconds; 0 = unknown, not exported).
  void RecordTlsReload(bool ok);
  void SetTlsCertificateExpiry(int64_t not_after_unix_seconds);
  // A config reload (SIGHUP) ended: ok or refused (the old config stays).
  void RecordConfigReload(bool ok);
  // Optional: the server's deployment names. Once set, any other name (a
  // client's typo of an unknown deployment) is labelled "unknown", so clients
  // cannot create unbounded series.
  void SetKnownDeployments(const std::vector<std::string>& deployments);

  // The bound "host:port" of the exposer.
  std::string address() const;

 private:
  struct Impl;
  explicit ServerMetrics(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace loopserve
