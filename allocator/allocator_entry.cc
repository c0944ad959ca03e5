// Callback 0: where compartment code's malloc, free and friends enter the
// runtime, with host rights on the host stack, when the HeapCache cannot
// serve them. Every argument is untrusted.
#include <string.h>

#include <cstdio>

#include "allocator/compartment_heap.h"
#include "trampolines/thread_block.h"
#include "trampolines/trampolines.h"


namespace mpkbox::internal {
namespace {

// Ends the compartment call under this callback as a fault.
[[noreturn]] void Abandon(ThreadBlock* tb, FaultKind kind, uintptr_t address,
                          const char* why) {
  FaultInfo& f = tb->fault_info;
  memset(&f, 0, sizeof(f));
  f.kind = kind;
  f.address = address;
  snprintf(f.what, sizeof(f.what), "%s", why);
  tb->fault = 1;
  Frame& frame = tb->frames[--tb->depth];  // the callback's
  reinterpret_cast<CallContext*>(frame.ctx)->top = frame.saved_top;
  mpkbox_gate_abandon();
}

}  // namespace
}  // namespace mpkbox::internal

extern "C" uint64_t mpkbox_allocator_entry(uint64_t op, uint64_t a,
                                           uint64_t b) {
  using namespace mpkbox::internal;
  ThreadBlock* tb = CurrentThreadBlock();
  // The gate checked that the callback's frame sits on a call into the
  // compartment whose domain it saved.
  const uint64_t domain = tb->frames[tb->depth - 1].prev_domain;
  const size_t slot = SlotOfDomain(domain);
  CompartmentHeap* heap = HeapOfSlot(slot);
  if (heap == nullptr || heap->domain() != domain) {
    Abandon(tb, FaultKind::kHeapViolation, 0,
            "allocation in a compartment without a heap");
  }
  CompartmentHeap::EntryResult r = heap->Enter(tb, slot, op, a, b);
  if (r.hostile != 0) {
    Abandon(tb, FaultKind::kHeapViolation, r.hostile, r.why);
  }
  return r.value;
}
