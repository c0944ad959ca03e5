// A compartment's heap: a jemalloc arena whose extents carry the
// compartment's key, carved from the compartment slot's window of the
// address zone, with a live-allocation bitmap on the trusted key.
//
// jemalloc only ever runs with host rights. Compartment code reaches it
// through the allocator entry (callback 0) when its per-thread HeapCache
// (heap_cache.h) runs dry or its free buffer fills; everything the cache
// holds is re-checked here, so a compartment that scribbles on its cache
// only hurts its own heap.
#ifndef MPKBOX_ALLOCATOR_COMPARTMENT_HEAP_H_
#define MPKBOX_ALLOCATOR_COMPARTMENT_HEAP_H_

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/base/attributes.h"
#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "allocator/heap_cache.h"
#include "allocator/jemalloc_instance.h"
#include "allocator/live_bitmap.h"
#include "allocator/tagged_arena.h"
#include "mpkbox/compartment_options.h"
#include "trampolines/thread_block.h"

namespace mpkbox::internal {

// Operations of the allocator entry; arguments are untrusted.
enum AllocatorOp : uint64_t {
  kOpMalloc = 1,     // (size)
  kOpFree,           // (pointer): the free buffer was full
  kOpRealloc,        // (pointer, size)
  kOpAlignedAlloc,   // (alignment, size)
  kOpCalloc,         // (count, size)
  kOpUsableSize,     // (pointer)
  kOpTlsBlock,       // (module id): this thread's block of its TLS
};

// A loaded object's thread-local storage, as the loader registers it: the
// initialization image (a host copy of PT_TLS's file bytes), the block's
// size and alignment.
struct TlsImage {
  std::vector<uint8_t> bytes;
  size_t size = 0;
  size_t align = 1;
};


class CompartmentHeap {
 public:
  // The largest heap_limit_bytes a window holds with room for jemalloc's
  // retained extents.
  static constexpr size_t kMaxLimitBytes = size_t{2} << 30;
  // The top of each window holds loaded images; jemalloc gets the rest.
  static constexpr size_t kImageBytes = size_t{1} << 30;

  static absl::StatusOr<std::unique_ptr<CompartmentHeap>> Create(
      size_t slot, uint64_t domain, int key, size_t limit_bytes,
      std::string name);
  // Every page goes back to the kernel and the window to PROT_NONE, key 0.
  // The registry must have dropped this slot's threads already.
  ~CompartmentHeap();

  // Before the registry drops the slot's threads for a Reset or destruction:
  // their caches need not go back to an arena about to be destroyed.
  void BeginDrop();
  // A fresh arena in a fresh window; after BeginDrop and the registry drop.
  absl::Status Reset();

  // The host's side (compartment_heap_host.cc): no thread cache is involved.
  absl::StatusOr<void*> Allocate(size_t bytes, size_t alignment);
  bool Free(void* p);  // false: not a live allocation; nothing happened
  void* Realloc(void* p, size_t bytes, bool* valid);
  size_t UsableSize(const void* p);  // 0 unless a live allocation
  // Every byte of [p, p + n) is memory of the heap's window that carries
  // the key now (stacks are the registry's).
  bool Contains(uintptr_t p, size_t n) const;
  CompartmentStats Stats();

  // Address space for loaded images at the top of the window, carved
  // downwards (the same sizes in the same order give the same addresses
  // after a Reset). Unmapped with the heap. Not thread-safe: the loader
  // holds the compartment.
  absl::StatusOr<uintptr_t> ReserveImageSpace(size_t bytes, size_t alignment);
  // Where the next image would go; RewindImages(mark) unmaps everything
  // reserved since (a load that failed).
  uintptr_t ImageMark() const { return image_low_.load(); }
  void RewindImages(uintptr_t mark);

  // Memory for loaded code's anonymous mmap (mappings.cc, for
  // runtime/compartment_libc/memory.cc): `bytes` (whole pages) zeroed,
  // page-aligned, counted against the limit, and not a live allocation, so
  // compartment code cannot free it. Null when the limit or jemalloc
  // refuses. FreeMapping takes back only what AllocateMapping returned: its
  // caller keeps the record of the compartment's mappings (host memory).
  void* AllocateMapping(size_t bytes);
  void FreeMapping(void* p);

