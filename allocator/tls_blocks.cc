// Thread-local storage of loaded objects: each (thread, compartment) gets
// its own block of each object's PT_TLS, in the compartment's heap (so
// writable under Ambient::kReadOnly), made from the loader's host copy of
// the object's image when the thread first asks for it (kOpTlsBlock, from
// runtime/compartment_libc/tls.cc). The blocks are not live allocations:
// compartment code cannot free them. They go when the thread exits
// (DropThread) or with the heap (Reset, destruction).
#include <jemalloc/jemalloc.h>
#include <string.h>

#include <algorithm>
#include <mutex>
#include <utility>

#include "allocator/compartment_heap.h"
#include "allocator/magazines.h"

namespace mpkbox::internal {

void CompartmentHeap::SetTlsModule(size_t id, TlsImage image) {
  std::lock_guard<std::mutex> lock(mu_);
  if (id == 0 || id > kMaxTlsModules) return;  // the loader refuses these
  if (tls_modules_.size() < id) tls_modules_.resize(id);
  tls_modules_[id - 1] = std::move(image);
}

CompartmentHeap::EntryResult CompartmentHeap::TlsBlock(HeapThread* t,
                                                       uint64_t module) {
  EntryResult r;
  if (module == 0 || module > tls_modules_.size() ||
      tls_modules_[module - 1].size == 0) {
    r.hostile = module == 0 ? 1 : module;
    r.why = "__tls_get_addr of a module the compartment has not loaded";
    return r;
  }
  r.hostile = module;
  r.why = "cannot allocate thread-local storage: the compartment's heap is "
          "full";
  if (t == nullptr) return r;
  void*& block = t->tls[module - 1];
  if (block == nullptr) {
    const TlsImage& image = tls_modules_[module - 1];
    const int flags = MALLOCX_ARENA(arena_) | MALLOCX_TCACHE_NONE |
                      MALLOCX_ZERO |
                      MALLOCX_ALIGN(std::max(image.align, kMinAllocation));
    const size_t usable = nallocx(image.size, flags);
    if (usable == 0 || !MakeRoom(usable)) return r;
    block = mallocx(image.size, flags);
    if (block == nullptr) return r;
    NoteLive(static_cast<ptrdiff_t>(usable));
    memcpy(block, image.bytes.data(), image.bytes.size());
  }
  // Also when the thread's table says null: the compartment may have
  // cleared it, and gets the same block back.
  t->cache->tls_blocks[module - 1] = block;
  r.hostile = 0;
  r.why = nullptr;
  r.value = reinterpret_cast<uintptr_t>(block);
  return r;
}

void CompartmentHeap::FreeTlsBlocks(HeapThread* t) {
  for (void*& block : t->tls) {
    if (block == nullptr) continue;
    live_bytes_ -= sallocx(block, 0);
    dallocx(block, MALLOCX_TCACHE_NONE);
    block = nullptr;
  }
}

}  // namespace mpkbox::internal
