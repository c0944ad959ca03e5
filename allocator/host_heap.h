// The process's own heaps, set up by the first malloc of the process (before
// main, long before Runtime::Init):
// - the host heap, a jemalloc arena whose extents and metadata carry the
//   trusted key, so compartments can neither read nor write it;
// - the ambient heap, key 0 (readable by compartments), for what ld.so
//   allocates: thread vectors and TLS blocks that compartment code reads
//   through __tls_get_addr.
// The trusted key is allocated here, so every thread created afterwards
// inherits a PKRU that opens it.
#ifndef MPKBOX_ALLOCATOR_HOST_HEAP_H_
#define MPKBOX_ALLOCATOR_HOST_HEAP_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"
#include "trampolines/thread_block.h"
#include "allocator/tagged_arena.h"

namespace mpkbox::internal {

class CompartmentHeap;

struct HostHeap {
  unsigned host_arena = 0;
  int host_flags = 0;     // mallocx flags: the host arena
  int ambient_flags = 0;  // the ambient arena, no thread cache
  uintptr_t loader_lo = 0, loader_hi = 0;  // ld.so's code
  int trusted_key = -1;
  // Why the heaps are not tagged, if they are not. Plain data: the first
  // malloc may come before any static constructor has run.
  char error[200] = {};
};

// Lives on the trusted key: jemalloc calls these hooks with host rights.
struct AllocatorTables {
  TaggedHooks host_hooks;
  TaggedHooks ambient_hooks;
  std::atomic<CompartmentHeap*> heaps[kMaxCompartments];  // by slot
};

extern constinit HostHeap g_host;
extern AllocatorTables* g_allocator_tables;
extern constinit std::atomic<int> g_allocator_state;  // 2 once the heaps exist
inline constexpr int kAllocatorReady = 2;

// Sets the heaps up on first use; reentrant calls (from jemalloc's own
// initialization) get jemalloc's default arena.
void InitAllocator();

inline int HostFlagsFor(const void* caller) {
  if (g_allocator_state.load(std::memory_order_acquire) != kAllocatorReady) {
    InitAllocator();
    if (g_allocator_state.load(std::memory_order_acquire) != kAllocatorReady) {
      return 0;
    }
  }
  const uintptr_t c = reinterpret_cast<uintptr_t>(caller);
  return c - g_host.loader_lo < g_host.loader_hi - g_host.loader_lo
             ? g_host.ambient_flags
             : g_host.host_flags;
}

// For Runtime::Init: the trusted key the heaps carry, or why there is none.
absl::StatusOr<int> HostHeapTrustedKey();

// jemalloc's own malloc and free, for their fast path, once found (a static
// constructor looks them up; before that, and for ld.so, mallocx serves).
using MallocFn = void* (*)(size_t);
using FreeFn = void (*)(void*);
extern constinit MallocFn g_jemalloc_malloc;
extern constinit FreeFn g_jemalloc_free;
// 1 once this thread's automatic jemalloc arena is the host arena, so that
// g_jemalloc_malloc serves the host heap; -1 if it cannot be.
extern constinit thread_local int8_t t_bound_to_host;
// Binds this thread (the first malloc of each thread does it).
void BindThreadToHostArena();

// The ambient heap keeps a set of its live allocations: its pointers are
// readable by compartments, which may hand them to host code that frees.
void* AmbientAllocate(size_t n, int flags);
bool AmbientIsLive(const void* p);
bool AmbientForget(const void* p);  // false if p was no live allocation
void AmbientRemember(const void* p);

}  // namespace mpkbox::internal

#endif  // MPKBOX_ALLOCATOR_HOST_HEAP_H_
