#include "runtime/sigpipe.h"

#include <errno.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "runtime/testing_switches.h"

namespace mpkbox::internal {
namespace {

// Per thread (initial-exec TLS: the signal entry reads it).
enum MaskKnowledge : char { kUnknown, kUnblocked, kBlocked };
thread_local MaskKnowledge t_sigpipe_mask = kUnknown;
thread_local bool t_containing = false;  // contained work is running
thread_local bool t_swallowed = false;   // a SIGPIPE arrived meanwhile

bool SigpipeBlocked(const sigset_t& mask) {
  return sigismember(&mask, SIGPIPE) == 1;
}

// The old way, exact whatever the mask: SIGPIPE blocked around the call,
// ours consumed, a pending one of the host's left.
long Blocked(absl::FunctionRef<long()> call) {
  sigset_t pipe_only, saved, pending;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_only, &saved);
  t_sigpipe_mask = SigpipeBlocked(saved) ? kBlocked : kUnblocked;
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

}  // namespace

long WithoutSigpipe(absl::FunctionRef<long()> call) {
  if (MPKBOX_SWITCHED_OFF(skip_sigpipe_containment)) return call();
  if (t_sigpipe_mask == kUnknown) {
    sigset_t mask;
    pthread_sigmask(SIG_BLOCK, nullptr, &mask);
    t_sigpipe_mask = SigpipeBlocked(mask) ? kBlocked : kUnblocked;
  }
  if (t_sigpipe_mask == kBlocked) return Blocked(call);
  t_swallowed = false;
  t_containing = true;
  const long r = call();
  t_containing = false;
  if (t_swallowed && r != -EPIPE) {
    // Not ours (the write raised none): someone's SIGPIPE to the process
    // that landed here. It goes to the host's disposition after all.
    syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), SIGPIPE);
  } else if (r == -EPIPE && !t_swallowed) {
    // Delivered nowhere: SIGPIPE is ignored (nothing was queued), or the
    // mask changed behind the interposed functions (a raw rt_sigprocmask)
    // and ours is pending. The compartment's must not reach the host.
    t_sigpipe_mask = kUnknown;
    sigset_t pending, pipe_only;
    sigpending(&pending);
    if (sigismember(&pending, SIGPIPE)) {
      sigemptyset(&pipe_only);
      sigaddset(&pipe_only, SIGPIPE);
      const timespec now{};
      sigtimedwait(&pipe_only, nullptr, &now);
    }
  }
  return r;
}

bool SwallowContainedSigpipe(const siginfo_t* info) {
  // The kernel's SIGPIPE for a write (send_sig) reads as the process
  // signalling itself; another process's kill is never swallowed.
  if (!t_containing || info->si_code != SI_USER ||
      info->si_pid != getpid()) {
    return false;
  }
  t_swallowed = true;
  return true;
}

void ForgetSigpipeMask() { t_sigpipe_mask = kUnknown; }

}  // namespace mpkbox::internal
