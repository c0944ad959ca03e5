#include "runtime/syscall_dispatch.h"

#include <errno.h>
#include <linux/audit.h>
#include <linux/futex.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>

#include "absl/strings/str_format.h"
#include "allocator/compartment_heap.h"
#include "mpkbox/syscall_policy.h"
#include "runtime/call_timer.h"
#include "runtime/sigpipe.h"
#include "runtime/syscall_rules.h"
#include "runtime/testing_switches.h"

#ifndef PR_SET_SYSCALL_USER_DISPATCH
#define PR_SET_SYSCALL_USER_DISPATCH 59
#define PR_SYS_DISPATCH_OFF 0
#define PR_SYS_DISPATCH_ON 1
#endif
#ifndef SYS_USER_DISPATCH
#define SYS_USER_DISPATCH 2
#endif

namespace mpkbox::internal {
namespace {

thread_local uint64_t t_emulated = 0;

using Action = SyscallAction;

long RawSyscall(long nr, uint64_t a0 = 0, uint64_t a1 = 0, uint64_t a2 = 0,
                uint64_t a3 = 0, uint64_t a4 = 0, uint64_t a5 = 0) {
  long r = syscall(nr, a0, a1, a2, a3, a4, a5);
  return r == -1 ? -errno : r;
}

void Refuse(ThreadBlock* tb, uintptr_t ip, long nr, const char* why) {
  RecordFault(tb, FaultKind::kSyscallDenied,
              {.signal = SIGSYS, .ip = ip, .syscall = nr, .what = why});
}

uintptr_t Ip(const ucontext_t* uc) {
  return static_cast<uintptr_t>(uc->uc_mcontext.gregs[REG_RIP]);
}

// Emulates an allowed call; the result (or -errno) goes to rax.
long Emulate(const SyscallRule& rule, const CallContext& ctx, long nr,
             const uint64_t a[6], uint64_t deadline_ns) {
  switch (rule.action) {
    case Action::kAllow:
      return RawSyscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
    case Action::kErrno:
      return -rule.error;
    case Action::kAllowWrite: {
      const int fd = static_cast<int>(a[0]);
      if (fd < 0 || fd >= 64 || !(rule.fd_mask & (uint64_t{1} << fd))) {
        return -EBADF;
      }
      if (!InOwnMemory(ctx, a[1], a[2])) return -EFAULT;
      // Copied first: another thread of the compartment cannot change what
      // was checked. A short write is a valid write(2) result.
      char copy[4096];
      const size_t n = std::min<uint64_t>(a[2], sizeof(copy));
      memcpy(copy, reinterpret_cast<const void*>(a[1]), n);
      // Done with host rights: a closed pipe must not signal the host.
      return WithoutSigpipe([&] {
        return RawSyscall(SYS_write, fd, reinterpret_cast<uint64_t>(copy), n);
      });
    }
    case Action::kAllowGetrandom: {
      if (!InOwnMemory(ctx, a[0], a[1])) return -EFAULT;
      return RawSyscall(SYS_getrandom, a[0], std::min<uint64_t>(a[1], 4096),
                        a[2] & GRND_NONBLOCK);
    }
    case Action::kAllowClock: {
      if (nr == SYS_clock_gettime) {
        if (!InOwnMemory(ctx, a[1], sizeof(timespec))) return -EFAULT;
        timespec ts;
        const long r = RawSyscall(SYS_clock_gettime, a[0],
                                  reinterpret_cast<uint64_t>(&ts));
        if (r == 0) memcpy(reinterpret_cast<void*>(a[1]), &ts, sizeof(ts));
        return r;
      }
      if (nr == SYS_gettimeofday) {
        if (a[1] != 0) return -EINVAL;  // no timezone
        if (a[0] != 0 && !InOwnMemory(ctx, a[0], sizeof(timeval))) {
          return -EFAULT;
        }
        timeval tv;
        const long r =
            RawSyscall(SYS_gettimeofday, reinterpret_cast<uint64_t>(&tv));
        if (r == 0 && a[0] != 0) {
          memcpy(reinterpret_cast<void*>(a[0]), &tv, sizeof(tv));
        }
        return r;
      }
      if (nr == SYS_time) {
        if (a[0] != 0 && !InOwnMemory(ctx, a[0], sizeof(time_t))) {
          return -EFAULT;
        }
        const long r = RawSyscall(SYS_time);
        if (a[0] != 0) memcpy(reinterpret_cast<void*>(a[0]), &r, sizeof(r));
        return r;
      }
      return -ENOSYS;
    }
    case Action::kAllowFutex: {
      const int op = static_cast<int>(a[1]);
      const int cmd = op & ~FUTEX_PRIVATE_FLAG;
      if (!(op & FUTEX_PRIVATE_FLAG) ||
          (cmd != FUTEX_WAIT && cmd != FUTEX_WAKE)) {
        return -ENOSYS;
      }
      if (!InOwnMemory(ctx, a[0], sizeof(uint32_t))) return -EFAULT;
      timespec timeout;
      uint64_t timeout_arg = 0;
      if (cmd == FUTEX_WAIT && a[3] != 0) {
        if (!InOwnMemory(ctx, a[3], sizeof(timespec))) return -EFAULT;
        memcpy(&timeout, reinterpret_cast<const void*>(a[3]), sizeof(timeout));
        timeout_arg = reinterpret_cast<uint64_t>(&timeout);
      }
      if (cmd == FUTEX_WAIT && deadline_ns != 0) {
        // A wait must not outlast the call's deadline: the timer cannot
        // interrupt it (its signals land in this handler, host code).
        const uint64_t now = MonotonicNowNs();
        const uint64_t left = deadline_ns > now ? deadline_ns - now : 1;
        const uint64_t asked =
            timeout_arg != 0
                ? timeout.tv_sec * uint64_t{1000000000} + timeout.tv_nsec
                : UINT64_MAX;
        if (left < asked) {
          timeout.tv_sec = static_cast<time_t>(left / 1000000000);
          timeout.tv_nsec = static_cast<long>(left % 1000000000);
          timeout_arg = reinterpret_cast<uint64_t>(&timeout);
        }
      }
      return RawSyscall(SYS_futex, a[0], op, a[2], timeout_arg);
    }
    case Action::kAllowMincore: {
      const uint64_t pages = (a[1] + MPKBOX_PAGE_SIZE - 1) / MPKBOX_PAGE_SIZE;
      if (!InOwnMemory(ctx, a[2], pages)) return -EFAULT;
      return RawSyscall(SYS_mincore, a[0], a[1], a[2]);
    }
    case Action::kFailCall:
      break;
  }
  return -ENOSYS;
}

}  // namespace

// Lock-free: this runs in a signal handler.
bool InOwnMemory(const CallContext& ctx, uint64_t p, uint64_t n) {
  const uint64_t lo = ctx.stack_base + MPKBOX_PAGE_SIZE;  // past the guard
  const uint64_t hi = ctx.stack_base + ctx.stack_size;
  if (p >= lo && p <= hi && n <= hi - p) return true;
  const CompartmentHeap* heap = HeapOfSlot(SlotOfDomain(ctx.domain));
  return heap != nullptr && heap->domain() == ctx.domain &&
         heap->Contains(p, n);
}

absl::Status ArmSyscallDispatch(SelectorPage* sel) {
  if (MPKBOX_SWITCHED_OFF(skip_syscall_dispatch)) return absl::OkStatus();
  sel->selector = MPKBOX_SELECTOR_ALLOW;
  if (prctl(PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_ON, 0, 0,
            &sel->selector) != 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "cannot arm Syscall User Dispatch on this thread: %s (needs Linux "
        "5.11 or later)",
        strerror(errno)));
  }
  return absl::OkStatus();
}

