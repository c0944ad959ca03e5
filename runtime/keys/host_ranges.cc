#include "runtime/keys/host_ranges.h"

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstddef>

namespace mpkbox::internal {
namespace {

struct Range {
  uintptr_t lo, hi;
  HostMemoryKind kind;
};

// Sorted, disjoint. One mapping reserved on first use: the heap cannot be
// used here (the host heap's own hooks record its extents).
constexpr size_t kCapacity = size_t{1} << 16;
struct Table {
  std::atomic<uint64_t> seq;  // odd while a writer changes the ranges
  size_t count;
  Range ranges[kCapacity];
};

constinit std::atomic<Table*> g_table{nullptr};
constinit std::atomic_flag g_writer = ATOMIC_FLAG_INIT;

struct WriterLock {
  WriterLock() {
    while (g_writer.test_and_set(std::memory_order_acquire)) {
    }
  }
  ~WriterLock() { g_writer.clear(std::memory_order_release); }
};

Table* TableFor(int key) {
  if (Table* t = g_table.load(std::memory_order_acquire)) return t;
  void* p = mmap(nullptr, sizeof(Table), PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  if (key > 0) pkey_mprotect(p, sizeof(Table), PROT_READ | PROT_WRITE, key);
  g_table.store(static_cast<Table*>(p), std::memory_order_release);
  return static_cast<Table*>(p);
}

// First range whose hi is above addr.
size_t LowerBound(const Table* t, size_t count, uintptr_t addr) {
  const Range* end = t->ranges + count;
  return std::upper_bound(
             t->ranges, end, addr,
             [](uintptr_t a, const Range& r) { return a < r.hi; }) -
         t->ranges;
}

// Cuts [lo, hi) out of the table. Called with the writer's lock, seq odd.
void Cut(Table* t, uintptr_t lo, uintptr_t hi) {
  size_t i = LowerBound(t, t->count, lo);
  while (i < t->count && t->ranges[i].lo < hi) {
    Range& r = t->ranges[i];
    if (r.lo < lo && r.hi > hi) {  // split in two
      if (t->count == kCapacity) return;
      std::copy_backward(t->ranges + i, t->ranges + t->count,
                         t->ranges + t->count + 1);
      ++t->count;
      t->ranges[i].hi = lo;
      t->ranges[i + 1].lo = hi;
      return;
    }
    if (r.lo < lo) {
      r.hi = lo;
      ++i;
    } else if (r.hi > hi) {
      r.lo = hi;
      return;
    } else {
      std::copy(t->ranges + i + 1, t->ranges + t->count, t->ranges + i);
      --t->count;
    }
  }
}

void BeginWrite(Table* t) { t->seq.fetch_add(1, std::memory_order_acq_rel); }
void EndWrite(Table* t) { t->seq.fetch_add(1, std::memory_order_release); }

}  // namespace

const char* HostMemoryKindName(HostMemoryKind kind) {
  switch (kind) {
    case HostMemoryKind::kStack:
      return "host stack";
    case HostMemoryKind::kData:
      return "host data";
    case HostMemoryKind::kHeap:
      return "host heap";
    case HostMemoryKind::kNone:
      break;
  }
  return "";
}

void AddHostRange(uintptr_t lo, uintptr_t hi, HostMemoryKind kind,
                  int table_key) {
  if (lo >= hi) return;
  WriterLock lock;
  Table* t = TableFor(table_key);
  if (t == nullptr) return;
  BeginWrite(t);
  Cut(t, lo, hi);
  size_t i = LowerBound(t, t->count, lo);
  // Merge with an adjacent range of the same kind on either side.
  const bool join_left =
      i > 0 && t->ranges[i - 1].hi == lo && t->ranges[i - 1].kind == kind;
  const bool join_right =
      i < t->count && t->ranges[i].lo == hi && t->ranges[i].kind == kind;
  if (join_left && join_right) {
    t->ranges[i - 1].hi = t->ranges[i].hi;
    std::copy(t->ranges + i + 1, t->ranges + t->count, t->ranges + i);
    --t->count;
  } else if (join_left) {
    t->ranges[i - 1].hi = hi;
  } else if (join_right) {
    t->ranges[i].lo = lo;
  } else if (t->count < kCapacity) {
    std::copy_backward(t->ranges + i, t->ranges + t->count,
                       t->ranges + t->count + 1);
    t->ranges[i] = Range{lo, hi, kind};
    ++t->count;
  }
  EndWrite(t);
}

void RemoveHostRange(uintptr_t lo, uintptr_t hi) {
  WriterLock lock;
  Table* t = g_table.load(std::memory_order_acquire);
  if (t == nullptr || lo >= hi) return;
  BeginWrite(t);
  Cut(t, lo, hi);
  EndWrite(t);
}

void RemoveHostRanges(HostMemoryKind kind) {
  WriterLock lock;
  Table* t = g_table.load(std::memory_order_acquire);
  if (t == nullptr) return;
  BeginWrite(t);
  size_t out = 0;
  for (size_t i = 0; i < t->count; ++i) {
    if (t->ranges[i].kind != kind) t->ranges[out++] = t->ranges[i];
  }
  t->count = out;
  EndWrite(t);
}

HostMemoryKind HostMemoryKindOf(uintptr_t addr) {
  const Table* t = g_table.load(std::memory_order_acquire);
  if (t == nullptr) return HostMemoryKind::kNone;
  for (;;) {
    const uint64_t seq = t->seq.load(std::memory_order_acquire);
    if (seq & 1) continue;
    const size_t count = std::min(t->count, kCapacity);
    const size_t i = LowerBound(t, count, addr);
    HostMemoryKind kind = i < count && t->ranges[i].lo <= addr
                              ? t->ranges[i].kind
                              : HostMemoryKind::kNone;
    std::atomic_thread_fence(std::memory_order_acquire);
    if (t->seq.load(std::memory_order_relaxed) == seq) return kind;
  }
}

void ForEachHostRange(HostMemoryKind kind, void (*fn)(uintptr_t, uintptr_t)) {
  WriterLock lock;
  const Table* t = g_table.load(std::memory_order_acquire);
  if (t == nullptr) return;
  for (size_t i = 0; i < t->count; ++i) {
    if (t->ranges[i].kind == kind) fn(t->ranges[i].lo, t->ranges[i].hi);
  }
}

}  // namespace mpkbox::internal
