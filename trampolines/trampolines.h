// Every symbol of the assembly in trampolines/*.S, declared once for C++.
// Labels that only mark addresses (ranges the signal dispatcher and the
// guards check) are char arrays; entry points are functions.
#ifndef MPKBOX_TRAMPOLINES_TRAMPOLINES_H_
#define MPKBOX_TRAMPOLINES_TRAMPOLINES_H_

#include <signal.h>

#include <cstddef>
#include <cstdint>

// mpkbox_gate_enter: declared by the public fast path, which calls it inline.
#include "mpkbox/internal/call.h"
#include "trampolines/gate_layout.h"
#include "trampolines/thread_block.h"

extern "C" {

// --- gate.S: the call gate and the callback gate --------------------------
extern char mpkbox_gate_begin[], mpkbox_gate_end[];
// Where a failed check after a WRPKRU (or a forged frame) ends.
extern char mpkbox_gate_trap[];
// The entry's stretch with the selector at BLOCK and host PKRU, and where it
// runs on compartment memory.
extern char mpkbox_gate_enter_blocked[], mpkbox_gate_enter_blocked_end[];
extern char mpkbox_gate_enter_switched[];
// Where a call resumes on the host side, normally or after a fault.
extern char mpkbox_gate_landing[];
extern char mpkbox_gate_exception_pad[];
// The callback stubs (stub 0 is the allocator entry) and their gate.
extern char mpkbox_callback_stubs[];
extern char mpkbox_callback_entry[];
extern char mpkbox_callback_return_blocked[];
extern char mpkbox_callback_return_blocked_end[];
extern char mpkbox_callback_return_switched[];
extern char mpkbox_callback_exception_pad[];
// Pops the innermost callback frame and lands the call as failed.
[[noreturn]] void mpkbox_gate_abandon();

// --- signal.S: the one signal entry and the resume stub -------------------
extern char mpkbox_signal_begin[], mpkbox_signal_end[];
void mpkbox_signal_entry(int sig, siginfo_t* info, void* ucontext);
void mpkbox_signal_restorer();
extern char mpkbox_resume_stub[];
extern char mpkbox_resume_trusted[], mpkbox_resume_trusted_end[];

// --- host_rights.S: checked privileged instructions for host code --------
extern char mpkbox_host_rights_begin[], mpkbox_host_rights_end[];
// PKRU := 0 for a thread outside every compartment.
void mpkbox_open_all_keys();
// What a host `xrstor area` (mask area_mask; xrstor64 if wide) does,
// applied to the XSAVE area of a signal frame; never PKRU.
void mpkbox_xrstor_into_frame(void* frame_xsave, uint64_t frame_mask,
                              const void* area, uint64_t area_mask, bool wide);

// --- compartment_longjmp.S: longjmp for loaded code -----------------------
void mpkbox_compartment_longjmp(void* env, int value);

// --- C++ the assembly calls -----------------------------------------------
void mpkbox_signal_dispatch(int sig, siginfo_t* info, void* ucontext);
uint64_t mpkbox_allocator_entry(uint64_t op, uint64_t a, uint64_t b);
uint64_t mpkbox_libc_entry(uint64_t op, uint64_t a0, uint64_t a1, uint64_t a2,
                           uint64_t a3, uint64_t a4);
void mpkbox_exception_left_compartment();
void mpkbox_exception_left_callback(struct _Unwind_Exception* exception);

// --- C++ state the assembly reads -----------------------------------------
// What code running with compartment rights reads of mpkbox's globals (the
// gate after its WRPKRU): one page of its own, which stays on key 0 when the
// host's writable data gets the trusted key (runtime/host_memory.cc).
struct alignas(MPKBOX_PAGE_SIZE) MpkboxAmbientGlobals {
  uint8_t vector_level;  // 2: AVX-512, 1: AVX, 0: neither
  // glibc's C locale object (a locale_t in libc's read-only data), which
  // loaded code's locale functions hand out (compartment_libc/locale.cc).
  const void* c_locale;
};
static_assert(offsetof(MpkboxAmbientGlobals, vector_level) ==
              MPKBOX_AMBIENT_VECTOR_LEVEL);
static_assert(sizeof(MpkboxAmbientGlobals) == MPKBOX_PAGE_SIZE);
extern MpkboxAmbientGlobals mpkbox_ambient;
// runtime/thread_identity.cc: whether the signal entry repairs FS, and the
// table its identity descriptor indexes (trusted key). Read with host rights.
extern uint8_t mpkbox_fs_repair;
namespace mpkbox::internal {
struct SelectorPage;
}
extern mpkbox::internal::SelectorPage** mpkbox_thread_table;

}  // extern "C"

namespace mpkbox::internal {

// From host code under a callback, once the thread's FaultInfo is
// recorded: ends the compartment call under it as that fault (the landing
// returns it to Call).
[[noreturn]] inline void AbandonRecordedCallback(ThreadBlock* tb) {
  tb->fault = 1;
  Frame& frame = tb->frames[--tb->depth];  // the callback's
  reinterpret_cast<CallContext*>(frame.ctx)->top = frame.saved_top;
  mpkbox_gate_abandon();
}

// The same, recording a fault of `kind` first.
[[noreturn]] inline void AbandonCallback(ThreadBlock* tb, FaultKind kind,
                                         uintptr_t address, const char* why) {
  RecordFault(tb, kind, {.address = address, .what = why});
  AbandonRecordedCallback(tb);
}

}  // namespace mpkbox::internal

#endif  // MPKBOX_TRAMPOLINES_TRAMPOLINES_H_
