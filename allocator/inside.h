// What compartment code runs of the allocator: finding its thread's
// HeapCache, and the allocator entry through the callback gate. Inline: the
// malloc family's fast paths (libc_overrides/malloc.cc) are built on these.
#ifndef MPKBOX_ALLOCATOR_INSIDE_H_
#define MPKBOX_ALLOCATOR_INSIDE_H_

#include <cstdint>

#include "absl/base/optimization.h"
#include "allocator/compartment_heap.h"
#include "allocator/heap_cache.h"
#include "trampolines/thread_block.h"
#include "trampolines/trampolines.h"

namespace mpkbox::internal {

// The SelectorPage if compartment code runs, else null. The signal
// dispatcher clears current_domain while it runs with host rights.
inline SelectorPage* CompartmentThread() {
  SelectorPage* sel = mpkbox_tls_thread;
  if (ABSL_PREDICT_TRUE(sel == nullptr || sel->current_domain == 0)) {
    return nullptr;
  }
  return sel;
}

inline HeapCache* CacheOf(SelectorPage* sel) {
  return HeapCacheTable(sel)[SlotOfDomain(sel->current_domain)];
}

inline uint64_t EnterAllocator(uint64_t op, uint64_t a, uint64_t b = 0) {
  using Entry = uint64_t (*)(uint64_t, uint64_t, uint64_t);
  return reinterpret_cast<Entry>(
      mpkbox_callback_stubs +
      (MPKBOX_ALLOCATOR_CALLBACK << MPKBOX_CB_STUB_SHIFT))(op, a, b);
}

// The thread's HeapCache, which the allocator entry creates on first use
// (null only if the heap cannot hold it).
inline HeapCache* EnsureCache(SelectorPage* sel) {
  if (HeapCache* cache = CacheOf(sel); ABSL_PREDICT_TRUE(cache != nullptr)) {
    return cache;
  }
  EnterAllocator(kOpUsableSize, 0);
  return CacheOf(sel);
}

}  // namespace mpkbox::internal

#endif  // MPKBOX_ALLOCATOR_INSIDE_H_
