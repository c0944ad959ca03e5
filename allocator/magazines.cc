// The trusted copies of the threads' magazines: reconciling what compartment
// code popped, checking and parking what it freed, draining and refilling.
#include <jemalloc/jemalloc.h>
#include <time.h>

#include <algorithm>
#include <utility>
#include <bit>
#include <vector>

#include "absl/base/optimization.h"
#include "allocator/address_zone.h"
#include "allocator/compartment_heap.h"
#include "allocator/heap_cache.h"
#include "allocator/magazines.h"
#include "trampolines/gate_layout.h"
#include "trampolines/thread_block.h"

namespace mpkbox::internal {
namespace {

SelectorPage* SelectorOf(ThreadBlock* tb) {
  return reinterpret_cast<SelectorPage*>(reinterpret_cast<char*>(tb) -
                                         MPKBOX_PAGE_SIZE);
}

}  // namespace

HeapThread* CompartmentHeap::ThreadFor(ThreadBlock* tb, size_t slot) {
  if (HeapThread* t = tb->heap_threads[slot]; t != nullptr) return t;
  auto* cache = static_cast<HeapCache*>(
      mallocx(sizeof(HeapCache),
              MALLOCX_ARENA(arena_) | MALLOCX_TCACHE_NONE | MALLOCX_ZERO));
  if (cache == nullptr) return nullptr;
  auto* t = new HeapThread;
  t->tb = tb;
  t->slot = slot;
  t->cache = cache;
  unsigned tcache = 0;
  size_t len = sizeof(tcache);
  if (mallctl("tcache.create", &tcache, &len, nullptr, 0) == 0) {
    t->tcache = tcache;
  }
  cache->window = live_.window();
  CopyLoadedObjects(cache);
  if (atexit_ == nullptr) {  // not a live allocation: loaded code keeps it
    atexit_ = static_cast<AtexitList*>(
        mallocx(sizeof(AtexitList),
                MALLOCX_ARENA(arena_) | MALLOCX_TCACHE_NONE | MALLOCX_ZERO));
  }
  cache->atexit = atexit_;
  if (thread_keys_ == nullptr) {  // the same: loaded code keeps it
    thread_keys_ = static_cast<ThreadKeyTable*>(
        mallocx(sizeof(ThreadKeyTable),
                MALLOCX_ARENA(arena_) | MALLOCX_TCACHE_NONE | MALLOCX_ZERO));
  }
  cache->thread_keys = thread_keys_;
  threads_.push_back(t);
  tb->heap_threads[slot] = t;
  HeapCacheTable(SelectorOf(tb))[slot] = cache;
  return t;
}

void ReleaseHeapThread(ThreadBlock* tb, size_t slot) {
  HeapThread* t = tb->heap_threads[slot];
  if (t == nullptr) return;
  HeapCacheTable(SelectorOf(tb))[slot] = nullptr;
  tb->heap_threads[slot] = nullptr;
  if (CompartmentHeap* heap = HeapOfSlot(slot)) heap->DropThread(t);
}

void CompartmentHeap::DropThread(HeapThread* t) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    threads_.erase(std::find(threads_.begin(), threads_.end(), t));
    if (!dropping_) {
      // The thread exits; the heap stays. What it cached goes back.
      Reconcile(t);
      FlushFrees(t);  // nobody is left to report a bad one to
      for (size_t c = 0; c < kNumCachedClasses; ++c) {
        for (uint32_t i = 0; i < t->known[c]; ++i) {
          cached_bytes_ -= kClassSize[c];
          dallocx(t->Placed(c)[i], TcacheFlags(t));
        }
        for (void* p : t->stash[c]) dallocx(p, TcacheFlags(t));
        stashed_bytes_ -= t->stash[c].size() * kClassSize[c];
      }
      FreeTlsBlocks(t);
      dallocx(t->cache, MALLOCX_TCACHE_NONE);
    } else {
      for (size_t c = 0; c < kNumCachedClasses; ++c) {
        cached_bytes_ -= t->known[c] * kClassSize[c];
        stashed_bytes_ -= t->stash[c].size() * kClassSize[c];
      }
    }
  }
  if (t->tcache != kNoTcache) {  // flushes into the arena, which still exists
    mallctl("tcache.destroy", nullptr, nullptr, &t->tcache, sizeof(unsigned));
  }
  delete t;
}

