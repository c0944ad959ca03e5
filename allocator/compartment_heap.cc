#include "allocator/compartment_heap.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include <algorithm>
#include <bit>
#include <cstdio>

#include "absl/strings/str_format.h"
#include "allocator/address_zone.h"
#include "allocator/host_heap.h"
#include "runtime/keys/pku.h"

namespace mpkbox::internal {

inline constexpr uint32_t kStashSlots = 128;
inline constexpr unsigned kNoTcache = ~0u;
inline constexpr char kBadFree[] =
    "free of a pointer that is not a live allocation of the compartment";

// What the runtime knows about one thread's HeapCache: on the host heap,
// trusted. placed[c][0, known[c]) are the regions it last saw in magazine c.
struct HeapThread {
  ThreadBlock* tb;
  size_t slot;
  HeapCache* cache;  // compartment memory: read, never believed
  unsigned tcache = kNoTcache;
  uint32_t active = 0;  // magazines holding regions
  uint32_t known[kNumCachedClasses] = {};
  void* placed[kNumCachedClasses][kMagazineSlots];
  // Freed regions kept for the next refill: jemalloc costs more than the
  // gate's amortized share (bench/RESULTS.md).
  struct Stash {
    uint32_t n = 0;
    void* p[kStashSlots];
  } stash[kNumCachedClasses];
};

namespace {

size_t ClassOf(size_t bytes) {
  return kSizeClassOf.of[(std::max(bytes, kMinAllocation) + 15) / 16];
}

// How many regions a magazine is filled to: about 128 KiB's worth.
struct FillCountTable {
  uint32_t of[kNumCachedClasses];
  constexpr FillCountTable() : of() {
    for (size_t c = 0; c < kNumCachedClasses; ++c) {
      of[c] = std::clamp<uint32_t>(131072 / kClassSize[c], 32, kMagazineSlots);
    }
  }
};
constexpr FillCountTable kFillCount{};

int TcacheFlags(const HeapThread* t) {
  return t != nullptr && t->tcache != kNoTcache ? MALLOCX_TCACHE(t->tcache)
                                                : MALLOCX_TCACHE_NONE;
}

SelectorPage* SelectorOf(ThreadBlock* tb) {
  return reinterpret_cast<SelectorPage*>(reinterpret_cast<char*>(tb) -
                                         MPKBOX_PAGE_SIZE);
}

}  // namespace

CompartmentHeap* HeapOfSlot(size_t slot) {
  if (g_trusted == nullptr || slot >= kMaxCompartments) return nullptr;
  return g_trusted->heaps[slot].load(std::memory_order_acquire);
}

void SetHeapOfSlot(size_t slot, CompartmentHeap* heap) {
  g_trusted->heaps[slot].store(heap, std::memory_order_release);
}

CompartmentHeap::CompartmentHeap(size_t slot, uint64_t domain, int key,
                                 size_t limit, std::string name)
    : domain_(domain),
      key_(key),
      limit_(limit),
      name_(std::move(name)),
      window_(WindowBase(slot)),
      bitmap_(WindowBitmap(slot)),
      class_map_(WindowClassMap(slot)),
      image_low_(window_ + kWindowBytes) {}

absl::StatusOr<std::unique_ptr<CompartmentHeap>> CompartmentHeap::Create(
    size_t slot, uint64_t domain, int key, size_t limit_bytes,
    std::string name) {
  if (limit_bytes > kMaxLimitBytes) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "compartment '%s': heap_limit_bytes %u is above the maximum of %u",
        name, limit_bytes, kMaxLimitBytes));
  }
  if (g_trusted == nullptr || g_zone.size == 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "compartment '%s': no compartment heaps: %s", name, g_host.error));
  }
  std::unique_ptr<CompartmentHeap> heap(
      new CompartmentHeap(slot, domain, key, limit_bytes, std::move(name)));
  if (absl::Status s = TagPages(heap->bitmap_, kMetadataBytesPerWindow,
                                PROT_READ | PROT_WRITE, Keys().trusted);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = heap->OpenArena(); !s.ok()) {
    ReleaseZoneRange(reinterpret_cast<uintptr_t>(heap->bitmap_),
                     kMetadataBytesPerWindow);
    return absl::Status(s.code(), absl::StrFormat("compartment '%s': %s",
                                                  heap->name_, s.message()));
  }
  return heap;
}

