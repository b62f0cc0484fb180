// Tests engine/engine_loop: the engine on its own thread, driven from other
// threads — results equal the engine run directly, exactly one finished
// event per request, cancel, deadline, queue limit, live policy updates and
// drain.
#include "engine/engine_loop.h"

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "engine/model_weights.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/unit/testing/safetensors_writer.h"

namespace loopserve {
namespace {

constexpr int kLoops = 3;

nlohmann::json LoopConfig() {
  return {{"model_type", "looped_moe"},   {"vocab_size", 48},
          {"hidden_size", 32},            {"num_attention_heads", 4},
          {"num_key_value_heads", 2},     {"max_position_embeddings", 256},
          {"num_recurrent_layers", 2},    {"num_loops", kLoops},
          {"num_experts", 4},             {"num_experts_per_tok", 2},
          {"moe_intermediate_size", 16}};
}

// Collects one request's events; Wait() returns once it finished.
struct Collector {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<GeneratedToken> tokens;
  int finished_events = 0;
  RequestEvent last;

  RequestCallback Callback() {
    return [this](const RequestEvent& e) {
      std::lock_guard<std::mutex> lock(mu);
      tokens.insert(tokens.end(), e.tokens.begin(), e.tokens.end());
      if (e.finished) {
        ++finished_events;
        last = e;
        cv.notify_all();
      }
    };
  }
  void Wait() {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [this] { return finished_events > 0; });
  }
};

class EngineLoopTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testutil::TempDir();
    ASSERT_TRUE(testutil::WriteRandomCheckpoint(dir_->path(), LoopConfig(), 5, DType::kBF16).ok());
    absl::StatusOr<std::shared_ptr<const LoadedModel>> model = LoadModel(dir_->path());
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = new std::shared_ptr<const LoadedModel>(*model);
  }
  static void TearDownTestSuite() {
    delete model_;
    delete dir_;
  }

  static std::unique_ptr<Engine> MakeEngine() {
    EngineOptions options;
    options.num_threads = 1;
    options.kv_cache_bytes = int64_t{16} << 20;
    absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Create(*model_, options);
    EXPECT_TRUE(engine.ok());
    return std::move(*engine);
  }

  static GenerationRequest Request(int seed, int max_tokens) {
    GenerationRequest r;
    for (int i = 0; i < 3 + seed % 5; ++i) r.prompt.push_back((seed * 7 + i * 3) % 48);
    r.max_tokens = max_tokens;
    return r;
  }

  static testutil::TempDir* dir_;
  static std::shared_ptr<const LoadedModel>* model_;
};

testutil::TempDir* EngineLoopTest::dir_ = nullptr;
std::shared_ptr<const LoadedModel>* EngineLoopTest::model_ = nullptr;

TEST_F(EngineLoopTest, ConcurrentSubmitsMatchTheEngineRunDirectly) {
  constexpr int kRequests = 24;
  std::vector<GenerationRequest> requests;
  for (int i = 0; i < kRequests; ++i) requests.push_back(Request(i, 6));
  absl::StatusOr<std::vector<GenerationResult>> direct = MakeEngine()->Generate(requests);
  ASSERT_TRUE(direct.ok()) << direct.status();

  EngineLoop loop(MakeEngine(), EngineLoopOptions{});
  std::vector<Collector> collectors(kRequests);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < kRequests; i += 4) {
        ASSERT_TRUE(loop.Submit(requests[i], {}, collectors[i].Callback()).ok());
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < kRequests; ++i) {
    collectors[i].Wait();
    EXPECT_EQ(collectors[i].finished_events, 1);
    EXPECT_TRUE(collectors[i].last.status.ok()) << collectors[i].last.status;
    EXPECT_EQ(collectors[i].last.finish_reason, FinishReason::kLength);
    ASSERT_EQ(collectors[i].tokens.size(), (*direct)[i].tokens.size());
    for (size_t k = 0; k < collectors[i].tokens.size(); ++k) {
      EXPECT_EQ(collectors[i].tokens[k].token, (*direct)[i].tokens[k].token) << i << "/" << k;
    }
    EXPECT_GT(collectors[i].last.timing.total_seconds, 0);
    EXPECT_GE(collectors[i].last.timing.total_seconds,
              collectors[i].last.timing.first_token_seconds);
  }
  EXPECT_EQ(loop.in_flight(), 0);
}

