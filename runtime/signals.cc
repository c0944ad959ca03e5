#include "runtime/signals.h"

#include <cpuid.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include "absl/strings/str_format.h"
#include "runtime/call_timer.h"
#include "runtime/gadget_guard.h"
#include "runtime/pku.h"
#include "runtime/runtime_state.h"
#include "runtime/syscall_dispatch.h"
#include "runtime/thread_runtime.h"

extern "C" {
void mpkbox_signal_entry(int, siginfo_t*, void*);
void mpkbox_signal_restorer();
void mpkbox_signal_dispatch(int sig, siginfo_t* info, void* raw);
extern char mpkbox_resume_stub[], mpkbox_resume_trusted[];
extern char mpkbox_resume_trusted_end[];
extern char mpkbox_signal_begin[], mpkbox_signal_end[];
extern char mpkbox_gate_enter_blocked[], mpkbox_gate_enter_blocked_end[];
extern char mpkbox_callback_return_blocked[];
extern char mpkbox_callback_return_blocked_end[];
extern char mpkbox_gate_enter_switched[], mpkbox_callback_return_switched[];
extern char mpkbox_gate_begin[], mpkbox_gate_end[], mpkbox_gate_trap[];
extern char mpkbox_gate_landing[];
// libc's own sigaction: the interposed one below is the host's view.
int __sigaction(int, const struct sigaction*, struct sigaction*);
}

#ifndef SS_AUTODISARM
#define SS_AUTODISARM (1U << 31)  // linux/signal.h; not in glibc's headers
#endif

