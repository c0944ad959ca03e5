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
  // The real-time signal that interrupts calls past their call_timeout;
  // 0 picks SIGRTMAX - 1.
  int timer_signal = 0;
};

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
