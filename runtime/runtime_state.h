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

// True for kernels known to restore PKRU 0 on sigreturn (AMD, before 6.12.5).
bool KernelMishandlesPkru(const char* release, bool amd);

// For tests of the no-PKU path: IsSupported() answers false afterwards (if
// it was not asked before in this process).
void PretendNoPkuForTesting();

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_RUNTIME_STATE_H_
