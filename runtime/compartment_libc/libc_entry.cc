// The host side of callback 1 (libc_entry.h): with host rights, on the host
// stack, below a call into the compartment the gate checked.
#include "runtime/compartment_libc/libc_entry.h"

#include "runtime/compartment_libc/libc_state.h"
#include "runtime/thread_block.h"

extern "C" uint64_t mpkbox_libc_entry(uint64_t op, uint64_t a0, uint64_t a1,
                                      uint64_t a2, uint64_t a3, uint64_t a4) {
  using namespace mpkbox::internal;
  ThreadBlock* tb = CurrentThreadBlock();
  // The gate pushed the callback's frame on top of the call into the
  // compartment, and saved the compartment's domain in it.
  const Frame& callback = tb->frames[tb->depth - 1];
  const Frame& call = tb->frames[tb->depth - 2];
  const uint64_t domain = callback.prev_domain;
  const size_t slot = SlotOfDomain(domain);
  LibcState* state = LibcStateOfSlot(slot);
  if (state == nullptr || state->domain != domain) {
    AbandonCallback(tb, FaultKind::kSyscallDenied, 0,
                    "a libc request from a compartment being destroyed");
  }
  const LibcCaller caller{tb, reinterpret_cast<const CallContext*>(call.ctx),
                          slot, domain, state};
  const uint64_t args[5] = {a0, a1, a2, a3, a4};
  switch ((op >> 8) & 0xff) {
    case kLibcSyscalls:
      return LibcSyscallsRequest(caller, op, args);
    case kLibcMemory:
      return LibcMemoryRequest(caller, op, args);
    case kLibcProcess:
      return LibcProcessRequest(caller, op, args);
    case kLibcStdio:
      return LibcStdioRequest(caller, op, args);
    case kLibcThreads:
      return LibcThreadsRequest(caller, op, args);
    case kLibcFiles:
      return LibcFilesRequest(caller, op, args);
    default:
      AbandonCallback(tb, FaultKind::kSyscallDenied, op,
                      "an unknown libc request");
  }
}
