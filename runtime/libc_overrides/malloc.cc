// The process's allocation entry points (this object is linked into every
// program that links mpkbox, ahead of libjemalloc.so, so its definitions are
// the ones everybody calls). Each one looks at who is running:
// - compartment code (the SelectorPage names a compartment): its HeapCache,
//   else the allocator entry through the callback gate;
// - anything else: the host heap, or the ambient heap for ld.so.
// Compartment-side code here runs with compartment rights: it reads only
// key 0, the SelectorPage and the compartment's own memory, and never
// writes errno (key 0); the allocator entry does that with host rights.
#include <errno.h>
#include <jemalloc/jemalloc.h>
#include <string.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <new>

#include "absl/base/optimization.h"
#include "allocator/address_zone.h"
#include "allocator/compartment_heap.h"
#include "allocator/host_heap.h"
#include "allocator/inside.h"
#include "allocator/heap_cache.h"
#include "trampolines/thread_block.h"

namespace mpkbox::internal {
namespace {

// Out of line, so that the fast paths below need no saved registers.
ABSL_ATTRIBUTE_NOINLINE void* InsideMallocSlow(size_t n) {
  return reinterpret_cast<void*>(EnterAllocator(kOpMalloc, n));
}
ABSL_ATTRIBUTE_NOINLINE void InsideFreeSlow(void* p) {
  EnterAllocator(kOpFree, reinterpret_cast<uintptr_t>(p));
}

inline void* InsideMalloc(SelectorPage* sel, size_t n) {
  size_t offset;
  if (ABSL_PREDICT_TRUE(n <= kMaxSmallCachedSize)) {
    offset = kMagazineOffsetOf.of[(n + 15) / 16];
  } else if (n <= kMaxCachedSize) {
    offset = kBigMagazineOffsetOf.of[(n + 1023) / 1024];
  } else {
    return InsideMallocSlow(n);
  }
  if (HeapCache* cache = CacheOf(sel); ABSL_PREDICT_TRUE(cache != nullptr)) {
    // A big class's magazine has fewer slots than the bound below: a
    // forged count reads on inside the HeapCache (heap_cache.h).
    Magazine& m = *reinterpret_cast<Magazine*>(
        reinterpret_cast<char*>(cache) + offset);
    void* p;
    if (const uint32_t h = m.nhot; h - 1 < kHotSlots) {
      m.nhot = h - 1;
      p = m.hot[h - 1];
      --cache->frees.hot;
      ++cache->hot_mallocs;
    } else {
      const uint32_t c = m.count;
      if (ABSL_PREDICT_FALSE(c - 1 >= kMagazineSlots)) {
        return InsideMallocSlow(n);
      }
      m.count = c - 1;
      p = m.slots[c - 1];
    }
    cache->last = p;
    cache->last_magazine = &m;
    return p;
  }
  return InsideMallocSlow(n);
}

// Compartment memory only, with compartment rights: a cache it corrupted
// misleads its own mallocs, never the runtime, which checks every region.
inline void InsideFree(SelectorPage* sel, void* p) {
  if (HeapCache* cache = CacheOf(sel); ABSL_PREDICT_TRUE(cache != nullptr)) {
    // A region of a cached class goes on its magazine's hot stack: the
    // last malloc's, or the one the compartment's copy of the class bytes
    // names (a wrong one, or a wrong window, only ever misleads the
    // compartment's own mallocs).
    if (p == cache->last && p != nullptr) {
      Magazine& m = *cache->last_magazine;
      if (const uint32_t h = m.nhot; ABSL_PREDICT_TRUE(h < kHotSlots)) {
        m.hot[h] = p;
        m.nhot = h + 1;
        ++cache->frees.hot;
        cache->last = nullptr;
        return;
      }
    }
    const uintptr_t window = cache->window;
    const uintptr_t off = reinterpret_cast<uintptr_t>(p) - window;
    if (ABSL_PREDICT_TRUE(off < kWindowBytes)) {
      const uint32_t c = reinterpret_cast<const uint8_t*>(window)[off >> 12];
      if (ABSL_PREDICT_TRUE(c - 1 < kNumCachedClasses)) {
        Magazine& m = *reinterpret_cast<Magazine*>(
            reinterpret_cast<char*>(cache) + kClassMagazineOffsetOf.of[c]);
        if (const uint32_t h = m.nhot; ABSL_PREDICT_TRUE(h < kHotSlots)) {
          m.hot[h] = p;
          m.nhot = h + 1;
          ++cache->frees.hot;
          return;
        }
      }
    }
    FreeBuffer& f = cache->frees;
    const uint32_t c = f.count;
    if (ABSL_PREDICT_TRUE(c < kFreeSlots)) {
      f.slots[c] = p;
      f.count = c + 1;
      return;
    }
  }
  InsideFreeSlow(p);
}

void* InsideAligned(size_t alignment, size_t n) {
  return reinterpret_cast<void*>(EnterAllocator(kOpAlignedAlloc, alignment, n));
}

bool InLoader(const void* caller) {
  const uintptr_t c = reinterpret_cast<uintptr_t>(caller);
  return c - g_host.loader_lo < g_host.loader_hi - g_host.loader_lo;
}

// HostAllocate past jemalloc's fast path. Out of line: inlined, GCC saves
// registers on the way to the fast path too.
ABSL_ATTRIBUTE_NOINLINE void* HostAllocateSlow(size_t n, int flags,
                                               const void* caller) {
  if (t_bound_to_host == 0) BindThreadToHostArena();
  const int host = HostFlagsFor(nullptr);  // sets the heaps up if need be
  if (InLoader(caller) && g_host.ambient_flags != 0) {
    return AmbientAllocate(n, flags);
  }
  return mallocx(n == 0 ? 1 : n, host | flags);
}

// The host heap (mallocx `flags`: alignment, zeroing): jemalloc's own
// malloc once this thread's arena is the host arena (its fast path),
// mallocx otherwise; for ld.so, the ambient heap.
inline void* HostAllocate(size_t n, int flags, const void* caller) {
  if (ABSL_PREDICT_TRUE(flags == 0 && t_bound_to_host > 0) &&
      !InLoader(caller)) {
    return g_jemalloc_malloc(n);
  }
  return HostAllocateSlow(n, flags, caller);
}

// Out of line: inlined, GCC saves registers on malloc's entry, before the
// compartment's fast path too.
ABSL_ATTRIBUTE_NOINLINE void* HostMalloc(size_t n, const void* caller) {
  return HostAllocate(n, 0, caller);
}

void* HostAligned(size_t alignment, size_t n, const void* caller) {
  return HostAllocate(n, MALLOCX_ALIGN(alignment), caller);
}

bool ValidAlignment(size_t alignment) {
  return alignment != 0 && (alignment & (alignment - 1)) == 0;
}

void* NewRaw(size_t n, size_t alignment) {
  if (SelectorPage* sel = CompartmentThread()) {
    return alignment <= alignof(std::max_align_t) ? InsideMalloc(sel, n)
                                                  : InsideAligned(alignment, n);
  }
  if (alignment <= alignof(std::max_align_t)) return HostMalloc(n, nullptr);
  return HostAligned(alignment, n, nullptr);
}

// operator new: the new-handler loop, then bad_alloc.
void* NewOrThrow(size_t n, size_t alignment) {
  for (;;) {
    if (void* p = NewRaw(n, alignment); ABSL_PREDICT_TRUE(p != nullptr)) {
      return p;
    }
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) throw std::bad_alloc();
    handler();
  }
}

// Without throwing: a throw inside a full compartment would need memory
// for the exception (libstdc++'s emergency pool is key-0 memory).
void* NewNoThrow(size_t n, size_t alignment) noexcept {
  for (;;) {
    if (void* p = NewRaw(n, alignment); ABSL_PREDICT_TRUE(p != nullptr)) {
      return p;
    }
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) return nullptr;
    try {
      handler();
    } catch (...) {
      return nullptr;
    }
  }
}

}  // namespace
}  // namespace mpkbox::internal

