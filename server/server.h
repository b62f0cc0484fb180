// The loopserve server: loads the model, builds the deployments, runs the
// engine on its own thread (EngineLoop), exposes metrics, and serves
// LoopServe, Admin, grpc.health.v1 and reflection over gRPC (TLS and API
// keys when configured; health stays open for probes). Nothing binds a
// port until the model, tokenizer and TLS files have loaded. Drain and
// Shutdown stop admitting, let in-flight requests finish within a grace
// period, cancel the rest, then stop gRPC.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/server.h"
#include "server/access_control.h"
#include "server/admin_service.h"
#include "server/loopserve_service.h"
#include "server/server_config.h"
#include "server/serving_state.h"
#include "server/tls_reloader.h"

namespace loopserve {

class Server {
 public:
  // Loads and starts serving; errors name the config field, file or address.
  static absl::StatusOr<std::unique_ptr<Server>> Start(const ServerConfig& config);
  ~Server();  // Shutdown() if not done yet

  // The bound "host:port" (the real port when the config asked for 0).
  const std::string& address() const { return address_; }
  // The metrics exposer's bound "host:port" ("" when metrics are off).
  std::string metrics_address() const;

  // Health NOT_SERVING, new requests UNAVAILABLE, waits up to
  // `grace_seconds` for in-flight requests, cancels the rest; returns how
  // many it cancelled. Blocking; drains run one at a time.
  int64_t Drain(double grace_seconds);
  // Drain with the configured grace, then stops gRPC. Idempotent.
  void Shutdown();

  // SIGHUP: rereads the config file at `config_path` and applies its
  // `api_keys` without a restart (AccessControl::ReplaceKeys). The whole
  // file must still parse and validate, as at start-up; otherwise, or when
  // the keys are refused, the running keys stay. Logged by key name and
  // counted in loopserve_config_reloads_total. Thread-safe.
  absl::Status ReloadApiKeys(const std::string& config_path);

 private:
  explicit Server(ServerConfig config) : config_(std::move(config)) {}
  absl::Status Init();
  void SetServing(bool serving);
  void DrainAsync(double grace_seconds, std::function<void(int64_t)> done);

  ServerConfig config_;
  std::string address_;
  // Outlives gRPC (declared before it): its private TLS copies are what
  // gRPC's certificate provider reads. Null unless tls.reload_interval_seconds.
  std::unique_ptr<TlsReloader> tls_reloader_;
  // Declaration order is destruction order reversed: gRPC goes first, the
  // engine loop (whose observer feeds metrics) before the metrics.
  std::unique_ptr<ServerMetrics> metrics_;
  std::unique_ptr<Tokenizer> tokenizer_;  // null without tokenizer.json
  std::unique_ptr<DeploymentRegistry> registry_;
  std::unique_ptr<EngineLoop> loop_;
  std::unique_ptr<AccessControl> access_;
  std::unique_ptr<StreamStallWatchdog> stall_watchdog_;
  ServingState state_;
  std::unique_ptr<LoopServeService> loopserve_service_;
  std::unique_ptr<AdminService> admin_service_;
  std::unique_ptr<grpc::Server> grpc_server_;

  absl::Mutex drain_mu_;  // one drain at a time
  absl::Mutex threads_mu_;
  std::vector<std::thread> drain_threads_ ABSL_GUARDED_BY(threads_mu_);
  bool shut_down_ ABSL_GUARDED_BY(threads_mu_) = false;
};

}  // namespace loopserve
