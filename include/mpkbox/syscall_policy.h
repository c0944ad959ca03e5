// SyscallPolicy: which system calls a compartment may make. Every thread
// that enters a compartment runs with Syscall User Dispatch: a system call
// from compartment code reaches mpkbox, which applies this policy.
//
//   mpkbox::SyscallPolicy policy;                 // denies everything
//   policy.AllowWrite({STDOUT_FILENO})            // write(2) to stdout only
//         .AllowGetrandom()
//         .Deny(SYS_openat, EACCES);              // fail with errno EACCES
//   auto box = mpkbox::Compartment::Create({.name = "p", .syscalls = policy});
//
// A denied call either returns an errno to the compartment or ends the
// compartment call with kPermissionDenied (the default for unlisted calls).
// Some calls are never allowed, whatever the policy says: Create refuses a
// policy that allows one (NeverAllowedReason says why each is refused).
// Pointer arguments must point into the compartment's own memory (otherwise
// EFAULT); what the kernel reads from them is copied first.
//
// Whatever the policy, so that abort() reads as abort(): gettid and getpid
// are answered, rt_sigprocmask succeeds without changing anything, and a
// SIGABRT a compartment sends itself ends its call as abort().
#ifndef MPKBOX_SYSCALL_POLICY_H_
#define MPKBOX_SYSCALL_POLICY_H_

#include <cstdint>
#include <initializer_list>
#include <memory>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace mpkbox {

namespace internal {
struct SyscallRules;  // runtime/syscall_rules.h
}  // namespace internal

class SyscallPolicy {
 public:
  // Denies every system call by failing the compartment call.
  SyscallPolicy();

  // Runs `nr` as asked. Only for calls whose arguments are plain values
  // (getpid, close, lseek, ...): the kernel would follow a pointer with the
  // runtime's rights. Validate refuses the others; the Allow* rules below
  // check and copy pointer arguments.
  SyscallPolicy& Allow(int nr);
  // write(2) to these descriptors (each below 64) from the compartment's
  // memory; the bytes are copied before the write.
  SyscallPolicy& AllowWrite(std::initializer_list<int> fds);
  SyscallPolicy& AllowGetrandom();
  // clock_gettime, gettimeofday and time, for when the vDSO makes the real
  // call (it normally makes none).
  SyscallPolicy& AllowClock();
  // futex FUTEX_WAIT and FUTEX_WAKE (with FUTEX_PRIVATE_FLAG) on the
  // compartment's memory.
  SyscallPolicy& AllowFutex();
  // mincore with its result vector in the compartment's memory (libunwind
  // checks addresses with it). It tells which pages are resident, nothing
  // of their contents.
  SyscallPolicy& AllowMincore();
  // Read-only access for loaded code's libc (open, fopen, stat, access,
  // opendir, realpath: runtime/compartment_libc/files.cc) to the file at
  // `path`, an absolute path. The compartment's path is copied, "." and ".."
  // resolved lexically, and only this exact path matches; the host opens it
  // O_RDONLY and tracks the descriptor (closed at Reset and destruction).
  // Ungranted paths fail with the errno Deny(SYS_openat, e) gives (ENOENT by
  // default); write opens of granted ones with EACCES. Like Sandboxed API's
  // PolicyBuilder::AddFile. Raw open syscalls stay never allowed.
  SyscallPolicy& AllowReadFile(absl::string_view path);
  // The same for everything beneath the directory `path` (absolute), and the
  // directory itself (opendir/readdir). Beneath it nothing is followed that
  // could leave it: no symlinks, no ".." above it (openat2 with
  // RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS). Like PolicyBuilder::AddDirectory.
  SyscallPolicy& AllowReadDirectory(absl::string_view path);
  // `nr` returns -error to the compartment.
  SyscallPolicy& Deny(int nr, int error);
  // `nr` ends the compartment call with kPermissionDenied.
  SyscallPolicy& Fail(int nr);
  // What unlisted calls do: return -error instead of failing the call.
  SyscallPolicy& DenyOthersWithErrno(int error);

  // OK, or kInvalidArgument naming the first syscall this policy allows
  // that is never allowed, or that Allow cannot run safely, and why.
  absl::Status Validate() const;

  // Why `nr` is never allowed, or empty if it may be.
  static absl::string_view NeverAllowedReason(int nr);

 private:
  friend struct internal::SyscallRules;
  // Copies share the rules until one changes: shared and immutable once a
  // compartment uses them (the signal handler reads them without locks).
  internal::SyscallRules& Mutable();

  std::shared_ptr<internal::SyscallRules> rules_;
};

}  // namespace mpkbox

#endif  // MPKBOX_SYSCALL_POLICY_H_
