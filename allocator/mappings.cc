// Loaded code's anonymous mmap, served from its heap: whole pages of the
// compartment's arena, with its key, read-write, never executable. They are
// not live allocations (compartment code's free of one is a bad free); the
// host's record of the compartment's mappings (runtime/compartment_libc/
// memory.cc) is what says one may be unmapped. They go with the arena at
// Reset and destruction, like thread-local blocks.
#include <jemalloc/jemalloc.h>

#include <mutex>

#include "allocator/compartment_heap.h"

namespace mpkbox::internal {

void* CompartmentHeap::AllocateMapping(size_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  // Page-aligned, so protections and madvise apply to its pages alone.
  const int flags = MALLOCX_ARENA(arena_) | MALLOCX_TCACHE_NONE |
                    MALLOCX_ZERO | MALLOCX_ALIGN(MPKBOX_PAGE_SIZE);
  const size_t usable = nallocx(bytes, flags);
  if (bytes == 0 || usable == 0 || !Fits(usable)) {
    ++stats_.failed_allocations;
    return nullptr;
  }
  void* p = mallocx(bytes, flags);
  if (p == nullptr) {
    ++stats_.failed_allocations;
    return nullptr;
  }
  NoteClass(reinterpret_cast<uintptr_t>(p), usable);
  NoteLive(static_cast<ptrdiff_t>(usable));
  return p;
}

void CompartmentHeap::FreeMapping(void* p) {
  std::lock_guard<std::mutex> lock(mu_);
  live_bytes_ -= sallocx(p, 0);
  dallocx(p, MALLOCX_TCACHE_NONE);
}

}  // namespace mpkbox::internal
