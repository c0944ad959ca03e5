// What a SyscallPolicy says for each syscall number: the policy's plumbing,
// read by the dispatcher (syscall_dispatch.cc), not part of the API.
#ifndef MPKBOX_RUNTIME_SYSCALL_RULES_H_
#define MPKBOX_RUNTIME_SYSCALL_RULES_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

#include "mpkbox/syscall_policy.h"

namespace mpkbox::internal {

inline constexpr int kMaxSyscall = 512;  // x86-64 numbers are below this

enum class SyscallAction : uint8_t {
  kFailCall = 0,  // end the compartment call with kPermissionDenied
  kErrno,         // return -errno to the compartment
  kAllow,         // run it: only for calls that take no pointers
  kAllowWrite,    // write(2) to listed descriptors, from own memory
  kAllowGetrandom,
  kAllowClock,    // clock_gettime/gettimeofday/time when the vDSO falls back
  kAllowFutex,    // FUTEX_WAIT/WAKE (private) on own memory
  kAllowMincore,  // mincore, its result vector in own memory
};

struct SyscallRule {
  SyscallAction action = SyscallAction::kFailCall;
  bool listed = false;   // false: the policy's default applies
  int error = 0;         // kErrno
  uint64_t fd_mask = 0;  // kAllowWrite: descriptors 0..63
};

struct SyscallRules {
  SyscallRule rules[kMaxSyscall] = {};
  SyscallRule unlisted = {};
  // AllowReadFile / AllowReadDirectory, normalised (NormalisePath); a
  // relative one stays as given, for Validate to refuse.
  std::vector<std::string> read_files;
  std::vector<std::string> read_dirs;

  // The rule for `nr` (out-of-range numbers get the default).
  static const SyscallRule& For(const SyscallPolicy& policy, int nr);
  // All of the policy's rules.
  static const SyscallRules& Of(const SyscallPolicy& policy);
};

// `path` with "." and empty components dropped and ".." taken lexically
// ("/.." is "/"), or nullopt if it is not absolute. Lexical resolution is
// exact where symlinks are not followed (files.cc opens without them).
std::optional<std::string> NormalisePath(absl::string_view path);

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_SYSCALL_RULES_H_
