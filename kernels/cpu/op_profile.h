// Optional wall-time accounting per CPU kernel call, for benches
// (loopserve_engine_bench --profile): off by default, and then an
// instrumented kernel pays one relaxed atomic load and a branch. Kernels may
// also report the weight bytes they streamed and the FLOPs they did (so the
// table gives GB/s and GFLOP/s per op), and a bench may record the order in
// which weight tensors are read (for a cache-reuse model).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace loopserve::op_profile {

inline std::atomic<bool> g_enabled{false};
inline std::atomic<bool> g_trace_weights{false};
// > 0 while this thread runs a chunk of a ThreadPool job: kernels called
// inside a parallel region are not timed on their own (the region's caller
// times the whole region), so the table stays a breakdown of wall time.
inline thread_local int t_in_parallel_chunk = 0;
// Optional prefix of every key recorded on this thread (e.g. "loop 1"), set
// by Phase; null = none.
inline thread_local const char* t_phase = nullptr;

inline bool Enabled() {
  return g_enabled.load(std::memory_order_relaxed) && t_in_parallel_chunk == 0;
}
void SetEnabled(bool on);
// Whether the engine tags keys with its phase (loop t, exit check, head).
void SetPhases(bool on);
bool PhasesEnabled();
void Reset();

struct Entry {
  std::string name;  // [phase] kernel name plus the shape that tells calls apart
  int64_t calls = 0;
  double seconds = 0;
  double weight_bytes = 0;  // weight bytes the calls read (as stored: bf16 = 2)
  double flops = 0;         // multiply-adds x 2 the calls did
};
// Every entry recorded since Reset, largest time first.
std::vector<Entry> Snapshot();

// Adds one call of `name` (with dims a x b when a >= 0) taking `seconds`.
void Add(const char* name, int64_t a, int64_t b, double seconds, double weight_bytes = 0,
         double flops = 0);

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
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(),
        weight_bytes_, flops_);
  }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

  bool active() const { return name_ != nullptr; }
  // What this call read and computed (ignored when not profiling).
  void Count(double weight_bytes, double flops) {
    weight_bytes_ += weight_bytes;
    flops_ += flops;
  }

 private:
  const char* name_ = nullptr;
  int64_t a_ = -1, b_ = -1;
  double weight_bytes_ = 0, flops_ = 0;
  std::chrono::steady_clock::time_point start_;
};

// Sets this thread's phase tag for its lifetime (when phases are enabled).
class Phase {
 public:
  explicit Phase(const char* tag) : saved_(t_phase) {
    if (PhasesEnabled()) t_phase = tag;
  }
  ~Phase() { t_phase = saved_; }
  Phase(const Phase&) = delete;
  Phase& operator=(const Phase&) = delete;

 private:
  const char* saved_;
};

// ---- weight read trace (for a cache model in the bench) ----------------------
struct WeightRead {
  const void* data;  // the tensor's first byte: identifies the tensor
  int64_t bytes;
  const char* phase;  // the reader's phase tag (null when phases are off)
};
void SetTraceWeights(bool on);
inline bool TracingWeights() { return g_trace_weights.load(std::memory_order_relaxed); }
// Records that a kernel streamed `bytes` of the tensor at `data` (any thread).
void RecordWeightRead(const void* data, int64_t bytes);
// The reads recorded since the last call, in order; clears them.
std::vector<WeightRead> TakeWeightReads();

}  // namespace loopserve::op_profile
