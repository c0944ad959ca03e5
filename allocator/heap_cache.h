// The per-thread allocation cache a compartment's malloc and free use without
// leaving the compartment.
//
// It lives in the compartment's own memory, so nothing in it is trusted: the
// runtime keeps its own copy of what it put in a magazine and validates every
// pointer in the free buffer against its live-allocation bitmap.
#ifndef MPKBOX_ALLOCATOR_HEAP_CACHE_H_
#define MPKBOX_ALLOCATOR_HEAP_CACHE_H_

#include <cstddef>
#include <cstdint>

#include "trampolines/gate_layout.h"
#include "trampolines/thread_block.h"

namespace mpkbox::internal {

// jemalloc's small size classes from 16 bytes to 4 KiB (4 KiB pages).
inline constexpr size_t kNumCachedClasses = 28;
inline constexpr size_t kMaxCachedSize = 4096;
inline constexpr size_t kMinAllocation = 16;  // one live bit per 16 bytes
// Up to 256 regions a magazine (filled to 128 KiB's worth at most): one
// allocator entry per 255 small mallocs. Its fixed cost (gate round trip,
// lock) was about a quarter of a small malloc/free pair at 64 (issue 3).
inline constexpr uint32_t kMagazineSlots = 256;
inline constexpr uint32_t kFreeSlots = 256;
// Loaded objects with thread-local storage (PT_TLS) in one compartment.
inline constexpr size_t kMaxTlsModules = 32;
// Loaded objects _dl_find_object and dl_iterate_phdr report to loaded code.
inline constexpr size_t kMaxLoadedObjects = 48;

// One loaded object as loaded code's unwinder sees it
// (runtime/compartment_libc/loaded_objects.cc): absolute addresses.
struct LoadedObjectInfo {
  uintptr_t base;      // load bias
  uintptr_t start;     // of its mapping
  uintptr_t end;
  uintptr_t eh_frame;  // PT_GNU_EH_FRAME, or 0
  uintptr_t phdr;      // its program headers in the image, or 0
  uint64_t phnum;
};

inline constexpr uint32_t kClassSize[kNumCachedClasses] = {
    16,   32,   48,   64,   80,   96,   112,  128,  160,  192,
    224,  256,  320,  384,  448,  512,  640,  768,  896,  1024,
    1280, 1536, 1792, 2048, 2560, 3072, 3584, 4096};

// Class of a request of n <= kMaxCachedSize bytes, indexed by (n + 15) / 16.
struct SizeClassTable {
  uint8_t of[kMaxCachedSize / 16 + 1];
  constexpr SizeClassTable() : of() {
    size_t c = 0;
    for (size_t i = 0; i <= kMaxCachedSize / 16; ++i) {
      while (kClassSize[c] < (i == 0 ? 16 : i * 16)) ++c;
      of[i] = static_cast<uint8_t>(c);
    }
  }
};
inline constexpr SizeClassTable kSizeClassOf{};

// Destructors loaded code registered with __cxa_atexit, per compartment,
// in its memory (runtime/compartment_libc/atexit.cc): run inside by
// __cxa_finalize from each object's destructors.
inline constexpr uint32_t kMaxAtexit = 256;
struct AtexitList {
  uint32_t count;  // entries taken; may pass kMaxAtexit
  uint32_t pad;
  struct Entry {
    void (*fn)(void*);
    void* arg;
    void* dso;
  } entries[kMaxAtexit];
};

struct Magazine {
  uint32_t count;  // slots[0, count) are ready; malloc pops from the top
  uint32_t pad;
  // The region free() gave back right after malloc handed it out, which the
  // next malloc of the class takes first (LIFO: its lines are still in
  // cache). Still live for the runtime, which takes it as a free when it
  // checks the buffer (FlushFrees).
  void* hot;
  void* slots[kMagazineSlots];
};

struct FreeBuffer {
  uint32_t count;
  uint32_t hot;  // magazines' hot regions; with count, one word for Call
  void* slots[kFreeSlots];
};

struct HeapCache {
  Magazine magazines[kNumCachedClasses];
  FreeBuffer frees;
  // What malloc handed out last, and its magazine's hot slot.
  void* last;
  void** last_hot;
  uint64_t hot_mallocs;  // for the statistics only: a count of its own
  // errno of loaded code on this thread: libc's is in TLS (key 0), which
  // compartment code cannot write (runtime/compartment_libc/errno.cc).
  int errno_value;
  // This thread's block of each loaded object's thread-local storage, by
  // module id - 1; null until the object's first __tls_get_addr here
  // (runtime/compartment_libc/tls.cc, allocator/tls_blocks.cc).
  void* tls_blocks[kMaxTlsModules];
  // The compartment's loaded objects, copied here by the runtime whenever
  // they change (allocator/loaded_objects.cc): compartment memory, so each
  // thread's copy is only as true as the compartment left it.
  uint64_t num_objects;
  LoadedObjectInfo objects[kMaxLoadedObjects];
  AtexitList* atexit;  // the compartment's, the same in every thread's cache
};
static_assert(sizeof(HeapCache) <= UINT16_MAX);  // kMagazineOffsetOf's type

// Byte offset in a HeapCache of the magazine for a request of n <=
// kMaxCachedSize bytes, indexed by (n + 15) / 16: malloc's fast path then
// needs no multiply by sizeof(Magazine).
struct MagazineOffsetTable {
  uint16_t of[kMaxCachedSize / 16 + 1];
  constexpr MagazineOffsetTable() : of() {
    for (size_t i = 0; i <= kMaxCachedSize / 16; ++i) {
      of[i] = static_cast<uint16_t>(offsetof(HeapCache, magazines) +
                                    kSizeClassOf.of[i] * sizeof(Magazine));
    }
  }
};
inline constexpr MagazineOffsetTable kMagazineOffsetOf{};

// Per thread, on the selector key (compartments read it, only the runtime
// writes it), just below the SelectorPage: each compartment slot's cache.
inline constexpr size_t kHeapCacheTableBytes =
    kMaxCompartments * sizeof(HeapCache*);
static_assert(kHeapCacheTableBytes % MPKBOX_PAGE_SIZE == 0);

inline HeapCache** HeapCacheTable(SelectorPage* sel) {
  return reinterpret_cast<HeapCache**>(reinterpret_cast<char*>(sel) -
                                       kHeapCacheTableBytes);
}

// Call's fast path (mpkbox/internal/fast_path.h) finds these by offset.
static_assert(kHeapCacheTableBytes == kFastHeapCacheTableBytes);
static_assert(offsetof(HeapCache, frees) + offsetof(FreeBuffer, count) ==
              kFastFreesCount);
static_assert(offsetof(FreeBuffer, hot) == offsetof(FreeBuffer, count) + 4);

}  // namespace mpkbox::internal

#endif  // MPKBOX_ALLOCATOR_HEAP_CACHE_H_
