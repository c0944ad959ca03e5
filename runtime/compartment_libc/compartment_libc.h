// What loaded code's libc imports bind to when libc's own function would
// touch host state (runtime/loader/import_policy.cc chooses). Each runs with
// compartment rights.
#ifndef MPKBOX_RUNTIME_COMPARTMENT_LIBC_COMPARTMENT_LIBC_H_
#define MPKBOX_RUNTIME_COMPARTMENT_LIBC_COMPARTMENT_LIBC_H_

#include <stdint.h>

extern "C" {

// __errno_location: the thread's errno slot in its HeapCache.
int* mpkbox_compartment_errno_location();

// What general- and local-dynamic TLS code passes to __tls_get_addr: the
// loader's module id (R_X86_64_DTPMOD64) and an offset in its block.
struct mpkbox_tls_index {
  uint64_t module;
  uint64_t offset;
};
// __tls_get_addr: this thread's block of the module in the running
// compartment, plus the offset.
void* mpkbox_compartment_tls_get_addr(const mpkbox_tls_index* index);

}  // extern "C"

#endif  // MPKBOX_RUNTIME_COMPARTMENT_LIBC_COMPARTMENT_LIBC_H_