// Regions compartment code popped since the runtime last looked become live.
void CompartmentHeap::Reconcile(HeapThread* t) {
  for (uint64_t active = t->active; active != 0; active &= active - 1) {
    const size_t c = std::countr_zero(active);
    void** const placed = t->Placed(c);
    uint32_t now = __atomic_load_n(&MagazineAt(t->cache, c).count,
                                   __ATOMIC_RELAXED);
    if (now > t->known[c]) now = t->known[c];  // nothing is pushed back
    // Neighbouring regions share bitmap words: one store per word. (window
    // and bitmap in locals: the compiler would reload the members after
    // every store to a uint64_t.)
    const uintptr_t window = live_.window();
    uint64_t* const bitmap = live_.words();
    uint64_t* word = nullptr;
    uint64_t bits = 0;
    for (uint32_t i = now; i < t->known[c]; ++i) {
      const uintptr_t bit =
          (reinterpret_cast<uintptr_t>(placed[i]) - window) /
          kMinAllocation;
      uint64_t* w = &bitmap[bit / 64];
      if (w != word) {
        if (word != nullptr) *word |= bits;
        word = w;
        bits = 0;
      }
      bits |= uint64_t{1} << (bit % 64);
    }
    if (word != nullptr) *word |= bits;
    const uint32_t popped = t->known[c] - now;
    cached_bytes_ -= popped * kClassSize[c];
    NoteLive(popped * kClassSize[c]);
    stats_.allocations += popped;
    t->known[c] = now;
    if (now == 0) t->active &= ~(uint64_t{1} << c);
  }
}

// Returns the first pointer in the buffer that was not a live allocation.
// After Reconcile (known[] must be the magazines' counts): a freed region
// of a cached class goes straight back on top of its magazine while that
// is below its fill count (and the park cap below allows), both in the
// trusted copy and in the cache, so the next mallocs take it without a
// refill; the rest goes to Release.
uintptr_t CompartmentHeap::FlushFrees(HeapThread* t) {
  FreeBuffer& f = t->cache->frees;
  // Compartment memory: read once (the loop's bound and `rest`'s size).
  const uint32_t n =
      std::min(__atomic_load_n(&f.count, __ATOMIC_RELAXED), kFreeSlots);
  // Members in locals: the stores below (bitmap words, slots) could alias
  // them as far as the compiler knows.
  const uintptr_t window = live_.window();
  uint64_t* const bitmap = live_.words();
  const uint8_t* const class_map = live_.classes();
  HeapCache* const cache = t->cache;
  // The rest are released after the loop, which then calls nothing and
  // keeps its state in registers.
  void* rest[kFreeSlots + kNumCachedClasses * kHotSlots];
  uint32_t n_rest = 0;
  uintptr_t hostile = 0;
  // Neighbouring regions share bitmap words, and a batch is mostly of one
  // class: the current word and magazine count stay in registers (a double
  // free within the batch still finds its bit clear).
  uint64_t* word = nullptr;
  uint64_t value = 0;
  uint8_t cls = kNoClass;  // whose count `known` is; kNoClass: none
  uint32_t known = 0;
  uint32_t fill = 0;
  void** placed = nullptr;  // t->placed[cls]
  void** slots = nullptr;   // MagazineAt(cache, cls).slots
  size_t moved = 0;         // bytes put in magazines
  // Regions in magazines count against the limit, and only their own thread
  // can take them back (DrainMagazines): frees park there only while all
  // magazines hold under an eighth of the limit, so memory an idle thread
  // freed stays available to the others and to the host's Allocate.
  const size_t park_cap = limit_ / 8;
  size_t park_room = park_cap - std::min(park_cap, cached_bytes_);
  size_t class_size = 0;
  uint64_t touched = 0;     // magazines given regions
  auto settle = [&] {       // the current class's count back to t
    if (cls == kNoClass || known == t->known[cls]) return;
    moved += size_t{known - t->known[cls]} * kClassSize[cls];
    touched |= uint64_t{1} << cls;
    t->known[cls] = known;
  };
  auto take = [&](uintptr_t p) {
    // One test for "in the window and 16-aligned": rotated, low bits that
    // are set land at the top.
    const uintptr_t bit = std::rotr(p - window, 4);
    if (ABSL_PREDICT_FALSE(bit >= kWindowBytes / kMinAllocation)) {
      if (p != 0 && hostile == 0) hostile = p;  // null frees nothing
      return;
    }
    uint64_t* w = &bitmap[bit / 64];
    if (w != word) {
      if (word != nullptr) *word = value;
      word = w;
      value = *w;
    }
    const uint64_t mask = uint64_t{1} << (bit % 64);
    if (ABSL_PREDICT_FALSE(!(value & mask))) {
      if (hostile == 0) hostile = p;
      return;
    }
    value &= ~mask;
    const uint8_t c = class_map[bit >> (12 - 4)];
    if (ABSL_PREDICT_FALSE(c != cls)) {
      settle();
      cls = c;
      known = 0;
      fill = 0;  // kNoClass: all to `rest`
      if (c != kNoClass) {
        known = t->known[c];
        fill = kFillCount.fill[c];
        class_size = kClassSize[c];
        placed = t->Placed(c);
        slots = MagazineAt(cache, c).slots;
      }
    }
    if (ABSL_PREDICT_TRUE(known < fill && class_size <= park_room)) {
      park_room -= class_size;
      placed[known] = reinterpret_cast<void*>(p);
      slots[known++] = reinterpret_cast<void*>(p);
    } else {
      rest[n_rest++] = reinterpret_cast<void*>(p);
    }
  };
  for (uint32_t i = 0; i < n; ++i) {
    take(reinterpret_cast<uintptr_t>(f.slots[i]));
  }
  // The regions malloc would hand out again first: each a free like those
  // of the buffer (taken after them, so a double free shows either way).
  // With no hot region counted (the compartment's word), none is looked
  // for: any left stay live for the runtime, as the compartment's.
  if (__atomic_load_n(&f.hot, __ATOMIC_RELAXED) != 0) {
    for (size_t c = 0; c < kNumCachedClasses; ++c) {
      Magazine& m = MagazineAt(cache, c);
      const uint32_t h =
          std::min(__atomic_load_n(&m.nhot, __ATOMIC_RELAXED), kHotSlots);
      if (h == 0) continue;
      m.nhot = 0;
      for (uint32_t i = 0; i < h; ++i) {
        take(reinterpret_cast<uintptr_t>(
            __atomic_load_n(&m.hot[i], __ATOMIC_RELAXED)));
      }
    }
  }
  if (word != nullptr) *word = value;
  settle();
  for (uint64_t m = touched; m != 0; m &= m - 1) {
    const size_t c = std::countr_zero(m);
    __atomic_store_n(&MagazineAt(cache, c).count, t->known[c],
                     __ATOMIC_RELAXED);
  }
  t->active |= touched;
  live_bytes_ -= moved;
  cached_bytes_ += moved;
  for (uint32_t i = 0; i < n_rest; ++i) Release(t, rest[i]);
  f.count = 0;
  f.hot = 0;
  cache->last = nullptr;  // an entry (realloc) may have freed it
  // Mallocs the runtime never saw: the compartment's word, for stats only.
  stats_.allocations += std::exchange(cache->hot_mallocs, 0) & 0xffffffff;
  return hostile;
}

