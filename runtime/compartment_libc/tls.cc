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

// Some callers reach __tls_get_addr with rsp misaligned (glibc aligns too).
extern "C" __attribute__((force_align_arg_pointer)) void*
mpkbox_compartment_tls_get_addr(const mpkbox_tls_index* index) {
  mi::SelectorPage* sel = mi::CompartmentThread();
  if (sel == nullptr) __builtin_trap();  // loaded code runs only inside
  const uint64_t module = index->module;
  mi::HeapCache* cache = mi::CacheOf(sel);
  if (cache != nullptr && module - 1 < mi::kMaxTlsModules) {
    if (void* block = cache->tls_blocks[module - 1]; block != nullptr) {
      return static_cast<char*>(block) + index->offset;
    }
  }
  // Creates the block (and the cache); a bad module ends the call.
  const uint64_t block = mi::EnterAllocator(mi::kOpTlsBlock, module);
  return reinterpret_cast<char*>(block) + index->offset;
}
