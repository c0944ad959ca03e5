#include "runtime/sigpipe.h"

#include <errno.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "runtime/testing_switches.h"

namespace mpkbox::internal {

long WithoutSigpipe(absl::FunctionRef<long()> call) {
  if (MPKBOX_SWITCHED_OFF(skip_sigpipe_containment)) return call();
  sigset_t pipe_only, saved, pending;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_only, &saved);
  sigpending(&pending);
  // A pending SIGPIPE absorbs ours if it is this thread's (standard signals
  // do not queue twice): consuming one could then take the host's.
  const bool host_pending = sigismember(&pending, SIGPIPE);
  const long r = call();
  if (r == -EPIPE && !host_pending) {
    // The kernel sends it to this thread (send_sig), and sigtimedwait
    // takes the thread's own before the process's.
    const timespec now{};
    sigtimedwait(&pipe_only, nullptr, &now);
  }
  pthread_sigmask(SIG_SETMASK, &saved, nullptr);
  return r;
}

}  // namespace mpkbox::internal
