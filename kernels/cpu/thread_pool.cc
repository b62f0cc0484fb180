// Fork-join pool: one job at a time, published through a single atomic
// "ticket" so a late worker can never claim a chunk of a job it did not see.
#include "kernels/cpu/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "kernels/cpu/op_profile.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace loopserve {
namespace {

// Ticket layout: [generation:32][num_chunks:16][next_chunk:16]. Packing the
// chunk count and the generation with the claim counter lets a worker take a
// chunk with one CAS and know the job is still the one it woke up for; the
// job's other fields are stable while any of its chunks is unfinished.
constexpr int kChunkBits = 16;
constexpr uint64_t kChunkMask = (uint64_t{1} << kChunkBits) - 1;
constexpr int kMaxChunks = static_cast<int>(kChunkMask);

uint64_t MakeTicket(uint32_t generation, uint32_t num_chunks) {
  return (uint64_t{generation} << 32) | (uint64_t{num_chunks} << kChunkBits);
}
uint32_t TicketGeneration(uint64_t t) { return static_cast<uint32_t>(t >> 32); }
uint32_t TicketChunks(uint64_t t) { return static_cast<uint32_t>((t >> kChunkBits) & kChunkMask); }
uint32_t TicketNext(uint64_t t) { return static_cast<uint32_t>(t & kChunkMask); }

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

// Spin iterations before a worker (or the waiting caller) sleeps: long
// enough to cover the gap between consecutive per-layer calls in a step,
// short enough not to starve other processes on a loaded machine.
constexpr int kSpinIterations = 4000;

}  // namespace

struct ThreadPool::State {
  std::atomic<uint64_t> ticket{0};
  std::atomic<int> done{0};
  std::atomic<int> sleepers{0};
  std::atomic<bool> caller_sleeping{false};
  bool stop = false;  // guarded by mu

  // The current job; written only while no chunk of the previous job is
  // outstanding.
  const std::function<void(int64_t, int64_t)>* fn = nullptr;
  int64_t n = 0;
  const char* phase = nullptr;  // the caller's op_profile phase, for the workers

  std::mutex mu;
  std::condition_variable work_cv;
  std::condition_variable done_cv;
  std::mutex call_mu;  // serialises ParallelFor callers
  std::vector<std::thread> workers;

  // Claims and runs chunks of `generation` until none is left.
  void RunChunks(uint32_t generation) {
    uint64_t t = ticket.load(std::memory_order_acquire);
    while (true) {
      if (TicketGeneration(t) != generation || TicketNext(t) >= TicketChunks(t)) return;
      if (!ticket.compare_exchange_weak(t, t + 1, std::memory_order_acq_rel,
                                        std::memory_order_acquire)) {
        continue;
      }
      const int64_t chunks = TicketChunks(t);
      const int64_t c = TicketNext(t);
      ++op_profile::t_in_parallel_chunk;
      const char* own_phase = op_profile::t_phase;
      op_profile::t_phase = phase;
      (*fn)(n * c / chunks, n * (c + 1) / chunks);
      op_profile::t_phase = own_phase;
      --op_profile::t_in_parallel_chunk;
      if (done.fetch_add(1, std::memory_order_seq_cst) + 1 == chunks &&
          caller_sleeping.load(std::memory_order_seq_cst)) {
        std::lock_guard<std::mutex> lock(mu);
        done_cv.notify_all();
      }
      t = ticket.load(std::memory_order_acquire);
    }
  }

  void WorkerLoop() {
    uint32_t seen = 0;
    while (true) {
      uint32_t generation = seen;
      for (int i = 0; i < kSpinIterations && generation == seen; ++i) {
        CpuRelax();
        generation = TicketGeneration(ticket.load(std::memory_order_acquire));
      }
      if (generation == seen) {
        std::unique_lock<std::mutex> lock(mu);
        sleepers.fetch_add(1, std::memory_order_seq_cst);
        work_cv.wait(lock, [&] {
          return stop || TicketGeneration(ticket.load(std::memory_order_seq_cst)) != seen;
        });
        sleepers.fetch_sub(1, std::memory_order_seq_cst);
        if (stop) return;
        generation = TicketGeneration(ticket.load(std::memory_order_acquire));
      }
      seen = generation;
      RunChunks(generation);
    }
  }
};

ThreadPool::ThreadPool(int num_threads)
    : num_threads_(std::clamp(num_threads <= 0 ? DefaultThreads() : num_threads, 1, kMaxChunks)),
      state_(std::make_unique<State>()) {
  for (int i = 1; i < num_threads_; ++i) {
    state_->workers.emplace_back([s = state_.get()] { s->WorkerLoop(); });
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->stop = true;
  }
  state_->work_cv.notify_all();
  for (std::thread& t : state_->workers) t.join();
}

int ThreadPool::DefaultThreads() {
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

void ThreadPool::ParallelFor(int64_t n, int64_t min_chunk,
                             const std::function<void(int64_t begin, int64_t end)>& fn) {
  if (n <= 0) return;
  min_chunk = std::max<int64_t>(1, min_chunk);
  // floor(n / chunks) >= min_chunk for every chunk.
  const int64_t chunks = std::min<int64_t>(num_threads_, std::max<int64_t>(1, n / min_chunk));
  if (chunks == 1) {
    fn(0, n);
    return;
  }
  Run(n, chunks, fn);
}

void ThreadPool::ParallelForEach(int64_t n, const std::function<void(int64_t i)>& fn) {
  if (n <= 0) return;
  if (num_threads_ == 1 || n == 1) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  const int64_t chunks = std::min<int64_t>(n, kMaxChunks);
  Run(n, chunks, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) fn(i);
  });
}

void ThreadPool::Run(int64_t n, int64_t chunks,
                     const std::function<void(int64_t begin, int64_t end)>& fn) {
  State& s = *state_;
  std::lock_guard<std::mutex> call_lock(s.call_mu);
  s.fn = &fn;
  s.n = n;
  s.phase = op_profile::t_phase;
  s.done.store(0, std::memory_order_relaxed);
  const uint32_t generation = TicketGeneration(s.ticket.load(std::memory_order_relaxed)) + 1;
  s.ticket.store(MakeTicket(generation, static_cast<uint32_t>(chunks)), std::memory_order_seq_cst);
  if (s.sleepers.load(std::memory_order_seq_cst) > 0) {
    { std::lock_guard<std::mutex> lock(s.mu); }
    s.work_cv.notify_all();
  }
  s.RunChunks(generation);
  // Profiling: the time the caller waits for the workers after its chunks.
  op_profile::Scope profile("pool.wait_for_workers");

  for (int i = 0; i < kSpinIterations; ++i) {
    if (s.done.load(std::memory_order_acquire) == chunks) return;
    CpuRelax();
  }
  std::unique_lock<std::mutex> lock(s.mu);
  s.caller_sleeping.store(true, std::memory_order_seq_cst);
  s.done_cv.wait(lock, [&] { return s.done.load(std::memory_order_seq_cst) == chunks; });
  s.caller_sleeping.store(false, std::memory_order_relaxed);
}

}  // namespace loopserve