void DisarmSyscallDispatch() {
  prctl(PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_OFF, 0, 0, 0);
}

uint64_t EmulatedSyscalls() { return t_emulated; }

bool HandleCompartmentSyscall(ThreadBlock* tb, ucontext_t* uc,
                              const siginfo_t* info) {
  greg_t* g = uc->uc_mcontext.gregs;
  const long nr = info->si_syscall;
  if (info->si_code != SYS_USER_DISPATCH) {
    Refuse(tb, Ip(uc), nr,
           "a SIGSYS that Syscall User Dispatch did not send");
    return false;
  }
  if (info->si_arch != AUDIT_ARCH_X86_64) {
    Refuse(tb, Ip(uc), nr,
           "a 32-bit system call (int $0x80): only the x86-64 ABI is judged");
    return false;
  }
  const uint64_t args[6] = {
      static_cast<uint64_t>(g[REG_RDI]), static_cast<uint64_t>(g[REG_RSI]),
      static_cast<uint64_t>(g[REG_RDX]), static_cast<uint64_t>(g[REG_R10]),
      static_cast<uint64_t>(g[REG_R8]),  static_cast<uint64_t>(g[REG_R9])};
  const Frame& top = tb->frames[tb->depth - 1];
  const auto& ctx = *reinterpret_cast<const CallContext*>(top.ctx);
  // abort() in compartment code unblocks SIGABRT, asks for its ids and
  // sends itself SIGABRT. Mask changes are answered without effect (the
  // thread's mask is the runtime's), the ids are told, and the SIGABRT to
  // itself ends the call as abort() instead of reaching any handler.
  if (nr == SYS_rt_sigprocmask) {
    if (args[2] != 0) {
      if (args[3] != sizeof(uint64_t) ||
          !InOwnMemory(ctx, args[2], sizeof(uint64_t))) {
        g[REG_RAX] = -EFAULT;
        return true;
      }
      memcpy(reinterpret_cast<void*>(args[2]), &uc->uc_sigmask,
             sizeof(uint64_t));
    }
    g[REG_RAX] = 0;
    return true;
  }
  const bool self_abort =
      (nr == SYS_tgkill && args[0] == static_cast<uint64_t>(getpid()) &&
       args[1] == static_cast<uint64_t>(RawSyscall(SYS_gettid)) &&
       args[2] == SIGABRT) ||
      (nr == SYS_tkill &&
       args[0] == static_cast<uint64_t>(RawSyscall(SYS_gettid)) &&
       args[1] == SIGABRT);
  if (self_abort) {
    RecordFault(tb, FaultKind::kSignal,
                {.signal = SIGABRT,
                 .code = SI_TKILL,
                 .ip = static_cast<uintptr_t>(g[REG_RIP])});
    return false;
  }
  long result;
  if (!JudgeSyscall(tb, ctx, nr, args, Ip(uc), &result)) return false;
  g[REG_RAX] = result;
  return true;
}

