// Guards on the privileged instructions of the process that are not
// mpkbox's own checked gates: libc's WRPKRU in pkey_set, ld.so's XRSTORs in
// its lazy-binding trampoline, and whatever else the host maps. Compartment
// code that jumps to one would set PKRU to anything (docs/DESIGN.md 6, item 4).
//
// Each entry point of each such instruction gets a hardware execute
// breakpoint (perf_event_open, HW_BREAKPOINT_X, sigtrap) in every thread
// that enters a compartment, as Hodor does. The breakpoint fires before the
// instruction runs: from compartment code the call ends as a fault; from
// host code the handler returns and the kernel's resume flag lets the
// instruction run. x86 has 4 debug registers, so strict mode refuses a
// process with more entry points than that.
#ifndef MPKBOX_RUNTIME_GADGET_GUARD_H_
#define MPKBOX_RUNTIME_GADGET_GUARD_H_

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


// If `address` is a guarded entry point: the instruction and where it is
// ("WRPKRU in libc.so.6+0x109352"). Async-signal-safe.
const char* GuardedEntryAt(uintptr_t address);

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_GADGET_GUARD_H_
