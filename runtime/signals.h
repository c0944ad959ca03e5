// Signals: mpkbox's one entry for every handler it installs, the host's own
// handlers routed through it (so they run with host rights), and the
// dispatcher that turns compartment faults into statuses.
#ifndef MPKBOX_RUNTIME_SIGNALS_H_
#define MPKBOX_RUNTIME_SIGNALS_H_

#include <signal.h>
#include <ucontext.h>

#include <cstdint>

#include "absl/status/status.h"
#include "mpkbox/internal/thread_block.h"
#include "mpkbox/runtime.h"

namespace mpkbox::internal {

// Takes over the fault signals and the timer signal and re-routes handlers
// the host installed before. Checks that the kernel starts handlers with
// MPKBOX_INIT_PKRU and saves PKRU in signal frames where we expect it.
absl::Status InstallSignalHandling(const RuntimeOptions& options);

// The signal call_timeout uses.
int TimerSignal();

// Gives this thread its trusted signal stack; undone by ReleaseSignalStack.
absl::Status SetUpSignalStack(ThreadBlock* tb);
void ReleaseSignalStack(ThreadBlock* tb);

// After a host handler left by longjmp (its frame never returned): forgets
// the thread's handlers and re-arms the signal stack. With check_stack,
// refuses (returns false) while the thread runs on its signal stack, i.e.
// inside a handler.
bool RecoverFromAbandonedHandler(ThreadBlock* tb, bool check_stack = true);

// True for an address in mpkbox's gate or signal trampolines.
bool InTrampolines(uintptr_t ip);

// PKRU as saved in a signal frame, and how to change what sigreturn loads.
uint32_t FramePkru(const ucontext_t* uc);
void SetFramePkru(ucontext_t* uc, uint32_t pkru);

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_SIGNALS_H_