CompartmentHeap::~CompartmentHeap() {
  CloseArena();
  ReleaseZoneRange(reinterpret_cast<uintptr_t>(bitmap_),
                   kMetadataBytesPerWindow);
}

absl::Status CompartmentHeap::OpenArena() {
  // Room for fragmentation and per-thread caches beyond the limit, no more.
  InitTaggedHooks(&hooks_, key_, window_, kWindowBytes - kImageBytes,
                  2 * limit_ + (size_t{32} << 20));
  absl::StatusOr<unsigned> arena =
      CreateTaggedArena(&hooks_, /*metadata_use_hooks=*/false);
  if (!arena.ok()) return arena.status();
  arena_ = *arena;
  arena_open_ = true;
  return absl::OkStatus();
}

void CompartmentHeap::CloseArena() {
  if (!arena_open_) return;
  DestroyArena(arena_);
  arena_open_ = false;
  const uintptr_t used = hooks_.bump.load() - window_;
  ReleaseZoneRange(window_, (used + MPKBOX_PAGE_SIZE - 1) &
                                ~uintptr_t{MPKBOX_PAGE_SIZE - 1});
  // The bits of the used part; the rest was never touched.
  const size_t bits = ((used / 128) + MPKBOX_PAGE_SIZE - 1) &
                      ~size_t{MPKBOX_PAGE_SIZE - 1};
  if (bits != 0) madvise(bitmap_, bits, MADV_DONTNEED);
  const size_t classes = ((used >> 12) + MPKBOX_PAGE_SIZE - 1) &
                         ~size_t{MPKBOX_PAGE_SIZE - 1};
  if (classes != 0) madvise(class_map_, classes, MADV_DONTNEED);
  const uintptr_t top = window_ + kWindowBytes;
  ReleaseZoneRange(image_low_.load(), top - image_low_.load());
  image_low_.store(top);
}

void CompartmentHeap::RewindImages(uintptr_t mark) {
  const uintptr_t low = image_low_.load();
  if (mark <= low) return;
  ReleaseZoneRange(low, mark - low);
  image_low_.store(mark);
}

absl::StatusOr<uintptr_t> CompartmentHeap::ReserveImageSpace(
    size_t bytes, size_t alignment) {
  const uintptr_t low = window_ + kWindowBytes - kImageBytes;
  const uintptr_t cur = image_low_.load();
  if (bytes > cur - low) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "compartment '%s': its %u MiB for loaded code are used up", name_,
        kImageBytes >> 20));
  }
  const uintptr_t start = (cur - bytes) & ~(uintptr_t{alignment} - 1);
  if (start < low) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "compartment '%s': its %u MiB for loaded code are used up", name_,
        kImageBytes >> 20));
  }
  image_low_.store(start);
  return start;
}

void CompartmentHeap::BeginDrop() {
  std::lock_guard<std::mutex> lock(mu_);
  dropping_ = true;
}

absl::Status CompartmentHeap::Reset() {
  CloseArena();
  std::lock_guard<std::mutex> lock(mu_);
  dropping_ = false;
  live_bytes_ = 0;
  cached_bytes_ = 0;
  stats_ = CompartmentStats{};
  return OpenArena();
}

// ---- the live-allocation bitmap: one bit per 16 bytes of the window ----

ABSL_ATTRIBUTE_ALWAYS_INLINE inline bool CompartmentHeap::IsLive(uintptr_t p) const {
  const uintptr_t off = p - window_;
  if (off >= kWindowBytes || (off & (kMinAllocation - 1)) != 0) return false;
  const uintptr_t bit = off / kMinAllocation;
  return (bitmap_[bit / 64] >> (bit % 64)) & 1;
}

ABSL_ATTRIBUTE_ALWAYS_INLINE inline void CompartmentHeap::SetLive(uintptr_t p) {
  const uintptr_t bit = (p - window_) / kMinAllocation;
  bitmap_[bit / 64] |= uint64_t{1} << (bit % 64);
}

