// The dispatcher every signal reaches after the entry (trampolines/signal.S)
// set trusted PKRU: a compartment's fault, syscall, timeout or guarded
// instruction ends its call or resumes it; everything else is the host's.
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>

#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include "runtime/call_timer.h"
#include "runtime/sigpipe.h"
#include "runtime/gadget_guard.h"
#include "runtime/keys/pku.h"
#include "runtime/signal_actions.h"
#include "runtime/signal_frame.h"
#include "runtime/signals.h"
#include "runtime/syscall_dispatch.h"
#include "runtime/thread_runtime.h"
#include "trampolines/trampolines.h"

namespace mpkbox::internal {
namespace {

bool InRange(uintptr_t ip, const char* begin, const char* end) {
  return ip >= reinterpret_cast<uintptr_t>(begin) &&
         ip < reinterpret_cast<uintptr_t>(end);
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
  RecordFault(
      tb, kind,
      {.signal = sig,
       .code = info->si_code,
       .pkru = pkru,
       // The kernel names the key that refused the access; no lookup.
       .pkey = sig == SIGSEGV && info->si_code == SEGV_PKUERR
                   ? static_cast<int>(info->si_pkey)
                   : -1,
       .address = IsFaultSignal(sig)
                      ? reinterpret_cast<uintptr_t>(info->si_addr)
                      : 0,
       .ip = static_cast<uintptr_t>(uc->uc_mcontext.gregs[REG_RIP])});
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

bool EndCallWithFault(ThreadBlock* tb, ucontext_t* uc, FaultKind kind, int sig,
             const siginfo_t* info, uint32_t pkru) {
  if (tb->frames[tb->depth - 1].kind != MPKBOX_FRAME_CALL) return false;
  RecordSignal(tb, uc, kind, sig, info, pkru);
  return UnwindToGate(tb, uc);
}

// Returns into what the signal interrupted. Compartment code goes through
// the resume stub, and gate code on its way into a compartment (selector
// already BLOCK) through the trusted one: the selector must read ALLOW when
// rt_sigreturn runs (docs/DESIGN.md 5c). Gate code on its way out runs on with
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

  // Compartment code reset FS base; the entry put the host's back (frames
  // that interrupted the entry itself leave that to the frame they nest in).
  if (tb != nullptr && tb->fs_repaired != 0 &&
      !InRange(rip, mpkbox_signal_begin, mpkbox_signal_end)) {
    tb->fs_repaired = 0;
    if (tb->depth > 0 && tb->depth < kHandlerDepthBias &&
        (in_compartment || InTrampolines(rip)) &&
        EndCallWithFault(tb, uc, FaultKind::kSegmentLoad, sig, info, pkru)) {
      // A signal of the host's own still reaches its handler.
      if (!IsOwnSignal(sig)) RunHostHandler(sig, info, uc);
      return;
    }
  }

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
  if (sig == SIGTRAP && info->si_code == SI_KERNEL) {
    // An int3 gadget_guard.cc wrote over a privileged instruction: an
    // attack from compartment code; host code runs it, emulated.
    if (const uintptr_t site = PatchedSiteAt(rip - 1); site != 0) {
      if (in_compartment) {
        if (EndCallWithFault(tb, uc, FaultKind::kGuardedInstruction, sig,
                             info, pkru)) {
          tb->fault_info.address = site;  // int3 reports no address
          return;
        }
      } else if (EmulatePatchedInstruction(site, uc)) {
        if (tb != nullptr) Resume(sel, tb, uc, in_compartment);
        return;
      }
    }
  }
  if (sig == SIGTRAP && info->si_code == kTrapPerf) {
    if (GuardedEntryAt(reinterpret_cast<uintptr_t>(info->si_addr)) !=
        nullptr) {
      // A guarded privileged instruction is about to run. From compartment
      // code that is an attack; host code runs it once this returns (the
      // kernel set the resume flag).
      if (in_compartment &&
          EndCallWithFault(tb, uc, FaultKind::kGuardedInstruction, sig, info, pkru)) {
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
      EndCallWithFault(tb, uc, at_trap ? FaultKind::kGateViolation : FaultKind::kSignal,
              sig, info, pkru)) {
    return;
  }
  if (tb != nullptr && sig == TimerSignal() && info->si_code == SI_TIMER &&
      info->si_value.sival_ptr == tb) {
    const bool contained =
        in_compartment && AnyDeadlinePassed(tb, MonotonicNowNs()) &&
        EndCallWithFault(tb, uc, FaultKind::kTimeout, sig, info, pkru);
    // Deadlines still past (an outer call's, or one that passed in host
    // code) are retried in 1 ms, when compartment code may run again.
    RearmCallTimer(tb, 1000000);
    if (!contained) Resume(sel, tb, uc, in_compartment);
    return;
  }
  // The kernel's SIGPIPE for a write the host made for a compartment.
  if (sig == SIGPIPE && SwallowContainedSigpipe(info)) {
    if (tb != nullptr) Resume(sel, tb, uc, in_compartment);
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

}  // namespace

bool InTrampolines(uintptr_t ip) {
  return InRange(ip, mpkbox_gate_begin, mpkbox_gate_end) ||
         InRange(ip, mpkbox_signal_begin, mpkbox_signal_end) ||
         InRange(ip, mpkbox_host_rights_begin, mpkbox_host_rights_end);
}

}  // namespace mpkbox::internal

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
  // heap, whatever the interrupted code was (runtime/libc_overrides/malloc.cc).
  const uint64_t domain = sel != nullptr ? sel->current_domain : 0;
  if (sel != nullptr) sel->current_domain = 0;
  mpkbox::internal::Dispatch(sig, info, uc, sel, tb, domain);
  if (sel != nullptr && sel->current_domain == 0) sel->current_domain = domain;
  errno = saved_errno;
}
