// Finding a thread without FS. Compartment code can reset FS base with a
// segment load (`mov %eax,%fs`: a null selector clears the base on Intel,
// any descriptor gives its own base, 0); the gate and the signal entry find
// their per-thread state through TLS, so the host's next TLS access faults.
// Each thread that enters compartments therefore also gets an identity the
// kernel keeps per thread and compartment code cannot change: a GDT TLS
// descriptor (set_thread_area) whose limit is the thread's index in a
// trusted table. The signal entry reads it with `lsl` when FS base is 0,
// puts the host's FS base back and the dispatcher ends the call.
#ifndef MPKBOX_RUNTIME_THREAD_IDENTITY_H_
#define MPKBOX_RUNTIME_THREAD_IDENTITY_H_

#include "absl/status/status.h"
#include "trampolines/thread_block.h"

namespace mpkbox::internal {

// At Init: whether FS can be repaired here (FSGSBASE for the entry's
// rdfsbase; the 32-bit set_thread_area, which needs IA32 emulation).
// Without either, a segment load into FS still kills the process.
void InitThreadIdentity();
bool FsRepairAvailable();

// Gives this thread its identity and records its FS base; undone by
// DropThreadIdentity at thread exit. A thread without an identity (no room
// in the table) is one whose FS cannot be repaired; it never keeps the
// descriptor it inherited from the thread that created it.
absl::Status GiveThreadIdentity(SelectorPage* sel, ThreadBlock* tb);
void DropThreadIdentity(ThreadBlock* tb);

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_THREAD_IDENTITY_H_
