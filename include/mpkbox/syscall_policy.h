// SyscallPolicy: which system calls a compartment may make. The default
// denies everything. (Enforcement arrives with Syscall User Dispatch; until
// then compartments run with no syscall filter: see docs/THREAT_MODEL.md.)
#ifndef MPKBOX_SYSCALL_POLICY_H_
#define MPKBOX_SYSCALL_POLICY_H_

namespace mpkbox {

class SyscallPolicy {
 public:
  // Denies every system call.
  SyscallPolicy() = default;
};

}  // namespace mpkbox

#endif  // MPKBOX_SYSCALL_POLICY_H_
