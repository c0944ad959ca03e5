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

// jemalloc's size classes from 16 bytes to 64 KiB (4 KiB pages): up to 4
// KiB in 256-slot magazines; above (slabs up to 14 KiB, then an extent
// each) in "big" magazines of a few regions, so a 16 KiB or 64 KiB
// malloc/free pair stays inside too (issue 16, item 5).
inline constexpr size_t kNumSmallCachedClasses = 28;
inline constexpr size_t kNumBigCachedClasses = 16;
inline constexpr size_t kNumCachedClasses =
    kNumSmallCachedClasses + kNumBigCachedClasses;
inline constexpr size_t kMaxSmallCachedSize = 4096;
inline constexpr size_t kMaxCachedSize = 65536;
inline constexpr size_t kMinAllocation = 16;  // one live bit per 16 bytes
// Up to 256 regions a magazine (filled to 128 KiB's worth at most): one
// allocator entry per 255 small mallocs. Its fixed cost (gate round trip,
// lock) was about a quarter of a small malloc/free pair at 64 (issue 3).
inline constexpr uint32_t kMagazineSlots = 256;
// A big class's 128 KiB are 25 regions at most (5 KiB), 2 at 64 KiB.
inline constexpr uint32_t kBigMagazineSlots = 32;
inline constexpr uint32_t kFreeSlots = 256;
// Regions free() keeps per magazine for its next mallocs (a thread cache's
// LIFO): a library that allocates a batch and frees it again (a parser's
// nodes) never leaves the compartment (bench/RESULTS.md, issue 16 item 5).
inline constexpr uint32_t kHotSlots = 8;
// The compartment's copy of the class bytes (one a page, class + 1, 0 for
// none) at the start of its window, in its memory, which free() reads to
// find a region's magazine: the heap's extents start after it.
inline constexpr size_t kClassCopyBytes = size_t{1} << 20;
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
    16,    32,    48,    64,    80,    96,    112,   128,   160,
    192,   224,   256,   320,   384,   448,   512,   640,   768,
    896,   1024,  1280,  1536,  1792,  2048,  2560,  3072,  3584,
    4096,  5120,  6144,  7168,  8192,  10240, 12288, 14336, 16384,
    20480, 24576, 28672, 32768, 40960, 49152, 57344, 65536};

// Class of a request of n bytes, indexed by (n + kStep - 1) / kStep: every
// class of the range is a multiple of kStep (16 up to 4 KiB, then 1 KiB).
template <size_t kStep, size_t kMax>
struct SizeClassTable {
  uint8_t of[kMax / kStep + 1];
  constexpr SizeClassTable() : of() {
    size_t c = 0;
    for (size_t i = 0; i <= kMax / kStep; ++i) {
      while (kClassSize[c] < (i == 0 ? 16 : i * kStep)) ++c;
      of[i] = static_cast<uint8_t>(c);
    }
  }
};
inline constexpr SizeClassTable<16, kMaxSmallCachedSize> kSizeClassOf{};
inline constexpr SizeClassTable<1024, kMaxCachedSize> kBigSizeClassOf{};

// The class of a request of n <= kMaxCachedSize bytes.
inline size_t CachedClassOf(size_t n) {
  return n <= kMaxSmallCachedSize ? kSizeClassOf.of[(n + 15) / 16]
                                  : kBigSizeClassOf.of[(n + 1023) / 1024];
}

inline constexpr uint32_t MagazineSlotsOf(size_t c) {
  return c < kNumSmallCachedClasses ? kMagazineSlots : kBigMagazineSlots;
}

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

// Thread keys of loaded code (runtime/compartment_libc/threads.cc), in its
// memory: the compartment's table of keys, made with the heap like the
// AtexitList, and each thread's values, made by loaded code's malloc on its
// first pthread_setspecific. A key's seq is odd while it exists; a value
// counts only while its seq matches (a deleted and remade key reads null).
inline constexpr uint32_t kMaxThreadKeys = 1024;  // PTHREAD_KEYS_MAX
inline constexpr uint32_t kThreadKeysPerBlock = 32;
struct ThreadKeyTable {
  uint32_t lock;  // a futex mutex word for create and delete
  uint32_t pad;
  uint64_t seq[kMaxThreadKeys];
  void (*destructor[kMaxThreadKeys])(void*);
};
struct ThreadSpecific {
  struct Entry {
    uint64_t seq;
    void* value;
  };
  Entry* blocks[kMaxThreadKeys / kThreadKeysPerBlock];  // of 32 entries
};

