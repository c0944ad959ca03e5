// Guards on the privileged instructions of the process that are not
// mpkbox's own checked gates: libc's WRPKRU in pkey_set, ld.so's XRSTORs in
// its lazy-binding trampoline, and whatever else the host maps. Compartment
// code that jumps to one would set PKRU to anything (docs/DESIGN.md 6, item 4).
//
// Two ways, as ERIM and Hodor do:
// - A real WRPKRU/XRSTOR/XRSTORS instruction (a linear disassembly of its
//   function decodes it) gets int3 over its 0x0f escape byte, in a private
//   copy of its code page: every entry point (the instruction and its prefix
//   bytes) now traps, in every thread, with no per-thread resource. From
//   compartment code the trap ends the call as a fault; host code that runs
//   it is emulated by the signal dispatcher (WRPKRU: the frame's PKRU;
//   XRSTOR: mpkbox_xrstor_into_frame, then PKRU from the area if asked),
//   so it stays runnable.
// - A sequence that spans other instructions (its bytes are part of legit
//   code), or WRFSBASE/WRGSBASE, cannot be overwritten: each entry point
//   gets a hardware execute breakpoint (perf_event_open, HW_BREAKPOINT_X,
//   sigtrap) in every thread that enters a compartment. It fires before the
//   instruction runs; host code runs on (the kernel's resume flag). x86 has
//   4 debug registers, so strict mode refuses a process with more such
//   entry points than that.
#ifndef MPKBOX_RUNTIME_GADGET_GUARD_H_
#define MPKBOX_RUNTIME_GADGET_GUARD_H_

#include <ucontext.h>

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "trampolines/thread_block.h"

namespace mpkbox::internal {

inline constexpr int kMaxGuardedEntries = 4;  // debug registers per thread
// si_code of a perf event's SIGTRAP (Linux 5.13; glibc 2.36 lacks it).
inline constexpr int kTrapPerf = 6;

// Scans the executable mappings and records what needs guarding. Called by
// Runtime::Init in strict mode, and again after every dlopen.
absl::Status ScanProcessForGadgets();

// Whether the guards are on (strict mode), and why calls are refused if a
// library loaded later brought more entry points than can be guarded.
bool GadgetGuardsEnabled();
absl::Status GadgetGuardStatus();

// Sets (or refreshes, after a rescan) this thread's breakpoints.
absl::Status GuardThisThread(ThreadBlock* tb);
void UnguardThisThread(ThreadBlock* tb);
// True if this thread's breakpoints match the latest scan.
bool ThreadGuardsCurrent(const ThreadBlock* tb);


// If `address` is a guarded entry point (breakpoint) or a patched
// instruction's escape byte: the instruction and where it is
// ("WRPKRU in libc.so.6+0x109352"). Async-signal-safe.
const char* GuardedEntryAt(uintptr_t address);

// A trap at `int3_address` (rip - 1 of an int3 SIGTRAP) that is one of the
// patched instructions: its escape byte's address, else 0. Async-signal-safe.
uintptr_t PatchedSiteAt(uintptr_t int3_address);
// Runs the host's patched instruction at `site` for the interrupted thread
// (its registers and XSAVE state in `uc`) and moves rip past it. False if it
// cannot be emulated (a WRPKRU with ECX or EDX set, XRSTORS): the real
// instruction would have faulted.
bool EmulatePatchedInstruction(uintptr_t site, ucontext_t* uc);

// What the guards cost: instructions patched, entry points on breakpoints
// (each one perf_event descriptor in every thread that entered a
// compartment), host instructions emulated so far.
struct GadgetGuardCounts {
  int patched = 0;
  int breakpoints = 0;
  uint64_t emulated = 0;
};
GadgetGuardCounts GadgetGuardCountsNow();

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_GADGET_GUARD_H_
