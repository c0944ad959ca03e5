#include "runtime/signal_actions.h"

#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/keys/pku.h"
#include "runtime/signal_frame.h"
#include "runtime/signals.h"
#include "runtime/testing_switches.h"
#include "trampolines/trampolines.h"

extern "C" {
// libc's own sigaction: the interposed one is the host's view.
int __sigaction(int, const struct sigaction*, struct sigaction*);
}

namespace mpkbox::internal {
namespace {

int g_timer_signal = 0;

// What the host believes each signal's disposition is. Trusted memory.
struct HostActions {
  struct sigaction act[NSIG];
};
HostActions* g_host_actions = nullptr;
std::atomic<bool> g_installed{false};
// Signals whose kernel disposition is mpkbox's entry (bit sig - 1).
std::atomic<uint64_t> g_entry_signals{0};
std::atomic_flag g_host_lock =
    ATOMIC_FLAG_INIT;  // sigaction may run in handlers

class HostLock {
 public:
  HostLock() {
    while (g_host_lock.test_and_set(std::memory_order_acquire)) sched_yield();
  }
  ~HostLock() { g_host_lock.clear(std::memory_order_release); }
};

bool IsHandlerFunction(const struct sigaction& a) {
  return a.sa_handler != SIG_DFL && a.sa_handler != SIG_IGN;
}

// Whether the kernel's disposition for `sig` must be mpkbox's entry. A
// default SIGPIPE too: one raised by contained work is swallowed there
// (sigpipe.h); the entry does the default (death) for the others. An
// ignored one the kernel drops itself, and stays ignored across exec.
bool NeedsEntry(int sig, const struct sigaction& a) {
  return IsOwnSignal(sig) || IsHandlerFunction(a) ||
         (sig == SIGPIPE && a.sa_handler == SIG_DFL);
}

// The kernel's struct sigaction: libc's would put its own restorer in.
struct KernelSigaction {
  void (*handler)(int, siginfo_t*, void*);
  unsigned long flags;
  void (*restorer)();
  uint64_t mask;
};
constexpr unsigned long kSaRestorer = 0x04000000;

// Installs the entry for `sig` with the host's mask and flags, returning
// through mpkbox's restorer.
void InstallEntry(int sig, const struct sigaction& host_action) {
  KernelSigaction ka{};
  ka.handler = mpkbox_signal_entry;
  ka.flags = SA_SIGINFO | SA_ONSTACK | kSaRestorer |
             (host_action.sa_flags & (SA_RESTART | SA_NODEFER));
  ka.restorer = mpkbox_signal_restorer;
  memcpy(&ka.mask, &host_action.sa_mask, sizeof(ka.mask));
  syscall(SYS_rt_sigaction, sig, &ka, nullptr, sizeof(ka.mask));
  g_entry_signals.fetch_or(uint64_t{1} << (sig - 1));
}

// The host's action for `sig`: mpkbox's entry for its own signals and
// handler functions, libc's for the rest. Called with the HostLock held.
void SetHostAction(int sig, const struct sigaction& act) {
  g_host_actions->act[sig] = act;
  if (NeedsEntry(sig, act)) {
    InstallEntry(sig, act);
  } else {
    __sigaction(sig, &act, nullptr);
    g_entry_signals.fetch_and(~(uint64_t{1} << (sig - 1)));
  }
}

// The kernel's default action for `sig`, done for real.
void DefaultAction(int sig, const siginfo_t* info) {
  if (sig == SIGCHLD || sig == SIGURG || sig == SIGWINCH || sig == SIGCONT) {
    return;  // default: ignore
  }
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  __sigaction(sig, &dfl, nullptr);
  if (IsSynchronous(sig, info) && sig != SIGTRAP) return;  // faults again
  // Pending while blocked in this handler; delivered after sigreturn.
  syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), sig);
}

}  // namespace