using mpkbox::internal::CompartmentThread;
using mpkbox::internal::SelectorPage;
namespace mi = mpkbox::internal;

extern "C" {

// Referenced by the link options of mpkbox's CMake target, so that this
// object is always linked.
void mpkbox_override_malloc() {}

void* malloc(size_t n) {
  if (SelectorPage* sel = CompartmentThread()) return mi::InsideMalloc(sel, n);
  return mi::HostMalloc(n, __builtin_return_address(0));
}

void free(void* p) {
  if (p == nullptr) return;
  if (SelectorPage* sel = CompartmentThread()) return mi::InsideFree(sel, p);
  if (ABSL_PREDICT_FALSE(mi::InZone(reinterpret_cast<uintptr_t>(p)))) {
    return mi::HostFreeInZone(p);
  }
  if (ABSL_PREDICT_TRUE(mi::g_jemalloc_free != nullptr)) {
    return mi::g_jemalloc_free(p);
  }
  dallocx(p, 0);
}

void* calloc(size_t count, size_t size) {
  size_t bytes;
  if (SelectorPage* sel = CompartmentThread()) {
    if (__builtin_mul_overflow(count, size, &bytes) ||
        bytes > mi::kMaxCachedSize) {
      return reinterpret_cast<void*>(
          mi::EnterAllocator(mi::kOpCalloc, count, size));
    }
    void* p = mi::InsideMalloc(sel, bytes);
    if (p != nullptr) memset(p, 0, bytes);
    return p;
  }
  if (__builtin_mul_overflow(count, size, &bytes)) {
    errno = ENOMEM;
    return nullptr;
  }
  return mi::HostAllocate(bytes, MALLOCX_ZERO, __builtin_return_address(0));
}

void* realloc(void* p, size_t n) {
  if (CompartmentThread() != nullptr) {
    return reinterpret_cast<void*>(mi::EnterAllocator(
        mi::kOpRealloc, reinterpret_cast<uintptr_t>(p), n));
  }
  if (p == nullptr) return mi::HostMalloc(n, __builtin_return_address(0));
  if (ABSL_PREDICT_FALSE(mi::InZone(reinterpret_cast<uintptr_t>(p)))) {
    if (n == 0) {
      mi::HostFreeInZone(p);
      return nullptr;
    }
    return mi::HostReallocInZone(p, n);
  }
  if (n == 0) {  // glibc's meaning: free, and no new object
    dallocx(p, 0);
    return nullptr;
  }
  void* q = rallocx(p, n, mi::HostFlagsFor(nullptr));
  if (q == nullptr) errno = ENOMEM;
  return q;
}

int posix_memalign(void** out, size_t alignment, size_t n) {
  if (!mi::ValidAlignment(alignment) || alignment % sizeof(void*) != 0) {
    return EINVAL;
  }
  void* p = CompartmentThread() != nullptr
                ? mi::InsideAligned(alignment, n)
                : mi::HostAligned(alignment, n, __builtin_return_address(0));
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}

void* aligned_alloc(size_t alignment, size_t n) {
  if (CompartmentThread() != nullptr) return mi::InsideAligned(alignment, n);
  if (!mi::ValidAlignment(alignment)) {
    errno = EINVAL;
    return nullptr;
  }
  return mi::HostAligned(alignment, n, __builtin_return_address(0));
}

void* memalign(size_t alignment, size_t n) {
  if (CompartmentThread() != nullptr) return mi::InsideAligned(alignment, n);
  if (!mi::ValidAlignment(alignment)) {
    errno = EINVAL;
    return nullptr;
  }
  return mi::HostAligned(alignment, n, __builtin_return_address(0));
}

void* valloc(size_t n) {
  const size_t page = MPKBOX_PAGE_SIZE;
  if (CompartmentThread() != nullptr) return mi::InsideAligned(page, n);
  return mi::HostAligned(page, n, __builtin_return_address(0));
}

void* pvalloc(size_t n) {
  const size_t page = MPKBOX_PAGE_SIZE;
  const size_t rounded = (n + page - 1) & ~(page - 1);
  if (rounded < n) {
    if (CompartmentThread() != nullptr) {
      return reinterpret_cast<void*>(
          mi::EnterAllocator(mi::kOpMalloc, SIZE_MAX));
    }
    errno = ENOMEM;
    return nullptr;
  }
  if (CompartmentThread() != nullptr) return mi::InsideAligned(page, rounded);
  return mi::HostAligned(page, rounded, __builtin_return_address(0));
}

size_t malloc_usable_size(void* p) {
  if (p == nullptr) return 0;
  if (CompartmentThread() != nullptr) {
    return mi::EnterAllocator(mi::kOpUsableSize,
                              reinterpret_cast<uintptr_t>(p));
  }
  if (mi::InZone(reinterpret_cast<uintptr_t>(p))) {
    return mi::HostUsableSizeInZone(p);
  }
  return sallocx(p, 0);
}

}  // extern "C"

