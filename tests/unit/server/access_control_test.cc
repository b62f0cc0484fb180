// API keys and access control: SHA-256 hashing (known vectors), constant-
// time comparison, Bearer parsing, config parsing, and every admission
// outcome (UNAUTHENTICATED, PERMISSION_DENIED, RESOURCE_EXHAUSTED with a
// retry hint for rate and concurrency) with an injected clock.
#include "server/access_control.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace loopserve {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using Clock = TokenBucket::Clock;

TEST(ApiKeysTest, Sha256HexMatchesKnownVectors) {
  // FIPS 180-2 test vectors.
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(ApiKeysTest, ConstantTimeEqualsComparesWholeStrings) {
  EXPECT_TRUE(ConstantTimeEquals("abcdef", "abcdef"));
  EXPECT_FALSE(ConstantTimeEquals("abcdef", "abcdeg"));
  EXPECT_FALSE(ConstantTimeEquals("xbcdef", "abcdef"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abcdef"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
}

TEST(ApiKeysTest, BearerKeyParsing) {
  EXPECT_EQ(*BearerKey("Bearer s3cret"), "s3cret");
  EXPECT_EQ(*BearerKey("bearer   s3cret "), "s3cret");
  EXPECT_EQ(*BearerKey("BEARER s3cret"), "s3cret");
  for (const char* bad : {"", "Bearer", "Bearer ", "Bearer    ", "Basic dXNlcjpwYXNz", "s3cret"}) {
    absl::StatusOr<std::string_view> key = BearerKey(bad);
    ASSERT_FALSE(key.ok()) << bad;
    EXPECT_EQ(key.status().code(), absl::StatusCode::kUnauthenticated);
    if (std::string(bad).size() > 7) {
      EXPECT_THAT(key.status().message(), Not(HasSubstr(bad)));
    }
  }
}

TEST(ApiKeysTest, TableFindsByHashAndNeverByPlaintext) {
  ApiKeyConfig a{.name = "a", .sha256 = Sha256Hex("key-a"), .deployments = {"*"}};
  ApiKeyConfig b{.name = "b", .sha256 = Sha256Hex("key-b"), .deployments = {"*"}};
  ApiKeyTable table({a, b});
  EXPECT_EQ(table.Find("key-a"), 0);
  EXPECT_EQ(table.Find("key-b"), 1);
  EXPECT_EQ(table.Find("key-c"), -1);
  EXPECT_EQ(table.Find(""), -1);
  EXPECT_EQ(table.Find(Sha256Hex("key-a")), -1);  // the hash itself is not a key
}

TEST(ApiKeysTest, FromJsonParsesAndNamesBadFields) {
  const std::string hash = Sha256Hex("k");
  absl::StatusOr<ApiKeyConfig> k = ApiKeyFromJson({{"name", "team"},
                                                   {"sha256", hash},
                                                   {"deployments", {"fast", "default"}},
                                                   {"requests_per_second", 2.5},
                                                   {"burst", 5},
                                                   {"max_concurrent", 3},
                                                   {"admin", true}},
                                                  "api_keys[0]");
  ASSERT_TRUE(k.ok()) << k.status();
  EXPECT_EQ(k->name, "team");
  EXPECT_EQ(k->sha256, hash);
  EXPECT_TRUE(k->AllowsDeployment("fast"));
  EXPECT_FALSE(k->AllowsDeployment("lab"));
  EXPECT_DOUBLE_EQ(k->requests_per_second, 2.5);
  EXPECT_DOUBLE_EQ(k->burst, 5);
  EXPECT_EQ(k->max_concurrent, 3);
  EXPECT_TRUE(k->admin);

  struct Bad {
    nlohmann::json json;
    std::string message;
  };
  const nlohmann::json ok = {{"name", "t"}, {"sha256", hash}, {"deployments", {"*"}}};
  auto with = [&](const std::string& f, const nlohmann::json& v) {
    nlohmann::json j = ok;
    j[f] = v;
    return j;
  };
  nlohmann::json no_name = ok;
  no_name.erase("name");
  nlohmann::json no_deployments = ok;
  no_deployments.erase("deployments");
  for (const Bad& bad : std::vector<Bad>{
           {with("sha256", "abc"), "sha256"},
           {with("sha256", std::string(64, 'g')), "sha256"},
           {with("key", "plaintext"), "plaintext keys are not accepted"},
           {with("bogus", 1), "bogus: unknown field"},
           {with("requests_per_second", -1), "requests_per_second"},
           {with("max_concurrent", 1.5), "max_concurrent"},
           {with("admin", "yes"), "admin"},
           {with("deployments", {""}), "deployments"},
           {no_name, "name"},
           {no_deployments, "deployments"},
       }) {
    absl::StatusOr<ApiKeyConfig> r = ApiKeyFromJson(bad.json, "api_keys[3]");
    ASSERT_FALSE(r.ok()) << bad.json.dump();
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(r.status().message(), HasSubstr("api_keys[3]"));
    EXPECT_THAT(r.status().message(), HasSubstr(bad.message));
  }
  // An upper-case hash is accepted and normalised.
  nlohmann::json upper = ok;
  std::string h = hash;
  for (char& c : h) c = static_cast<char>(std::toupper(c));
  upper["sha256"] = h;
  ASSERT_TRUE(ApiKeyFromJson(upper, "k").ok());
  EXPECT_EQ(ApiKeyFromJson(upper, "k")->sha256, hash);
}

TEST(ApiKeysTest, DuplicateNamesOrHashesAreRefused) {
  ApiKeyConfig a{.name = "a", .sha256 = Sha256Hex("1"), .deployments = {"*"}};
  ApiKeyConfig b{.name = "a", .sha256 = Sha256Hex("2"), .deployments = {"*"}};
  EXPECT_THAT(ValidateApiKeys({a, b}).message(), HasSubstr("duplicate name"));
  b.name = "b";
  b.sha256 = a.sha256;
  EXPECT_THAT(ValidateApiKeys({a, b}).message(), HasSubstr("same sha256"));
  b.sha256 = Sha256Hex("2");
  EXPECT_TRUE(ValidateApiKeys({a, b}).ok());
}

// A fake clock the tests move by hand.
struct FakeClock {
  Clock::time_point now{};
  AccessControl::NowFunction Function() {
    return [this] { return now; };
  }
};

std::vector<ApiKeyConfig> Keys() {
  return {
      {.name = "user", .sha256 = Sha256Hex("user-key"), .deployments = {"default"}},
      {.name = "ops", .sha256 = Sha256Hex("ops-key"), .deployments = {"*"}, .admin = true},
      {.name = "limited",
       .sha256 = Sha256Hex("limited-key"),
       .deployments = {"*"},
       .requests_per_second = 1,
       .burst = 2},
      {.name = "narrow",
       .sha256 = Sha256Hex("narrow-key"),
       .deployments = {"*"},
       .max_concurrent = 2},
  };
}

TEST(AccessControlTest, NoKeysAdmitsEverything) {
  AccessControl access({});
  EXPECT_FALSE(access.enabled());
  EXPECT_TRUE(access.Admit(std::nullopt, CallKind::kAdmin, "").ok());
  EXPECT_TRUE(access.Admit("Bearer whatever", CallKind::kGenerate, "x").ok());
}

TEST(AccessControlTest, AuthenticationAndPermission) {
  AccessControl access(Keys());
  ASSERT_TRUE(access.enabled());
  auto code = [&](std::optional<std::string_view> auth, CallKind kind, const std::string& d) {
    return access.Admit(auth, kind, d).status().code();
  };
  using absl::StatusCode;
  EXPECT_EQ(code(std::nullopt, CallKind::kGenerate, "default"), StatusCode::kUnauthenticated);
  EXPECT_EQ(code(std::nullopt, CallKind::kInfo, ""), StatusCode::kUnauthenticated);
  EXPECT_EQ(code("Bearer wrong", CallKind::kGenerate, "default"), StatusCode::kUnauthenticated);
  EXPECT_EQ(code("user-key", CallKind::kGenerate, "default"), StatusCode::kUnauthenticated);
  EXPECT_EQ(code("Bearer user-key", CallKind::kGenerate, "default"), StatusCode::kOk);
  EXPECT_EQ(code("Bearer user-key", CallKind::kInfo, ""), StatusCode::kOk);
  EXPECT_EQ(code("Bearer user-key", CallKind::kGenerate, "fast"), StatusCode::kPermissionDenied);
  EXPECT_EQ(code("Bearer user-key", CallKind::kAdmin, ""), StatusCode::kPermissionDenied);
  EXPECT_EQ(code("Bearer ops-key", CallKind::kAdmin, ""), StatusCode::kOk);
  EXPECT_EQ(code("Bearer ops-key", CallKind::kGenerate, "fast"), StatusCode::kOk);

  absl::StatusOr<CallLease> lease = access.Admit("Bearer user-key", CallKind::kGenerate, "fast");
  EXPECT_THAT(lease.status().message(), HasSubstr("`user`"));
  EXPECT_THAT(lease.status().message(), HasSubstr("`fast`"));
  EXPECT_THAT(lease.status().message(), Not(HasSubstr("user-key")));
  lease = access.Admit("Bearer ops-key", CallKind::kInfo, "");
  ASSERT_TRUE(lease.ok());
  EXPECT_EQ(lease->key_name(), "ops");
}

TEST(AccessControlTest, RateLimitRefusesWithRetryHintAndRefills) {
  FakeClock clock;
  AccessControl access(Keys(), clock.Function());
  const std::string_view auth = "Bearer limited-key";
  EXPECT_TRUE(access.Admit(auth, CallKind::kGenerate, "d").ok());
  EXPECT_TRUE(access.Admit(auth, CallKind::kInfo, "").ok());  // burst 2, any call counts
  absl::StatusOr<CallLease> refused = access.Admit(auth, CallKind::kGenerate, "d");
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.status().message(), HasSubstr("rate limit"));
  EXPECT_THAT(refused.status().message(), HasSubstr("retry after 1000 ms"));
  auto hint = refused.status().GetPayload(kRetryAfterMsPayload);
  ASSERT_TRUE(hint.has_value());
  EXPECT_EQ(std::string(*hint), "1000");
  // Other keys are not affected.
  EXPECT_TRUE(access.Admit("Bearer user-key", CallKind::kGenerate, "default").ok());
  clock.now += std::chrono::milliseconds(400);
  refused = access.Admit(auth, CallKind::kGenerate, "d");
  EXPECT_EQ(std::string(*refused.status().GetPayload(kRetryAfterMsPayload)), "600");
  clock.now += std::chrono::milliseconds(600);
  EXPECT_TRUE(access.Admit(auth, CallKind::kGenerate, "d").ok());
}

TEST(AccessControlTest, ConcurrencyCountsGenerationUntilReleased) {
  AccessControl access(Keys());
  const std::string_view auth = "Bearer narrow-key";
  absl::StatusOr<CallLease> first = access.Admit(auth, CallKind::kGenerate, "d");
  absl::StatusOr<CallLease> second = access.Admit(auth, CallKind::kGenerate, "d");
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(second.ok());
  absl::StatusOr<CallLease> third = access.Admit(auth, CallKind::kGenerate, "d");
  ASSERT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(third.status().message(), HasSubstr("2 generation calls in flight (max 2)"));
  EXPECT_EQ(std::string(*third.status().GetPayload(kRetryAfterMsPayload)),
            std::to_string(kConcurrencyRetryAfterMs));
  // Info calls hold no slot.
  EXPECT_TRUE(access.Admit(auth, CallKind::kInfo, "").ok());
  first->Release();
  first->Release();  // idempotent: frees one slot, not two
  EXPECT_EQ(first->key_name(), "narrow");
  absl::StatusOr<CallLease> again = access.Admit(auth, CallKind::kGenerate, "d");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(access.Admit(auth, CallKind::kGenerate, "d").status().code(),
            absl::StatusCode::kResourceExhausted);
  {
    CallLease moved = *std::move(second);  // a moved-from lease frees nothing
  }                                        // destroyed: frees the slot
  EXPECT_TRUE(access.Admit(auth, CallKind::kGenerate, "d").ok());  // temporary, freed at once
  EXPECT_TRUE(access.Admit(auth, CallKind::kGenerate, "d").ok());
}

TEST(AccessControlTest, LeaseHandoffGivesEachCallItsOwnLease) {
  AccessControl access(Keys());
  LeaseHandoff handoff;
  int call_a = 0;
  int call_b = 0;
  handoff.Put(&call_a, *access.Admit("Bearer narrow-key", CallKind::kGenerate, "d"));
  handoff.Put(&call_b, *access.Admit("Bearer narrow-key", CallKind::kGenerate, "d"));
  EXPECT_FALSE(access.Admit("Bearer narrow-key", CallKind::kGenerate, "d").ok());
  CallLease a = handoff.Take(&call_a);
  EXPECT_EQ(a.key_name(), "narrow");
  EXPECT_EQ(handoff.Take(&call_a).key_name(), "");  // taken once
  a.Release();
  EXPECT_TRUE(access.Admit("Bearer narrow-key", CallKind::kGenerate, "d").ok());
  EXPECT_EQ(handoff.Take(&call_b).key_name(), "narrow");  // and freed with the temporary
  EXPECT_TRUE(access.Admit("Bearer narrow-key", CallKind::kGenerate, "d").ok());
}

TEST(AccessControlTest, ReplaceKeysRevokesAddsAndRotatesByName) {
  AccessControl access(Keys());
  std::vector<ApiKeyConfig> keys = Keys();
  keys.erase(keys.begin());                 // revoke "user"
  keys[0].sha256 = Sha256Hex("ops-key-2");  // rotate "ops"
  keys.push_back({.name = "new", .sha256 = Sha256Hex("new-key"), .deployments = {"fast"}});
  absl::StatusOr<AccessControl::ReloadSummary> summary = access.ReplaceKeys(keys);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_THAT(summary->added, ::testing::ElementsAre("new"));
  EXPECT_THAT(summary->removed, ::testing::ElementsAre("user"));
  EXPECT_THAT(summary->changed, ::testing::ElementsAre("ops"));
  EXPECT_EQ(summary->unchanged, 2);
  auto code = [&](std::string_view auth, CallKind kind, const std::string& d) {
    return access.Admit(auth, kind, d).status().code();
  };
  using absl::StatusCode;
  EXPECT_EQ(code("Bearer user-key", CallKind::kInfo, ""), StatusCode::kUnauthenticated);
  EXPECT_EQ(code("Bearer ops-key", CallKind::kAdmin, ""), StatusCode::kUnauthenticated);
  EXPECT_EQ(code("Bearer ops-key-2", CallKind::kAdmin, ""), StatusCode::kOk);
  EXPECT_EQ(code("Bearer new-key", CallKind::kGenerate, "fast"), StatusCode::kOk);
  EXPECT_EQ(code("Bearer new-key", CallKind::kGenerate, "default"), StatusCode::kPermissionDenied);
  EXPECT_EQ(access.Admit("Bearer ops-key-2", CallKind::kInfo, "")->key_name(), "ops");
}

TEST(AccessControlTest, ReplaceKeysCarriesBudgetsAndInFlightCalls) {
  FakeClock clock;
  AccessControl access(Keys(), clock.Function());
  // "limited" spends its burst of 2; "narrow" holds both of its slots.
  EXPECT_TRUE(access.Admit("Bearer limited-key", CallKind::kInfo, "").ok());
  EXPECT_TRUE(access.Admit("Bearer limited-key", CallKind::kInfo, "").ok());
  absl::StatusOr<CallLease> a = access.Admit("Bearer narrow-key", CallKind::kGenerate, "d");
  absl::StatusOr<CallLease> b = access.Admit("Bearer narrow-key", CallKind::kGenerate, "d");
  ASSERT_TRUE(a.ok() && b.ok());

  // Same keys, narrow allowed 3 at once: the reload neither refills the
  // drained bucket nor forgets the two calls in flight.
  std::vector<ApiKeyConfig> keys = Keys();
  keys[3].max_concurrent = 3;
  ASSERT_TRUE(access.ReplaceKeys(keys).ok());
  EXPECT_EQ(access.Admit("Bearer limited-key", CallKind::kInfo, "").status().code(),
            absl::StatusCode::kResourceExhausted);
  absl::StatusOr<CallLease> c = access.Admit("Bearer narrow-key", CallKind::kGenerate, "d");
  ASSERT_TRUE(c.ok());
  absl::StatusOr<CallLease> d = access.Admit("Bearer narrow-key", CallKind::kGenerate, "d");
  EXPECT_THAT(d.status().message(), HasSubstr("3 generation calls in flight (max 3)"));

  // Revoked while in flight: the calls run on and release their slots into
  // the old state; the key is refused from now on.
  keys.pop_back();
  ASSERT_TRUE(access.ReplaceKeys(keys).ok());
  EXPECT_EQ(a->key_name(), "narrow");
  a->Release();
  EXPECT_EQ(access.Admit("Bearer narrow-key", CallKind::kGenerate, "d").status().code(),
            absl::StatusCode::kUnauthenticated);
  // Back again later: a fresh identity with nothing in flight.
  ASSERT_TRUE(access.ReplaceKeys(Keys()).ok());
  EXPECT_TRUE(access.Admit("Bearer narrow-key", CallKind::kGenerate, "d").ok());
  // The bucket refills at its rate across reloads.
  clock.now += std::chrono::seconds(1);
  EXPECT_TRUE(access.Admit("Bearer limited-key", CallKind::kInfo, "").ok());
}

TEST(AccessControlTest, ReplaceKeysRefusesBadListsAndKeepsTheOldOnes) {
  AccessControl access(Keys());
  std::vector<ApiKeyConfig> duplicate = Keys();
  duplicate[1].name = "user";
  absl::StatusOr<AccessControl::ReloadSummary> refused = access.ReplaceKeys(duplicate);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  refused = access.ReplaceKeys({});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("turn authentication off"));
  EXPECT_TRUE(access.Admit("Bearer user-key", CallKind::kInfo, "").ok());
  EXPECT_EQ(access.Admit(std::nullopt, CallKind::kInfo, "").status().code(),
            absl::StatusCode::kUnauthenticated);

  AccessControl open({});
  refused = open.ReplaceKeys(Keys());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(open.Admit(std::nullopt, CallKind::kAdmin, "").ok());
  EXPECT_TRUE(open.ReplaceKeys({}).ok());  // nothing to do, nothing refused
}

}  // namespace
}  // namespace loopserve
