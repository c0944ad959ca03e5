// Syscall User Dispatch (docs/DESIGN.md 5b, 5c): armed on every thread that enters
// a compartment, with an empty allowed range and the selector byte in the
// thread's SelectorPage. The gate sets BLOCK on entry and ALLOW on exit; a
// syscall from compartment code arrives as SIGSYS and is judged here.
#ifndef MPKBOX_RUNTIME_SYSCALL_DISPATCH_H_
#define MPKBOX_RUNTIME_SYSCALL_DISPATCH_H_

#include <signal.h>
#include <ucontext.h>

#include "absl/status/status.h"
#include "trampolines/thread_block.h"

namespace mpkbox::internal {

absl::Status ArmSyscallDispatch(SelectorPage* sel);
void DisarmSyscallDispatch();


// A SIGSYS from compartment code (the top frame is the call into it). Either
// emulates the syscall, leaving the result in the context's rax (true), or
// fills the thread's FaultInfo for a refused call (false).
bool HandleCompartmentSyscall(ThreadBlock* tb, ucontext_t* uc,
                              const siginfo_t* info);

// Syscall `nr` with `args` from the compartment of `ctx` (the policy, the
// never-allowed list, the call's deadline), with host rights: its result
// (or -errno) in *result (true), or the thread's FaultInfo filled (false).
// For SIGSYS and for loaded code's libc wrappers alike (compartment_libc/
// syscalls.cc), so both paths judge a call the same way.
bool JudgeSyscall(ThreadBlock* tb, const CallContext& ctx, long nr,
                  const uint64_t args[6], uintptr_t ip, long* result);

// [p, p + n) lies in the memory of the compartment of `ctx` on this
// thread: its stack or its heap.
bool InOwnMemory(const CallContext& ctx, uint64_t p, uint64_t n);

// Syscalls emulated on this thread so far (tests and benchmarks).
uint64_t EmulatedSyscalls();

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_SYSCALL_DISPATCH_H_