ABSL_ATTRIBUTE_ALWAYS_INLINE inline bool CompartmentHeap::TakeLive(uintptr_t p) {
  const uintptr_t off = p - window_;
  if (off >= kWindowBytes || (off & (kMinAllocation - 1)) != 0) return false;
  const uintptr_t bit = off / kMinAllocation;
  const uint64_t mask = uint64_t{1} << (bit % 64);
  uint64_t& word = bitmap_[bit / 64];
  if (!(word & mask)) return false;
  word &= ~mask;
  return true;
}

// Every region handed out records its class for its page: all regions that
// start on one page share a jemalloc slab, hence a size. Release then needs
// no sallocx for cached sizes.
void CompartmentHeap::NoteClass(uintptr_t p, size_t usable) {
  uint8_t c = kNoClass;
  if (usable <= kMaxCachedSize) {
    const size_t cls = ClassOf(usable);
    if (kClassSize[cls] == usable) c = static_cast<uint8_t>(cls);
  }
  class_map_[(p - window_) >> 12] = c;
}

ABSL_ATTRIBUTE_ALWAYS_INLINE inline bool CompartmentHeap::Fits(size_t bytes) {
  return live_bytes_ + cached_bytes_ + bytes <= limit_;
}

ABSL_ATTRIBUTE_ALWAYS_INLINE inline void CompartmentHeap::NoteLive(ptrdiff_t bytes) {
  live_bytes_ += bytes;
  stats_.peak_bytes = std::max(stats_.peak_bytes, live_bytes_);
}

