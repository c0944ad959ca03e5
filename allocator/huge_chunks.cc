#include "allocator/huge_chunks.h"

#include <sys/mman.h>
#include <time.h>

#include <algorithm>

#include "runtime/keys/pku.h"
#include "trampolines/gate_layout.h"

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25  // <asm-generic/mman-common.h>; glibc 2.36 lacks it
#endif

namespace mpkbox::internal {
namespace {

constexpr size_t kChunkPages = kHugeChunkBytes / MPKBOX_PAGE_SIZE;

int64_t Nanos() {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return int64_t{t.tv_sec} * 1'000'000'000 + t.tv_nsec;
}

size_t PresentPages(uintptr_t chunk, size_t bytes) {
  unsigned char present[kChunkPages];
  if (mincore(reinterpret_cast<void*>(chunk), bytes, present) != 0) return 0;
  size_t n = 0;
  for (size_t i = 0; i < (bytes + MPKBOX_PAGE_SIZE - 1) / MPKBOX_PAGE_SIZE;
       ++i) {
    n += present[i] & 1;
  }
  return n;
}

}  // namespace

void CollapseDenseChunks(TaggedHooks* h) {
  if (h->collapse_countdown > 0) {
    --h->collapse_countdown;
    return;
  }
  if (h->collapse_interval == 0) h->collapse_interval = kCollapseCheckEvery;
  h->collapse_countdown = h->collapse_interval - 1;
  const uintptr_t end = h->TaggedEnd();
  uintptr_t limit = h->window_end;
  if (h->max_window_bytes != 0) {
    limit = std::min(limit, h->window_base + h->max_window_bytes);
  }
  const uintptr_t first =
      (h->window_base + kHugeChunkBytes - 1) & ~(kHugeChunkBytes - 1);
  const int64_t deadline = Nanos() + kCollapseBudgetNanos;
  for (uintptr_t chunk = first;
       chunk < end && chunk + kHugeChunkBytes <= limit;
       chunk += kHugeChunkBytes) {
    const uintptr_t chunk_end = chunk + kHugeChunkBytes;
    const size_t tagged = std::min(end, chunk_end) - chunk;
    if (PresentPages(chunk, tagged) < kDenseChunkPages) continue;
    // A collapse needs the chunk in one mapping: the rest of the last one
    // takes the heap's key now rather than as jemalloc carves it.
    if (tagged < kHugeChunkBytes) {
      if (!TagPages(reinterpret_cast<void*>(end), chunk_end - end,
                    PROT_READ | PROT_WRITE, h->key)
               .ok()) {
        return;
      }
      h->tagged_end.store(chunk_end, std::memory_order_relaxed);
    }
    // An already huge chunk returns at once.
    if (madvise(reinterpret_cast<void*>(chunk), kHugeChunkBytes,
                MADV_COLLAPSE) != 0) {
      h->collapse_interval =
          std::min(h->collapse_interval * 2, kCollapseCheckMax);
      return;
    }
    if (Nanos() > deadline) {
      h->collapse_countdown = 0;  // the rest at the next re-tag
      return;
    }
  }
}

}  // namespace mpkbox::internal