// After Reconcile: every region in t's magazines goes back to jemalloc
// and stops counting against the limit. Only for the thread in the
// allocator entry: its compartment code is not popping. False if they were
// empty.
bool CompartmentHeap::DrainMagazines(HeapThread* t) {
  if (t->active == 0) return false;
  for (uint64_t active = t->active; active != 0; active &= active - 1) {
    const size_t c = std::countr_zero(active);
    __atomic_store_n(&MagazineAt(t->cache, c).count, 0u, __ATOMIC_RELAXED);
    cached_bytes_ -= size_t{t->known[c]} * kClassSize[c];
    void** const placed = t->Placed(c);
    for (uint32_t i = 0; i < t->known[c]; ++i) {
      sdallocx(placed[i], kClassSize[c], TcacheFlags(t));
    }
    t->known[c] = 0;
  }
  t->active = 0;
  return true;
}

// Host memory only: any thread may empty another's stash under mu_ (not
// through that thread's tcache, which is its own).
bool CompartmentHeap::ReleaseStashes() {
  if (stashed_bytes_ == 0) return false;
  for (HeapThread* t : threads_) {
    for (size_t c = 0; c < kNumCachedClasses; ++c) {
      for (void* p : t->stash[c]) {
        sdallocx(p, kClassSize[c], MALLOCX_TCACHE_NONE);
      }
      stashed_bytes_ -= t->stash[c].size() * kClassSize[c];
      t->stash[c].clear();
    }
  }
  return true;
}