// ---- per-thread caches ----

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
          dallocx(t->placed[c][i], TcacheFlags(t));
        }
        for (uint32_t i = 0; i < t->stash[c].n; ++i) {
          dallocx(t->stash[c].p[i], TcacheFlags(t));
        }
      }
      dallocx(t->cache, MALLOCX_TCACHE_NONE);
    } else {
      for (size_t c = 0; c < kNumCachedClasses; ++c) {
        cached_bytes_ -= t->known[c] * kClassSize[c];
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
  for (uint32_t active = t->active; active != 0; active &= active - 1) {
    const size_t c = __builtin_ctz(active);
    uint32_t now = __atomic_load_n(&t->cache->magazines[c].count,
                                   __ATOMIC_RELAXED);
    if (now > t->known[c]) now = t->known[c];  // nothing is pushed back
    // Neighbouring regions share bitmap words: one store per word. (window
    // and bitmap in locals: the compiler would reload the members after
    // every store to a uint64_t.)
    const uintptr_t window = window_;
    uint64_t* const bitmap = bitmap_;
    uint64_t* word = nullptr;
    uint64_t bits = 0;
    for (uint32_t i = now; i < t->known[c]; ++i) {
      const uintptr_t bit =
          (reinterpret_cast<uintptr_t>(t->placed[c][i]) - window) /
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
    if (now == 0) t->active &= ~(1u << c);
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
  const uintptr_t window = window_;
  uint64_t* const bitmap = bitmap_;
  const uint8_t* const class_map = class_map_;
  Magazine* const magazines = t->cache->magazines;
  // The rest are released after the loop, which then calls nothing and
  // keeps its state in registers.
  void* rest[kFreeSlots];
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
  void** slots = nullptr;   // magazines[cls].slots
  size_t moved = 0;         // bytes put in magazines
  // Regions in magazines count against the limit, and only their own thread
  // can take them back (DrainMagazines): frees park there only while all
  // magazines hold under an eighth of the limit, so memory an idle thread
  // freed stays available to the others and to the host's Allocate.
  const size_t park_cap = limit_ / 8;
  size_t park_room = park_cap - std::min(park_cap, cached_bytes_);
  size_t class_size = 0;
  uint32_t touched = 0;     // magazines given regions
  auto settle = [&] {       // the current class's count back to t
    if (cls == kNoClass || known == t->known[cls]) return;
    moved += size_t{known - t->known[cls]} * kClassSize[cls];
    touched |= 1u << cls;
    t->known[cls] = known;
  };
  for (uint32_t i = 0; i < n; ++i) {
    const uintptr_t p = reinterpret_cast<uintptr_t>(f.slots[i]);
    // One test for "in the window and 16-aligned": rotated, low bits that
    // are set land at the top.
    const uintptr_t bit = std::rotr(p - window, 4);
    if (ABSL_PREDICT_FALSE(bit >= kWindowBytes / kMinAllocation)) {
      if (p != 0 && hostile == 0) hostile = p;  // null frees nothing
      continue;
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
      continue;
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
        fill = kFillCount.of[c];
        class_size = kClassSize[c];
        placed = t->placed[c];
        slots = magazines[c].slots;
      }
    }
    if (ABSL_PREDICT_TRUE(known < fill && class_size <= park_room)) {
      park_room -= class_size;
      placed[known] = reinterpret_cast<void*>(p);
      slots[known++] = reinterpret_cast<void*>(p);
    } else {
      rest[n_rest++] = reinterpret_cast<void*>(p);
    }
  }
  if (word != nullptr) *word = value;
  settle();
  for (uint32_t m = touched; m != 0; m &= m - 1) {
    const size_t c = __builtin_ctz(m);
    __atomic_store_n(&magazines[c].count, t->known[c], __ATOMIC_RELAXED);
  }
  t->active |= touched;
  live_bytes_ -= moved;
  cached_bytes_ += moved;
  for (uint32_t i = 0; i < n_rest; ++i) Release(t, rest[i]);
  f.count = 0;
  return hostile;
}

// p was live and its bit is clear now.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline void CompartmentHeap::Release(
    HeapThread* t, void* p) {
  const uint8_t c = class_map_[(reinterpret_cast<uintptr_t>(p) - window_) >> 12];
  if (c == kNoClass) {
    live_bytes_ -= sallocx(p, 0);
    dallocx(p, TcacheFlags(t));
    return;
  }
  live_bytes_ -= kClassSize[c];
  if (t != nullptr && t->stash[c].n < kStashSlots) {
    t->stash[c].p[t->stash[c].n++] = p;
    return;
  }
  sdallocx(p, kClassSize[c], TcacheFlags(t));
}

// After Reconcile: every region in t's magazines goes to its stash (or
// back to jemalloc) and stops counting against the limit. Only for the
// thread in the allocator entry: its compartment code is not popping.
// False if they were empty.
bool CompartmentHeap::DrainMagazines(HeapThread* t) {
  if (t->active == 0) return false;
  for (uint32_t active = t->active; active != 0; active &= active - 1) {
    const size_t c = __builtin_ctz(active);
    __atomic_store_n(&t->cache->magazines[c].count, 0u, __ATOMIC_RELAXED);
    cached_bytes_ -= size_t{t->known[c]} * kClassSize[c];
    HeapThread::Stash& stash = t->stash[c];
    for (uint32_t i = 0; i < t->known[c]; ++i) {
      if (stash.n < kStashSlots) {
        stash.p[stash.n++] = t->placed[c][i];
      } else {
        sdallocx(t->placed[c][i], kClassSize[c], TcacheFlags(t));
      }
    }
    t->known[c] = 0;
  }
  t->active = 0;
  return true;
}

// Tops magazine c up and hands out one region itself (live at once).
void* CompartmentHeap::Refill(HeapThread* t, size_t c) {
  const size_t size = kClassSize[c];
  uint32_t& known = t->known[c];
  const uint32_t before = known;
  const size_t room = limit_ - std::min(limit_, live_bytes_ + cached_bytes_);
  const uint32_t target = static_cast<uint32_t>(std::min<size_t>(
      std::min<uint32_t>(kFillCount.of[c] + 1, kMagazineSlots),
      known + room / size));
  // New regions go to the trusted copy and the magazine together; the
  // slots below `before` hold what they held (what the compartment wrote
  // there only ever reaches the compartment itself).
  Magazine& m = t->cache->magazines[c];
  HeapThread::Stash& stash = t->stash[c];
  while (known < target && stash.n > 0) {  // freed here before: class known
    void* p = stash.p[--stash.n];
    t->placed[c][known] = p;
    m.slots[known++] = p;
  }
  const int flags = MALLOCX_ARENA(arena_) | TcacheFlags(t);
  while (known < target) {
    void* p = mallocx(size, flags);
    if (p == nullptr) break;
    class_map_[(reinterpret_cast<uintptr_t>(p) - window_) >> 12] =
        static_cast<uint8_t>(c);
    t->placed[c][known] = p;
    m.slots[known++] = p;
  }
  cached_bytes_ += size * (known - before);
  if (known == 0) return nullptr;
  void* result = t->placed[c][--known];
  cached_bytes_ -= size;
  SetLive(reinterpret_cast<uintptr_t>(result));
  NoteLive(size);
  ++stats_.allocations;
  __atomic_store_n(&m.count, known, __ATOMIC_RELAXED);
  if (known != 0) t->active |= 1u << c;
  return result;
}

void* CompartmentHeap::AllocateLive(size_t bytes, size_t alignment,
                                    int tcache_flags) {
  bytes = std::max(bytes, kMinAllocation);
  // Every size class is 16-aligned already; an alignment flag would also
  // send sizes above 14 KiB past jemalloc's thread cache.
  const int flags = MALLOCX_ARENA(arena_) | tcache_flags |
                    (alignment > kMinAllocation ? MALLOCX_ALIGN(alignment) : 0);
  const size_t usable = nallocx(bytes, flags);
  if (usable == 0 || !Fits(usable)) return nullptr;
  void* p = mallocx(bytes, flags);
  if (p == nullptr) return nullptr;
  NoteClass(reinterpret_cast<uintptr_t>(p), usable);
  SetLive(reinterpret_cast<uintptr_t>(p));
  NoteLive(usable);
  ++stats_.allocations;
  return p;
}

// p is live. Null (p untouched) when the limit or jemalloc refuses.
void* CompartmentHeap::ReallocLive(void* p, size_t bytes, int tcache_flags) {
  const int flags = MALLOCX_ARENA(arena_) | tcache_flags;
  const size_t want = std::max(bytes, kMinAllocation);
  const size_t old_usable = sallocx(p, 0);
  const size_t new_usable = nallocx(want, flags);
  if (new_usable == 0 ||
      (new_usable > old_usable && !Fits(new_usable - old_usable))) {
    return nullptr;
  }
  void* q = rallocx(p, want, flags);
  if (q == nullptr) return nullptr;
  TakeLive(reinterpret_cast<uintptr_t>(p));
  SetLive(reinterpret_cast<uintptr_t>(q));
  live_bytes_ -= old_usable;
  const size_t usable = sallocx(q, 0);
  NoteClass(reinterpret_cast<uintptr_t>(q), usable);
  NoteLive(usable);
  return q;
}

CompartmentHeap::EntryResult CompartmentHeap::Enter(ThreadBlock* tb,
                                                    size_t slot, uint64_t op,
                                                    uint64_t a, uint64_t b) {
  std::lock_guard<std::mutex> lock(mu_);
  EntryResult r;
  HeapThread* t = ThreadFor(tb, slot);
  if (t != nullptr) {
    Reconcile(t);
    r.hostile = FlushFrees(t);
    if (r.hostile != 0) {
      r.why = kBadFree;
      return r;
    }
  }
  auto fail = [&](int err) {
    ++stats_.failed_allocations;
    errno = err;  // the compartment's errno: key 0, which it cannot write
    if (t != nullptr) t->cache->errno_value = err;  // loaded code's errno
    return r;
  };
  // The limit counts what this thread's magazines hold: when it refuses,
  // they are emptied and the request is tried once more.
  auto drained = [&] { return t != nullptr && DrainMagazines(t); };
  auto allocate = [&](size_t bytes, bool zero) {
    auto once = [&]() -> void* {
      if (t == nullptr || bytes > kMaxCachedSize) {
        return AllocateLive(bytes, kMinAllocation,
                            TcacheFlags(t) | (zero ? MALLOCX_ZERO : 0));
      }
      void* p = Refill(t, ClassOf(bytes));
      if (p != nullptr && zero) memset(p, 0, bytes);
      return p;
    };
    void* p = once();
    if (p == nullptr && drained()) p = once();
    if (p == nullptr) return fail(ENOMEM);
    r.value = reinterpret_cast<uintptr_t>(p);
    return r;
  };
  switch (op) {
    case kOpMalloc:
      return allocate(a, false);
    case kOpCalloc: {
      size_t bytes;
      if (__builtin_mul_overflow(a, b, &bytes)) return fail(ENOMEM);
      return allocate(bytes, true);
    }
    case kOpFree:
      if (a != 0 && !TakeLive(a)) {
        r.hostile = a;
        r.why = kBadFree;
        return r;
      }
      if (a != 0) Release(t, reinterpret_cast<void*>(a));
      return r;
    case kOpRealloc: {
      if (a == 0) return allocate(b, false);
      if (!IsLive(a)) {
        r.hostile = a;
        r.why = "realloc of a pointer that is not a live allocation of the "
                "compartment";
        return r;
      }
      if (b == 0) {
        TakeLive(a);
        Release(t, reinterpret_cast<void*>(a));
        return r;
      }
      void* p = ReallocLive(reinterpret_cast<void*>(a), b, TcacheFlags(t));
      if (p == nullptr && drained()) {
        p = ReallocLive(reinterpret_cast<void*>(a), b, TcacheFlags(t));
      }
      if (p == nullptr) return fail(ENOMEM);
      r.value = reinterpret_cast<uintptr_t>(p);
      return r;
    }
    case kOpAlignedAlloc: {
      if (a == 0 || (a & (a - 1)) != 0) return fail(EINVAL);
      void* p = AllocateLive(b, a, TcacheFlags(t));
      if (p == nullptr && drained()) p = AllocateLive(b, a, TcacheFlags(t));
      if (p == nullptr) return fail(ENOMEM);
      r.value = reinterpret_cast<uintptr_t>(p);
      return r;
    }
    case kOpUsableSize:
      r.value = IsLive(a) ? sallocx(reinterpret_cast<void*>(a), 0) : 0;
      return r;
    default:
      r.hostile = 1;
      r.why = "unknown allocator request";
      return r;
  }
}

CompartmentHeap::EntryResult CompartmentHeap::CheckFrees(ThreadBlock* tb,
                                                         size_t slot) {
  std::lock_guard<std::mutex> lock(mu_);
  EntryResult r;
  HeapThread* t = tb->heap_threads[slot];
  if (t == nullptr) return r;
  Reconcile(t);
  r.hostile = FlushFrees(t);
  if (r.hostile != 0) {
    r.why = kBadFree;
  }
  return r;
}

// ---- the host's side ----

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
        name_, bytes, live_bytes_ + cached_bytes_, limit_));
  }
  return p;
}

