// ThreadPool: every index covered exactly once, chunks respect min_chunk,
// and back-to-back jobs (the per-layer pattern) never mix.
#include "kernels/cpu/thread_pool.h"

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace loopserve {
namespace {

TEST(ThreadPoolTest, CoversEveryIndexExactlyOnce) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.num_threads(), threads);
    for (int64_t n : {0, 1, 2, 7, 64, 1000, 4097}) {
      for (int64_t min_chunk : {1, 3, 100}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        std::mutex mu;
        std::vector<std::pair<int64_t, int64_t>> chunks;
        pool.ParallelFor(n, min_chunk, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
          std::lock_guard<std::mutex> lock(mu);
          chunks.emplace_back(b, e);
        });
        for (int64_t i = 0; i < n; ++i) {
          ASSERT_EQ(hits[i].load(), 1) << "threads " << threads << " n " << n << " i " << i;
        }
        EXPECT_LE(static_cast<int>(chunks.size()), threads);
        if (chunks.size() > 1) {
          for (const auto& [b, e] : chunks) EXPECT_GE(e - b, min_chunk);
        }
      }
    }
  }
}

TEST(ThreadPoolTest, ManyBackToBackJobs) {
  ThreadPool pool(4);
  std::vector<int64_t> data(257, 0);
  for (int job = 0; job < 3000; ++job) {
    pool.ParallelFor(static_cast<int64_t>(data.size()), 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) data[i] += i + job;
    });
  }
  for (int64_t i = 0; i < static_cast<int64_t>(data.size()); ++i) {
    EXPECT_EQ(data[i], 3000 * i + 2999 * 3000 / 2);
  }
}

// Workers fall asleep between widely spaced jobs; waking must not lose a job.
TEST(ThreadPoolTest, WakesSleepingWorkers) {
  ThreadPool pool(3);
  for (int job = 0; job < 5; ++job) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::atomic<int64_t> sum{0};
    pool.ParallelFor(300, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) sum += i;
    });
    EXPECT_EQ(sum.load(), 299 * 300 / 2);
  }
}

TEST(ThreadPoolTest, ForEachCoversEveryIndexOnceAndSpreadsUnevenTasks) {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 2, 5, 100}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      pool.ParallelForEach(n, [&](int64_t i) { hits[i].fetch_add(1); });
      for (int64_t i = 0; i < n; ++i)
        ASSERT_EQ(hits[i].load(), 1) << threads << " " << n << " " << i;
    }
  }
  // One long task first: the other thread must take all the short ones
  // instead of waiting behind it in a contiguous half. Task 0 holds its
  // thread until the eight others are done (or 10 s pass, which then fails).
  ThreadPool pool(2);
  std::mutex mu;
  std::vector<std::thread::id> runner(9);
  std::atomic<int> short_done{0};
  pool.ParallelForEach(9, [&](int64_t i) {
    if (i == 0) {
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (short_done.load() < 8 && std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    } else {
      short_done.fetch_add(1);
    }
    std::lock_guard<std::mutex> lock(mu);
    runner[i] = std::this_thread::get_id();
  });
  int with_long = 0;
  for (int64_t i = 1; i < 9; ++i) with_long += runner[i] == runner[0];
  EXPECT_EQ(with_long, 0);
}

TEST(ThreadPoolTest, ZeroMeansDefaultThreads) {
  ThreadPool pool(0);
  EXPECT_EQ(pool.num_threads(), ThreadPool::DefaultThreads());
}

}  // namespace
}  // namespace loopserve