  // Module `id` (1 to kMaxTlsModules) is `image` from now on; threads get
  // their block of it at their first __tls_get_addr (tls_blocks.cc).
  void SetTlsModule(size_t id, TlsImage image);
  // The loaded objects every thread's HeapCache lists from now on
  // (loaded_objects.cc); at most kMaxLoadedObjects are kept.
  void SetLoadedObjects(const std::vector<LoadedObjectInfo>& objects);

  // The key every page of the heap and its images carries now: the
  // compartment's hardware key, or the trusted key while the key cache has
  // evicted it (runtime/slot_registry.cc).
  int key() const;
  // Gives the window's used part and every image page `key`, keeping each
  // page's protection: one pkey_mprotect for the heap, one per image range.
  absl::Status Retag(int key);
  // Tags [addr, addr + len) of the image space `prot` with the current key,
  // and remembers it for Retag. Fresh mappings come back on key 0: the
  // loader tags each through here, never with a key of its own.
  absl::Status TagImage(uintptr_t addr, size_t len, int prot);
  // How many pkey_mprotect calls a Retag makes now.
  size_t RetagRanges() const;

  uint64_t domain() const { return domain_; }
  const std::string& name() const { return name_; }

  // For the allocator entry (allocator_entry.cc), under mu_.
  struct EntryResult {
    uint64_t value = 0;
    uintptr_t hostile = 0;  // nonzero: end the call, this pointer was bad
    const char* why = nullptr;
  };
  EntryResult RunAllocatorOp(ThreadBlock* tb, size_t slot, uint64_t op,
                             uint64_t a, uint64_t b);
  // After a call returned: the buffered frees of this thread.
  EntryResult CheckFrees(ThreadBlock* tb, size_t slot);
  // The thread exits (the heap stays) or the slot is dropped (magazines.cc).
  void DropThread(HeapThread* t);

 private:
  CompartmentHeap(size_t slot, uint64_t domain, int key, size_t limit,
                  std::string name);
  // Takes the arena the slot's last heap parked, else creates one.
  absl::Status OpenArena();
  // Destroys the arena and returns the window to the zone.
  void CloseArena();
  // For a Reset: the arena stays, with every allocation discarded and every
  // page of the window read as zero. False if jemalloc refused.
  bool ClearArena();
  // For destruction: cleared, its pages on key 0 and PROT_NONE, the arena
  // waits for the slot's next heap (else CloseArena).
  void ParkArena();

