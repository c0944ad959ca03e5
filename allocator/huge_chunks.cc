#include "allocator/huge_chunks.h"

#include <sys/mman.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <mutex>

#include "runtime/keys/pku.h"
#include "trampolines/gate_layout.h"

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25  // <asm-generic/mman-common.h>; glibc 2.36 lacks it
#endif

namespace mpkbox::internal {
namespace {

constexpr size_t kChunkPages = kHugeChunkBytes / MPKBOX_PAGE_SIZE;

std::atomic<size_t> g_sparse_bytes{0};
std::atomic<size_t> g_sparse_budget{kSparseHugeBudgetBytes};

// Whether a sparse chunk may become huge: charged once per chunk while its
// heap keeps its pages.
bool ChargeSparse(TaggedHooks* h, uintptr_t chunk) {
  auto& charged = h->sparse_chunks;
  if (std::find(charged.begin(), charged.end(), chunk) != charged.end()) {
    return true;
  }
  size_t used = g_sparse_bytes.load(std::memory_order_relaxed);
  do {
    if (used + kHugeChunkBytes >
        g_sparse_budget.load(std::memory_order_relaxed)) {
      return false;
    }
  } while (!g_sparse_bytes.compare_exchange_weak(used, used + kHugeChunkBytes,
                                                 std::memory_order_relaxed));
  charged.push_back(chunk);
  return true;
}

// A sparse chunk that did not become huge gives its charge back.
void UnchargeSparse(TaggedHooks* h, uintptr_t chunk) {
  auto& charged = h->sparse_chunks;
  auto it = std::find(charged.begin(), charged.end(), chunk);
  if (it == charged.end()) return;
  charged.erase(it);
  g_sparse_bytes.fetch_sub(kHugeChunkBytes, std::memory_order_relaxed);
}

int64_t Nanos() {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return int64_t{t.tv_sec} * 1'000'000'000 + t.tv_nsec;
}

size_t PresentPages(uintptr_t chunk, size_t bytes) {
  unsigned char present[kChunkPages];
  if (mincore(reinterpret_cast<void*>(chunk), bytes, present) != 0) return 0;
  size_t n = 0;
  for (size_t i = 0; i < (bytes + MPKBOX_PAGE_SIZE - 1) / MPKBOX_PAGE_SIZE;
       ++i) {
    n += present[i] & 1;
  }
  return n;
}

// What one look did: nothing (every dense chunk was huge already), copied
// at least one chunk into a huge page, failed, or ran out of its budget.
enum class Look { kNothing, kCollapsed, kFailed, kOutOfTime };

// A collapse that copies takes hundreds of microseconds; one that finds
// the chunk huge already, about one.
constexpr int64_t kCopiedNanos = 50'000;

// sparse: chunks from kSparseChunkPages present qualify, within the budget.
Look LookOnce(TaggedHooks* h, bool sparse) {
  const uintptr_t end = h->TaggedEnd();
  uintptr_t limit = h->window_end;
  if (h->max_window_bytes != 0) {
    limit = std::min(limit, h->window_base + h->max_window_bytes);
  }
  // From the chunk holding the window's base: below it, in the same
  // mapping with the same key, is the compartment's copy of the class bytes
  // (heap_cache.h), which re-tags move with the heap.
  const uintptr_t first = h->window_base & ~(kHugeChunkBytes - 1);
  const int64_t deadline = Nanos() + kCollapseBudgetNanos;
  Look look = Look::kNothing;
  for (uintptr_t chunk = first;
       chunk < end && chunk + kHugeChunkBytes <= limit;
       chunk += kHugeChunkBytes) {
    const uintptr_t chunk_end = chunk + kHugeChunkBytes;
    const size_t tagged = std::min(end, chunk_end) - chunk;
    const size_t present = PresentPages(chunk, tagged);
    if (present < kDenseChunkPages &&
        (!sparse || present < kSparseChunkPages || !ChargeSparse(h, chunk))) {
      continue;
    }
    // A collapse needs the chunk in one mapping: the rest of the last one
    // takes the heap's key now rather than as jemalloc carves it.
    if (tagged < kHugeChunkBytes) {
      if (!TagPages(reinterpret_cast<void*>(end), chunk_end - end,
                    PROT_READ | PROT_WRITE, h->key)
               .ok()) {
        UnchargeSparse(h, chunk);
        return Look::kFailed;
      }
      h->tagged_end.store(chunk_end, std::memory_order_relaxed);
    }
    const int64_t start = Nanos();
    if (madvise(reinterpret_cast<void*>(chunk), kHugeChunkBytes,
                MADV_COLLAPSE) != 0) {
      UnchargeSparse(h, chunk);  // no-op for a dense chunk
      return Look::kFailed;
    }
    const int64_t now = Nanos();
    if (now - start > kCopiedNanos) look = Look::kCollapsed;
    if (now > deadline) return Look::kOutOfTime;
  }
  return look;
}

}  // namespace

void CollapseDenseChunks(TaggedHooks* h) {
  if (h->collapse_countdown > 0) {
    --h->collapse_countdown;
    return;
  }
  uint32_t& interval = h->collapse_interval;
  // Sparse chunks only from the second look on: a heap re-tagged 16 times.
  const bool sparse = interval != 0;
  if (interval == 0) interval = kCollapseCheckEvery;
  const Look look = LookOnce(h, sparse);
  // Looks that copy come ever further apart: a heap whose chunks jemalloc
  // keeps splitting (a purge inside one) is not copied every 16 re-tags.
  if (look == Look::kNothing) {
    interval = std::max(interval / 2, kCollapseCheckEvery);
  } else {
    interval = std::min(interval * 2, kCollapseCheckMax);
  }
  h->collapse_countdown = look == Look::kOutOfTime ? 0 : interval - 1;
}

void ForgetDenseChunks(TaggedHooks* h) {
  std::lock_guard<std::mutex> lock(h->tag_mu);
  h->collapse_countdown = 0;
  h->collapse_interval = 0;
  g_sparse_bytes.fetch_sub(h->sparse_chunks.size() * kHugeChunkBytes,
                           std::memory_order_relaxed);
  h->sparse_chunks.clear();
}

void SetSparseHugeBudget(size_t bytes) {
  g_sparse_budget.store(bytes, std::memory_order_relaxed);
}

size_t SparseHugeBytes() {
  return g_sparse_bytes.load(std::memory_order_relaxed);
}

}  // namespace mpkbox::internal
