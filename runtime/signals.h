// Signals: mpkbox's one entry for every handler it installs, the host's own
// handlers routed through it (so they run with host rights), and the
// dispatcher that turns compartment faults into statuses. Implemented in
// signal_actions.cc (the host's dispositions), signal_dispatch.cc,
// signal_stack.cc and signal_frame.cc; libc_overrides/signals.cc interposes
// the host's sigaction, sigaltstack, signal and longjmp.
#ifndef MPKBOX_RUNTIME_SIGNALS_H_
#define MPKBOX_RUNTIME_SIGNALS_H_

#include <setjmp.h>
#include <signal.h>
#include <ucontext.h>

#include <cstdint>

#include "absl/status/status.h"
#include "trampolines/thread_block.h"
#include "mpkbox/runtime.h"

namespace mpkbox::internal {

// Takes over the fault signals and the timer signal and re-routes handlers
// the host installed before. Checks that the kernel starts handlers with
// MPKBOX_INIT_PKRU and saves PKRU in signal frames where we expect it.
absl::Status InstallSignalHandling(const RuntimeOptions& options);

// Finds handlers installed behind mpkbox's back (raw rt_sigaction) for
// signals whose disposition must be its entry, makes each the host's
// handler and re-installs the entry. Returns FailedPrecondition naming
// them if there were any. Call runs it before a thread's first call of a
// compartment.
absl::Status CheckSignalDispositions();
// The same, unless a check started less than kDispositionRecheck ago. Call
// runs it before a thread's first call since the compartment's Reset: a
// compartment per request then pays for the 11 or so rt_sigaction reads
// once a millisecond, not once a request.
absl::Status CheckSignalDispositionsIfDue();
inline constexpr int64_t kDispositionRecheckNs = 1'000'000;

// glibc installs its handlers for SIGCANCEL and SIGSETXID with its own
// sigaction, behind mpkbox's back; they would start with the kernel's PKRU,
// which closes the trusted key, on a host stack that carries it. Routes
// those installed so far through mpkbox's entry (host rights).
void AdoptLibcSignalHandlers();

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

// The host's sigaction and sigaltstack (libc_overrides/signals.cc): libc's
// meaning, with handlers behind mpkbox's entry and the signal stack trusted.
int HostSigaction(int sig, const struct sigaction* act, struct sigaction* old);
int HostSigaltstack(const stack_t* ss, stack_t* old);

// A host handler may leave by longjmp instead of returning. Then its frame
// never reaches mpkbox's restorer: the handler count would stay up and the
// kernel would leave the signal stack disarmed (SS_AUTODISARM), and the
// next signal would be refused. Called before such a jump leaves the signal
// stack, this forgets the abandoned handlers.
void ForgetHandlersLeftBy(const sigjmp_buf env);

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_SIGNALS_H_
