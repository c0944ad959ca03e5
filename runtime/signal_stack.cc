// Each thread's trusted signal stack, and what a host handler that left by
// longjmp leaves behind.
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>

#include "absl/strings/str_format.h"
#include "runtime/keys/pku.h"
#include "runtime/signals.h"
#include "runtime/thread_runtime.h"

#ifndef SS_AUTODISARM
#define SS_AUTODISARM (1U << 31)  // linux/signal.h; not in glibc's headers
#endif

namespace mpkbox::internal {
namespace {

constexpr size_t kSignalStackBytes = 64 << 10;

// The target stack pointer of a jump buffer (glibc mangles it with the
// thread's pointer guard).
uintptr_t TargetStackPointer(const sigjmp_buf env) {
  constexpr int kJbRsp = 6;
  uintptr_t guard;
  asm("movq %%fs:0x30, %0" : "=r"(guard));
  uintptr_t v = static_cast<uintptr_t>(env[0].__jmpbuf[kJbRsp]);
  v = (v >> 0x11) | (v << (64 - 0x11));
  return v ^ guard;
}

}  // namespace

absl::Status SetUpSignalStack(ThreadBlock* tb) {
  ThreadRuntime& rt = ThreadRuntimeOf(tb);
  const size_t guard = MPKBOX_PAGE_SIZE;
  void* p = mmap(nullptr, kSignalStackBytes + guard, PROT_NONE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "cannot map this thread's signal stack: %s", strerror(errno)));
  }
  char* stack = static_cast<char*>(p) + guard;
  // Trusted: the kernel (6.12+) opens every key while it writes a frame,
  // and the entry's first act gives the handler host rights.
  if (absl::Status s = TagPages(stack, kSignalStackBytes,
                                PROT_READ | PROT_WRITE, Keys().trusted);
      !s.ok()) {
    munmap(p, kSignalStackBytes + guard);
    return s;
  }
  stack_t ss{};
  ss.ss_sp = stack;
  ss.ss_size = kSignalStackBytes;
  // The kernel leaves the stack while a handler runs on it, so it never
  // takes a compartment's rsp for "already on the signal stack": every first
  // frame goes to the same place.
  ss.ss_flags = SS_AUTODISARM;
  if (syscall(SYS_sigaltstack, &ss, &rt.host_signal_stack) != 0) {
    munmap(p, kSignalStackBytes + guard);
    return absl::InternalError(
        absl::StrFormat("sigaltstack: %s", strerror(errno)));
  }
  rt.signal_stack = p;
  rt.signal_stack_bytes = kSignalStackBytes + guard;
  tb->sigstack_lo = reinterpret_cast<uintptr_t>(stack);
  tb->sigstack_hi = reinterpret_cast<uintptr_t>(stack) + kSignalStackBytes;
  // Learn where that place is: one signal through the entry, before any
  // compartment code runs on this thread.
  // Nothing else may arrive with it: frames built together nest below the
  // first one, and the probe must see the first one's place.
  sigset_t only_probe, saved;
  sigfillset(&only_probe);
  sigdelset(&only_probe, TimerSignal());
  pthread_sigmask(SIG_SETMASK, &only_probe, &saved);
  rt.probing = true;
  syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), TimerSignal());
  pthread_sigmask(SIG_SETMASK, &saved, nullptr);
  if (rt.probing || tb->signal_rsp == 0) {
    return absl::InternalError(
        "the signal entry did not learn this thread's frame position");
  }
  return absl::OkStatus();
}

bool RecoverFromAbandonedHandler(ThreadBlock* tb, bool check_stack) {
  const uintptr_t sp = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
  if (check_stack && sp >= tb->sigstack_lo && sp < tb->sigstack_hi) {
    return false;
  }
  tb->depth &= kHandlerDepthBias - 1;
  tb->signal_nesting = 0;
  // The kernel left the stack disarmed (SS_AUTODISARM) for the handler.
  ThreadRuntime& rt = ThreadRuntimeOf(tb);
  stack_t ss{};
  ss.ss_sp = reinterpret_cast<void*>(tb->sigstack_lo);
  ss.ss_size = tb->sigstack_hi - tb->sigstack_lo;
  ss.ss_flags = SS_AUTODISARM;
  if (rt.signal_stack != nullptr) syscall(SYS_sigaltstack, &ss, nullptr);
  return true;
}

void ReleaseSignalStack(ThreadBlock* tb) {
  ThreadRuntime& rt = ThreadRuntimeOf(tb);
  if (rt.signal_stack == nullptr) return;
  stack_t ss{};
  ss.ss_flags = SS_DISABLE;
  syscall(SYS_sigaltstack, &ss, nullptr);
  munmap(rt.signal_stack, rt.signal_stack_bytes);
  rt.signal_stack = nullptr;
  tb->sigstack_lo = tb->sigstack_hi = 0;
}


void ForgetHandlersLeftBy(const sigjmp_buf env) {
  ThreadBlock* tb = CurrentThreadBlock();
  if (tb == nullptr || tb->signal_nesting == 0) return;
  const uintptr_t target = TargetStackPointer(env);
  if (target >= tb->sigstack_lo && target < tb->sigstack_hi) return;
  RecoverFromAbandonedHandler(tb, /*check_stack=*/false);
}

// On a thread that runs compartments the kernel's signal stack stays
// mpkbox's trusted one (the entry refuses frames anywhere else); the host's
// request is kept and reported back, and its handlers run on the trusted
// stack.
int HostSigaltstack(const stack_t* ss, stack_t* old) {
  ThreadBlock* tb = CurrentThreadBlock();
  if (tb == nullptr) return static_cast<int>(syscall(SYS_sigaltstack, ss, old));
  ThreadRuntime& rt = ThreadRuntimeOf(tb);
  const stack_t previous = rt.host_signal_stack;
  if (ss != nullptr) {
    if (!(ss->ss_flags & SS_DISABLE) && ss->ss_size < static_cast<size_t>(MINSIGSTKSZ)) {
      errno = ENOMEM;
      return -1;
    }
    rt.host_signal_stack = *ss;
  }
  if (old != nullptr) *old = previous;
  return 0;
}

}  // namespace mpkbox::internal
