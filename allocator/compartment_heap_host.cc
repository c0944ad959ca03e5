// The host's side of the compartment heaps: its calls on a heap (through
// Compartment), and its free, realloc and malloc_usable_size of pointers
// in the zone. No thread cache is involved.
#include <errno.h>
#include <jemalloc/jemalloc.h>

#include <atomic>
#include <cstdio>
#include <mutex>

#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "allocator/address_zone.h"
#include "allocator/compartment_heap.h"
#include "allocator/host_heap.h"
#include "allocator/magazines.h"

namespace mpkbox::internal {

absl::StatusOr<void*> CompartmentHeap::Allocate(size_t bytes,
                                                size_t alignment) {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "compartment '%s': alignment %u is not a power of two", name_,
        alignment));
  }
  std::lock_guard<std::mutex> lock(mu_);
  void* p = AllocateLive(bytes, alignment, MALLOCX_TCACHE_NONE);
  if (p == nullptr) {
    ++stats_.failed_allocations;
    return absl::ResourceExhaustedError(absl::StrFormat(
        "compartment '%s': cannot allocate %u bytes: %u of its "
        "heap_limit_bytes %u are in use",
        name_, bytes, live_bytes_ + cached_bytes_ + stashed_bytes_, limit_));
  }
  return p;
}

bool CompartmentHeap::Free(void* p) {
  std::lock_guard<std::mutex> lock(mu_);
  ReconcileAll();
  if (!live_.TakeLive(reinterpret_cast<uintptr_t>(p))) return false;
  Release(nullptr, p);
  return true;
}

void* CompartmentHeap::Realloc(void* p, size_t bytes, bool* valid) {
  std::lock_guard<std::mutex> lock(mu_);
  ReconcileAll();
  *valid = live_.IsLive(reinterpret_cast<uintptr_t>(p));
  if (!*valid) return nullptr;
  void* q = ReallocLive(p, bytes, MALLOCX_TCACHE_NONE);
  if (q == nullptr) {
    ++stats_.failed_allocations;
    errno = ENOMEM;
  }
  return q;
}

size_t CompartmentHeap::UsableSize(const void* p) {
  std::lock_guard<std::mutex> lock(mu_);
  ReconcileAll();
  return live_.IsLive(reinterpret_cast<uintptr_t>(p)) ? sallocx(p, 0) : 0;
}

bool CompartmentHeap::Contains(uintptr_t p, size_t n) const {
  const TaggedHooks* h = __atomic_load_n(&hooks_, __ATOMIC_ACQUIRE);
  const uintptr_t end = h != nullptr ? h->TaggedEnd() : 0;
  if (p >= live_.window() && p <= end && n <= end - p) return true;
  const uintptr_t low = image_low_.load(std::memory_order_relaxed);
  const uintptr_t top = live_.window() + kWindowBytes;
  return p >= low && p <= top && n <= top - p && low != top;
}

CompartmentStats CompartmentHeap::Stats() {
  std::lock_guard<std::mutex> lock(mu_);
  ReconcileAll();
  CompartmentStats s = stats_;
  s.bytes_in_use = live_bytes_;
  return s;
}

// ---- the host's free, realloc and malloc_usable_size of zone pointers ----

void HostFreeInZone(void* p) {
  const size_t window = WindowOf(reinterpret_cast<uintptr_t>(p));
  if (window == kAmbientWindow) {
    if (AmbientForget(p)) {
      dallocx(p, MALLOCX_TCACHE_NONE);
    } else {
      fprintf(stderr,
              "mpkbox: free(%p) ignored: not a live allocation of the "
              "ambient heap\n",
              p);
    }
    return;
  }
  CompartmentHeap* heap = HeapOfSlot(window);
  if (heap == nullptr || !heap->Free(p)) {
    // Memory a compartment handed out is not the host's to trust: refuse,
    // and keep running.
    fprintf(stderr,
            "mpkbox: free(%p) ignored: not a live allocation of a "
            "compartment heap\n",
            p);
  }
}

void* HostReallocInZone(void* p, size_t bytes) {
  const size_t window = WindowOf(reinterpret_cast<uintptr_t>(p));
  if (window == kAmbientWindow) {
    if (!AmbientIsLive(p)) {
      fprintf(stderr,
              "mpkbox: realloc(%p) refused: not a live allocation of the "
              "ambient heap\n",
              p);
      errno = EINVAL;
      return nullptr;
    }
    void* q = rallocx(p, bytes, g_host.ambient_flags);
    if (q != nullptr && q != p) {
      AmbientForget(p);
      AmbientRemember(q);
    }
    return q;
  }
  CompartmentHeap* heap = HeapOfSlot(window);
  bool valid = false;
  void* q = heap != nullptr ? heap->Realloc(p, bytes, &valid) : nullptr;
  if (!valid) {
    fprintf(stderr,
            "mpkbox: realloc(%p) refused: not a live allocation of a "
            "compartment heap\n",
            p);
    errno = EINVAL;
  }
  return q;
}

size_t HostUsableSizeInZone(const void* p) {
  const size_t window = WindowOf(reinterpret_cast<uintptr_t>(p));
  if (window == kAmbientWindow) return AmbientIsLive(p) ? sallocx(p, 0) : 0;
  CompartmentHeap* heap = HeapOfSlot(window);
  return heap != nullptr ? heap->UsableSize(p) : 0;
}

}  // namespace mpkbox::internal