// What a stash kept for kStashDecayNanos without being drawn on goes back
// to jemalloc, half of it at a time (as jemalloc's thread cache does with
// its low-water mark): what a big job freed neither stays pinned nor
// leaves the next, smaller jobs working on cold, scattered memory.
void CompartmentHeap::DecayStashes(HeapThread* t) {
  timespec now_ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &now_ts);
  const int64_t now = int64_t{now_ts.tv_sec} * 1000000000 + now_ts.tv_nsec;
  if (now < t->decay_at) return;
  t->decay_at = now + kStashDecayNanos;
  for (size_t c = 0; c < kNumCachedClasses; ++c) {
    std::vector<void*>& stash = t->stash[c];
    const size_t drop = std::min(t->stash_low[c], stash.size()) / 2;
    if (drop != 0) {
      for (size_t i = 0; i < drop; ++i) {  // the oldest, at the bottom
        sdallocx(stash[i], kClassSize[c], TcacheFlags(t));
      }
      stash.erase(stash.begin(), stash.begin() + static_cast<ptrdiff_t>(drop));
      stashed_bytes_ -= drop * kClassSize[c];
    }
    t->stash_low[c] = stash.size();
    t->stash_high_before[c] = t->stash_high[c];
    t->stash_high[c] = stash.size();
  }
}

// Tops magazine c up and hands out one region itself (live at once).
void* CompartmentHeap::Refill(HeapThread* t, size_t c) {
  const size_t size = kClassSize[c];
  uint32_t& known = t->known[c];
  const uint32_t before = known;
  const uint32_t fill =
      std::min<uint32_t>(kFillCount.fill[c] + 1, MagazineSlotsOf(c));
  // The new regions, which malloc hands out in address order: the
  // stash's newest (freed here before, so of class c; counted already),
  // then jemalloc's.
  void* order[kMagazineSlots + 1];
  uint32_t n = 0;
  std::vector<void*>& stash = t->stash[c];
  const uint32_t want = fill - std::min(fill, known);
  const uint32_t from_stash =
      static_cast<uint32_t>(std::min<size_t>(stash.size(), want));
  t->stash_high[c] = std::max(t->stash_high[c], stash.size());
  std::copy(stash.end() - from_stash, stash.end(), order);
  stash.resize(stash.size() - from_stash);
  n = from_stash;
  t->stash_low[c] = std::min(t->stash_low[c], stash.size());
  // Address order matters once a thread recycles more than the caches
  // hold: a tree built from regions in the order they were freed is
  // walked out of order (libxml2 at 1 MiB: 0.7 of native unsorted, 1.03
  // sorted; bench/RESULTS.md). Below that, sorting costs more than it saves.
  if (std::max(t->stash_high[c], t->stash_high_before[c]) * size >=
      kSortedStashBytes) {
    SortBatch(order, order + n, [](void* a, void* b) { return a < b; });
  }
  stashed_bytes_ -= size_t{from_stash} * size;
  cached_bytes_ += size_t{from_stash} * size;
  if (before + n == 0 && !Fits(size)) ReleaseStashes();
  const size_t room = limit_ - std::min(limit_, live_bytes_ + cached_bytes_ +
                                                    stashed_bytes_);
  const uint32_t target = static_cast<uint32_t>(
      std::min<size_t>(want, n + room / size));
  // No alignment flag: with one, jemalloc serves sizes above 14 KiB from
  // the arena, not from the thread cache.
  const int flags = MALLOCX_ARENA(arena_) | TcacheFlags(t);
  while (n < target) {
    void* p = mallocx(size, flags);
    if (p == nullptr) break;
    // A big region is one per page too: a slab's regions above 4 KiB, or
    // a large extent's first page (jemalloc's random cache-line offset
    // keeps the start on it).
    live_.SetPageClass(reinterpret_cast<uintptr_t>(p), static_cast<uint8_t>(c));
    order[n++] = p;
    cached_bytes_ += size;
  }
  // Malloc pops from the top: order[0] goes there. New regions go to the
  // trusted copy and the magazine together; the slots below `before` hold
  // what they held (what the compartment wrote there only ever reaches the
  // compartment itself).
  Magazine& m = MagazineAt(t->cache, c);
  void** const placed = t->Placed(c);
  for (uint32_t i = 0; i < n; ++i) {
    placed[before + n - 1 - i] = order[i];
    m.slots[before + n - 1 - i] = order[i];
  }
  known = before + n;
  if (known == 0) return nullptr;
  void* result = placed[--known];
  cached_bytes_ -= size;
  live_.SetLive(reinterpret_cast<uintptr_t>(result));
  NoteLive(size);
  ++stats_.allocations;
  __atomic_store_n(&m.count, known, __ATOMIC_RELAXED);
  if (known != 0) t->active |= uint64_t{1} << c;
  return result;
}

// What compartment threads took from their caches is theirs before the host
// frees, sizes or counts anything.
void CompartmentHeap::ReconcileAll() {
  for (HeapThread* t : threads_) Reconcile(t);
}

}  // namespace mpkbox::internal
