// Syscalls for other concerns' compartment-side code (stdio's files):
// the same host-side judgement as loaded code's own syscall wrappers.
#ifndef MPKBOX_RUNTIME_COMPARTMENT_LIBC_SYSCALLS_H_
#define MPKBOX_RUNTIME_COMPARTMENT_LIBC_SYSCALLS_H_

namespace mpkbox::internal {

// Syscall `nr`, judged by the compartment's policy with host rights; with
// compartment rights in and out. Its result, or -1 with errno in the
// thread's HeapCache slot.
long CompartmentSyscall(long nr, long a = 0, long b = 0, long c = 0,
                        long d = 0, long e = 0);

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_COMPARTMENT_LIBC_SYSCALLS_H_
