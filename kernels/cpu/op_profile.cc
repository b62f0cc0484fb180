// Storage of op_profile: a mutex-guarded map, touched only while profiling.
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
};

Table& GetTable() {
  static Table* table = new Table();
  return *table;
}

}  // namespace

void SetEnabled(bool on) { g_enabled.store(on, std::memory_order_relaxed); }

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

void Add(const char* name, int64_t a, int64_t b, double seconds) {
  char buf[160];
  if (a >= 0) {
    std::snprintf(buf, sizeof(buf), "%s %lldx%lld", name, static_cast<long long>(a),
                  static_cast<long long>(b));
  } else {
    std::snprintf(buf, sizeof(buf), "%s", name);
  }
  const std::string key(buf);
  Table& t = GetTable();
  std::lock_guard<std::mutex> lock(t.mu);
  Entry& e = t.entries[key];
  if (e.calls == 0) e.name = key;
  ++e.calls;
  e.seconds += seconds;
}

}  // namespace loopserve::op_profile
