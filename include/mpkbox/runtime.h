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

struct RuntimeOptions {};

class Runtime {
 public:
  // True when the CPU has PKU, the kernel enabled it (OSPKE) and pkey_alloc
  // works in this process.
  static bool IsSupported();

  // Allocates the trusted and selector keys. kFailedPrecondition without PKU.
  // Later calls return the first call's result.
  static absl::Status Init(const RuntimeOptions& options = {});
};

}  // namespace mpkbox

#endif  // MPKBOX_RUNTIME_H_
