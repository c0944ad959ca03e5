#include "mpkbox/syscall_policy.h"

#include <sys/syscall.h>

#include <algorithm>

#include "absl/strings/str_format.h"

namespace mpkbox {
namespace {

// The attack classes of DESIGN.md 6, items 5 to 8: each of these reaches
// past PKRU or past mpkbox's own checks, so no policy may allow them.
absl::string_view NeverReason(int nr) {
  switch (nr) {
    case SYS_mmap:
    case SYS_munmap:
    case SYS_mprotect:
    case SYS_mremap:
    case SYS_madvise:
    case SYS_brk:
    case SYS_remap_file_pages:
    case SYS_mbind:
    case SYS_set_mempolicy:
    case SYS_migrate_pages:
    case SYS_move_pages:
    case SYS_shmat:
    case SYS_process_madvise:
    case SYS_process_mrelease:
      return "it changes memory mappings, which PKRU does not guard "
             "(madvise(MADV_DONTNEED) zeroes protected pages, mremap replaces "
             "them)";
    case SYS_pkey_alloc:
    case SYS_pkey_free:
    case SYS_pkey_mprotect:
      return "pkey_mprotect re-tags any page, and a freed key hands out its "
             "pages";
    case SYS_rt_sigreturn:
      return "a forged signal frame restores any PKRU";
    case SYS_rt_sigaction:
    case SYS_sigaltstack:
    case SYS_rt_sigprocmask:
    case SYS_rt_sigsuspend:
    case SYS_rt_sigtimedwait:
    case SYS_signalfd:
    case SYS_signalfd4:
    case SYS_kill:
    case SYS_tkill:
    case SYS_tgkill:
    case SYS_rt_sigqueueinfo:
    case SYS_rt_tgsigqueueinfo:
    case SYS_pidfd_send_signal:
      return "signal dispositions, masks and delivery belong to mpkbox's "
             "signal entry";
    case SYS_open:
    case SYS_openat:
    case SYS_openat2:
    case SYS_creat:
    case SYS_name_to_handle_at:
    case SYS_open_by_handle_at:
      return "opening paths reaches /proc/self/mem, which ignores PKRU";
    case SYS_process_vm_readv:
    case SYS_process_vm_writev:
    case SYS_ptrace:
    case SYS_pidfd_getfd:
    case SYS_kcmp:
      return "remote memory access and tracing ignore PKRU";
    case SYS_clone:
    case SYS_clone3:
    case SYS_fork:
    case SYS_vfork:
    case SYS_execve:
    case SYS_execveat:
    case SYS_exit:
    case SYS_exit_group:
      return "a new task or image escapes dispatch (it is not inherited), "
             "and exiting kills the host's thread";
    case SYS_seccomp:
    case SYS_prctl:
    case SYS_arch_prctl:
    case SYS_personality:
    case SYS_modify_ldt:
    case SYS_set_thread_area:
    case SYS_rseq:
    case SYS_set_robust_list:
    case SYS_set_tid_address:
      return "it changes the thread's filters or state mpkbox relies on "
             "(prctl turns dispatch off, arch_prctl moves FS)";
    case SYS_io_uring_setup:
    case SYS_io_uring_enter:
    case SYS_io_uring_register:
    case SYS_userfaultfd:
    case SYS_perf_event_open:
    case SYS_bpf:
      return "its work runs outside this thread's PKRU (kernel threads, "
             "faults handled elsewhere) or sets breakpoints";
  }
  return "";
}

// Calls whose arguments are all plain values, so running them with the
// runtime's rights cannot make the kernel touch memory for the compartment.
bool TakesNoPointers(int nr) {
  switch (nr) {
    case SYS_getpid:
    case SYS_getppid:
    case SYS_gettid:
    case SYS_getuid:
    case SYS_geteuid:
    case SYS_getgid:
    case SYS_getegid:
    case SYS_getpgrp:
    case SYS_sched_yield:
    case SYS_close:
    case SYS_dup:
    case SYS_dup2:
    case SYS_dup3:
    case SYS_lseek:
    case SYS_fsync:
    case SYS_fdatasync:
    case SYS_ftruncate:
    case SYS_flock:
      return true;
  }
  return false;
}

}  // namespace

SyscallPolicy::SyscallPolicy()
    : rules_(new Rule[kMaxSyscall]()), default_{} {}

SyscallPolicy& SyscallPolicy::Set(int nr, Rule rule) {
  if (nr < 0 || nr >= kMaxSyscall) return *this;
  if (rules_.use_count() > 1) {  // copies share rules until one changes
    std::shared_ptr<Rule[]> copy(new Rule[kMaxSyscall]);
    std::copy(rules_.get(), rules_.get() + kMaxSyscall, copy.get());
    rules_ = std::move(copy);
  }
  rule.set = true;
  rules_[nr] = rule;
  return *this;
}

SyscallPolicy& SyscallPolicy::Allow(int nr) {
  return Set(nr, {.action = Action::kAllow});
}

SyscallPolicy& SyscallPolicy::AllowWrite(std::initializer_list<int> fds) {
  Rule rule = RuleFor(SYS_write);
  if (rule.action != Action::kAllowWrite) rule = {.action = Action::kAllowWrite};
  for (int fd : fds) {
    if (fd >= 0 && fd < 64) rule.fd_mask |= uint64_t{1} << fd;
  }
  return Set(SYS_write, rule);
}

SyscallPolicy& SyscallPolicy::AllowGetrandom() {
  return Set(SYS_getrandom, {.action = Action::kAllowGetrandom});
}

SyscallPolicy& SyscallPolicy::AllowClock() {
  Set(SYS_clock_gettime, {.action = Action::kAllowClock});
  Set(SYS_gettimeofday, {.action = Action::kAllowClock});
  return Set(SYS_time, {.action = Action::kAllowClock});
}

SyscallPolicy& SyscallPolicy::AllowFutex() {
  return Set(SYS_futex, {.action = Action::kAllowFutex});
}

SyscallPolicy& SyscallPolicy::AllowMincore() {
  return Set(SYS_mincore, {.action = Action::kAllowMincore});
}

SyscallPolicy& SyscallPolicy::Deny(int nr, int error) {
  return Set(nr, {.action = Action::kErrno, .error = error});
}

SyscallPolicy& SyscallPolicy::Fail(int nr) {
  return Set(nr, {.action = Action::kFailCall});
}

SyscallPolicy& SyscallPolicy::DenyOthersWithErrno(int error) {
  default_ = {.action = Action::kErrno, .error = error};
  return *this;
}

const SyscallPolicy::Rule& SyscallPolicy::RuleFor(int nr) const {
  if (nr < 0 || nr >= kMaxSyscall) return default_;
  const Rule& rule = rules_[nr];
  return rule.set ? rule : default_;
}

absl::Status SyscallPolicy::Validate() const {
  for (int nr = 0; nr < kMaxSyscall; ++nr) {
    const Action a = rules_[nr].action;
    if (a == Action::kFailCall || a == Action::kErrno) continue;
    absl::string_view why = NeverReason(nr);
    if (!why.empty()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "the syscall policy allows syscall %d, which is never allowed: %s",
          nr, why));
    }
    if (a == Action::kAllow && !TakesNoPointers(nr)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "the syscall policy allows syscall %d with Allow(), but it takes "
          "pointer arguments the kernel would follow with the runtime's "
          "rights; use a rule that checks them (AllowWrite, AllowGetrandom, "
          "AllowClock, AllowFutex)",
          nr));
    }
  }
  return absl::OkStatus();
}

absl::string_view SyscallPolicy::NeverAllowedReason(int nr) {
  return NeverReason(nr);
}

}  // namespace mpkbox
