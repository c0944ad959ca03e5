// A compartment heap's life (its arena and window, the image space at the
// window's top) and its allocations from jemalloc, which the allocator
// entry and the host share. The rest: magazines.cc, allocator_entry.cc,
// compartment_heap_host.cc.
#include "allocator/compartment_heap.h"

#include <sys/mman.h>

#include <jemalloc/jemalloc.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "allocator/address_zone.h"
#include "allocator/host_heap.h"
#include "allocator/huge_chunks.h"
#include "allocator/magazines.h"
#include "allocator/tagged_arena.h"
#include "runtime/keys/pku.h"
#include "trampolines/gate_layout.h"

namespace mpkbox::internal {

CompartmentHeap* HeapOfSlot(size_t slot) {
  if (g_allocator_tables == nullptr || slot >= kMaxCompartments) return nullptr;
  return g_allocator_tables->heaps[slot].load(std::memory_order_acquire);
}

void SetHeapOfSlot(size_t slot, CompartmentHeap* heap) {
  g_allocator_tables->heaps[slot].store(heap, std::memory_order_release);
}

CompartmentHeap::CompartmentHeap(size_t slot, uint64_t domain, int key,
                                 size_t limit, std::string name)
    : domain_(domain),
      key_(key),
      limit_(limit),
      name_(std::move(name)),
      live_(slot),
      image_low_(live_.window() + kWindowBytes) {}

absl::StatusOr<std::unique_ptr<CompartmentHeap>> CompartmentHeap::Create(
    size_t slot, uint64_t domain, int key, size_t limit_bytes,
    std::string name) {
  if (limit_bytes > kMaxLimitBytes) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "compartment '%s': heap_limit_bytes %u is above the maximum of %u",
        name, limit_bytes, kMaxLimitBytes));
  }
  if (g_allocator_tables == nullptr || g_zone.size == 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "compartment '%s': no compartment heaps: %s", name, g_host.error));
  }
  std::unique_ptr<CompartmentHeap> heap(
      new CompartmentHeap(slot, domain, key, limit_bytes, std::move(name)));
  if (absl::Status s = heap->live_.Tag(); !s.ok()) {
    return s;
  }
  if (absl::Status s = heap->OpenArena(); !s.ok()) {
    heap->live_.Untag();
    return absl::Status(s.code(), absl::StrFormat("compartment '%s': %s",
                                                  heap->name_, s.message()));
  }
  return heap;
}

CompartmentHeap::~CompartmentHeap() {
  ParkArena();
  live_.Untag();
}

namespace {

// A destroyed heap's arena, with its hooks, waiting for the slot's next
// heap: creating and destroying a jemalloc arena was most of the cost of a
// compartment's life (its metadata pages are faulted in and unmapped again).
// Each slot's entry belongs to whoever holds the slot.
struct ParkedArena {
  TaggedHooks* hooks = nullptr;
  unsigned arena = 0;
  const JemallocInstance* je = nullptr;
};

ParkedArena& ParkedArenaOf(size_t slot) {
  static ParkedArena* parked = new ParkedArena[kMaxCompartments];
  return parked[slot];
}

uintptr_t PageUp(uintptr_t n) {
  return (n + MPKBOX_PAGE_SIZE - 1) & ~uintptr_t{MPKBOX_PAGE_SIZE - 1};
}

// jemalloc 5.3 never hands a reset arena's extents out again: each cycle
// carves what it uses from the window anew (2.9 MB a cycle for
// private_jemalloc_test's churn, whose 56th Reset left no window). An arena
// that has carved past half a heap's budget is not kept for it (Reset) nor
// given to it (a parked one): a fresh arena starts the window over.
bool CarvedPastHalf(const TaggedHooks& h, uintptr_t window, size_t budget) {
  return budget != 0 && h.TaggedEnd() - window > budget / 2;
}

}  // namespace

