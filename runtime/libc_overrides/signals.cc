// The host's signal functions, interposed: handlers the host installs run
// behind mpkbox's signal entry with host rights, and the signal stack stays
// the trusted one (runtime/signal_actions.cc, runtime/signal_stack.cc).
#include <dlfcn.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>

#include "runtime/sigpipe.h"
#include "runtime/signals.h"

extern "C" {

// Referenced by the link options of mpkbox's CMake target, so that this
// object is always linked.
void mpkbox_override_signals() {}

int sigaction(int sig, const struct sigaction* act, struct sigaction* old) {
  return mpkbox::internal::HostSigaction(sig, act, old);
}

int sigaltstack(const stack_t* ss, stack_t* old) {
  return mpkbox::internal::HostSigaltstack(ss, old);
}

// The thread's mask, as glibc's (which never blocks its two internal
// signals), and mpkbox forgets what it knew of SIGPIPE in it
// (runtime/sigpipe.h).
int pthread_sigmask(int how, const sigset_t* set, sigset_t* old) {
  sigset_t allowed;
  if (set != nullptr && (how == SIG_BLOCK || how == SIG_SETMASK)) {
    allowed = *set;
    allowed.__val[0] &= ~(uint64_t{3} << 31);  // SIGCANCEL, SIGSETXID
    set = &allowed;
  }
  const long r = syscall(SYS_rt_sigprocmask, how, set, old, _NSIG / 8);
  const int error = r == 0 ? 0 : errno;
  mpkbox::internal::ForgetSigpipeMask();
  return error;
}

int sigprocmask(int how, const sigset_t* set, sigset_t* old) {
  const int error = pthread_sigmask(how, set, old);
  if (error == 0) return 0;
  errno = error;
  return -1;
}

// BSD semantics, as glibc's signal().
sighandler_t signal(int sig, sighandler_t handler) {
  struct sigaction act {}, old{};
  act.sa_handler = handler;
  sigemptyset(&act.sa_mask);
  sigaddset(&act.sa_mask, sig);
  act.sa_flags = SA_RESTART;
  if (sigaction(sig, &act, &old) != 0) return SIG_ERR;
  return old.sa_handler;
}

}  // extern "C"

// A host handler may leave by longjmp: see ForgetHandlersLeftBy.
namespace {

using LongjmpFn = void (*)(sigjmp_buf, int);

LongjmpFn RealLongjmp(const char* name) {
  return reinterpret_cast<LongjmpFn>(dlsym(RTLD_NEXT, name));
}

// Forgets abandoned handlers, then jumps with libc's `name`.
[[noreturn]] void LeaveBy(const char* name, std::atomic<LongjmpFn>& real,
                          sigjmp_buf env, int value) {
  mpkbox::internal::ForgetHandlersLeftBy(env);
  if (real.load() == nullptr) real.store(RealLongjmp(name));
  real.load()(env, value);
  __builtin_unreachable();
}

}  // namespace

extern "C" [[noreturn]] void siglongjmp(sigjmp_buf env, int value) {
  static std::atomic<LongjmpFn> real{nullptr};
  LeaveBy("siglongjmp", real, env, value);
}
extern "C" [[noreturn]] void longjmp(jmp_buf env, int value) {
  static std::atomic<LongjmpFn> real{nullptr};
  LeaveBy("longjmp", real, env, value);
}
extern "C" [[noreturn]] void _longjmp(jmp_buf env, int value) {
  static std::atomic<LongjmpFn> real{nullptr};
  LeaveBy("_longjmp", real, env, value);
}
extern "C" [[noreturn]] void __longjmp_chk(jmp_buf env, int value) {
  static std::atomic<LongjmpFn> real{nullptr};
  LeaveBy("__longjmp_chk", real, env, value);
}
