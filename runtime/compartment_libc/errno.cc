// errno for loaded code: its __errno_location binds here (loader/
// import_policy.cc), because glibc's errno is thread-local key-0 memory that
// compartment code may not write under Ambient::kReadOnly.
#include <errno.h>

#include "allocator/compartment_heap.h"
#include "allocator/inside.h"

namespace mi = mpkbox::internal;

// The thread's slot in its HeapCache, which compartment code may write.
extern "C" int* mpkbox_compartment_errno_location() {
  mi::SelectorPage* sel = mi::CompartmentThread();
  if (sel == nullptr) return __errno_location();
  return &mi::EnsureCache(sel)->errno_value;
}