template <uint32_t kSlots>
struct MagazineOf {
  uint32_t count;  // slots[0, count) are ready; malloc pops from the top
  // hot[0, nhot): regions free() gave back, which the next mallocs of the
  // class take first (LIFO: their lines are still in cache). Still live for
  // the runtime, which takes them as frees when it checks the buffer
  // (FlushFrees).
  uint32_t nhot;
  void* hot[kHotSlots];
  void* slots[kSlots];
};
// Every magazine is used through this type (MagazineAt): the big ones
// differ only in how many slots follow, MagazineSlotsOf(class).
using Magazine = MagazineOf<kMagazineSlots>;
using BigMagazine = MagazineOf<kBigMagazineSlots>;
static_assert(offsetof(BigMagazine, slots) == offsetof(Magazine, slots));

struct FreeBuffer {
  uint32_t count;
  uint32_t hot;  // magazines' hot regions; with count, one word for Call
  void* slots[kFreeSlots];
};

struct HeapCache {
  Magazine magazines[kNumSmallCachedClasses];
  BigMagazine big_magazines[kNumBigCachedClasses];  // classes 28 and up
  // The compartment's window, whose first kClassCopyBytes are its copy of
  // the class bytes (free() finds a region's magazine there). With the
  // next word on frees.count's cache line.
  uintptr_t window;
  uint64_t hot_mallocs;  // for the statistics only: a count of its own
  FreeBuffer frees;
  // What malloc handed out last, and its magazine: free() of it needs no
  // class lookup (a malloc/free pair, the commonest pattern).
  void* last;
  Magazine* last_magazine;
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
  ThreadKeyTable* thread_keys;  // the compartment's, like atexit
  ThreadSpecific* thread_specific;  // this thread's key values, or null
  int32_t thread_id;  // this thread's tid, or 0 until loaded code asks
};

// Byte offset in a HeapCache of class c's magazine.
inline constexpr size_t MagazineOffset(size_t c) {
  return c < kNumSmallCachedClasses
             ? offsetof(HeapCache, magazines) + c * sizeof(Magazine)
             : offsetof(HeapCache, big_magazines) +
                   (c - kNumSmallCachedClasses) * sizeof(BigMagazine);
}
// The offset tables below hold uint16_t.
static_assert(MagazineOffset(kNumCachedClasses - 1) <= UINT16_MAX);
// A forged count up to kMagazineSlots (malloc's fast path checks no class's
// own bound) reads a big magazine's slots past its end, but still inside
// the HeapCache: compartment memory, which only misleads the compartment.
static_assert(sizeof(HeapCache) >= MagazineOffset(kNumCachedClasses - 1) +
                                       sizeof(Magazine));

inline Magazine& MagazineAt(HeapCache* cache, size_t c) {
  return *reinterpret_cast<Magazine*>(reinterpret_cast<char*>(cache) +
                                      MagazineOffset(c));
}

// Byte offset in a HeapCache of the magazine for a request of n bytes,
// indexed by (n + kStep - 1) / kStep: malloc's fast path then needs no
// multiply by the magazine's size.
template <size_t kStep, size_t kMax>
struct MagazineOffsetTable {
  uint16_t of[kMax / kStep + 1];
  constexpr MagazineOffsetTable() : of() {
    const SizeClassTable<kStep, kMax> classes;
    for (size_t i = 0; i <= kMax / kStep; ++i) {
      of[i] = static_cast<uint16_t>(MagazineOffset(classes.of[i]));
    }
  }
};
inline constexpr MagazineOffsetTable<16, kMaxSmallCachedSize>
    kMagazineOffsetOf{};  // n <= 4 KiB
inline constexpr MagazineOffsetTable<1024, kMaxCachedSize>
    kBigMagazineOffsetOf{};  // 4 KiB < n <= 64 KiB

// Byte offset in a HeapCache of class c - 1's magazine, indexed by a class
// byte of the compartment's copy (c, 1 to kNumCachedClasses).
struct ClassMagazineOffsetTable {
  uint16_t of[kNumCachedClasses + 1];
  constexpr ClassMagazineOffsetTable() : of() {
    for (size_t c = 1; c <= kNumCachedClasses; ++c) {
      of[c] = static_cast<uint16_t>(MagazineOffset(c - 1));
    }
  }
};
inline constexpr ClassMagazineOffsetTable kClassMagazineOffsetOf{};

// Per thread, on the selector key (compartments read it, only the runtime
// writes it), just below the SelectorPage: each compartment slot's cache.
inline constexpr size_t kHeapCacheTableBytes =
    kMaxCompartments * sizeof(HeapCache*);
static_assert(kHeapCacheTableBytes % MPKBOX_PAGE_SIZE == 0);

// Whether slot's table entry lies in the first 256 bytes of a 512-byte
// block of its page, where regions of 512 B and up start (4 KiB ones at
// offset 0): malloc and free load the entry each time, and a load waits on
// a store still in flight to the same page offset (4K aliasing; a loop
// writing 4 KiB regions' headers ran 2-3x slower, bench/RESULTS.md issue 16
// item 5). Such slots are given out last.
inline constexpr bool HeapCacheEntryNearRegionStarts(size_t slot) {
  return slot * sizeof(HeapCache*) % 512 < 256;
}

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
