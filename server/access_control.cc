#include "server/access_control.h"

#include <algorithm>
#include <map>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"

namespace loopserve {

namespace {

// The bucket's parameters for a key (a key without a rate limit never asks
// its bucket, which still needs a positive rate).
double BucketRate(const ApiKeyConfig& c) {
  return c.requests_per_second > 0 ? c.requests_per_second : 1.0;
}
double BucketBurst(const ApiKeyConfig& c) {
  return c.burst > 0 ? c.burst : std::max(1.0, c.requests_per_second);
}

bool SameGrant(const ApiKeyConfig& a, const ApiKeyConfig& b) {
  return a.sha256 == b.sha256 && a.deployments == b.deployments &&
         a.requests_per_second == b.requests_per_second && a.burst == b.burst &&
         a.max_concurrent == b.max_concurrent && a.admin == b.admin;
}

}  // namespace

// One key across reloads: the name is its identity; what it may do changes
// under the lock when a reload changes it.
struct KeyState {
  KeyState(ApiKeyConfig c, TokenBucket::Clock::time_point now)
      : name(c.name), config(std::move(c)), bucket(BucketRate(config), BucketBurst(config), now) {}

  const std::string name;
  absl::Mutex mu;
  ApiKeyConfig config ABSL_GUARDED_BY(mu);
  TokenBucket bucket ABSL_GUARDED_BY(mu);
  int in_flight ABSL_GUARDED_BY(mu) = 0;
};

struct AccessControl::KeySet {
  explicit KeySet(const std::vector<ApiKeyConfig>& keys) : table(keys) {}
  ApiKeyTable table;
  std::vector<std::shared_ptr<KeyState>> states;  // same order as table.keys()
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
  return key_ != nullptr ? key_->name : EmptyName();
}

AccessControl::AccessControl(const std::vector<ApiKeyConfig>& keys, NowFunction now)
    : enabled_(!keys.empty()), now_(std::move(now)) {
  if (now_ == nullptr) now_ = [] { return TokenBucket::Clock::now(); };
  const TokenBucket::Clock::time_point start = now_();
  auto set = std::make_shared<KeySet>(keys);
  for (const ApiKeyConfig& k : keys) set->states.push_back(std::make_shared<KeyState>(k, start));
  keys_ = std::move(set);
}

AccessControl::~AccessControl() = default;

std::shared_ptr<const AccessControl::KeySet> AccessControl::Current() const {
  absl::ReaderMutexLock lock(&mu_);
  return keys_;
}

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
  // The set this call is judged by; a reload meanwhile affects the next call.
  const std::shared_ptr<const KeySet> set = Current();
  const int index = set->table.Find(*presented);
  if (index < 0) return absl::UnauthenticatedError("invalid API key");
  const std::shared_ptr<KeyState>& key = set->states[static_cast<size_t>(index)];

  absl::MutexLock lock(&key->mu);
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

absl::StatusOr<AccessControl::ReloadSummary> AccessControl::ReplaceKeys(
    const std::vector<ApiKeyConfig>& keys) {
  if (absl::Status s = ValidateApiKeys(keys); !s.ok()) return s;
  if (keys.empty() != !enabled_) {
    return absl::FailedPreconditionError(
        enabled_ ? "the new config has no API keys, which would turn authentication off; "
                   "that needs a restart"
                 : "the server started without API keys; turning authentication on needs a "
                   "restart");
  }
  const TokenBucket::Clock::time_point now = now_();
  absl::MutexLock lock(&mu_);  // one reload at a time; Admit keeps reading the old set
  std::map<std::string, std::shared_ptr<KeyState>> old_by_name;
  for (const std::shared_ptr<KeyState>& k : keys_->states) old_by_name[k->name] = k;

  ReloadSummary summary;
  auto set = std::make_shared<KeySet>(keys);
  for (const ApiKeyConfig& k : keys) {
    auto it = old_by_name.find(k.name);
    if (it == old_by_name.end()) {
      summary.added.push_back(k.name);
      set->states.push_back(std::make_shared<KeyState>(k, now));
      continue;
    }
    std::shared_ptr<KeyState> state = std::move(it->second);
    old_by_name.erase(it);
    {
      absl::MutexLock key_lock(&state->mu);
      if (SameGrant(state->config, k)) {
        ++summary.unchanged;
      } else {
        summary.changed.push_back(k.name);
        state->config = k;
        state->bucket.Reconfigure(BucketRate(k), BucketBurst(k), now);
      }
    }
    set->states.push_back(std::move(state));
  }
  for (const auto& [name, state] : old_by_name) summary.removed.push_back(name);
  keys_ = std::move(set);
  return summary;
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
