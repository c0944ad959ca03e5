// Host-side work done for compartment code (an emulated write, later libc
// functions bound to host implementations) must not hand the host a
// SIGPIPE: the compartment gets EPIPE, the host's disposition never runs.
//
// Cheap on the common path (no syscall besides the call itself): while the
// host's SIGPIPE disposition is SIG_DFL or a handler, mpkbox's signal entry
// holds SIGPIPE (signal_actions.cc), and a SIGPIPE the kernel raises while
// this thread does contained work is swallowed there
// (SwallowContainedSigpipe); with SIG_IGN the kernel drops it itself. Only
// where SIGPIPE is blocked on the thread (it would stay pending) does the
// call run between a block and a sigtimedwait, as before, which costs three
// syscalls more.
#ifndef MPKBOX_RUNTIME_SIGPIPE_H_
#define MPKBOX_RUNTIME_SIGPIPE_H_

#include <signal.h>

#include "absl/functional/function_ref.h"

namespace mpkbox::internal {

// Runs `call` (a result or -errno, as a raw syscall) so that a SIGPIPE it
// raises never reaches the host. A SIGPIPE already pending before the call
// is the host's and is left alone. Async-signal-safe (the SIGSYS handler
// uses it).
long WithoutSigpipe(absl::FunctionRef<long()> call);

// The signal entry's question for a SIGPIPE: true if it is the kernel's
// answer to contained work on this thread, and was swallowed.
bool SwallowContainedSigpipe(const siginfo_t* info);

// This thread's signal mask may have changed (pthread_sigmask and
// sigprocmask, interposed): whether SIGPIPE is blocked is asked again.
void ForgetSigpipeMask();

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_SIGPIPE_H_
