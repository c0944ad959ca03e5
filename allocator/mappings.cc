// Loaded code's anonymous mmap, served from its heap: whole pages of the
// compartment's arena, with its key, read-write, never executable. They are
// not live allocations (compartment code's free of one is a bad free); the
// host's record of the compartment's mappings (runtime/compartment_libc/
// memory.cc) is what says one may be unmapped. They go with the arena at
// Reset and destruction, like thread-local blocks.
#include <jemalloc/jemalloc.h>
#include <string.h>
#include <sys/mman.h>

#include <mutex>

#include "allocator/compartment_heap.h"

namespace mpkbox::internal {

// From this size on, pages are dropped (they read zero, faulted in when
// touched, as the kernel's are) rather than written with zeros: a 1 MiB
// mapping of which one page is used cost about 26 us zeroed, 3.3 us
// dropped; at 64 KiB zeroing (2.4 us) beats the madvise and fault (3.2).
constexpr size_t kDropAbove = size_t{256} << 10;

void* CompartmentHeap::AllocateMapping(size_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  // Page-aligned, so protections and madvise apply to its pages alone.
  const bool drop = bytes >= kDropAbove;
  const int flags = MALLOCX_ARENA(arena_) | MALLOCX_TCACHE_NONE |
                    (drop ? 0 : MALLOCX_ZERO) |
                    MALLOCX_ALIGN(MPKBOX_PAGE_SIZE);
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
  // Its pages are its own (page-aligned, whole pages): dropping them keeps
  // their key and protection.
  if (drop && madvise(p, bytes, MADV_DONTNEED) != 0) memset(p, 0, bytes);
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
