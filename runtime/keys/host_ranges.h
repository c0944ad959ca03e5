// Where the host's private memory is (its stacks, its writable data, its
// heap): the trusted key's pages, by kind, so that a Call can refuse a
// pointer into them before the gate and a fault report can say what a
// compartment tried to read. In the lowest C++ layer: the allocator records
// the host heap's extents here from jemalloc's hooks, before Init.
#ifndef MPKBOX_RUNTIME_KEYS_HOST_RANGES_H_
#define MPKBOX_RUNTIME_KEYS_HOST_RANGES_H_

#include <cstdint>

namespace mpkbox::internal {

enum class HostMemoryKind : uint8_t { kNone = 0, kStack, kData, kHeap };

// "host stack", "host data", "host heap"; "" for kNone.
const char* HostMemoryKindName(HostMemoryKind kind);

// Records [lo, hi) as host memory of `kind`, replacing what it overlaps.
// `table_key` tags the table itself when it is first mapped. Allocates
// nothing from the heap (jemalloc's hooks call it).
void AddHostRange(uintptr_t lo, uintptr_t hi, HostMemoryKind kind,
                  int table_key);
// Forgets every part of [lo, hi).
void RemoveHostRange(uintptr_t lo, uintptr_t hi);
// Forgets every range of `kind`.
void RemoveHostRanges(HostMemoryKind kind);
// What holds `addr`. Lock-free; not async-signal-safe against a writer on
// the same thread.
HostMemoryKind HostMemoryKindOf(uintptr_t addr);
// Calls fn(lo, hi) for every range of `kind`, under the writers' lock.
void ForEachHostRange(HostMemoryKind kind, void (*fn)(uintptr_t, uintptr_t));

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_KEYS_HOST_RANGES_H_
