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
#include "mpkbox/internal/heap_cache.h"
#include "mpkbox/internal/thread_block.h"

extern "C" char mpkbox_callback_stubs[];

namespace mpkbox::internal {
namespace {

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

uint64_t EnterAllocator(uint64_t op, uint64_t a, uint64_t b = 0) {
  using Entry = uint64_t (*)(uint64_t, uint64_t, uint64_t);
  return reinterpret_cast<Entry>(
      mpkbox_callback_stubs +
      (MPKBOX_ALLOCATOR_CALLBACK << MPKBOX_CB_STUB_SHIFT))(op, a, b);
}

void* InsideMalloc(SelectorPage* sel, size_t n) {
  if (n <= kMaxCachedSize) {
    if (HeapCache* cache = CacheOf(sel); cache != nullptr) {
      Magazine& m = cache->magazines[kSizeClassOf.of[(n + 15) / 16]];
      const uint32_t c = m.count;
      if (c - 1 < kMagazineSlots) {
        m.count = c - 1;
        return m.slots[c - 1];
      }
    }
  }
  return reinterpret_cast<void*>(EnterAllocator(kOpMalloc, n));
}

void InsideFree(SelectorPage* sel, void* p) {
  if (HeapCache* cache = CacheOf(sel); cache != nullptr) {
    FreeBuffer& f = cache->frees;
    const uint32_t c = f.count;
    if (c < kFreeSlots) {
      f.slots[c] = p;
      f.count = c + 1;
      return;
    }
  }
  EnterAllocator(kOpFree, reinterpret_cast<uintptr_t>(p));
}

void* InsideAligned(size_t alignment, size_t n) {
  return reinterpret_cast<void*>(EnterAllocator(kOpAlignedAlloc, alignment, n));
}

inline int HostFlags(const void* caller) { return HostFlagsFor(caller); }

void* HostAligned(size_t alignment, size_t n, const void* caller) {
  return mallocx(n == 0 ? 1 : n, HostFlags(caller) | MALLOCX_ALIGN(alignment));
}

bool ValidAlignment(size_t alignment) {
  return alignment != 0 && (alignment & (alignment - 1)) == 0;
}

// operator new: the new-handler loop, then bad_alloc.
void* NewOrThrow(size_t n, size_t alignment) {
  for (;;) {
    void* p;
    if (SelectorPage* sel = CompartmentThread()) {
      p = alignment <= alignof(std::max_align_t) ? InsideMalloc(sel, n)
                                                 : InsideAligned(alignment, n);
    } else {
      p = mallocx(n == 0 ? 1 : n,
                  HostFlags(nullptr) |
                      (alignment > alignof(std::max_align_t)
                           ? MALLOCX_ALIGN(alignment)
                           : 0));
    }
    if (ABSL_PREDICT_TRUE(p != nullptr)) return p;
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) throw std::bad_alloc();
    handler();
  }
}

void* NewNoThrow(size_t n, size_t alignment) noexcept {
  try {
    return NewOrThrow(n, alignment);
  } catch (...) {
    return nullptr;
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
void mpkbox_malloc_routing() {}

void* malloc(size_t n) {
  if (SelectorPage* sel = CompartmentThread()) return mi::InsideMalloc(sel, n);
  return mallocx(n == 0 ? 1 : n, mi::HostFlags(__builtin_return_address(0)));
}

void free(void* p) {
  if (p == nullptr) return;
  if (SelectorPage* sel = CompartmentThread()) return mi::InsideFree(sel, p);
  if (ABSL_PREDICT_FALSE(mi::InZone(reinterpret_cast<uintptr_t>(p)))) {
    return mi::HostFreeInZone(p);
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
  return mallocx(bytes == 0 ? 1 : bytes,
                 mi::HostFlags(__builtin_return_address(0)) | MALLOCX_ZERO);
}

void* realloc(void* p, size_t n) {
  if (CompartmentThread() != nullptr) {
    return reinterpret_cast<void*>(mi::EnterAllocator(
        mi::kOpRealloc, reinterpret_cast<uintptr_t>(p), n));
  }
  if (p == nullptr) {
    return mallocx(n == 0 ? 1 : n, mi::HostFlags(__builtin_return_address(0)));
  }
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
  void* q = rallocx(p, n, mi::HostFlags(__builtin_return_address(0)));
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