// operator new and delete, every form: jemalloc's libstdc++-style ones in
// libjemalloc.so would bypass the routing above.
void* operator new(size_t n) { return mi::NewOrThrow(n, 0); }
void* operator new[](size_t n) { return mi::NewOrThrow(n, 0); }
void* operator new(size_t n, const std::nothrow_t&) noexcept {
  return mi::NewNoThrow(n, 0);
}
void* operator new[](size_t n, const std::nothrow_t&) noexcept {
  return mi::NewNoThrow(n, 0);
}
void* operator new(size_t n, std::align_val_t a) {
  return mi::NewOrThrow(n, static_cast<size_t>(a));
}
void* operator new[](size_t n, std::align_val_t a) {
  return mi::NewOrThrow(n, static_cast<size_t>(a));
}
void* operator new(size_t n, std::align_val_t a,
                   const std::nothrow_t&) noexcept {
  return mi::NewNoThrow(n, static_cast<size_t>(a));
}
void* operator new[](size_t n, std::align_val_t a,
                     const std::nothrow_t&) noexcept {
  return mi::NewNoThrow(n, static_cast<size_t>(a));
}
void operator delete(void* p) noexcept { free(p); }
void operator delete[](void* p) noexcept { free(p); }
void operator delete(void* p, size_t) noexcept { free(p); }
void operator delete[](void* p, size_t) noexcept { free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { free(p); }
void operator delete(void* p, std::align_val_t) noexcept { free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { free(p); }
void operator delete(void* p, size_t, std::align_val_t) noexcept { free(p); }
void operator delete[](void* p, size_t, std::align_val_t) noexcept {
  free(p);
}
void operator delete(void* p, std::align_val_t,
                     const std::nothrow_t&) noexcept {
  free(p);
}
void operator delete[](void* p, std::align_val_t,
                       const std::nothrow_t&) noexcept {
  free(p);
}
