// __tls_get_addr for loaded code (loader/import_policy.cc binds it): ld.so's
// would hand out the host's dynamic TLS blocks, on key 0 and shared by all
// compartments. This one runs with compartment rights and finds the
// (thread, compartment) blocks in the thread's HeapCache; only a missing
// block enters the host (allocator/tls_blocks.cc).
#include <cstdint>

#include "allocator/compartment_heap.h"
#include "allocator/inside.h"
#include "runtime/compartment_libc/compartment_libc.h"

namespace mi = mpkbox::internal;

namespace {

// A missing block: the entry creates it (and the cache); a bad module ends
// the call. Some callers reach __tls_get_addr with rsp misaligned (glibc
// aligns too): only this path calls anything, so only it realigns.
__attribute__((noinline, force_align_arg_pointer)) void* NewBlock(
    const mpkbox_tls_index* index) {
  const uint64_t block = mi::EnterAllocator(mi::kOpTlsBlock, index->module);
  return reinterpret_cast<char*>(block) + index->offset;
}

}  // namespace

// The fast path is a leaf without a frame: libjpeg-turbo reaches it once
// per 8x8 block (its SIMD flags are thread-local), where a realigned frame
// cost about 1% of a decode (bench/RESULTS.md).
extern "C" void* mpkbox_compartment_tls_get_addr(
    const mpkbox_tls_index* index) {
  mi::SelectorPage* sel = mi::CompartmentThread();
  if (sel == nullptr) __builtin_trap();  // loaded code runs only inside
  const uint64_t module = index->module;
  mi::HeapCache* cache = mi::CacheOf(sel);
  if (ABSL_PREDICT_TRUE(cache != nullptr && module - 1 < mi::kMaxTlsModules)) {
    if (void* block = cache->tls_blocks[module - 1];
        ABSL_PREDICT_TRUE(block != nullptr)) {
      return static_cast<char*>(block) + index->offset;
    }
  }
  return NewBlock(index);
}
