// Optional wall-time accounting per CPU kernel call, for benches
// (loopserve_engine_bench --profile): off by default, and then an
// instrumented kernel pays one relaxed atomic load and a branch.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace loopserve::op_profile {

inline std::atomic<bool> g_enabled{false};
// > 0 while this thread runs a chunk of a ThreadPool job: kernels called
// inside a parallel region are not timed on their own (the region's caller
// times the whole region), so the table stays a breakdown of wall time.
inline thread_local int t_in_parallel_chunk = 0;

inline bool Enabled() {
  return g_enabled.load(std::memory_order_relaxed) && t_in_parallel_chunk == 0;
}
void SetEnabled(bool on);
void Reset();

struct Entry {
  std::string name;  // kernel name plus the shape that tells calls apart
  int64_t calls = 0;
  double seconds = 0;
};
// Every entry recorded since Reset, largest time first.
std::vector<Entry> Snapshot();

// Adds one call of `name` (with dims a x b when a >= 0) taking `seconds`.
void Add(const char* name, int64_t a, int64_t b, double seconds);

// Times its own lifetime as one call of `name` while profiling is on.
class Scope {
 public:
  explicit Scope(const char* name, int64_t a = -1, int64_t b = -1) {
    if (!Enabled()) return;
    name_ = name;
    a_ = a;
    b_ = b;
    start_ = std::chrono::steady_clock::now();
  }
  ~Scope() {
    if (name_ == nullptr) return;
    Add(name_, a_, b_,
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
  }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  const char* name_ = nullptr;
  int64_t a_ = -1, b_ = -1;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace loopserve::op_profile