bool JudgeSyscall(ThreadBlock* tb, const CallContext& ctx, long nr,
                  const uint64_t args[6], uintptr_t ip, long* result) {
  if (nr == SYS_gettid || nr == SYS_getpid) {
    *result = RawSyscall(nr);
    return true;
  }
  const SyscallRule& rule =
      SyscallRules::For(*ctx.policy, static_cast<int>(nr));
  absl::string_view never =
      SyscallPolicy::NeverAllowedReason(static_cast<int>(nr));
  // Only an explicit Deny(nr, errno) quiets a never-allowed call: it is
  // denied either way, and the policy's catch-all does not apply to it.
  if (!never.empty() && !(rule.listed && rule.action == Action::kErrno)) {
    char why[160];
    snprintf(why, sizeof(why), "never allowed: %.*s",
             static_cast<int>(never.size()), never.data());
    Refuse(tb, ip, nr, why);
    return false;
  }
  if (rule.action == Action::kFailCall) {
    Refuse(tb, ip, nr, "the compartment's syscall policy denies it");
    return false;
  }
  *result = Emulate(rule, ctx, nr, args, NearestDeadlineNs(tb));
  ++t_emulated;
  // A deadline that passed while the call waited in the kernel ends it now:
  // the timer's signals landed in host code, and could not.
  if (AnyDeadlinePassed(tb, MonotonicNowNs())) {
    RecordFault(tb, FaultKind::kTimeout, {.signal = SIGSYS, .ip = ip});
    return false;
  }
  return true;
}

}  // namespace mpkbox::internal