bool IsFaultSignal(int sig) {
  return sig == SIGSEGV || sig == SIGBUS || sig == SIGFPE || sig == SIGILL ||
         sig == SIGTRAP;
}
// Signals mpkbox handles whatever the host does with them.
bool IsOwnSignal(int sig) {
  return IsFaultSignal(sig) || sig == SIGABRT || sig == SIGSYS ||
         sig == g_timer_signal;
}
// Raised by the kernel for the instruction that was running.
bool IsSynchronous(int sig, const siginfo_t* info) {
  return IsFaultSignal(sig) && info->si_code > 0;
}

void RunHostHandler(int sig, siginfo_t* info, ucontext_t* uc) {
  struct sigaction a = g_host_actions->act[sig];
  if (a.sa_handler == SIG_IGN && IsSynchronous(sig, info)) {
    a.sa_handler = SIG_DFL;  // the kernel cannot ignore a fault either
  }
  if (a.sa_handler == SIG_IGN) return;
  if (a.sa_handler == SIG_DFL) {
    DefaultAction(sig, info);
    return;
  }
  if (a.sa_flags & SA_RESETHAND) {
    HostLock lock;
    g_host_actions->act[sig].sa_handler = SIG_DFL;
    g_host_actions->act[sig].sa_flags &= ~SA_SIGINFO;
    if (!IsOwnSignal(sig)) __sigaction(sig, &g_host_actions->act[sig], nullptr);
  }
  // Compartment code may be suspended under this handler: a Call from it
  // is refused (the depth bias sends it to Call's slow path, which says why).
  ThreadBlock* tb = CurrentThreadBlock();
  if (tb != nullptr) tb->depth += kHandlerDepthBias;
  if (a.sa_flags & SA_SIGINFO) {
    a.sa_sigaction(sig, info, uc);
  } else {
    a.sa_handler(sig);
  }
  if (tb != nullptr) tb->depth -= kHandlerDepthBias;
}

int TimerSignal() { return g_timer_signal; }

absl::Status InstallSignalHandling(const RuntimeOptions& options) {
  if (absl::Status s = LearnSignalFrameLayout(); !s.ok()) return s;

  g_timer_signal =
      options.timer_signal != 0 ? options.timer_signal : SIGRTMAX - 1;
  if (g_timer_signal < SIGRTMIN || g_timer_signal > SIGRTMAX) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "RuntimeOptions::g_timer_signal %d is not a real-time signal (%d..%d)",
        g_timer_signal, SIGRTMIN, SIGRTMAX));
  }
  void* p = mmap(nullptr, sizeof(HostActions), PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    return absl::ResourceExhaustedError("cannot map the signal table");
  }
  if (absl::Status s = TagPages(p, sizeof(HostActions), PROT_READ | PROT_WRITE,
                                Keys().trusted);
      !s.ok()) {
    return s;
  }
  g_host_actions = static_cast<HostActions*>(p);
  HostLock lock;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    struct sigaction cur {};
    if (__sigaction(sig, nullptr, &cur) != 0) continue;  // libc-reserved
    g_host_actions->act[sig] = cur;
    // Handlers installed before Init get host rights too.
    if (NeedsEntry(sig, cur)) InstallEntry(sig, cur);
  }
  g_installed.store(true, std::memory_order_release);
  return absl::OkStatus();
}

void AdoptLibcSignalHandlers() {
  // SIGCANCEL and SIGSETXID: the two below SIGRTMIN that glibc keeps.
  for (int sig = __SIGRTMIN; sig < SIGRTMIN; ++sig) {
    KernelSigaction cur{};
    if (syscall(SYS_rt_sigaction, sig, nullptr, &cur, sizeof(cur.mask)) != 0 ||
        reinterpret_cast<uintptr_t>(cur.handler) <= 1 ||  // SIG_DFL, SIG_IGN
        cur.handler == mpkbox_signal_entry) {
      continue;
    }
    struct sigaction a {};
    a.sa_sigaction = cur.handler;
    a.sa_flags = static_cast<int>(cur.flags & ~kSaRestorer);
    memcpy(&a.sa_mask, &cur.mask, sizeof(cur.mask));
    OpenAllKeysInThisThread();  // the table is trusted
    HostLock lock;
    g_host_actions->act[sig] = a;
    InstallEntry(sig, a);
  }
}

