// The runtime's process-wide keys, valid once Runtime::Init succeeded.
#ifndef MPKBOX_RUNTIME_RUNTIME_STATE_H_
#define MPKBOX_RUNTIME_RUNTIME_STATE_H_

namespace mpkbox::internal {

struct RuntimeKeys {
  int trusted = -1;   // runtime state, per-thread blocks
  int selector = -1;  // selector pages: read-only to compartments
};

// Requires a successful Runtime::Init.
const RuntimeKeys& Keys();

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_RUNTIME_STATE_H_
