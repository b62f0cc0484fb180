// What the gRPC services share: the loaded model, the deployment registry,
// the engine loop, metrics, the (optional) tokenizer, request limits and
// access control. Owned by Server;
// the services hold a pointer and never outlive it.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "engine/deployment.h"
#include "engine/engine_loop.h"
#include "engine/model_weights.h"
#include "engine/tokenizer.h"
#include "server/access_control.h"
#include "server/metrics.h"
#include "server/request_limits.h"
#include "server/stream_stall_watchdog.h"

namespace loopserve {

struct ServingState {
  std::shared_ptr<const LoadedModel> model;
  DeploymentRegistry* registry = nullptr;
  EngineLoop* loop = nullptr;
  ServerMetrics* metrics = nullptr;      // null when metrics are off
  const Tokenizer* tokenizer = nullptr;  // null: the model has no tokenizer.json
  std::string default_deployment;
  std::string backend;  // the backend actually running
  // Set when a drain begins: new requests get UNAVAILABLE at the edge.
  std::atomic<bool> draining{false};
  // Readers: reading a deployment and submitting its request; writer: a
  // policy change (registry + engine). So a request either sees the new
  // policy or is already in the engine when the engine applies it.
  absl::Mutex policy_mu;
  std::atomic<int64_t> next_request_number{1};
  RequestLimits limits;
  const AccessControl* access = nullptr;  // null or !enabled(): no API keys
  // Generation calls' leases, from the service handler to their GenerateCall.
  LeaseHandoff leases;
  // Cancels streams whose client stopped reading (null or off: never).
  StreamStallWatchdog* stall_watchdog = nullptr;
};

}  // namespace loopserve
