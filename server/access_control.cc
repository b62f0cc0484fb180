#include "server/access_control.h"

#include <algorithm>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"

namespace loopserve {

struct KeyState {
  explicit KeyState(ApiKeyConfig c, TokenBucket::Clock::time_point now)
      : config(std::move(c)),
        bucket(config.requests_per_second > 0 ? config.requests_per_second : 1.0,
               config.burst > 0 ? config.burst : std::max(1.0, config.requests_per_second), now) {}

  const ApiKeyConfig config;
  absl::Mutex mu;
  TokenBucket bucket ABSL_GUARDED_BY(mu);
  int in_flight ABSL_GUARDED_BY(mu) = 0;
};

namespace {

const std::string& EmptyName() {
  static const std::string* empty = new std::string();
  return *empty;
}

absl::Status WithRetryHint(absl::Status status, int64_t retry_after_ms) {
  status.SetPayload(kRetryAfterMsPayload, absl::Cord(absl::StrCat(retry_after_ms)));
  return status;
}

}  // namespace

CallLease::CallLease(CallLease&& other) noexcept
    : key_(std::move(other.key_)), holds_slot_(std::exchange(other.holds_slot_, false)) {}

CallLease& CallLease::operator=(CallLease&& other) noexcept {
  if (this != &other) {
    Release();
    key_ = std::move(other.key_);
    holds_slot_ = std::exchange(other.holds_slot_, false);
  }
  return *this;
}

CallLease::~CallLease() { Release(); }

void CallLease::Release() {
  if (key_ != nullptr && holds_slot_) {
    absl::MutexLock lock(&key_->mu);
    --key_->in_flight;
  }
  holds_slot_ = false;
}

const std::string& CallLease::key_name() const {
  return key_ != nullptr ? key_->config.name : EmptyName();
}

AccessControl::AccessControl(const std::vector<ApiKeyConfig>& keys, NowFunction now)
    : table_(keys), now_(std::move(now)) {
  if (now_ == nullptr) now_ = [] { return TokenBucket::Clock::now(); };
  const TokenBucket::Clock::time_point start = now_();
  for (const ApiKeyConfig& k : keys) keys_.push_back(std::make_shared<KeyState>(k, start));
}

AccessControl::~AccessControl() = default;

absl::StatusOr<CallLease> AccessControl::Admit(std::optional<std::string_view> authorization,
                                               CallKind kind, const std::string& deployment) const {
  CallLease lease;
  if (!enabled()) return lease;
  if (!authorization.has_value()) {
    return absl::UnauthenticatedError(
        "an API key is required: send metadata `authorization: Bearer <key>`");
  }
  absl::StatusOr<std::string_view> presented = BearerKey(*authorization);
  if (!presented.ok()) return presented.status();
  const int index = table_.Find(*presented);
  if (index < 0) return absl::UnauthenticatedError("invalid API key");
  const std::shared_ptr<KeyState>& key = keys_[static_cast<size_t>(index)];
  const ApiKeyConfig& config = key->config;

  if (kind == CallKind::kAdmin && !config.admin) {
    return absl::PermissionDeniedError(
        absl::StrCat("API key `", config.name, "` may not call the Admin service"));
  }
  if (kind == CallKind::kGenerate && !config.AllowsDeployment(deployment)) {
    return absl::PermissionDeniedError(
        absl::StrCat("API key `", config.name, "` may not use deployment `", deployment, "`"));
  }

  const bool counts = kind == CallKind::kGenerate && config.max_concurrent > 0;
  absl::MutexLock lock(&key->mu);
  // Concurrency first: a call refused for it does not spend a rate token.
  if (counts && key->in_flight >= config.max_concurrent) {
    return WithRetryHint(
        absl::ResourceExhaustedError(
            absl::StrCat("API key `", config.name, "` has ", key->in_flight,
                         " generation calls in flight (max ", config.max_concurrent,
                         "); retry after ", kConcurrencyRetryAfterMs, " ms or when one finishes")),
        kConcurrencyRetryAfterMs);
  }
  if (config.requests_per_second > 0) {
    const TokenBucket::Take take = key->bucket.TryTake(now_());
    if (!take.taken) {
      const int64_t ms = take.retry_after.count();
      return WithRetryHint(absl::ResourceExhaustedError(absl::StrCat(
                               "API key `", config.name, "` is over its rate limit of ",
                               config.requests_per_second, " requests/s; retry after ", ms, " ms")),
                           ms);
    }
  }
  lease.key_ = key;
  if (counts) {
    ++key->in_flight;
    lease.holds_slot_ = true;
  }
  return lease;
}

void LeaseHandoff::Put(const void* call, CallLease lease) {
  absl::MutexLock lock(&mu_);
  leases_[call] = std::move(lease);
}

CallLease LeaseHandoff::Take(const void* call) {
  CallLease lease;
  {
    absl::MutexLock lock(&mu_);
    auto it = leases_.find(call);
    if (it == leases_.end()) return lease;
    lease = std::move(it->second);
    leases_.erase(it);
  }
  return lease;
}

}  // namespace loopserve
