// Files for loaded code: what its open, fopen, stat and friends may reach
// (files.cc). Other concerns that open files (stdio's fopen) go through here.
#ifndef MPKBOX_RUNTIME_COMPARTMENT_LIBC_FILES_H_
#define MPKBOX_RUNTIME_COMPARTMENT_LIBC_FILES_H_

#include <cstdint>

#include "runtime/compartment_libc/libc_entry.h"

namespace mpkbox::internal {

// open(2) for compartment code, with compartment rights: a descriptor, or
// -1 with errno in the thread's HeapCache slot. Only what the policy grants
// (SyscallPolicy::AllowReadFile/AllowReadDirectory) opens, read-only.
int CompartmentOpen(const char* path, int flags, unsigned mode);

// The files concern's requests (the low byte of a kLibcFiles op).
enum FilesRequest : uint64_t {
  kFilesOpenAt = 0,  // dirfd, path, flags
  kFilesStatAt,      // dirfd, path, struct stat*, AT_ flags
  kFilesStatx,       // dirfd, path, AT_ flags, mask, struct statx*
  kFilesAccessAt,    // dirfd, path, mode
  kFilesRealpath,    // path, out (PATH_MAX bytes)
  kFilesRefuse,      // refusals.cc: syscall nr in the op's high half, errno
};

// Host side: a descriptor syscall from the syscall concern (read, pread64,
// lseek, close, fstat, getdents64, fcntl, fsync): served on the
// compartment's own descriptors, refused (EBADF, or the policy's Deny/Fail
// of `nr`) on every other (the host's). False: not a descriptor call, or
// the policy's Fail: JudgeSyscall decides.
bool DescriptorSyscall(const LibcCaller& caller, long nr,
                       const uint64_t a[6], long* result);

// Host side (refusals.cc): the errno a refused function returns, from the
// policy's rule for the syscall it would make, else its own default; false
// when the policy says Fail(nr) (the call ends).
bool RefusalErrno(const LibcCaller& caller, long nr, int fallback,
                  int* error);

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_COMPARTMENT_LIBC_FILES_H_