// The host's sigaction: the same meaning as libc's, but every handler runs
// behind mpkbox's entry (with host rights), and the signals mpkbox needs
// stay with it. Before Runtime::Init it is libc's.
int HostSigaction(int sig, const struct sigaction* act, struct sigaction* old) {
  if (!g_installed.load(std::memory_order_acquire) || sig <= 0 || sig >= NSIG ||
      sig == SIGKILL || sig == SIGSTOP) {
    return __sigaction(sig, act, old);
  }
  struct sigaction probe {};
  if (__sigaction(sig, nullptr, &probe) != 0) return -1;  // EINVAL as libc
  OpenAllKeysInThisThread();  // the table is trusted
  HostLock lock;
  struct sigaction prev = g_host_actions->act[sig];
  if (act != nullptr) SetHostAction(sig, *act);
  if (old != nullptr) *old = prev;
  return 0;
}

// When the last check started (CLOCK_MONOTONIC, a vDSO read). Not the
// coarse clock: it moves one tick (4 ms at HZ=250) at a time, so a handler
// installed just after a look went unseen for up to a tick, not the
// millisecond THREAT_MODEL.md promises.
std::atomic<int64_t> g_last_check_ns{INT64_MIN / 2};

int64_t NowNs() {
  struct timespec ts {};
  clock_gettime(MPKBOX_SWITCHED_OFF(coarse_disposition_clock)
                    ? CLOCK_MONOTONIC_COARSE
                    : CLOCK_MONOTONIC,
                &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

absl::Status CheckSignalDispositionsIfDue() {
  if (NowNs() - g_last_check_ns.load(std::memory_order_relaxed) <
      kDispositionRecheckNs) {
    return absl::OkStatus();
  }
  return CheckSignalDispositions();
}

absl::Status CheckSignalDispositions() {
  if (MPKBOX_SWITCHED_OFF(skip_disposition_check) ||
      !g_installed.load(std::memory_order_acquire)) {
    return absl::OkStatus();
  }
  g_last_check_ns.store(NowNs(), std::memory_order_relaxed);
  std::string adopted;
  const uint64_t entries = g_entry_signals.load();
  for (int sig = 1; sig < NSIG; ++sig) {
    if (!(entries & (uint64_t{1} << (sig - 1)))) continue;
    KernelSigaction cur{};
    if (syscall(SYS_rt_sigaction, sig, nullptr, &cur, sizeof(cur.mask)) != 0 ||
        cur.handler == mpkbox_signal_entry) {
      continue;
    }
    // A raw rt_sigaction replaced the entry. Its handler would run with the
    // kernel's PKRU, in which the selector page is unreadable: on a thread
    // that entered a compartment its rt_sigreturn kills the process. It
    // becomes the host's handler, behind the entry.
    struct sigaction host {};
    host.sa_sigaction = cur.handler;
    host.sa_flags = static_cast<int>(cur.flags & ~kSaRestorer);
    memcpy(&host.sa_mask, &cur.mask, sizeof(cur.mask));
    OpenAllKeysInThisThread();  // the table is trusted
    {
      HostLock lock;
      SetHostAction(sig, host);
    }
    const char* abbrev = sigabbrev_np(sig);
    absl::StrAppendFormat(&adopted, "%sSIG%s", adopted.empty() ? "" : ", ",
                          abbrev != nullptr ? abbrev : "?");
  }
  if (adopted.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "a handler for ", adopted,
      " was installed behind mpkbox's back (a raw rt_sigaction, bypassing "
      "sigaction()); it would run with the kernel's PKRU and its return would "
      "kill the process on a thread that entered a compartment. mpkbox made "
      "it the host's handler and put its own entry back; install handlers "
      "with sigaction() or signal()"));
}

}  // namespace mpkbox::internal
