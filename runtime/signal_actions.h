// The host's view of signal dispositions: what it installed (a table in
// trusted memory), which signals mpkbox keeps whatever the host does, and
// how the host's handlers run behind mpkbox's entry. Shared by the signal_*
// files; the rest of the runtime uses runtime/signals.h.
#ifndef MPKBOX_RUNTIME_SIGNAL_ACTIONS_H_
#define MPKBOX_RUNTIME_SIGNAL_ACTIONS_H_

#include <signal.h>
#include <ucontext.h>

namespace mpkbox::internal {

bool IsFaultSignal(int sig);
// Signals mpkbox handles whatever the host does with them.
bool IsOwnSignal(int sig);
// Raised by the kernel for the instruction that was running.
bool IsSynchronous(int sig, const siginfo_t* info);

// Runs what the host installed for `sig` (its handler with host rights, or
// the default action for real).
void RunHostHandler(int sig, siginfo_t* info, ucontext_t* uc);

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_SIGNAL_ACTIONS_H_
