// The runtime's side of a thread's HeapCache (heap_cache.h): its trusted
// copy of what each magazine holds, the stash of freed regions for the next
// refill, and the helpers the compartment heap's files share. Private to
// the compartment heap's files.
#ifndef MPKBOX_ALLOCATOR_MAGAZINES_H_
#define MPKBOX_ALLOCATOR_MAGAZINES_H_

#include <jemalloc/jemalloc.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "absl/base/attributes.h"
#include "allocator/address_zone.h"
#include "allocator/compartment_heap.h"
#include "allocator/heap_cache.h"
#include "trampolines/thread_block.h"

namespace mpkbox::internal {

inline constexpr uint32_t kStashSlots = 128;
inline constexpr unsigned kNoTcache = ~0u;

// What the runtime knows about one thread's HeapCache: on the host heap,
// trusted. placed[c][0, known[c]) are the regions it last saw in magazine c.
struct HeapThread {
  ThreadBlock* tb;
  size_t slot;
  HeapCache* cache;  // compartment memory: read, never believed
  unsigned tcache = kNoTcache;
  uint32_t active = 0;  // magazines holding regions
  uint32_t known[kNumCachedClasses] = {};
  void* placed[kNumCachedClasses][kMagazineSlots];
  // Freed regions kept for the next refill: jemalloc costs more than the
  // gate's amortized share (bench/RESULTS.md).
  struct Stash {
    uint32_t n = 0;
    void* p[kStashSlots];
  } stash[kNumCachedClasses];
  // The thread's TLS blocks (tls_blocks.cc): what cache->tls_blocks should
  // hold, which the compartment may overwrite.
  void* tls[kMaxTlsModules] = {};
};

inline size_t ClassOf(size_t bytes) {
  return kSizeClassOf.of[(std::max(bytes, kMinAllocation) + 15) / 16];
}

// The thread's own jemalloc tcache: no region crosses compartments in one.
inline int TcacheFlags(const HeapThread* t) {
  return t != nullptr && t->tcache != kNoTcache ? MALLOCX_TCACHE(t->tcache)
                                                : MALLOCX_TCACHE_NONE;
}

// p was live and its bit is clear now. Inline, always: the free paths of
// the entry, the flush and the host all end here.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline void CompartmentHeap::Release(
    HeapThread* t, void* p) {
  const uint8_t c = live_.PageClass(reinterpret_cast<uintptr_t>(p));
  if (c == kNoClass) {
    live_bytes_ -= sallocx(p, 0);
    dallocx(p, TcacheFlags(t));
    return;
  }
  live_bytes_ -= kClassSize[c];
  if (t != nullptr && t->stash[c].n < kStashSlots) {
    t->stash[c].p[t->stash[c].n++] = p;
    return;
  }
  sdallocx(p, kClassSize[c], TcacheFlags(t));
}

}  // namespace mpkbox::internal

#endif  // MPKBOX_ALLOCATOR_MAGAZINES_H_