TEST_F(EngineLoopTest, CancelEndsTheRequestAndFreesItsBlocks) {
  EngineLoop loop(MakeEngine(), EngineLoopOptions{});
  std::atomic<int64_t> blocks_used{-1};
  loop.SetStepObserver([&](const StepStats& s) { blocks_used = s.kv_blocks_used; });
  Collector c;
  std::atomic<int64_t> id{0};
  std::atomic<bool> cancelled{false};
  RequestCallback inner = c.Callback();
  absl::StatusOr<int64_t> submitted =
      loop.Submit(Request(1, 200), {}, [&](const RequestEvent& e) {
        // Cancel from inside the first event: the callback may call back in.
        if (!e.finished && !cancelled.exchange(true)) loop.Cancel(id.load());
        inner(e);
      });
  ASSERT_TRUE(submitted.ok());
  id = *submitted;
  c.Wait();
  EXPECT_EQ(c.last.finish_reason, FinishReason::kCancelled);
  EXPECT_EQ(c.last.status.code(), absl::StatusCode::kCancelled);
  EXPECT_LT(c.tokens.size(), 200u);
  // The step after the cancel reports the pool empty again.
  for (int i = 0; i < 200 && blocks_used.load() != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(blocks_used.load(), 0);
}

TEST_F(EngineLoopTest, DeadlineExceeded) {
  EngineLoop loop(MakeEngine(), EngineLoopOptions{});
  Collector c;
  SubmitOptions options;
  options.deadline = Clock::now() + std::chrono::milliseconds(1);
  ASSERT_TRUE(loop.Submit(Request(2, 200), options, c.Callback()).ok());
  c.Wait();
  EXPECT_EQ(c.last.status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(c.last.finish_reason, FinishReason::kCancelled);
}

TEST_F(EngineLoopTest, InvalidRequestIsRefusedAtSubmit) {
  EngineLoop loop(MakeEngine(), EngineLoopOptions{});
  GenerationRequest bad = Request(3, 4);
  bad.prompt.push_back(48);  // == vocab
  Collector c;
  absl::StatusOr<int64_t> id = loop.Submit(bad, {}, c.Callback());
  EXPECT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument);
  // ... and the loop keeps serving.
  ASSERT_TRUE(loop.Submit(Request(3, 4), {}, c.Callback()).ok());
  c.Wait();
  EXPECT_TRUE(c.last.status.ok());
}

TEST_F(EngineLoopTest, QueueLimitIsResourceExhausted) {
  EngineLoopOptions options;
  options.max_queued_requests = 2;
  EngineLoop loop(MakeEngine(), options);
  // Hold the engine thread inside the observer so nothing leaves the queue.
  std::mutex gate;
  gate.lock();
  std::atomic<bool> held{false};
  loop.SetStepObserver([&](const StepStats&) {
    if (!held.exchange(true)) {
      gate.lock();
      gate.unlock();
    }
  });
  while (!held.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  Collector a, b, c;
  EXPECT_TRUE(loop.Submit(Request(4, 2), {}, a.Callback()).ok());
  EXPECT_TRUE(loop.Submit(Request(5, 2), {}, b.Callback()).ok());
  absl::StatusOr<int64_t> third = loop.Submit(Request(6, 2), {}, c.Callback());
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  gate.unlock();
  a.Wait();
  b.Wait();
  EXPECT_TRUE(a.last.status.ok());
  EXPECT_TRUE(b.last.status.ok());
}

TEST_F(EngineLoopTest, PolicyUpdateAppliesToRunningRequestsOfTheDeployment) {
  EngineLoop loop(MakeEngine(), EngineLoopOptions{});
  ExitPolicy always_first;  // max_prob >= 0 holds at the first boundary
  always_first.criterion = ExitCriterion::kMaxProb;
  always_first.threshold = 0.0;
  Collector updated, other, overridden;
  std::atomic<bool> sent{false};
  RequestCallback inner = updated.Callback();
  SubmitOptions in_d{"d", false};
  SubmitOptions in_e{"e", false};
  SubmitOptions own{"d", true};
  ASSERT_TRUE(loop.Submit(Request(7, 12), in_e, other.Callback()).ok());
  ASSERT_TRUE(loop.Submit(Request(8, 12), own, overridden.Callback()).ok());
  ASSERT_TRUE(loop.Submit(Request(7, 12), in_d,
                          [&](const RequestEvent& e) {
                            if (!sent.exchange(true)) loop.UpdatePolicy("d", always_first);
                            inner(e);
                          })
                  .ok());
  updated.Wait();
  other.Wait();
  overridden.Wait();
  ASSERT_EQ(updated.tokens.size(), 12u);
  // First token: prompt at full depth. From the third on the new policy holds.
  EXPECT_EQ(updated.tokens[0].exit_loop, kLoops - 1);
  for (size_t k = 2; k < updated.tokens.size(); ++k) EXPECT_EQ(updated.tokens[k].exit_loop, 0);
  for (const GeneratedToken& t : other.tokens) EXPECT_EQ(t.exit_loop, kLoops - 1);
  for (const GeneratedToken& t : overridden.tokens) EXPECT_EQ(t.exit_loop, kLoops - 1);
}

TEST_F(EngineLoopTest, DrainFinishesInFlightThenRefuses) {
  EngineLoop loop(MakeEngine(), EngineLoopOptions{});
  Collector a;
  ASSERT_TRUE(loop.Submit(Request(9, 8), {}, a.Callback()).ok());
  loop.Drain(std::chrono::seconds(30));
  EXPECT_EQ(a.finished_events, 1);
  EXPECT_TRUE(a.last.status.ok());
  EXPECT_EQ(a.tokens.size(), 8u);
  Collector b;
  EXPECT_EQ(loop.Submit(Request(9, 8), {}, b.Callback()).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST_F(EngineLoopTest, DrainWithoutGraceCancelsInFlight) {
  EngineLoop loop(MakeEngine(), EngineLoopOptions{});
  Collector a;
  ASSERT_TRUE(loop.Submit(Request(10, 200), {}, a.Callback()).ok());
  loop.Drain(std::chrono::milliseconds(0));
  EXPECT_EQ(a.finished_events, 1);
  EXPECT_EQ(a.last.status.code(), absl::StatusCode::kCancelled);
}

}  // namespace
}  // namespace loopserve