  // The trusted copies of the threads' magazines (magazines.cc).
  HeapThread* ThreadFor(ThreadBlock* tb, size_t slot)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Reconcile(HeapThread* t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReconcileAll() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uintptr_t FlushFrees(HeapThread* t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool DrainMagazines(HeapThread* t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Every thread's stash back to jemalloc; false if all were empty.
  bool ReleaseStashes() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // What t's stashes did not use lately goes back to jemalloc.
  void DecayStashes(HeapThread* t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Thread-local blocks (tls_blocks.cc): the thread's block of `module`,
  // made from its image on first use; and freeing them all.
  EntryResult TlsBlock(HeapThread* t, uint64_t module)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FreeTlsBlocks(HeapThread* t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes the loaded objects into a thread's HeapCache.
  void CopyLoadedObjects(HeapCache* cache) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void* Refill(HeapThread* t, size_t cls) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Defined in magazines.h: inline in every caller.
  inline void Release(HeapThread* t, void* p)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // jemalloc's allocations, live at once.
  void* AllocateLive(size_t bytes, size_t alignment, int tcache_flags)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void* ReallocLive(void* p, size_t bytes, int tcache_flags)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void NoteClass(uintptr_t p, size_t usable)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The limit's accounting; inline, always: the entry's paths use them.
  ABSL_ATTRIBUTE_ALWAYS_INLINE bool Fits(size_t bytes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return live_bytes_ + cached_bytes_ + stashed_bytes_ + bytes <= limit_;
  }
  // Fits, after taking the stashes back if need be.
  bool MakeRoom(size_t bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return Fits(bytes) || (ReleaseStashes() && Fits(bytes));
  }
  // The stashes hold at most a quarter of the limit: freed memory pinned
  // for reuse, which jemalloc could otherwise return to the kernel.
  size_t StashCap() const { return limit_ / 4; }
  ABSL_ATTRIBUTE_ALWAYS_INLINE void NoteLive(ptrdiff_t bytes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    live_bytes_ += bytes;
    stats_.peak_bytes = std::max(stats_.peak_bytes, live_bytes_);
  }

  // jemalloc's entry points, as the instance that holds this heap's arena
  // (jemalloc_instance.h): every call a member makes (magazines.cc,
  // tls_blocks.cc, ...) finds these before the process's jemalloc, so none
  // can hand this heap's pointers, arena or tcaches to the other instance.
  void* mallocx(size_t size, int flags) const {
    return je_->mallocx(size, flags);
  }
  void* rallocx(void* p, size_t size, int flags) const {
    return je_->rallocx(p, size, flags);
  }
  void dallocx(void* p, int flags) const { je_->dallocx(p, flags); }
  void sdallocx(void* p, size_t size, int flags) const {
    je_->sdallocx(p, size, flags);
  }
  size_t sallocx(const void* p, int flags) const {
    return je_->sallocx(p, flags);
  }
  size_t nallocx(size_t size, int flags) const {
    return je_->nallocx(size, flags);
  }
  int mallctl(const char* name, void* old, size_t* old_len, void* value,
              size_t value_len) const {
    return je_->mallctl(name, old, old_len, value, value_len);
  }

  // Forgets the image ranges in [lo, hi) (unmapped).
  void ForgetImages(uintptr_t lo, uintptr_t hi)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(retag_mu_);

  const uint64_t domain_;
  // Taken before hooks_->tag_mu; the key moves only under both.
  mutable std::mutex retag_mu_;
  int key_ ABSL_GUARDED_BY(retag_mu_);
  // Image pages by start: end and protection.
  std::map<uintptr_t, std::pair<uintptr_t, int>> images_
      ABSL_GUARDED_BY(retag_mu_);
  const size_t limit_;
  const std::string name_;
  LiveBitmap live_;  // of the slot's window, which it names
  // The arena's; moves with it when parked. Written atomically: a fault
  // report's Contains (slot_registry.cc) reads it without the heap's locks.
  TaggedHooks* hooks_ = nullptr;
  // A closed arena's hooks, for the next OpenArena: never freed while the
  // heap lives, so a Contains racing a Reset that takes a fresh arena
  // reads live memory (a stale answer at worst), not a freed object.
  std::unique_ptr<TaggedHooks> spare_hooks_;
  // The arena's instance. It changes only when the arena does (OpenArena),
  // with no thread left holding a tcache of the old one.
  const JemallocInstance* je_ = &kSystemJemalloc;
  std::atomic<uintptr_t> image_low_;  // images occupy [image_low_, window end)
  unsigned arena_ = 0;
  bool arena_open_ = false;

  // std::mutex, not absl::Mutex: Debian's Abseil is built with deadlock
  // detection, ~70 ns a lock here, taken on every allocator entry.
  mutable std::mutex mu_;
  bool dropping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<HeapThread*> threads_ ABSL_GUARDED_BY(mu_);
  size_t live_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  size_t cached_bytes_ ABSL_GUARDED_BY(mu_) = 0;  // in magazines
  size_t stashed_bytes_ ABSL_GUARDED_BY(mu_) = 0;  // in HeapThread stashes
  CompartmentStats stats_ ABSL_GUARDED_BY(mu_);
  std::vector<TlsImage> tls_modules_ ABSL_GUARDED_BY(mu_);  // by id - 1
  std::vector<LoadedObjectInfo> loaded_objects_ ABSL_GUARDED_BY(mu_);
  AtexitList* atexit_ ABSL_GUARDED_BY(mu_) = nullptr;  // in the arena
  ThreadKeyTable* thread_keys_ ABSL_GUARDED_BY(mu_) = nullptr;  // likewise
};

// The heap of a compartment slot, or null.
CompartmentHeap* HeapOfSlot(size_t slot);
// Makes `heap` the slot's (null to clear).
void SetHeapOfSlot(size_t slot, CompartmentHeap* heap);

// From the slot registry when it drops a thread's context for `slot`
// (magazines.cc).
void ReleaseHeapThread(ThreadBlock* tb, size_t slot);

// The host frees, reallocates or sizes a pointer of the zone
// (compartment_heap_host.cc), for the malloc family of
// runtime/libc_overrides/malloc.cc.
void HostFreeInZone(void* p);
void* HostReallocInZone(void* p, size_t bytes);
size_t HostUsableSizeInZone(const void* p);

}  // namespace mpkbox::internal

#endif  // MPKBOX_ALLOCATOR_COMPARTMENT_HEAP_H_