absl::Status CompartmentHeap::OpenArena() {
  const uintptr_t window = live_.window();
  // Room for fragmentation and per-thread caches beyond the limit, no more.
  const size_t max_window_bytes = 2 * limit_ + (size_t{32} << 20);
  ParkedArena& parked = ParkedArenaOf(WindowOf(window));
  if (parked.hooks != nullptr) {
    TaggedHooks* h = std::exchange(parked.hooks, nullptr);
    const unsigned arena = parked.arena;
    const JemallocInstance* je = parked.je;
    // The parked pages hold nothing (dropped) and carry key 0, PROT_NONE:
    // one pkey_mprotect gives all of them to this heap's key.
    const uintptr_t used = PageUp(h->TaggedEnd() - window);
    const int key = this->key();
    // Judged by this heap's budget: a smaller limit than the last heap's
    // could otherwise find no window left at all.
    if (!CarvedPastHalf(*h, window, max_window_bytes) &&
        (used == 0 || TagPages(reinterpret_cast<void*>(window), used,
                               PROT_READ | PROT_WRITE, key)
                          .ok())) {
      h->key = key;
      h->max_window_bytes = max_window_bytes;
      __atomic_store_n(&hooks_, h, __ATOMIC_RELEASE);
      arena_ = arena;
      je_ = je;
      arena_open_ = true;
      return absl::OkStatus();
    }
    DestroyArena(*je, arena);
    ReleaseZoneRange(window, used);
    delete h;
  }
  // The compartment's copy of the class bytes comes first (heap_cache.h),
  // its extents after it: the used part, which every Reset, re-tag and
  // parking covers, then always starts with the copy.
  if (absl::Status s = TagPages(reinterpret_cast<void*>(window),
                                kClassCopyBytes, PROT_READ | PROT_WRITE, key());
      !s.ok()) {
    return s;
  }
  TaggedHooks* hooks =
      spare_hooks_ != nullptr ? spare_hooks_.release() : new TaggedHooks;
  InitTaggedHooks(hooks, key(), window + kClassCopyBytes,
                  kWindowBytes - kImageBytes - kClassCopyBytes,
                  max_window_bytes);
  __atomic_store_n(&hooks_, hooks, __ATOMIC_RELEASE);
  // The process's jemalloc first; past its 4,095 arena indices, the private
  // one's (jemalloc_instance.h).
  const bool prefer_private = PrivateJemallocPreferred();
  const JemallocInstance* je =
      prefer_private ? &kPrivateJemalloc : &kSystemJemalloc;
  absl::StatusOr<unsigned> arena =
      CreateTaggedArena(*je, hooks_, /*metadata_use_hooks=*/false);
  if (absl::IsResourceExhausted(arena.status())) {
    je = prefer_private ? &kSystemJemalloc : &kPrivateJemalloc;
    arena = CreateTaggedArena(*je, hooks_, /*metadata_use_hooks=*/false);
  }
  if (!arena.ok()) {
    spare_hooks_.reset(__atomic_exchange_n(&hooks_, nullptr, __ATOMIC_ACQ_REL));
    ReleaseZoneRange(window, kClassCopyBytes);  // no page keeps the key
    return arena.status();
  }
  arena_ = *arena;
  je_ = je;
  arena_open_ = true;
  return absl::OkStatus();
}

void CompartmentHeap::CloseArena() {
  if (!arena_open_) return;
  DestroyArena(*je_, arena_);
  arena_open_ = false;
  const uintptr_t window = live_.window();
  const uintptr_t used = hooks_->TaggedEnd() - window;
  ForgetDenseChunks(hooks_);  // the sparse budget back
  // jemalloc is done with them; a fault report may still read them.
  spare_hooks_.reset(__atomic_exchange_n(&hooks_, nullptr, __ATOMIC_ACQ_REL));
  ReleaseZoneRange(window, PageUp(used));
  live_.Clear(used);
  const uintptr_t top = window + kWindowBytes;
  ReleaseZoneRange(image_low_.load(), top - image_low_.load());
  image_low_.store(top);
  std::lock_guard<std::mutex> lock(retag_mu_);
  images_.clear();
}

bool CompartmentHeap::ClearArena() {
  if (!arena_open_ ||
      CarvedPastHalf(*hooks_, live_.window(), hooks_->max_window_bytes)) {
    return false;
  }
  if (!ResetArena(*je_, arena_)) return false;
  // The extents stay the arena's, mapped and tagged; one madvise drops
  // every page they hold, so nothing of the old state is read back.
  const uintptr_t window = live_.window();
  const uintptr_t used = PageUp(hooks_->TaggedEnd() - window);
  if (used != 0 &&
      madvise(reinterpret_cast<void*>(window), used, MADV_DONTNEED) != 0) {
    return false;
  }
  live_.Clear(used);
  ForgetDenseChunks(hooks_);
  const uintptr_t top = window + kWindowBytes;
  ReleaseZoneRange(image_low_.load(), top - image_low_.load());
  image_low_.store(top);
  std::lock_guard<std::mutex> lock(retag_mu_);
  images_.clear();
  return true;
}

void CompartmentHeap::ParkArena() {
  if (!arena_open_) return;
  const uintptr_t window = live_.window();
  const uintptr_t used = PageUp(hooks_->TaggedEnd() - window);
  // The key is freed after this: no page may keep it (DESIGN.md 5b).
  if (!ClearArena()) {
    CloseArena();
    return;
  }
  // A fresh mapping rather than a key change: the old one (its anon_vma,
  // likely) never merged with the next heap's carve again, leaving a chunk
  // in two mappings, which MADV_COLLAPSE refuses for good.
  ReleaseZoneRange(window, used);
  ParkedArenaOf(WindowOf(window)) = {std::exchange(hooks_, nullptr), arena_,
                                     je_};
  arena_open_ = false;
}

void CompartmentHeap::RewindImages(uintptr_t mark) {
  const uintptr_t low = image_low_.load();
  if (mark <= low) return;
  ReleaseZoneRange(low, mark - low);
  image_low_.store(mark);
  std::lock_guard<std::mutex> lock(retag_mu_);
  ForgetImages(low, mark);
}