namespace mpkbox::internal {
namespace {

constexpr uint32_t kFpXstateMagic1 = 0x46505853;
// Marks a frame as dispatched. The kernel writes uc_link = 0 in every frame
// it builds and sigreturn ignores it, so a marked frame on the signal stack
// is an old one: jumping into the entry with it would replay it.
constexpr uintptr_t kConsumedFrame = 0x6d70'6b62'6f78'2121;  // "mpkbox!!"
constexpr int kPkruFeature = 9;
constexpr size_t kSignalStackBytes = 64 << 10;

// The software-reserved bytes of the FXSAVE area in a signal frame (the
// kernel's struct _fpx_sw_bytes), at offset 464.
struct FxSwBytes {
  uint32_t magic1;
  uint32_t extended_size;
  uint64_t xfeatures;
  uint32_t xstate_size;
  uint32_t padding[7];
};

size_t pkru_offset = 0;  // of PKRU in the frame's XSAVE area (CPUID 0xD.9)
int timer_signal = 0;

// What the host believes each signal's disposition is. Trusted memory.
struct HostActions {
  struct sigaction act[NSIG];
};
HostActions* host = nullptr;
std::atomic<bool> installed{false};
std::atomic_flag host_lock = ATOMIC_FLAG_INIT;  // sigaction may run in handlers

class HostLock {
 public:
  HostLock() {
    while (host_lock.test_and_set(std::memory_order_acquire)) sched_yield();
  }
  ~HostLock() { host_lock.clear(std::memory_order_release); }
};

bool IsFaultSignal(int sig) {
  return sig == SIGSEGV || sig == SIGBUS || sig == SIGFPE || sig == SIGILL ||
         sig == SIGTRAP;
}
// Signals mpkbox handles whatever the host does with them.
bool IsOwnSignal(int sig) {
  return IsFaultSignal(sig) || sig == SIGABRT || sig == SIGSYS ||
         sig == timer_signal;
}
// Raised by the kernel for the instruction that was running.
bool IsSynchronous(int sig, const siginfo_t* info) {
  return IsFaultSignal(sig) && info->si_code > 0;
}
bool IsHandlerFunction(const struct sigaction& a) {
  return a.sa_handler != SIG_DFL && a.sa_handler != SIG_IGN;
}
bool InRange(uintptr_t ip, const char* begin, const char* end) {
  return ip >= reinterpret_cast<uintptr_t>(begin) &&
         ip < reinterpret_cast<uintptr_t>(end);
}

uint8_t* XsaveArea(const ucontext_t* uc) {
  return reinterpret_cast<uint8_t*>(uc->uc_mcontext.fpregs);
}
uint32_t* FramePkruSlot(const ucontext_t* uc) {
  uint8_t* x = XsaveArea(uc);
  if (x == nullptr || pkru_offset == 0) return nullptr;
  const auto* sw = reinterpret_cast<const FxSwBytes*>(x + 464);
  if (sw->magic1 != kFpXstateMagic1 || pkru_offset + 4 > sw->xstate_size) {
    return nullptr;
  }
  return reinterpret_cast<uint32_t*>(x + pkru_offset);
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
void Route(int sig, const struct sigaction& host_action) {
  KernelSigaction ka{};
  ka.handler = mpkbox_signal_entry;
  ka.flags = SA_SIGINFO | SA_ONSTACK | kSaRestorer |
             (host_action.sa_flags & (SA_RESTART | SA_NODEFER));
  ka.restorer = mpkbox_signal_restorer;
  memcpy(&ka.mask, &host_action.sa_mask, sizeof(ka.mask));
  syscall(SYS_rt_sigaction, sig, &ka, nullptr, sizeof(ka.mask));
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

void RunHostHandler(int sig, siginfo_t* info, ucontext_t* uc) {
  struct sigaction a = host->act[sig];
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
    host->act[sig].sa_handler = SIG_DFL;
    host->act[sig].sa_flags &= ~SA_SIGINFO;
    if (!IsOwnSignal(sig)) __sigaction(sig, &host->act[sig], nullptr);
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

// Walks the compartment's frames from the fault up to the gate. The stack
// is the compartment's and may be garbage: a fault during the walk ends it.
void CollectBacktrace(ThreadBlock* tb, ucontext_t* uc, FaultInfo& f) {
  ThreadRuntime& rt = ThreadRuntimeOf(tb);
  sigset_t faults;
  sigemptyset(&faults);
  sigaddset(&faults, SIGSEGV);
  sigaddset(&faults, SIGBUS);
  pthread_sigmask(SIG_UNBLOCK, &faults, nullptr);  // sigreturn restores it
  if (sigsetjmp(rt.backtrace_jmp, 0) != 0) {
    --tb->signal_nesting;  // the faulting walk's handler never returned
  } else {
    rt.in_backtrace = true;
    unw_cursor_t cursor;
    if (unw_init_local2(&cursor, reinterpret_cast<unw_context_t*>(uc),
                        UNW_INIT_SIGNAL_FRAME) == 0) {
      do {
        unw_word_t ip;
        if (unw_get_reg(&cursor, UNW_REG_IP, &ip) != 0) break;
        if (InTrampolines(ip) && f.frames > 0) break;  // reached the gate
        f.ips[f.frames++] = ip;
      } while (f.frames < FaultInfo::kMaxFrames && unw_step(&cursor) > 0);
    }
  }
  rt.in_backtrace = false;
}

// Records a signal as the reason the call ends.
void RecordSignal(ThreadBlock* tb, const ucontext_t* uc, FaultKind kind,
                  int sig, const siginfo_t* info, uint32_t pkru) {
  FaultInfo& f = tb->fault_info;
  memset(&f, 0, sizeof(f));
  f.kind = kind;
  f.signal = sig;
  f.code = info->si_code;
  f.pkru = pkru;
  if (IsFaultSignal(sig)) f.address = reinterpret_cast<uintptr_t>(info->si_addr);
  f.ip = static_cast<uintptr_t>(uc->uc_mcontext.gregs[REG_RIP]);
}

// Ends the innermost compartment call: the thread resumes at the gate's
// landing with host rights, and Call reports tb->fault_info.
bool UnwindToGate(ThreadBlock* tb, ucontext_t* uc) {
  const Frame& top = tb->frames[tb->depth - 1];
  if (top.kind != MPKBOX_FRAME_CALL) return false;
  FaultInfo& f = tb->fault_info;
  f.stack_base = reinterpret_cast<const CallContext*>(top.ctx)->stack_base;
  CollectBacktrace(tb, uc, f);
  tb->fault = 1;
  uc->uc_mcontext.gregs[REG_RIP] =
      reinterpret_cast<greg_t>(mpkbox_gate_landing);
  uc->uc_mcontext.gregs[REG_EFL] = 0x202;  // no TF, DF or AC on the way out
  SetFramePkru(uc, 0);
  return true;
}

bool Contain(ThreadBlock* tb, ucontext_t* uc, FaultKind kind, int sig,
             const siginfo_t* info, uint32_t pkru) {
  if (tb->frames[tb->depth - 1].kind != MPKBOX_FRAME_CALL) return false;
  RecordSignal(tb, uc, kind, sig, info, pkru);
  return UnwindToGate(tb, uc);
}

// Returns into what the signal interrupted. Compartment code goes through
// the resume stub, and gate code on its way into a compartment (selector
// already BLOCK) through the trusted one: the selector must read ALLOW when
// rt_sigreturn runs (DESIGN.md 5c). Gate code on its way out runs on with
// ALLOW, which it was about to set.
void Resume(SelectorPage* sel, ThreadBlock* tb, ucontext_t* uc,
            bool in_compartment) {
  greg_t* g = uc->uc_mcontext.gregs;
  const uintptr_t rip = static_cast<uintptr_t>(g[REG_RIP]);
  // Interrupted while resuming: start over from the intact saved state. The
  // trusted stub only if trusted code was running it (compartment code that
  // jumped in must not replay trusted state: it resumes as itself, below,
  // and faults on the stub's first trusted load).
  if (InRange(rip, mpkbox_resume_stub, mpkbox_resume_trusted) ||
      (InRange(rip, mpkbox_resume_trusted, mpkbox_resume_trusted_end) &&
       !in_compartment)) {
    g[REG_RIP] = reinterpret_cast<greg_t>(
        rip < reinterpret_cast<uintptr_t>(mpkbox_resume_trusted)
            ? mpkbox_resume_stub
            : mpkbox_resume_trusted);
    SetFramePkru(uc, 0);
    return;
  }
  // Between a gate's WRPKRU into a compartment and its switch to the
  // compartment's stack, rsp is still the host's: run the WRPKRU again from
  // trusted code rather than resume compartment rights on the host stack.
  if (InRange(rip, mpkbox_gate_enter_blocked_end, mpkbox_gate_enter_switched)) {
    g[REG_RIP] = reinterpret_cast<greg_t>(mpkbox_gate_enter_blocked_end);
    in_compartment = false;
  } else if (InRange(rip, mpkbox_callback_return_blocked_end,
                     mpkbox_callback_return_switched)) {
    g[REG_RIP] = reinterpret_cast<greg_t>(mpkbox_callback_return_blocked_end);
    in_compartment = false;
  }
  const uintptr_t at = static_cast<uintptr_t>(g[REG_RIP]);
  const bool inbound =
      InRange(at, mpkbox_gate_enter_blocked, mpkbox_gate_enter_switched) ||
      InRange(at, mpkbox_callback_return_blocked,
              mpkbox_callback_return_switched);
  if (!in_compartment && !inbound) return;
  ResumeState& rs = in_compartment ? tb->resume_state
                                   : tb->resume_trusted_state;
  rs.rbx = g[REG_RBX];
  rs.rbp = g[REG_RBP];
  rs.rsi = g[REG_RSI];
  rs.rdi = g[REG_RDI];
  rs.r8 = g[REG_R8];
  rs.r9 = g[REG_R9];
  rs.r10 = g[REG_R10];
  rs.r11 = g[REG_R11];
  rs.r12 = g[REG_R12];
  rs.r13 = g[REG_R13];
  rs.r14 = g[REG_R14];
  rs.r15 = g[REG_R15];
  rs.rsp = g[REG_RSP];
  rs.rax = g[REG_RAX];
  rs.rcx = g[REG_RCX];
  rs.rdx = g[REG_RDX];
  rs.rip = g[REG_RIP];
  rs.rflags = g[REG_EFL];
  if (in_compartment) {
    // The stub reads these after it has dropped to compartment rights.
    sel->resume_rax = rs.rax;
    sel->resume_rcx = rs.rcx;
    sel->resume_rdx = rs.rdx;
    sel->resume_rip = rs.rip;
    sel->resume_rflags = rs.rflags;
  }
  g[REG_RIP] = reinterpret_cast<greg_t>(in_compartment ? mpkbox_resume_stub
                                                       : mpkbox_resume_trusted);
  SetFramePkru(uc, 0);
}

void Dispatch(int sig, siginfo_t* info, ucontext_t* uc, SelectorPage* sel,
              ThreadBlock* tb, uint64_t domain) {
  const uintptr_t rip = static_cast<uintptr_t>(uc->uc_mcontext.gregs[REG_RIP]);
  const uint32_t pkru = FramePkru(uc);
  const bool at_trap = rip == reinterpret_cast<uintptr_t>(mpkbox_gate_trap);
  // Compartment code ran: the compartment's PKRU, or a gate check trapped a
  // forged jump (whatever PKRU the forger got).
  const bool in_compartment =
      tb != nullptr && tb->depth > 0 &&
      (at_trap || (pkru != 0 && domain != 0));

  if (in_compartment && sig == SIGSYS && !at_trap) {
    // Compartment code made a syscall (BLOCK is set whenever it runs).
    if (tb->frames[tb->depth - 1].kind == MPKBOX_FRAME_CALL) {
      if (HandleCompartmentSyscall(tb, uc, info)) {
        Resume(sel, tb, uc, in_compartment);
        return;
      }
      if (UnwindToGate(tb, uc)) return;
    }
  }
  if (sig == SIGTRAP && info->si_code == kTrapPerf) {
    if (GuardedEntryAt(reinterpret_cast<uintptr_t>(info->si_addr)) !=
        nullptr) {
      // A guarded privileged instruction is about to run. From compartment
      // code that is an attack; host code runs it once this returns (the
      // kernel set the resume flag).
      if (in_compartment &&
          Contain(tb, uc, FaultKind::kGuardedInstruction, sig, info, pkru)) {
        return;
      }
      if (tb != nullptr) Resume(sel, tb, uc, in_compartment);
      return;
    }
  }
  if (in_compartment &&
      (IsSynchronous(sig, info) ||
       (sig == SIGABRT && info->si_code == SI_TKILL &&
        info->si_pid == getpid())) &&
      Contain(tb, uc, at_trap ? FaultKind::kGateViolation : FaultKind::kSignal,
              sig, info, pkru)) {
    return;
  }
  if (tb != nullptr && sig == timer_signal && info->si_code == SI_TIMER &&
      info->si_value.sival_ptr == tb) {
    const bool contained =
        in_compartment && AnyDeadlinePassed(tb, MonotonicNowNs()) &&
        Contain(tb, uc, FaultKind::kTimeout, sig, info, pkru);
    // Deadlines still past (an outer call's, or one that passed in host
    // code) are retried in 1 ms, when compartment code may run again.
    RearmCallTimer(tb, 1000000);
    if (!contained) Resume(sel, tb, uc, in_compartment);
    return;
  }
  // The host's signal. Its handler may itself call into compartments.
  CallContext* pending_ctx = tb != nullptr ? tb->pending_ctx : nullptr;
  uint64_t pending_fn = tb != nullptr ? tb->pending_fn : 0;
  RunHostHandler(sig, info, uc);
  if (tb == nullptr) return;
  tb->pending_ctx = pending_ctx;
  tb->pending_fn = pending_fn;
  Resume(sel, tb, uc, in_compartment);
}

// For Init's self-test of what the kernel does with PKRU and signals.
std::atomic<uint32_t> probe_handler_pkru;
std::atomic<uint32_t> probe_frame_pkru;
std::atomic<bool> probe_frame_has_pkru;
void Probe(int, siginfo_t*, void* raw) {
  probe_handler_pkru = ReadPkru();
  uint32_t* slot = FramePkruSlot(static_cast<ucontext_t*>(raw));
  probe_frame_has_pkru = slot != nullptr;
  if (slot != nullptr) probe_frame_pkru = *slot;
}

absl::Status SelfTest() {
  struct sigaction sa {}, old{};
  sa.sa_sigaction = Probe;
  sa.sa_flags = SA_SIGINFO;
  if (__sigaction(SIGURG, &sa, &old) != 0) {
    return absl::InternalError("cannot install the signal self-test handler");
  }
  const uint32_t mine = ReadPkru();
  syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), SIGURG);
  __sigaction(SIGURG, &old, nullptr);
  if (probe_handler_pkru != MPKBOX_INIT_PKRU) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "this kernel starts signal handlers with PKRU 0x%08x, not 0x%08x: "
        "init_pkru was changed (boot parameter or debugfs)",
        probe_handler_pkru.load(), MPKBOX_INIT_PKRU));
  }
  if (!probe_frame_has_pkru || probe_frame_pkru != mine) {
    return absl::FailedPreconditionError(
        "this kernel does not save PKRU in signal frames where mpkbox "
        "expects it (XSAVE offset from CPUID leaf 0xD)");
  }
  return absl::OkStatus();
}

}  // namespace

