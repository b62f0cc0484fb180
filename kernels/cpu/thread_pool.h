// A fixed fork-join worker pool for the CPU kernels: ParallelFor splits an
// index range into contiguous chunks, runs them on the workers and the
// calling thread, and returns when all are done.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

namespace loopserve {

class ThreadPool {
 public:
  // num_threads counts the caller: 1 runs everything inline.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  // Calls fn(begin, end) over disjoint chunks covering [0, n). Chunks hold
  // at least `min_chunk` indices so tiny loops stay on one thread. Not
  // reentrant: fn must not call ParallelFor on the same pool.
  void ParallelFor(int64_t n, int64_t min_chunk,
                   const std::function<void(int64_t begin, int64_t end)>& fn);

  // Calls fn(i) for every i in [0, n), each index its own chunk claimed by
  // whichever thread is free next: for a few uneven tasks (a batch's routed
  // experts), where equal contiguous chunks would leave a thread idle.
  // Not reentrant either.
  void ParallelForEach(int64_t n, const std::function<void(int64_t i)>& fn);

  // Threads to use when the caller passes 0: hardware concurrency.
  static int DefaultThreads();

 private:
  struct State;
  // Runs `chunks` equal chunks of [0, n) on the workers and the caller.
  void Run(int64_t n, int64_t chunks, const std::function<void(int64_t, int64_t)>& fn);
  int num_threads_;
  std::unique_ptr<State> state_;
};

}  // namespace loopserve
