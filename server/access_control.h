// Who may make a call: the presented API key is matched against the
// configured keys (UNAUTHENTICATED), checked against the deployment or Admin
// (PERMISSION_DENIED), then against its rate and concurrency limits
// (RESOURCE_EXHAUSTED with a retry hint). No gRPC here: the edge
// (server/call_auth) passes the `authorization` value in and turns the
// refusal into a gRPC status.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/api_keys.h"
#include "server/token_bucket.h"

namespace loopserve {

// What a call touches: generation holds a concurrency slot for its life;
// Tokenize/ModelInfo/ListDeployments are open to any valid key.
enum class CallKind { kGenerate, kInfo, kAdmin };

// A refusal's retry hint rides on the Status as this payload: whole
// milliseconds, decimal. The edge copies it into trailing metadata.
inline constexpr char kRetryAfterMsPayload[] = "retry-after-ms";
// The hint for a key at its concurrency limit: there is no way to know when
// one of its calls ends, so a short fixed back-off.
inline constexpr int kConcurrencyRetryAfterMs = 100;

struct KeyState;  // a key's limits and counters (access_control.cc)

// Held for a call's life; releases the key's concurrency slot when
// released or destroyed. Empty (no key) when access control is off. Move-only.
class CallLease {
 public:
  CallLease() = default;
  CallLease(CallLease&& other) noexcept;
  CallLease& operator=(CallLease&& other) noexcept;
  CallLease(const CallLease&) = delete;
  CallLease& operator=(const CallLease&) = delete;
  ~CallLease();

  // The key's name ("" without access control): for logs, never the key.
  const std::string& key_name() const;
  // Frees the concurrency slot now (idempotent); the name stays.
  void Release();

 private:
  friend class AccessControl;
  std::shared_ptr<KeyState> key_;
  bool holds_slot_ = false;
};

class AccessControl {
 public:
  using NowFunction = std::function<TokenBucket::Clock::time_point()>;

  // `now` defaults to the steady clock; tests inject their own.
  explicit AccessControl(const std::vector<ApiKeyConfig>& keys, NowFunction now = nullptr);
  ~AccessControl();

  // No keys configured: every call is admitted. Fixed for the server's life
  // (ReplaceKeys never turns authentication on or off).
  bool enabled() const { return enabled_; }

  // `authorization`: the call's `authorization` metadata (nullopt when
  // absent). `deployment` matters for kGenerate only. Thread-safe.
  absl::StatusOr<CallLease> Admit(std::optional<std::string_view> authorization, CallKind kind,
                                  const std::string& deployment) const;

  // What a reload did, by key name (for the log line; never a secret).
  struct ReloadSummary {
    std::vector<std::string> added;
    std::vector<std::string> removed;
    std::vector<std::string> changed;  // new secret hash or new limits
    int unchanged = 0;
  };
  // Swaps in a new key list without a restart (SIGHUP, server/main.cc), so a
  // leaked key is revoked and a rotated one accepted at once. A key keeps
  // its identity by name: its rate bucket (tokens earned so far) and its
  // count of calls in flight carry over, so a reload never resets a client's
  // budget. Calls already admitted under a removed key run to their end;
  // its next call is UNAUTHENTICATED. Refused with nothing changed: keys
  // that fail ValidateApiKeys, and going from no keys to some or back
  // (turning authentication on or off is a restart, as it changes who can
  // reach the server at all). Thread-safe against Admit and itself.
  absl::StatusOr<ReloadSummary> ReplaceKeys(const std::vector<ApiKeyConfig>& keys);

 private:
  struct KeySet;  // the lookup table and each key's state (access_control.cc)
  std::shared_ptr<const KeySet> Current() const;

  const bool enabled_;
  NowFunction now_;
  mutable absl::Mutex mu_;  // guards the pointer; a KeySet is immutable once published
  std::shared_ptr<const KeySet> keys_ ABSL_GUARDED_BY(mu_);
};

// Hands a generation call's lease from the service handler to the
// GenerateCall that its reactor creates (which holds it until the RPC is
// done), keyed by the call's ServerContext. Thread-safe.
class LeaseHandoff {
 public:
  void Put(const void* call, CallLease lease);
  // The lease Put for `call`, or an empty one.
  CallLease Take(const void* call);

 private:
  absl::Mutex mu_;
  std::map<const void*, CallLease> leases_ ABSL_GUARDED_BY(mu_);
};

}  // namespace loopserve
