// Resolves every lazily bound PLT slot of the libraries the host has
// loaded. mpkbox links executables with -z now, but Debian builds libc,
// libstdc++, libgcc_s and others without it: their first call through a
// PLT slot runs ld.so's resolver, which writes the GOT (key 0: a fault in
// compartment code under Ambient::kReadOnly) and runs ld.so's XRSTOR (a
// guarded instruction: gadget_guard.h). Binding everything in host code
// first means compartment code never reaches the resolver.
#ifndef MPKBOX_RUNTIME_EAGER_BINDING_H_
#define MPKBOX_RUNTIME_EAGER_BINDING_H_

#include "absl/status/status.h"

namespace mpkbox::internal {

// For every loaded object: each R_X86_64_JUMP_SLOT gets what ld.so would
// have bound it to (the global scope first, then the object's own).
// Slots whose symbol cannot be found are left alone (ld.so would fail too).
void BindLoadedObjectsNow();

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_EAGER_BINDING_H_
