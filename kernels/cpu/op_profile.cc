// Storage of op_profile: mutex-guarded tables, touched only while profiling.
#include "kernels/cpu/op_profile.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <mutex>

namespace loopserve::op_profile {
namespace {

struct Table {
  std::mutex mu;
  std::map<std::string, Entry> entries;
  std::vector<WeightRead> reads;
  std::atomic<bool> phases{false};
};

Table& GetTable() {
  static Table* table = new Table();
  return *table;
}

}  // namespace

void SetEnabled(bool on) { g_enabled.store(on, std::memory_order_relaxed); }
void SetPhases(bool on) { GetTable().phases.store(on, std::memory_order_relaxed); }
bool PhasesEnabled() { return GetTable().phases.load(std::memory_order_relaxed); }

void Reset() {
  Table& t = GetTable();
  std::lock_guard<std::mutex> lock(t.mu);
  t.entries.clear();
}

std::vector<Entry> Snapshot() {
  Table& t = GetTable();
  std::vector<Entry> out;
  {
    std::lock_guard<std::mutex> lock(t.mu);
    for (const auto& [key, e] : t.entries) out.push_back(e);
  }
  std::sort(out.begin(), out.end(),
            [](const Entry& x, const Entry& y) { return x.seconds > y.seconds; });
  return out;
}

void Add(const char* name, int64_t a, int64_t b, double seconds, double weight_bytes,
         double flops) {
  char buf[200];
  const char* phase = t_phase;
  const int used = phase != nullptr ? std::snprintf(buf, sizeof(buf), "[%s] ", phase) : 0;
  if (a >= 0) {
    std::snprintf(buf + used, sizeof(buf) - used, "%s %lldx%lld", name, static_cast<long long>(a),
                  static_cast<long long>(b));
  } else {
    std::snprintf(buf + used, sizeof(buf) - used, "%s", name);
  }
  const std::string key(buf);
  Table& t = GetTable();
  std::lock_guard<std::mutex> lock(t.mu);
  Entry& e = t.entries[key];
  if (e.calls == 0) e.name = key;
  ++e.calls;
  e.seconds += seconds;
  e.weight_bytes += weight_bytes;
  e.flops += flops;
}

void SetTraceWeights(bool on) { g_trace_weights.store(on, std::memory_order_relaxed); }

void RecordWeightRead(const void* data, int64_t bytes) {
  Table& t = GetTable();
  std::lock_guard<std::mutex> lock(t.mu);
  t.reads.push_back(WeightRead{data, bytes, t_phase});
}

std::vector<WeightRead> TakeWeightReads() {
  Table& t = GetTable();
  std::lock_guard<std::mutex> lock(t.mu);
  std::vector<WeightRead> out;
  out.swap(t.reads);
  return out;
}

}  // namespace loopserve::op_profile
