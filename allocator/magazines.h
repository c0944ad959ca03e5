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
#include <vector>

#include "absl/base/attributes.h"
#include "allocator/address_zone.h"
#include "allocator/compartment_heap.h"
#include "allocator/heap_cache.h"
#include "trampolines/thread_block.h"

namespace mpkbox::internal {

inline constexpr unsigned kNoTcache = ~0u;
// Refill hands a class's regions out in address order while its stash has
// lately held this much (half this CPU's L2).
inline constexpr size_t kSortedStashBytes = size_t{1} << 20;
inline constexpr int64_t kStashDecayNanos = 50'000'000;

// How many regions a magazine is filled to: about 128 KiB's worth (at least
// 32 regions up to 4 KiB, 2 of the big classes).
struct FillCountTable {
  uint32_t fill[kNumCachedClasses];
  constexpr FillCountTable() : fill() {
    for (size_t c = 0; c < kNumCachedClasses; ++c) {
      const bool small = c < kNumSmallCachedClasses;
      fill[c] = std::clamp<uint32_t>(131072 / kClassSize[c], small ? 32 : 2,
                                     MagazineSlotsOf(c));
    }
  }
};
inline constexpr FillCountTable kFillCount{};

// Sorts [first, last), at most kMagazineSlots + 1 pointers, by `less`,
// cheaply when they are a few blocks each in nearly sorted order (a tree
// freed in post-order whose nodes were laid out in pre-order: about 3
// pointers a run, each a few places from its own): insertion sort within
// a block, a new block at each pointer below the block's first, then one
// merge of the blocks. A compartment that frees in any other order gets
// std::sort once the moves pass a few per pointer.
template <typename Less>
void SortBatch(void** first, void** last, Less less) {
  constexpr size_t kMax = kMagazineSlots + 1;
  const size_t n = static_cast<size_t>(last - first);
  if (n < 2) return;
  if (n > kMax) {
    std::sort(first, last, less);
    return;
  }
  uint16_t blocks[kMax + 1];
  size_t num_blocks = 0;
  blocks[0] = 0;
  void** block = first;
  const ptrdiff_t budget = 4 * static_cast<ptrdiff_t>(n);
  ptrdiff_t moves = 0;
  for (void** i = first + 1; i < last; ++i) {
    void* v = *i;
    if (less(v, *block)) {  // below the whole block: a new one
      block = i;
      blocks[++num_blocks] = static_cast<uint16_t>(i - first);
      continue;
    }
    void** j = i;
    for (; less(v, j[-1]); --j) *j = j[-1];  // stops at *block at the latest
    *j = v;
    moves += i - j;
    if (moves > budget) {
      std::sort(first, last, less);
      return;
    }
  }
  blocks[++num_blocks] = static_cast<uint16_t>(n);
  if (num_blocks == 1) return;
  if (num_blocks > 8) {
    std::sort(first, last, less);
    return;
  }
  void* buffer[kMax];
  while (num_blocks > 1) {
    size_t merged = 0;
    for (size_t r = 0; r < num_blocks; r += 2) {
      if (r + 1 < num_blocks) {
        void** a = first + blocks[r];
        void** b = first + blocks[r + 1];
        void** end = first + blocks[r + 2];
        std::merge(a, b, b, end, buffer, less);
        std::copy(buffer, buffer + (end - a), a);
      }
      blocks[++merged] = blocks[std::min(r + 2, num_blocks)];
    }
    num_blocks = merged;
  }
}

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
  // Freed regions kept for the next refills, so a compartment that frees
  // and allocates thousands of regions again (a parser's document) never
  // reaches jemalloc: mallocx and sdallocx of one region cost more than
  // the whole trip through the magazines (bench/RESULTS.md, issue 14).
  // Host memory, counted against the limit (stashed_bytes_), and taken
  // back from every thread when the limit refuses (ReleaseStashes). Last
  // in, first out, as jemalloc's thread cache: what was freed last is still
  // in the cache; Refill sorts each batch by address.
  std::vector<void*> stash[kNumCachedClasses];
  // The least and the most each stash held since the last decay
  // (DecayStashes), the most in the period before, and when the next decay
  // is due (CLOCK_MONOTONIC_COARSE, ns).
  size_t stash_low[kNumCachedClasses] = {};
  size_t stash_high[kNumCachedClasses] = {};
  size_t stash_high_before[kNumCachedClasses] = {};
  int64_t decay_at = 0;
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
  if (t != nullptr && stashed_bytes_ + kClassSize[c] <= StashCap()) {
    t->stash[c].push_back(p);
    stashed_bytes_ += kClassSize[c];
    return;
  }
  sdallocx(p, kClassSize[c], TcacheFlags(t));
}

}  // namespace mpkbox::internal

#endif  // MPKBOX_ALLOCATOR_MAGAZINES_H_
