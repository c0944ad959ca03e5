// Dense 2 MiB chunks of a compartment heap's window become one huge page
// each (MADV_COLLAPSE), so that the key cache's re-tag of a compartment
// (slot_registry.cc) changes one page-middle-directory entry per chunk
// rather than 512 page-table entries: in a KVM guest each entry costs about
// 35 ns, and a miss re-tags two compartments (bench/RESULTS.md, issue 16).
//
// Chunks with at least kDenseChunkPages present are collapsed, and hold at
// most 512 / kDenseChunkPages times the memory they had. Sparser ones, from
// kSparseChunkPages, are collapsed too but only for a heap re-tagged often
// (not at its first look) and within a process-wide budget: below 512 KiB a
// miss paid up to 25 us for 4 KiB entries, and a compartment that misses
// rarely (most of 4,096 small ones) takes no huge page.
#ifndef MPKBOX_ALLOCATOR_HUGE_CHUNKS_H_
#define MPKBOX_ALLOCATOR_HUGE_CHUNKS_H_

#include <cstddef>
#include <cstdint>

#include "allocator/tagged_arena.h"

namespace mpkbox::internal {

inline constexpr size_t kHugeChunkBytes = size_t{2} << 20;
// A quarter of the chunk: 512 KiB present.
inline constexpr size_t kDenseChunkPages = 128;
// From 64 KiB present: below it a miss re-tags at most 2 x 15 entries, each
// flushed alone (about 1 us in all here).
inline constexpr size_t kSparseChunkPages = 16;
// Memory of the chunks collapsed while sparse, process-wide: 32 chunks. A
// chunk's charge returns when its heap's pages are dropped (Reset, parking,
// destruction); a chunk split by a purge and collapsed again is charged once.
inline constexpr size_t kSparseHugeBudgetBytes = size_t{64} << 20;
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

// The window's pages were dropped (Reset, parking, closing): the next
// re-tag looks at once, with the first interval, whatever the old contents
// taught, and the heap's sparse chunks leave the budget.
void ForgetDenseChunks(TaggedHooks* h);

// Bytes of the sparse budget in use, process-wide.
size_t SparseHugeBytes();
// Replaces kSparseHugeBudgetBytes (SkipSparseHugeBudgetForTesting).
void SetSparseHugeBudget(size_t bytes);

}  // namespace mpkbox::internal

#endif  // MPKBOX_ALLOCATOR_HUGE_CHUNKS_H_
