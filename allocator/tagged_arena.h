// jemalloc arenas whose every extent carries one protection key: the extent
// hooks map (or carve from a zone window), tag, purge and release.
#ifndef MPKBOX_ALLOCATOR_TAGGED_ARENA_H_
#define MPKBOX_ALLOCATOR_TAGGED_ARENA_H_

#include <jemalloc/jemalloc.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

#include "absl/status/statusor.h"
#include "allocator/jemalloc_instance.h"

namespace mpkbox::internal {

// jemalloc calls the hooks with a pointer to `hooks`: the first member.
struct TaggedHooks {
  extent_hooks_t hooks;
  // A compartment's key changes when the key cache moves it (slot_registry):
  // carving an extent and re-tagging the window hold tag_mu, so no extent
  // is ever tagged with a key the compartment no longer holds.
  std::mutex tag_mu;
  int key;                    // pkey of every extent; 0 for plain memory
  uintptr_t window_base = 0;  // 0: extents are mmapped anywhere
  uintptr_t window_end = 0;
  std::atomic<uintptr_t> bump{0};  // next free byte of the window
  // Pages below it carry the key though jemalloc may not have carved them:
  // a dense 2 MiB chunk is tagged whole to become one huge page
  // (huge_chunks.h). Written under tag_mu; 0 while nothing is ahead.
  std::atomic<uintptr_t> tagged_end{0};
  // Retags until huge_chunks.cc looks for dense chunks again, and the
  // interval it waits next (doubled after a collapse fails). Under tag_mu.
  uint32_t collapse_countdown = 0;
  uint32_t collapse_interval = 0;
  // Chunks collapsed while sparse, charged to the process's budget for
  // them (huge_chunks.h) until the window's pages are dropped. Under tag_mu.
  std::vector<uintptr_t> sparse_chunks;
  // Most bytes of the window jemalloc may take: what compartment code can
  // write is bounded even when it asks for absurd alignments.
  size_t max_window_bytes = 0;

  // The end of what carries the key: carved, or tagged ahead of the carve.
  uintptr_t TaggedEnd() const {
    return std::max(bump.load(std::memory_order_relaxed),
                    tagged_end.load(std::memory_order_relaxed));
  }
};

// Fills `h` for extents tagged with `key`, from [window_base, window_end)
// when window_base is nonzero (bump-allocated: a window is released whole).
void InitTaggedHooks(TaggedHooks* h, int key, uintptr_t window_base,
                     size_t window_bytes, size_t max_window_bytes = 0);

// experimental.arenas_create_ext of instance `je`. With metadata_use_hooks
// false the arena's own metadata stays out of its extents (DESIGN.md 5,
// jemalloc facts). kResourceExhausted when `je` has no arena index left.
absl::StatusOr<unsigned> CreateTaggedArena(const JemallocInstance& je,
                                           TaggedHooks* h,
                                           bool metadata_use_hooks);
// arena.<i>.destroy: every extent goes back through the hooks. No tcache
// may still hold its regions.
void DestroyArena(const JemallocInstance& je, unsigned arena);
// arena.<i>.reset: every allocation is discarded, the arena and its extents
// stay (their pages keep their contents: the caller scrubs them). No tcache
// may still hold its regions. False if jemalloc refused.
bool ResetArena(const JemallocInstance& je, unsigned arena);

}  // namespace mpkbox::internal

#endif  // MPKBOX_ALLOCATOR_TAGGED_ARENA_H_
