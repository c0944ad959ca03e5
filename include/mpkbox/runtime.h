// Process-wide set-up: PKU detection and the runtime's own keys.
//
//   if (!mpkbox::Runtime::IsSupported()) { ... run unsandboxed or refuse ... }
//   absl::Status s = mpkbox::Runtime::Init();   // idempotent, thread-safe
//
// Compartment::Create calls Init itself; call it early to fail fast.
#ifndef MPKBOX_RUNTIME_H_
#define MPKBOX_RUNTIME_H_

#include "absl/status/status.h"

namespace mpkbox {

struct RuntimeOptions {
  // Refuse to run where the isolation is known not to hold (AMD kernels
  // before 6.12.5 restore PKRU 0 on sigreturn; more WRPKRU/XRSTOR entry
  // points in the process than hardware breakpoints can guard, or no
  // perf_event_open to set them). Off only for experiments: then stray
  // WRPKRU/XRSTOR instructions are not guarded.
  bool strict = true;
  // The host's stacks and writable data (its program's and libraries'
  // .data and .bss) carry the trusted key from Init on, so compartments
  // cannot read them (docs/THREAT_MODEL.md). true keeps them readable to
  // every compartment, as before: only for hosts whose compartments run
  // code that reads host globals or host stack frames directly. A choice of
  // the host; mpkbox never falls back to it.
  bool host_memory_readable = false;
  // The real-time signal that interrupts calls past their call_timeout;
  // 0 picks SIGRTMAX - 1.
  int timer_signal = 0;
};

// Marks a host global that compartment code may read directly (settings it
// reads, for example), although the host's writable data is otherwise closed
// to compartments from Init on (RuntimeOptions::host_memory_readable). Each
// such variable gets pages of its own, which stay on key 0: readable by every
// compartment (writable under Ambient::kReadWrite). Only in the program that
// links libmpkbox.a. Not for secrets.
#define MPKBOX_COMPARTMENT_READABLE \
  __attribute__((section("mpkbox_readable"), aligned(4096)))

class Runtime {
 public:
  // True when the CPU has PKU, the kernel enabled it (OSPKE) and pkey_alloc
  // works in this process.
  static bool IsSupported();

  // Allocates the trusted and selector keys and installs mpkbox's signal
  // entry. kFailedPrecondition without PKU or on a kernel that mishandles
  // it. Later calls return the first call's result (and ignore `options`).
  static absl::Status Init(const RuntimeOptions& options = {});
};

}  // namespace mpkbox

#endif  // MPKBOX_RUNTIME_H_