bool CompartmentHeap::Free(void* p) {
  std::lock_guard<std::mutex> lock(mu_);
  ReconcileAll();
  if (!TakeLive(reinterpret_cast<uintptr_t>(p))) return false;
  Release(nullptr, p);
  return true;
}

void* CompartmentHeap::Realloc(void* p, size_t bytes, bool* valid) {
  std::lock_guard<std::mutex> lock(mu_);
  ReconcileAll();
  *valid = IsLive(reinterpret_cast<uintptr_t>(p));
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
  return IsLive(reinterpret_cast<uintptr_t>(p)) ? sallocx(p, 0) : 0;
}

bool CompartmentHeap::Contains(uintptr_t p, size_t n) const {
  const uintptr_t end = hooks_.bump.load(std::memory_order_relaxed);
  if (p >= window_ && p <= end && n <= end - p) return true;
  const uintptr_t low = image_low_.load(std::memory_order_relaxed);
  const uintptr_t top = window_ + kWindowBytes;
  return p >= low && p <= top && n <= top - p && low != top;
}

// What compartment threads took from their caches is theirs before the host
// frees, sizes or counts anything.
void CompartmentHeap::ReconcileAll() {
  for (HeapThread* t : threads_) Reconcile(t);
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

void CheckFreesAfterCall(ThreadBlock* tb, size_t slot) {
  CompartmentHeap* heap = HeapOfSlot(slot);
  if (heap == nullptr) return;
  CompartmentHeap::EntryResult r = heap->CheckFrees(tb, slot);
  if (r.hostile == 0) return;
  FaultInfo& f = tb->fault_info;
  memset(&f, 0, sizeof(f));
  f.kind = FaultKind::kHeapViolation;
  f.address = r.hostile;
  snprintf(f.what, sizeof(f.what), "%s", r.why);
  tb->fault = 1;
}

}  // namespace mpkbox::internal
