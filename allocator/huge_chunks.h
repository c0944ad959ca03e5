// Dense 2 MiB chunks of a compartment heap's window become one huge page
// each (MADV_COLLAPSE), so that the key cache's re-tag of a compartment
// (slot_registry.cc) changes one page-middle-directory entry per chunk
// rather than 512 page-table entries: in a KVM guest each entry costs about
// 35 ns, and a miss re-tags two compartments (bench/RESULTS.md, issue 16).
//
// Only chunks with at least kDenseChunkPages present are collapsed, so a
// compartment that touched less than that in every chunk (most of 4,096
// small ones) takes no huge page, and a collapsed chunk holds at most
// 512 / kDenseChunkPages times the memory it had.
#ifndef MPKBOX_ALLOCATOR_HUGE_CHUNKS_H_
#define MPKBOX_ALLOCATOR_HUGE_CHUNKS_H_

#include <cstddef>
#include <cstdint>

#include "allocator/tagged_arena.h"

namespace mpkbox::internal {

inline constexpr size_t kHugeChunkBytes = size_t{2} << 20;
// A quarter of the chunk: 512 KiB present.
inline constexpr size_t kDenseChunkPages = 128;
// The re-tags between two looks for dense chunks (one mincore per chunk);
// doubled, up to kCollapseCheckMax, after a look that copied a chunk into a
// huge page or failed (no huge page free, or a kernel without
// MADV_COLLAPSE: before 6.1), halved after one that found nothing to do.
inline constexpr uint32_t kCollapseCheckEvery = 16;
inline constexpr uint32_t kCollapseCheckMax = 4096;
// A collapse copies its chunk (about 0.6 ms here) under the key cache's
// lock: a look stops after this long and the next re-tag goes on.
inline constexpr int64_t kCollapseBudgetNanos = 1'000'000;

// Under h->tag_mu, before a re-tag of [h->window_base, h->TaggedEnd()):
// once every h->collapse_interval calls (and the call after a look cut
// short by kCollapseBudgetNanos), collapses each dense chunk of that
// range. The last chunk, if only partly carved, is first tagged whole with
// the heap's key (h->tagged_end), within h->max_window_bytes. Contents and
// keys are unchanged: a collapse is invisible but for speed.
void CollapseDenseChunks(TaggedHooks* h);

// The window's pages were dropped (Reset, parking): the next re-tag looks
// at once, with the first interval, whatever the old contents taught.
void ForgetDenseChunks(TaggedHooks* h);

}  // namespace mpkbox::internal

#endif  // MPKBOX_ALLOCATOR_HUGE_CHUNKS_H_
