// What loaded code's libc imports bind to when libc's own function would
// touch host state (runtime/loader/import_policy.cc chooses). Each runs with
// compartment rights.
#ifndef MPKBOX_RUNTIME_COMPARTMENT_LIBC_COMPARTMENT_LIBC_H_
#define MPKBOX_RUNTIME_COMPARTMENT_LIBC_COMPARTMENT_LIBC_H_

#include <stddef.h>
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

// _dl_find_object and dl_iterate_phdr over the running compartment's
// loaded objects (their glibc types: <dlfcn.h>, <link.h>).
struct dl_find_object;
struct dl_phdr_info;
int mpkbox_compartment_dl_find_object(void* pc, struct dl_find_object* out);
// __cxa_atexit, atexit and __cxa_finalize on the compartment's own list.
int mpkbox_compartment_cxa_atexit(void (*fn)(void*), void* arg, void* dso);
int mpkbox_compartment_atexit(void (*fn)());
void mpkbox_compartment_cxa_finalize(void* dso);

int mpkbox_compartment_dl_iterate_phdr(
    int (*callback)(struct dl_phdr_info*, size_t, void*), void* data);

// qsort and qsort_r: glibc's stable merge sort without its errno and
// static writes (runtime/compartment_libc/sort.cc).
void mpkbox_compartment_qsort(void* base, size_t n, size_t size,
                              int (*compare)(const void*, const void*));
void mpkbox_compartment_qsort_r(void* base, size_t n, size_t size,
                                int (*compare)(const void*, const void*, void*),
                                void* arg);

}  // extern "C"

#endif  // MPKBOX_RUNTIME_COMPARTMENT_LIBC_COMPARTMENT_LIBC_H_
