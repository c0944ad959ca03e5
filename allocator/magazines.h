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

// How many regions a magazine is filled to: about 128 KiB's worth (at least
// 32 regions up to 4 KiB, 2 of the big classes); and how many freed ones a
// thread keeps for its next refill (outside the limit's count: few big ones).
struct FillCountTable {
  uint32_t fill[kNumCachedClasses];
  uint32_t stash[kNumCachedClasses];
  constexpr FillCountTable() : fill(), stash() {
    for (size_t c = 0; c < kNumCachedClasses; ++c) {
      const bool small = c < kNumSmallCachedClasses;
      fill[c] = std::clamp<uint32_t>(131072 / kClassSize[c], small ? 32 : 2,
                                     MagazineSlotsOf(c));
      stash[c] = small ? kStashSlots : fill[c];
    }
  }
};
inline constexpr FillCountTable kFillCount{};

// What the runtime knows about one thread's HeapCache: on the host heap,
// trusted. Placed(c)[0, known[c]) are the regions it last saw in magazine c.
struct HeapThread {
  ThreadBlock* tb;
  size_t slot;
  HeapCache* cache;  // compartment memory: read, never believed
  unsigned tcache = kNoTcache;
  uint64_t active = 0;  // magazines holding regions
  uint32_t known[kNumCachedClasses] = {};
  void* placed[kNumSmallCachedClasses][kMagazineSlots];
  void* placed_big[kNumBigCachedClasses][kBigMagazineSlots];
  // Freed regions kept for the next refill: jemalloc costs more than the
  // gate's amortized share (bench/RESULTS.md).
  struct Stash {
    uint32_t n = 0;
    void* p[kStashSlots];
  } stash[kNumCachedClasses];
  // The thread's TLS blocks (tls_blocks.cc): what cache->tls_blocks should
  // hold, which the compartment may overwrite.
  void* tls[kMaxTlsModules] = {};

  void** Placed(size_t c) {
    return c < kNumSmallCachedClasses ? placed[c]
                                      : placed_big[c - kNumSmallCachedClasses];
  }
};

inline size_t ClassOf(size_t bytes) {
  return CachedClassOf(std::max(bytes, kMinAllocation));
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
  if (t != nullptr && t->stash[c].n < kFillCount.stash[c]) {
    t->stash[c].p[t->stash[c].n++] = p;
    return;
  }
  sdallocx(p, kClassSize[c], TcacheFlags(t));
}

}  // namespace mpkbox::internal

#endif  // MPKBOX_ALLOCATOR_MAGAZINES_H_
