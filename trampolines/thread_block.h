// Per-thread state the gate reads and writes: the gate's ABI with the
// library's C++ (offsets in gate_layout.h). Call's inline fast path sees
// only the few words mpkbox/internal/fast_path.h names.
#ifndef MPKBOX_TRAMPOLINES_THREAD_BLOCK_H_
#define MPKBOX_TRAMPOLINES_THREAD_BLOCK_H_

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "mpkbox/internal/call.h"
#include "mpkbox/internal/fast_path.h"
#include "trampolines/gate_layout.h"

namespace mpkbox {
class SyscallPolicy;
}  // namespace mpkbox

namespace mpkbox::internal {

inline constexpr size_t kMaxCompartments = 4096;
// A domain id carries its compartment's slot in its low bits, so code that
// sees only the SelectorPage's current_domain can find the slot.
inline constexpr int kDomainSlotBits = 12;
static_assert(kMaxCompartments == size_t{1} << kDomainSlotBits);
inline constexpr size_t SlotOfDomain(uint64_t domain) {
  return domain & (kMaxCompartments - 1);
}
// Call's deepest entry (kMaxCallDepth) leaves room for the entered
// compartment's callback, so the callback gate never runs out of frames.
static_assert(kMaxCallDepth == MPKBOX_MAX_DEPTH - 3);
static_assert(kFastPageSize == MPKBOX_PAGE_SIZE);
static_assert(kReturnsNothing == MPKBOX_RETURNS_NOTHING &&
              kReturnsInteger == MPKBOX_RETURNS_INTEGER &&
              kReturnsFloat == MPKBOX_RETURNS_FLOAT);
// Added to the depth while a host signal handler runs: Call then takes its
// slow path, which refuses (compartment code may be suspended under it).
inline constexpr uint64_t kHandlerDepthBias = uint64_t{1} << 32;

struct HeapThread;

// On the selector key: compartments may read it (the kernel reads the
// selector during their syscalls), only trusted code writes it.
struct alignas(MPKBOX_PAGE_SIZE) SelectorPage {
  uint8_t lead[MPKBOX_SEL_BASE];  // gate_layout.h: away from 4K aliasing
  volatile uint8_t selector;
  uint8_t pad[7];
  uint64_t current_pkru;
  uint64_t current_domain;  // the current-domain marker: 0 is the host
  ThreadBlock* thread_block;  // this thread's, one page on
  uint64_t resume_rax, resume_rcx, resume_rdx, resume_rip, resume_rflags;
  uint64_t landing_hint;  // the gate's; only ever a hint (gate.S)
};
static_assert(offsetof(SelectorPage, selector) == MPKBOX_SEL_SELECTOR);
// Its words in the second half of a 512-byte block, as HeapCache entries
// (heap_cache.h), with the gate's lines as they were.
static_assert(MPKBOX_SEL_BASE % 64 == 0 && MPKBOX_SEL_BASE % 512 >= 256 &&
              MPKBOX_SEL_BASE % 512 + MPKBOX_SEL_LANDING_HINT + 8 -
                      MPKBOX_SEL_BASE <= 512);
static_assert(offsetof(SelectorPage, current_pkru) == MPKBOX_SEL_CURRENT_PKRU);
static_assert(offsetof(SelectorPage, current_domain) ==
              MPKBOX_SEL_CURRENT_DOMAIN);
static_assert(offsetof(SelectorPage, thread_block) == MPKBOX_SEL_THREAD_BLOCK);
static_assert(offsetof(SelectorPage, resume_rax) == MPKBOX_SEL_RESUME_RAX);
static_assert(offsetof(SelectorPage, resume_rflags) ==
              MPKBOX_SEL_RESUME_RFLAGS);
static_assert(offsetof(SelectorPage, landing_hint) == MPKBOX_SEL_LANDING_HINT);
// JUMP_TO_SAVED (signal.S) reads both this and ResumeState's tail alike.
static_assert(MPKBOX_SEL_RESUME_RCX == MPKBOX_SEL_RESUME_RAX + 8 &&
              MPKBOX_SEL_RESUME_RDX == MPKBOX_SEL_RESUME_RAX + 16 &&
              MPKBOX_SEL_RESUME_RIP == MPKBOX_SEL_RESUME_RAX + 24 &&
              MPKBOX_SEL_RESUME_RFLAGS == MPKBOX_SEL_RESUME_RAX + 32);

struct Frame {
  uint64_t kind;
  uint64_t sp;
  uint64_t ret;
  uint64_t rbx, rbp, r12, r13, r14, r15;
  uint64_t prev_pkru;
  uint64_t prev_domain;
  uint64_t ctx;
  uint64_t saved_top;
  uint64_t deadline_ns;
  uint32_t mxcsr;
  uint16_t fcw;
  uint16_t pad16;
  uint32_t scratch_mxcsr;
  uint16_t scratch_fcw;
  uint16_t returns;  // callback frames: MPKBOX_RETURNS_*
};
static_assert(sizeof(Frame) == (1 << MPKBOX_FRAME_SHIFT));
static_assert(offsetof(Frame, sp) == MPKBOX_FR_SP);
static_assert(offsetof(Frame, ret) == MPKBOX_FR_RET);
static_assert(offsetof(Frame, rbx) == MPKBOX_FR_RBX);
static_assert(offsetof(Frame, r15) == MPKBOX_FR_R15);
static_assert(offsetof(Frame, prev_pkru) == MPKBOX_FR_PREV_PKRU);
static_assert(offsetof(Frame, prev_domain) == MPKBOX_FR_PREV_DOMAIN);
static_assert(offsetof(Frame, ctx) == MPKBOX_FR_CTX);
static_assert(offsetof(Frame, saved_top) == MPKBOX_FR_SAVED_TOP);
static_assert(offsetof(Frame, deadline_ns) == MPKBOX_FR_DEADLINE);
static_assert(offsetof(Frame, mxcsr) == MPKBOX_FR_MXCSR);
static_assert(offsetof(Frame, fcw) == MPKBOX_FR_FCW);
static_assert(offsetof(Frame, scratch_mxcsr) == MPKBOX_FR_SCRATCH);
static_assert(offsetof(Frame, returns) == MPKBOX_FR_RETURNS);

// What this thread needs to enter one compartment.
struct CallContext {
  uint64_t pkru;
  uint64_t top;
  uint64_t domain;
  uint64_t generation;  // matches Compartment's, else the context is stale
  uintptr_t stack_base;  // lowest mapped byte, guard page included
  size_t stack_size;
  const SyscallPolicy* policy;  // the compartment's, immutable
  uint64_t pad;
};
static_assert(offsetof(CallContext, pkru) == MPKBOX_CTX_PKRU);
static_assert(offsetof(CallContext, top) == MPKBOX_CTX_TOP);
static_assert(offsetof(CallContext, domain) == MPKBOX_CTX_DOMAIN);
static_assert(offsetof(CallContext, stack_base) == MPKBOX_CTX_STACK_BASE);
static_assert(offsetof(CallContext, stack_size) == MPKBOX_CTX_STACK_SIZE);
static_assert(sizeof(CallContext) == kFastContextBytes);
static_assert(offsetof(CallContext, generation) == kFastContextGeneration);

struct CallbackEntry {
  uint64_t fn;
  uint64_t domain;
  uint64_t returns;  // MPKBOX_RETURNS_*
  uint64_t target;   // the host function, when fn is a checking wrapper
};
static_assert(offsetof(CallbackEntry, target) == MPKBOX_CB_TARGET);
static_assert(offsetof(CallbackEntry, returns) == MPKBOX_CB_RETURNS);
static_assert(sizeof(CallbackEntry) == (1 << MPKBOX_CB_SHIFT));

// What a resume stub restores. The compartment stub takes rax, rcx, rdx,
// rip and rflags from the SelectorPage instead (it can no longer read the
// ThreadBlock once it has the compartment's PKRU).
struct ResumeState {
  uint64_t rbx, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15;
  uint64_t rsp;
  uint64_t rax, rcx, rdx, rip, rflags;
};
static_assert(offsetof(ResumeState, rsp) == MPKBOX_RS_RSP);
static_assert(offsetof(ResumeState, rax) == MPKBOX_RS_RAX);
static_assert(offsetof(ResumeState, rflags) == MPKBOX_RS_RFLAGS);
static_assert(MPKBOX_RS_RCX == MPKBOX_RS_RAX + 8 &&
              MPKBOX_RS_RDX == MPKBOX_RS_RAX + 16 &&
              MPKBOX_RS_RIP == MPKBOX_RS_RAX + 24 &&
              MPKBOX_RS_RFLAGS == MPKBOX_RS_RAX + 32);

// Why a call ended early: filled by the signal handler, read after the gate
// returned (symbolizing is not for signal handlers).
enum class FaultKind : uint32_t {
  kNone = 0,
  kSignal,         // a fault or abort() inside the compartment
  kGateViolation,  // a check in the gate trapped: a forged jump into it
  kTimeout,
  kException,      // a C++ exception reached the gate
  kSyscallDenied,  // a syscall the policy fails, or one never allowed
  kHeapViolation,  // a free or realloc of what is not a live allocation
  kGuardedInstruction,  // a jump to a guarded WRPKRU/XRSTOR of the process
  kSegmentLoad,    // compartment code reset FS base (mov to %fs)
  kHostPointer,    // a callback returned a pointer into host private memory
  kExit,           // exit()/_exit() inside: code is the status, what the name
};
struct FaultInfo {
  static constexpr int kMaxFrames = 32;
  FaultKind kind;
  int signal;
  int code;
  uint32_t pkru;   // the compartment's PKRU when it faulted
  int pkey;        // si_pkey of a SEGV_PKUERR, else -1
  uintptr_t address;
  uintptr_t ip;
  uintptr_t stack_base;  // of the faulting thread's compartment stack
  int frames;
  uintptr_t ips[kMaxFrames];
  long syscall;     // kSyscallDenied: its number
  char what[160];   // exception type, or why the syscall was refused
};

// On the trusted key. The page before it is the thread's SelectorPage.
struct ThreadBlock {
  uint64_t depth;
  CallContext* pending_ctx;
  uint64_t pending_fn;
  uint64_t fault;  // nonzero when the call that just returned did not finish
  CallbackEntry* callbacks;
  ResumeState* resume;
  uintptr_t sigstack_lo, sigstack_hi;  // where the kernel writes our frames
  uint64_t signal_nesting;
  uintptr_t signal_rsp;         // learned at the thread's first entry
  uint64_t signal_info_delta;
  ResumeState* resume_trusted;
  uint64_t guard_epoch;  // of the breakpoints this thread has (gadget_guard.h)
  uint64_t host_fs_base;  // restored if compartment code resets FS
  uint64_t fs_repaired;   // set by the signal entry when it did
  uint64_t thread_id;     // runtime/thread_identity.h, 0: none
  Frame frames[MPKBOX_MAX_DEPTH];
  CallContext contexts[kMaxCompartments];
  ResumeState resume_state;
  ResumeState resume_trusted_state;
  FaultInfo fault_info;
  // Signal-handling state private to runtime/ (timer, backtrace recovery).
  alignas(16) unsigned char runtime_private[1024];
  // The allocator's private state for each compartment slot (allocator/).
  HeapThread* heap_threads[kMaxCompartments];
};
static_assert(offsetof(ThreadBlock, depth) == MPKBOX_TB_DEPTH);
static_assert(offsetof(ThreadBlock, pending_ctx) == MPKBOX_TB_PENDING_CTX);
static_assert(offsetof(ThreadBlock, pending_fn) == MPKBOX_TB_PENDING_FN);
static_assert(offsetof(ThreadBlock, fault) == MPKBOX_TB_FAULT);
static_assert(offsetof(ThreadBlock, callbacks) == MPKBOX_TB_CALLBACKS);
static_assert(offsetof(ThreadBlock, resume) == MPKBOX_TB_RESUME);
static_assert(offsetof(ThreadBlock, sigstack_lo) == MPKBOX_TB_SIGSTACK_LO);
static_assert(offsetof(ThreadBlock, sigstack_hi) == MPKBOX_TB_SIGSTACK_HI);
static_assert(offsetof(ThreadBlock, signal_nesting) ==
              MPKBOX_TB_SIGNAL_NESTING);
static_assert(offsetof(ThreadBlock, signal_rsp) == MPKBOX_TB_SIGNAL_RSP);
static_assert(offsetof(ThreadBlock, signal_info_delta) ==
              MPKBOX_TB_SIGNAL_INFO);
static_assert(offsetof(ThreadBlock, resume_trusted) ==
              MPKBOX_TB_RESUME_TRUSTED);
static_assert(offsetof(ThreadBlock, host_fs_base) == MPKBOX_TB_HOST_FS);
static_assert(offsetof(ThreadBlock, fs_repaired) == MPKBOX_TB_FS_REPAIRED);
static_assert(offsetof(ThreadBlock, frames) == MPKBOX_TB_FRAMES);
static_assert(offsetof(ThreadBlock, depth) == kFastDepth &&
              offsetof(ThreadBlock, pending_ctx) == kFastPendingCtx &&
              offsetof(ThreadBlock, pending_fn) == kFastPendingFn &&
              offsetof(ThreadBlock, fault) == kFastFault &&
              offsetof(ThreadBlock, guard_epoch) == kFastGuardEpoch &&
              offsetof(ThreadBlock, contexts) == kFastContexts);

// What a fault record holds besides its kind; the rest stays zero.
struct FaultDetails {
  int signal = 0;
  int code = 0;
  uint32_t pkru = 0;
  int pkey = -1;
  uintptr_t address = 0;
  uintptr_t ip = 0;
  long syscall = 0;
  const char* what = nullptr;  // copied, cut to fit FaultInfo::what
};

// Replaces the thread's FaultInfo with a fault of `kind`; Call reports it
// once tb->fault is set, which is the caller's to do (the signal paths set
// it only after unwinding to the gate). Async-signal-safe: the signal
// handler records with it, so no allocation, no locks, no stdio.
inline FaultInfo& RecordFault(ThreadBlock* tb, FaultKind kind,
                              const FaultDetails& details) {
  FaultInfo& f = tb->fault_info;
  std::memset(&f, 0, sizeof(f));
  f.kind = kind;
  f.signal = details.signal;
  f.code = details.code;
  f.pkru = details.pkru;
  f.pkey = details.pkey;
  f.address = details.address;
  f.ip = details.ip;
  f.syscall = details.syscall;
  if (details.what != nullptr) {
    for (size_t i = 0; i + 1 < sizeof(f.what) && details.what[i] != '\0';
         ++i) {
      f.what[i] = details.what[i];
    }
  }
  return f;
}

}  // namespace mpkbox::internal

#endif  // MPKBOX_TRAMPOLINES_THREAD_BLOCK_H_
