// Files for loaded code: what its open, fopen, stat and friends may reach
// (files.cc). Other concerns that open files (stdio's fopen) go through here.
#ifndef MPKBOX_RUNTIME_COMPARTMENT_LIBC_FILES_H_
#define MPKBOX_RUNTIME_COMPARTMENT_LIBC_FILES_H_

namespace mpkbox::internal {

// open(2) for compartment code, with compartment rights: a descriptor, or
// -1 with errno in the thread's HeapCache slot.
int CompartmentOpen(const char* path, int flags, unsigned mode);

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_COMPARTMENT_LIBC_FILES_H_
