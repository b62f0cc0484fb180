#include "tools/soak/soak_checks.h"

#include <algorithm>
#include <cctype>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "grpcpp/support/status.h"

namespace loopserve::soak {
namespace {

constexpr size_t kMaxViolationsKept = 20;

std::string Describe(const Outcome& o) {
  return absl::StrCat("request ", o.spec.index, " (", KindName(o.spec.kind),
                      o.spec.stream ? ", stream" : "", ", deployment ", o.spec.deployment,
                      ", template ", o.spec.template_index, ")");
}

grpc::StatusCode ExpectedMalformedCode(MalformedCase c) {
  switch (c) {
    case MalformedCase::kUnknownDeployment: return grpc::StatusCode::NOT_FOUND;
    case MalformedCase::kOverrideNotAllowed: return grpc::StatusCode::PERMISSION_DENIED;
    default: return grpc::StatusCode::INVALID_ARGUMENT;
  }
}

std::string TokensDiff(const std::vector<int32_t>& got, const std::vector<int32_t>& want) {
  size_t i = 0;
  while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
  return absl::StrCat("got ", got.size(), " tokens, reference ", want.size(),
                      ", first difference at ", i);
}

// An OK reply for a valid greedy request must equal its reference.
std::string CheckAgainst(const Outcome& o, const References& refs, const std::string& variant) {
  const std::vector<int32_t>* want = refs.Get(variant, o.spec.template_index);
  if (want == nullptr) return absl::StrCat("no reference for ", variant);
  if (o.tokens != *want) return TokensDiff(o.tokens, *want);
  return "";
}

}  // namespace

void References::Set(const std::string& variant, int template_index,
                     std::vector<int32_t> tokens) {
  tokens_[{variant, template_index}] = std::move(tokens);
}

const std::vector<int32_t>* References::Get(const std::string& variant,
                                            int template_index) const {
  auto it = tokens_.find({variant, template_index});
  return it == tokens_.end() ? nullptr : &it->second;
}

std::string CodeLabel(int grpc_code) {
  std::string name = absl::StatusCodeToString(static_cast<absl::StatusCode>(grpc_code));
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return name;
}

std::string Tally::Record(const Outcome& o, const References& refs, const std::string& live_a,
                          const std::string& live_b) {
  const auto code = static_cast<grpc::StatusCode>(o.code);
  const bool ok = code == grpc::StatusCode::OK;
  // The queue limit may refuse any request that reaches the engine loop.
  const bool queue_full = code == grpc::StatusCode::RESOURCE_EXHAUSTED;
  std::string violation;
  bool matched = false;
  const bool recomputed = ok && WasRecomputed(o, options_.num_loops);
  bool drift = false;
  int live_match = 0;  // 1 = A, 2 = B, 3 = neither (a policy change mid-request)
  if (ok && !o.shape_error.empty()) violation = o.shape_error;
  auto expect_ok_or = [&](grpc::StatusCode other) {
    if (ok) {
      if (violation.empty()) {
        violation = CheckAgainst(o, refs, o.spec.deployment);
        matched = violation.empty();
        if (!matched && recomputed) absl::StrAppend(&violation, " (preempted and recomputed)");
        if (!matched && recomputed && !options_.exact_after_preemption &&
            options_.full_depth.count(o.spec.deployment) == 0) {
          drift = true;
          violation.clear();
        }
      }
    } else if (code != other && !queue_full) {
      violation = absl::StrCat("status ", CodeLabel(o.code), " (", o.message, ")");
    }
  };
  switch (o.spec.kind) {
    case RequestKind::kUnary:
    case RequestKind::kStream:
    case RequestKind::kBurst:
      expect_ok_or(grpc::StatusCode::OK);
      break;
    case RequestKind::kCancelUnary:
    case RequestKind::kCancelStream:
      expect_ok_or(grpc::StatusCode::CANCELLED);
      break;
    case RequestKind::kShortDeadline:
      expect_ok_or(grpc::StatusCode::DEADLINE_EXCEEDED);
      break;
    case RequestKind::kLive:
      if (ok) {
        const std::vector<int32_t>* a = refs.Get(live_a, o.spec.template_index);
        const std::vector<int32_t>* b = refs.Get(live_b, o.spec.template_index);
        const size_t max_tokens = a == nullptr || b == nullptr ? 0 : std::max(a->size(), b->size());
        live_match = a != nullptr && o.tokens == *a ? 1 : b != nullptr && o.tokens == *b ? 2 : 3;
        if (violation.empty() && (o.tokens.empty() || o.tokens.size() > 64 ||
                                  (live_match == 3 && max_tokens == 0))) {
          violation = absl::StrCat("live-policy reply with ", o.tokens.size(), " tokens");
        }
      } else if (!queue_full) {
        violation = absl::StrCat("status ", CodeLabel(o.code), " (", o.message, ")");
      }
      break;
    case RequestKind::kMalformed:
      if (code != ExpectedMalformedCode(o.spec.malformed)) {
        violation = absl::StrCat(MalformedName(o.spec.malformed), ": status ", CodeLabel(o.code),
                                 " (", o.message, "), expected ",
                                 CodeLabel(ExpectedMalformedCode(o.spec.malformed)));
      }
      break;
    case RequestKind::kGarbage:
      // gRPC C++ (callback API) answers a message it cannot parse with
      // UNIMPLEMENTED before any loopserve code runs.
      if (code != grpc::StatusCode::UNIMPLEMENTED) {
        violation = absl::StrCat("undecodable request: status ", CodeLabel(o.code), " (",
                                 o.message, "), expected unimplemented");
      }
      break;
  }
  absl::MutexLock lock(&mu_);
  Counts& c = counts_;
  ++c.sent;
  c.completed += ok;
  c.cancelled += code == grpc::StatusCode::CANCELLED;
  c.deadline += code == grpc::StatusCode::DEADLINE_EXCEEDED;
  c.matched_reference += matched;
  c.recomputed += recomputed;
  c.drift_after_preemption += drift;
  c.live_matched_a += live_match == 1;
  c.live_matched_b += live_match == 2;
  c.live_mixed += live_match == 3;
  if (ok) c.tokens_received += static_cast<int64_t>(o.tokens.size());
  ++c.by_code[CodeLabel(o.code)];
  ++c.by_kind[KindName(o.spec.kind)][CodeLabel(o.code)];
  if (o.spec.kind != RequestKind::kGarbage) {  // never reaches a handler
    const std::string dep = o.spec.malformed == MalformedCase::kUnknownDeployment &&
                                    o.spec.kind == RequestKind::kMalformed
                                ? "unknown"
                                : o.spec.deployment;
    DeploymentTally& d = deployments_[dep];
    ++d.by_code[CodeLabel(o.code)];
    if (ok) {
      d.ok_prompt_tokens += o.usage_prompt_tokens;
      d.ok_completion_tokens += static_cast<int64_t>(o.tokens.size());
    }
  }
  if (!violation.empty()) {
    ++c.violations;
    if (violations_.size() < kMaxViolationsKept) {
      violations_.push_back(absl::StrCat(Describe(o), ": ", violation));
    }
  }
  return violation;
}

Tally::Counts Tally::counts() const {
  absl::MutexLock lock(&mu_);
  return counts_;
}

std::map<std::string, DeploymentTally> Tally::deployments() const {
  absl::MutexLock lock(&mu_);
  return deployments_;
}

std::vector<std::string> Tally::first_violations() const {
  absl::MutexLock lock(&mu_);
  return violations_;
}

std::vector<std::string> CheckMetricsAgreement(const MetricsSnapshot& before,
                                               const MetricsSnapshot& after,
                                               const std::map<std::string, DeploymentTally>& client,
                                               std::vector<std::string>& report) {
  std::vector<std::string> violations;
  auto delta = [&](const std::string& name, const std::map<std::string, std::string>& match) {
    return static_cast<int64_t>(after.Sum(name, match) - before.Sum(name, match) + 0.5);
  };
  std::set<std::string> deployments;
  for (const auto& [d, t] : client) deployments.insert(d);
  for (const std::string& d : after.LabelValues("loopserve_requests_total", "deployment")) {
    deployments.insert(d);
  }
  for (const std::string& d : deployments) {
    static const DeploymentTally kNone;
    auto it = client.find(d);
    const DeploymentTally& c = it == client.end() ? kNone : it->second;
    auto client_count = [&](const std::string& code) {
      auto k = c.by_code.find(code);
      return k == c.by_code.end() ? int64_t{0} : k->second;
    };
    // Requests the client gave up on may have ended any way on the server
    // (or never reached it); everything else must match exactly.
    const int64_t slack = client_count("cancelled") + client_count("deadline_exceeded");
    std::set<std::string> codes;
    for (const auto& [code, n] : c.by_code) codes.insert(code);
    for (const std::string& code : after.LabelValues("loopserve_requests_total", "status")) {
      codes.insert(code);
    }
    int64_t server_total = 0, client_total = 0, server_gave_up = 0;
    std::vector<std::string> parts;
    for (const std::string& code : codes) {
      const int64_t s = delta("loopserve_requests_total", {{"deployment", d}, {"status", code}});
      const int64_t cl = client_count(code);
      server_total += s;
      client_total += cl;
      if (s == 0 && cl == 0) continue;
      parts.push_back(absl::StrCat(code, " ", s, "/", cl));
      if (code == "cancelled" || code == "deadline_exceeded") {
        server_gave_up += s;
      } else if (s < cl || s > cl + slack) {
        violations.push_back(absl::StrCat("metrics: deployment ", d, " status ", code,
                                          ": server ", s, ", client ", cl, " (slack ", slack,
                                          ")"));
      }
    }
    if (server_gave_up > slack) {
      violations.push_back(absl::StrCat("metrics: deployment ", d, ": server cancelled/deadline ",
                                        server_gave_up, " > client's ", slack));
    }
    if (server_total > client_total || server_total < client_total - slack) {
      violations.push_back(absl::StrCat("metrics: deployment ", d, ": server counted ",
                                        server_total, " requests, client sent ", client_total));
    }
    const int64_t gen = delta("loopserve_generated_tokens_total", {{"deployment", d}});
    const int64_t prompt = delta("loopserve_prompt_tokens_total", {{"deployment", d}});
    const bool exact = slack == 0;
    if (exact ? gen != c.ok_completion_tokens : gen < c.ok_completion_tokens) {
      violations.push_back(absl::StrCat("metrics: deployment ", d, ": generated tokens server ",
                                        gen, ", client ", c.ok_completion_tokens));
    }
    if (exact ? prompt != c.ok_prompt_tokens : prompt < c.ok_prompt_tokens) {
      violations.push_back(absl::StrCat("metrics: deployment ", d, ": prompt tokens server ",
                                        prompt, ", client ", c.ok_prompt_tokens));
    }
    report.push_back(absl::StrCat(d, ": requests server/client ", server_total, "/", client_total,
                                  " [", absl::StrJoin(parts, ", "), "]; generated tokens ", gen,
                                  "/", c.ok_completion_tokens, "; prompt tokens ", prompt, "/",
                                  c.ok_prompt_tokens, exact ? " (exact)" : " (bounded)"));
  }
  return violations;
}

}  // namespace loopserve::soak
