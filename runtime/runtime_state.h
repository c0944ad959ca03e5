// Process-wide facts of the runtime layer (the keys are runtime/keys/pku.h).
#ifndef MPKBOX_RUNTIME_RUNTIME_STATE_H_
#define MPKBOX_RUNTIME_RUNTIME_STATE_H_

#include "runtime/keys/pku.h"

namespace mpkbox::internal {

// True for kernels known to restore PKRU 0 on sigreturn (AMD, before 6.12.5).
bool KernelMishandlesPkru(const char* release, bool amd);


}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_RUNTIME_STATE_H_
