// Callback 1: where loaded code's libc bindings ask the runtime to act with
// host rights (a syscall under the policy, output to the stdio sink, a file
// the policy grants). The compartment side calls EnterLibc; the host side,
// mpkbox_libc_entry (libc_entry.cc), hands each request to its concern by
// the op's high byte. Every argument is untrusted.
#ifndef MPKBOX_RUNTIME_COMPARTMENT_LIBC_LIBC_ENTRY_H_
#define MPKBOX_RUNTIME_COMPARTMENT_LIBC_LIBC_ENTRY_H_

#include <cstddef>
#include <cstdint>

#include "runtime/compartment_libc/compartment_libc.h"
#include "trampolines/thread_block.h"
#include "trampolines/trampolines.h"

namespace mpkbox::internal {

struct LibcState;

// Ops: bits 8-15 the concern, bits 0-7 its request, bits 32-63 free for
// the request (the syscall number, say). Each concern defines its requests
// in its own file and answers them in its Libc*Request below.
enum LibcConcern : uint64_t {
  kLibcSyscalls = 0,  // syscalls.cc
  kLibcStdio = 1,     // stdio.cc
  kLibcFiles = 2,     // files.cc
  kLibcMemory = 3,    // memory.cc
  kLibcProcess = 4,   // process.cc
  kLibcThreads = 5,   // threads.cc
  kLibcConcerns = 6,
};
inline constexpr uint64_t LibcOp(LibcConcern concern, uint64_t request,
                                 uint32_t extra = 0) {
  return uint64_t{extra} << 32 | uint64_t{concern} << 8 | request;
}

// Compartment side: the request, with compartment rights in, host rights
// out. What comes back is the host's answer (typically a result or -errno).
inline uint64_t EnterLibc(uint64_t op, uint64_t a = 0, uint64_t b = 0,
                          uint64_t c = 0, uint64_t d = 0, uint64_t e = 0) {
  using Entry = uint64_t (*)(uint64_t, uint64_t, uint64_t, uint64_t,
                             uint64_t, uint64_t);
  return reinterpret_cast<Entry>(
      mpkbox_callback_stubs +
      (MPKBOX_LIBC_CALLBACK << MPKBOX_CB_STUB_SHIFT))(op, a, b, c, d, e);
}

// Compartment side: a host answer (a result, or -errno) as libc returns
// it: -1 with errno in the thread's slot (syscalls.cc).
long LibcResult(uint64_t answer);
// Compartment side: syscall `nr` as libc's wrapper makes it, through the
// syscall concern (the policy; files.cc's own descriptors) (syscalls.cc).
long LibcSyscall(long nr, long a = 0, long b = 0, long c = 0, long d = 0,
                 long e = 0);

// Host side: who asks. The gate checked that the callback sits on a call
// into this compartment.
struct LibcCaller {
  ThreadBlock* tb;
  const CallContext* ctx;  // the call into the compartment (policy, stack)
  size_t slot;
  uint64_t domain;
  LibcState* state;  // the compartment's (libc_state.h); never null
};

// Each concern's answer to `op` (its request in the low byte) with
// arguments a[0..4]. To end the compartment's call instead, it records a
// fault and abandons the callback (AbandonCallback).
uint64_t LibcSyscallsRequest(const LibcCaller& caller, uint64_t op,
                             const uint64_t a[5]);
uint64_t LibcMemoryRequest(const LibcCaller& caller, uint64_t op,
                           const uint64_t a[5]);
uint64_t LibcProcessRequest(const LibcCaller& caller, uint64_t op,
                            const uint64_t a[5]);
uint64_t LibcStdioRequest(const LibcCaller& caller, uint64_t op,
                          const uint64_t a[5]);  // stdio_sink.cc
uint64_t LibcThreadsRequest(const LibcCaller& caller, uint64_t op,
                            const uint64_t a[5]);
uint64_t LibcFilesRequest(const LibcCaller& caller, uint64_t op,
                          const uint64_t a[5]);

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_COMPARTMENT_LIBC_LIBC_ENTRY_H_
