// Host-side work done for compartment code (an emulated write, later libc
// functions bound to host implementations) must not hand the host a
// SIGPIPE: the compartment gets EPIPE, the host's disposition never runs.
#ifndef MPKBOX_RUNTIME_SIGPIPE_H_
#define MPKBOX_RUNTIME_SIGPIPE_H_

#include "absl/functional/function_ref.h"

namespace mpkbox::internal {

// Runs `call` (a result or -errno, as a raw syscall) with SIGPIPE blocked.
// A -EPIPE result means the kernel queued a SIGPIPE on this thread; that
// one is consumed. A SIGPIPE already pending before the call is the host's
// and is left alone. Async-signal-safe (the SIGSYS handler uses it).
long WithoutSigpipe(absl::FunctionRef<long()> call);

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_SIGPIPE_H_