bool InTrampolines(uintptr_t ip) {
  return InRange(ip, mpkbox_gate_begin, mpkbox_gate_end) ||
         InRange(ip, mpkbox_signal_begin, mpkbox_signal_end);
}

uint32_t FramePkru(const ucontext_t* uc) {
  uint32_t* slot = FramePkruSlot(uc);
  if (slot == nullptr) return 0;
  const uint64_t xstate_bv = *reinterpret_cast<uint64_t*>(XsaveArea(uc) + 512);
  return (xstate_bv & (1u << kPkruFeature)) ? *slot : 0;
}

void SetFramePkru(ucontext_t* uc, uint32_t pkru) {
  uint32_t* slot = FramePkruSlot(uc);
  if (slot == nullptr) return;
  *slot = pkru;
  *reinterpret_cast<uint64_t*>(XsaveArea(uc) + 512) |= 1u << kPkruFeature;
}

int TimerSignal() { return timer_signal; }

absl::Status InstallSignalHandling(const RuntimeOptions& options) {
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid_count(0xd, kPkruFeature, &eax, &ebx, &ecx, &edx) ||
      eax < 4) {
    return absl::FailedPreconditionError("CPUID reports no PKRU state");
  }
  pkru_offset = ebx;
  if (absl::Status s = SelfTest(); !s.ok()) return s;

  timer_signal = options.timer_signal != 0 ? options.timer_signal
                                           : SIGRTMAX - 1;
  if (timer_signal < SIGRTMIN || timer_signal > SIGRTMAX) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "RuntimeOptions::timer_signal %d is not a real-time signal (%d..%d)",
        timer_signal, SIGRTMIN, SIGRTMAX));
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
  host = static_cast<HostActions*>(p);
  HostLock lock;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    struct sigaction cur {};
    if (__sigaction(sig, nullptr, &cur) != 0) continue;  // libc-reserved
    host->act[sig] = cur;
    // Handlers installed before Init get host rights too.
    if (IsOwnSignal(sig) || IsHandlerFunction(cur)) Route(sig, cur);
  }
  installed.store(true, std::memory_order_release);
  return absl::OkStatus();
}

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
  sigdelset(&only_probe, timer_signal);
  pthread_sigmask(SIG_SETMASK, &only_probe, &saved);
  rt.probing = true;
  syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), timer_signal);
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

}  // namespace mpkbox::internal

