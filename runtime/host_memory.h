// The host's stacks and writable data on the trusted key, so that
// compartment code cannot read them (docs/THREAT_MODEL.md). Exempt: the
// state libc and ld.so keep for the C library functions compartments may
// call, each thread's TCB and static TLS, GOTs, and mpkbox_ambient.
#ifndef MPKBOX_RUNTIME_HOST_MEMORY_H_
#define MPKBOX_RUNTIME_HOST_MEMORY_H_

#include <cstdint>

#include "absl/status/status.h"
#include "runtime/keys/host_ranges.h"

namespace mpkbox::internal {

// Runtime::Init: tags the writable data of every loaded object, the main
// thread's stack and the stacks of the threads started so far through
// pthread_create. With `enabled` false (RuntimeOptions), tags nothing.
absl::Status ProtectHostMemory(bool enabled);
bool HostMemoryProtected();

// After dlopen and dlclose: the data of the objects loaded now.
void RefreshHostData();

// At the start of a thread made by pthread_create, on its stack: tags the
// stack below the page of `sp` (or, before Init, remembers it for Init) and
// returns that page's start: the thread's own frames belong below it, on
// the tagged pages; the TCB and static TLS stay above. 0 if nothing is
// tagged.
uintptr_t ProtectThisThreadStack(uintptr_t sp);
// When such a thread ends.
void ForgetThisThreadStack();

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_HOST_MEMORY_H_
