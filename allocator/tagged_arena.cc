#include "allocator/tagged_arena.h"

#include <string.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_format.h"
#include "runtime/keys/host_ranges.h"
#include "trampolines/gate_layout.h"

namespace mpkbox::internal {
namespace {

TaggedHooks* Owner(extent_hooks_t* h) {
  return reinterpret_cast<TaggedHooks*>(h);
}

bool Tag(void* addr, size_t size, int key) {
  return pkey_mprotect(addr, size, PROT_READ | PROT_WRITE, key) == 0;
}

void* MapAnywhere(TaggedHooks* t, size_t size, size_t alignment) {
  if (alignment < MPKBOX_PAGE_SIZE) alignment = MPKBOX_PAGE_SIZE;
  void* p = mmap(nullptr, size + alignment - MPKBOX_PAGE_SIZE,
                 PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  uintptr_t raw = reinterpret_cast<uintptr_t>(p);
  uintptr_t aligned = (raw + alignment - 1) & ~(alignment - 1);
  uintptr_t end = raw + size + alignment - MPKBOX_PAGE_SIZE;
  if (aligned > raw) munmap(p, aligned - raw);
  if (end > aligned + size) {
    munmap(reinterpret_cast<void*>(aligned + size), end - aligned - size);
  }
  void* result = reinterpret_cast<void*>(aligned);
  if (t->key > 0 && !Tag(result, size, t->key)) {
    munmap(result, size);
    return nullptr;
  }
  // Only the host heap maps anywhere: Call refuses pointers into it.
  if (t->key > 0) {
    AddHostRange(aligned, aligned + size, HostMemoryKind::kHeap, t->key);
  }
  return result;
}

// *fresh: no page of the extent was tagged before (it reads as zeros).
void* CarveFromWindow(TaggedHooks* t, void* new_addr, size_t size,
                      size_t alignment, bool* fresh) {
  std::lock_guard<std::mutex> lock(t->tag_mu);
  uintptr_t cur = t->bump.load(std::memory_order_relaxed);
  uintptr_t start;
  do {
    start = (cur + alignment - 1) & ~(alignment - 1);
    if (new_addr != nullptr && reinterpret_cast<uintptr_t>(new_addr) != start) {
      return nullptr;  // only growth at the window's end is in place
    }
    if (start + size < start || start + size > t->window_end ||
        (t->max_window_bytes != 0 &&
         start + size - t->window_base > t->max_window_bytes)) {
      return nullptr;
    }
  } while (!t->bump.compare_exchange_weak(cur, start + size,
                                          std::memory_order_relaxed));
  void* result = reinterpret_cast<void*>(start);
  // The window is PROT_NONE until carved; the address space it leaves
  // behind on failure is released with the window. A chunk tagged ahead is
  // not tagged again (that would split its huge page), and compartment code
  // may have written it: not known to be zero.
  const uintptr_t ahead = t->tagged_end.load(std::memory_order_relaxed);
  const uintptr_t from = std::max(start, ahead);
  *fresh = start >= ahead;
  if (from >= start + size) return result;
  return Tag(reinterpret_cast<void*>(from), start + size - from, t->key)
             ? result
             : nullptr;
}

void* Alloc(extent_hooks_t* h, void* new_addr, size_t size, size_t alignment,
            bool* zero, bool* commit, unsigned /*arena*/) {
  TaggedHooks* t = Owner(h);
  void* p;
  bool fresh = true;
  if (t->window_base != 0) {
    p = CarveFromWindow(t, new_addr, size, alignment, &fresh);
  } else {
    if (new_addr != nullptr) return nullptr;
    p = MapAnywhere(t, size, alignment);
  }
  if (p == nullptr) return nullptr;
  // Zeroed memory asked for (calloc, MALLOCX_ZERO) from a chunk tagged
  // ahead: resident already (a huge page), so zeroing it costs no memory.
  if (*zero && !fresh) memset(p, 0, size);
  *zero = *zero || fresh;
  *commit = true;
  return p;
}

// Every extent stays with its arena as retained address space (opting out):
// jemalloc purges its pages and reuses it. Unmapping extents one by one
// punched holes into larger mappings on a timer (decay), and the host's
// mappings then changed with the machine's speed. Windows are released whole
// and the host's arenas are never destroyed.
bool Dalloc(extent_hooks_t*, void*, size_t, bool, unsigned) { return true; }

void Destroy(extent_hooks_t* h, void* addr, size_t size, bool, unsigned) {
  if (Owner(h)->window_base == 0) {
    munmap(addr, size);
    const uintptr_t a = reinterpret_cast<uintptr_t>(addr);
    RemoveHostRange(a, a + size);
  }
}

bool PurgeForced(extent_hooks_t*, void* addr, size_t, size_t offset,
                 size_t length, unsigned) {
  // The pages' key stays with the mapping.
  return madvise(static_cast<char*>(addr) + offset, length, MADV_DONTNEED) !=
         0;
}

bool PurgeLazy(extent_hooks_t*, void* addr, size_t, size_t offset,
               size_t length, unsigned) {
  return madvise(static_cast<char*>(addr) + offset, length, MADV_FREE) != 0;
}

bool Split(extent_hooks_t*, void*, size_t, size_t, size_t, bool, unsigned) {
  return false;
}

bool Merge(extent_hooks_t*, void*, size_t, void*, size_t, bool, unsigned) {
  return false;
}

}  // namespace

void InitTaggedHooks(TaggedHooks* h, int key, uintptr_t window_base,
                     size_t window_bytes, size_t max_window_bytes) {
  h->hooks = extent_hooks_t{
      .alloc = Alloc,
      .dalloc = Dalloc,
      .destroy = Destroy,
      .commit = nullptr,  // extents are born committed and never decommitted
      .decommit = nullptr,
      .purge_lazy = PurgeLazy,
      .purge_forced = PurgeForced,
      .split = Split,
      .merge = Merge,
  };
  h->key = key;
  h->window_base = window_base;
  h->window_end = window_base + window_bytes;
  h->max_window_bytes = max_window_bytes;
  h->bump.store(window_base, std::memory_order_relaxed);
  h->tagged_end.store(0, std::memory_order_relaxed);
  h->collapse_countdown = 0;
  h->collapse_interval = 0;
}

absl::StatusOr<unsigned> CreateTaggedArena(const JemallocInstance& je,
                                           TaggedHooks* h,
                                           bool metadata_use_hooks) {
  // jemalloc 5.3's arena_config_t, which its public header does not export.
  struct ArenaConfig {
    extent_hooks_t* extent_hooks;
    bool metadata_use_hooks;
  } config{&h->hooks, metadata_use_hooks};
  unsigned arena = 0;
  size_t len = sizeof(arena);
  if (int err = je.mallctl("experimental.arenas_create_ext", &arena, &len,
                           &config, sizeof(config));
      err != 0) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "%s cannot create an arena (its arena indices are 12 bits): %s",
        je.name, strerror(err)));
  }
  // A destroyed index that something touched again comes back with default
  // hooks, and arenas_create_ext then reuses it as it is (DESIGN.md 5).
  extent_hooks_t* actual = nullptr;
  len = sizeof(actual);
  char name[64];
  snprintf(name, sizeof(name), "arena.%u.extent_hooks", arena);
  if (je.mallctl(name, &actual, &len, nullptr, 0) != 0 ||
      actual != &h->hooks) {
    return absl::InternalError(absl::StrFormat(
        "%s's arena %u came back without mpkbox's extent hooks; its "
        "memory would not carry key %d",
        je.name, arena, h->key));
  }
  return arena;
}

bool ResetArena(const JemallocInstance& je, unsigned arena) {
  char name[64];
  snprintf(name, sizeof(name), "arena.%u.reset", arena);
  return je.mallctl(name, nullptr, nullptr, nullptr, 0) == 0;
}

void DestroyArena(const JemallocInstance& je, unsigned arena) {
  char name[64];
  snprintf(name, sizeof(name), "arena.%u.destroy", arena);
  if (int err = je.mallctl(name, nullptr, nullptr, nullptr, 0); err != 0) {
    fprintf(stderr, "mpkbox: %s cannot destroy arena %u: %s\n", je.name,
            arena, strerror(err));
  }
}

}  // namespace mpkbox::internal