using mpkbox::internal::host;
using mpkbox::internal::HostLock;
using mpkbox::internal::installed;

extern "C" void mpkbox_signal_dispatch(int sig, siginfo_t* info, void* raw) {
  using mpkbox::internal::ThreadBlock;
  auto* uc = static_cast<ucontext_t*>(raw);
  const int saved_errno = errno;
  mpkbox::internal::SelectorPage* sel = mpkbox_tls_thread;
  ThreadBlock* tb = mpkbox::internal::CurrentThreadBlock();
  if (sel != nullptr) {
    // Trusted code may make syscalls only with ALLOW.
    sel->selector = MPKBOX_SELECTOR_ALLOW;
    mpkbox::internal::ThreadRuntime& rt = mpkbox::internal::ThreadRuntimeOf(tb);
    // (A guarded instruction the walk runs, ld.so's lazy binding, is no
    // fault: it runs once the handler returns.)
    if (rt.in_backtrace && mpkbox::internal::IsSynchronous(sig, info) &&
        info->si_code != mpkbox::internal::kTrapPerf) {
      siglongjmp(rt.backtrace_jmp, 1);  // the walk hit a bad stack
    }
    if (rt.probing) {  // the thread's set-up learning where frames go
      tb->signal_rsp = reinterpret_cast<uintptr_t>(uc) - 8;
      tb->signal_info_delta =
          reinterpret_cast<uintptr_t>(info) - reinterpret_cast<uintptr_t>(uc);
      rt.probing = false;
      uc->uc_link =
          reinterpret_cast<ucontext_t*>(mpkbox::internal::kConsumedFrame);
      return;
    }
  }
  // The entry checked where the frame is; a frame seen before is a replay.
  if (reinterpret_cast<uintptr_t>(uc->uc_link) ==
      mpkbox::internal::kConsumedFrame) {
    reinterpret_cast<void (*)()>(mpkbox_gate_trap)();  // contained as forged
  }
  uc->uc_link = reinterpret_cast<ucontext_t*>(mpkbox::internal::kConsumedFrame);
  // The handler runs with host rights: what it allocates comes from the host
  // heap, whatever the interrupted code was (allocator/malloc_routing.cc).
  const uint64_t domain = sel != nullptr ? sel->current_domain : 0;
  if (sel != nullptr) sel->current_domain = 0;
  mpkbox::internal::Dispatch(sig, info, uc, sel, tb, domain);
  if (sel != nullptr && sel->current_domain == 0) sel->current_domain = domain;
  errno = saved_errno;
}

