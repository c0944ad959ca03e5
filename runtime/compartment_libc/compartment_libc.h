// What loaded code's libc imports bind to when libc's own function would
// touch host state (runtime/loader/import_policy.cc chooses). Each runs with
// compartment rights.
#ifndef MPKBOX_RUNTIME_COMPARTMENT_LIBC_COMPARTMENT_LIBC_H_
#define MPKBOX_RUNTIME_COMPARTMENT_LIBC_COMPARTMENT_LIBC_H_

extern "C" {

// __errno_location: the thread's errno slot in its HeapCache.
int* mpkbox_compartment_errno_location();

}  // extern "C"

#endif  // MPKBOX_RUNTIME_COMPARTMENT_LIBC_COMPARTMENT_LIBC_H_