int CompartmentHeap::key() const {
  std::lock_guard<std::mutex> lock(retag_mu_);
  return key_;
}

void CompartmentHeap::ForgetImages(uintptr_t lo, uintptr_t hi) {
  // Split the ranges that straddle lo or hi, then drop what lies inside.
  for (uintptr_t cut : {lo, hi}) {
    auto it = images_.upper_bound(cut);
    if (it == images_.begin()) continue;
    --it;
    if (it->first < cut && cut < it->second.first) {
      images_[cut] = it->second;
      it->second.first = cut;
    }
  }
  images_.erase(images_.lower_bound(lo), images_.lower_bound(hi));
}

absl::Status CompartmentHeap::TagImage(uintptr_t addr, size_t len, int prot) {
  std::lock_guard<std::mutex> lock(retag_mu_);
  if (absl::Status s = TagPages(reinterpret_cast<void*>(addr), len, prot, key_);
      !s.ok()) {
    return s;
  }
  ForgetImages(addr, addr + len);
  images_[addr] = {addr + len, prot};
  return absl::OkStatus();
}

absl::Status CompartmentHeap::Retag(int key) {
  std::lock_guard<std::mutex> lock(retag_mu_);
  if (hooks_ != nullptr) {
    // No extent is carved while the window changes key.
    std::lock_guard<std::mutex> carve(hooks_->tag_mu);
    // Dense chunks as huge pages first: then each moves as one entry.
    CollapseDenseChunks(hooks_);
    const uintptr_t window = live_.window();
    const uintptr_t used = PageUp(hooks_->TaggedEnd() - window);
    if (used != 0) {
      // A parked arena's pages stay PROT_NONE, key 0: only an open one's move.
      if (absl::Status s = TagPages(reinterpret_cast<void*>(window), used,
                                    PROT_READ | PROT_WRITE, key);
          !s.ok()) {
        return s;
      }
    }
    hooks_->key = key;
  }
  for (const auto& [start, range] : images_) {
    if (absl::Status s = TagPages(reinterpret_cast<void*>(start),
                                  range.first - start, range.second, key);
        !s.ok()) {
      return s;
    }
  }
  key_ = key;
  return absl::OkStatus();
}

size_t CompartmentHeap::RetagRanges() const {
  std::lock_guard<std::mutex> lock(retag_mu_);
  return images_.size() + (hooks_ != nullptr ? 1 : 0);
}

absl::StatusOr<uintptr_t> CompartmentHeap::ReserveImageSpace(
    size_t bytes, size_t alignment) {
  const uintptr_t low = live_.window() + kWindowBytes - kImageBytes;
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
  // Keeping the arena saves destroying and creating one (most of a Reset's
  // cost); where jemalloc refuses, a fresh arena in a fresh window.
  const bool cleared = ClearArena();
  if (!cleared) CloseArena();
  std::lock_guard<std::mutex> lock(mu_);
  dropping_ = false;
  live_bytes_ = 0;
  cached_bytes_ = 0;
  stashed_bytes_ = 0;
  stats_ = CompartmentStats{};
  // The loader registers them again as it reloads.
  tls_modules_.clear();
  loaded_objects_.clear();
  atexit_ = nullptr;  // went with the arena's allocations
  thread_keys_ = nullptr;
  return cleared ? absl::OkStatus() : OpenArena();
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
  live_.SetPageClass(p, c);
}

void* CompartmentHeap::AllocateLive(size_t bytes, size_t alignment,
                                    int tcache_flags) {
  bytes = std::max(bytes, kMinAllocation);
  // Every size class is 16-aligned already; an alignment flag would also
  // send sizes above 14 KiB past jemalloc's thread cache.
  const int flags = MALLOCX_ARENA(arena_) | tcache_flags |
                    (alignment > kMinAllocation ? MALLOCX_ALIGN(alignment) : 0);
  const size_t usable = nallocx(bytes, flags);
  if (usable == 0 || !MakeRoom(usable)) return nullptr;
  void* p = mallocx(bytes, flags);
  if (p == nullptr) return nullptr;
  NoteClass(reinterpret_cast<uintptr_t>(p), usable);
  live_.SetLive(reinterpret_cast<uintptr_t>(p));
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
      (new_usable > old_usable && !MakeRoom(new_usable - old_usable))) {
    return nullptr;
  }
  void* q = rallocx(p, want, flags);
  if (q == nullptr) return nullptr;
  live_.TakeLive(reinterpret_cast<uintptr_t>(p));
  live_.SetLive(reinterpret_cast<uintptr_t>(q));
  live_bytes_ -= old_usable;
  const size_t usable = sallocx(q, 0);
  NoteClass(reinterpret_cast<uintptr_t>(q), usable);
  NoteLive(usable);
  return q;
}

}  // namespace mpkbox::internal