// The host's sigaction: the same meaning as libc's, but every handler runs
// behind mpkbox's entry (with host rights), and the signals mpkbox needs
// stay with it. Before Runtime::Init it is libc's.
extern "C" int sigaction(int sig, const struct sigaction* act,
                         struct sigaction* old) {
  if (!installed.load(std::memory_order_acquire) || sig <= 0 || sig >= NSIG ||
      sig == SIGKILL || sig == SIGSTOP) {
    return __sigaction(sig, act, old);
  }
  struct sigaction probe {};
  if (__sigaction(sig, nullptr, &probe) != 0) return -1;  // EINVAL as libc
  mpkbox::internal::OpenAllKeysInThisThread();  // the table is trusted
  HostLock lock;
  struct sigaction prev = host->act[sig];
  if (act != nullptr) {
    host->act[sig] = *act;
    if (mpkbox::internal::IsOwnSignal(sig) ||
        mpkbox::internal::IsHandlerFunction(*act)) {
      mpkbox::internal::Route(sig, *act);
    } else {
      __sigaction(sig, act, nullptr);
    }
  }
  if (old != nullptr) *old = prev;
  return 0;
}

// The host's sigaltstack. On a thread that runs compartments the kernel's
// signal stack stays mpkbox's trusted one (the entry refuses frames anywhere
// else); the host's request is kept and reported back, and its handlers run
// on the trusted stack.
extern "C" int sigaltstack(const stack_t* ss, stack_t* old) {
  mpkbox::internal::ThreadBlock* tb = mpkbox::internal::CurrentThreadBlock();
  if (tb == nullptr) return static_cast<int>(syscall(SYS_sigaltstack, ss, old));
  mpkbox::internal::ThreadRuntime& rt = mpkbox::internal::ThreadRuntimeOf(tb);
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

// BSD semantics, as glibc's signal().
extern "C" sighandler_t signal(int sig, sighandler_t handler) {
  struct sigaction act {}, old{};
  act.sa_handler = handler;
  sigemptyset(&act.sa_mask);
  sigaddset(&act.sa_mask, sig);
  act.sa_flags = SA_RESTART;
  if (sigaction(sig, &act, &old) != 0) return SIG_ERR;
  return old.sa_handler;
}

// A host handler may leave by longjmp instead of returning. Then its frame
// never reaches mpkbox's restorer: the handler count would stay up and the
// kernel would leave the signal stack disarmed (SS_AUTODISARM), and the
// next signal would be refused. Before such a jump leaves the signal stack,
// forget the abandoned handlers.
namespace {

using LongjmpFn = void (*)(sigjmp_buf, int);

LongjmpFn RealLongjmp(const char* name) {
  return reinterpret_cast<LongjmpFn>(dlsym(RTLD_NEXT, name));
}

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

void ForgetHandlersLeftBy(const sigjmp_buf env) {
  mpkbox::internal::ThreadBlock* tb = mpkbox::internal::CurrentThreadBlock();
  if (tb == nullptr || tb->signal_nesting == 0) return;
  const uintptr_t target = TargetStackPointer(env);
  if (target >= tb->sigstack_lo && target < tb->sigstack_hi) return;
  mpkbox::internal::RecoverFromAbandonedHandler(tb, /*check_stack=*/false);
}

// Forgets abandoned handlers, then jumps with libc's `name`.
[[noreturn]] void LeaveBy(const char* name, std::atomic<LongjmpFn>& real,
                          sigjmp_buf env, int value) {
  ForgetHandlersLeftBy(env);
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
