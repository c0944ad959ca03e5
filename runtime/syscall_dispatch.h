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

// Syscalls emulated on this thread so far (tests and benchmarks).
uint64_t EmulatedSyscalls();

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_SYSCALL_DISPATCH_H_
