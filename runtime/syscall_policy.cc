#include "mpkbox/syscall_policy.h"

#include <sys/syscall.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "runtime/syscall_rules.h"

namespace mpkbox {
namespace {

// The attack classes of docs/DESIGN.md 6, items 5 to 8: each of these reaches
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
    : rules_(std::make_shared<internal::SyscallRules>()) {}

internal::SyscallRules& SyscallPolicy::Mutable() {
  if (rules_.use_count() > 1) {
    rules_ = std::make_shared<internal::SyscallRules>(*rules_);
  }
  return *rules_;
}

namespace {

using internal::SyscallAction;
using internal::SyscallRule;

SyscallPolicy& Set(SyscallPolicy& policy, internal::SyscallRules& rules,
                   int nr, SyscallRule rule) {
  if (nr < 0 || nr >= internal::kMaxSyscall) return policy;
  rule.listed = true;
  rules.rules[nr] = rule;
  return policy;
}

}  // namespace

const internal::SyscallRules& internal::SyscallRules::Of(
    const SyscallPolicy& policy) {
  return *policy.rules_;
}

std::optional<std::string> internal::NormalisePath(absl::string_view path) {
  if (path.empty() || path[0] != '/') return std::nullopt;
  std::vector<absl::string_view> parts;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (!parts.empty()) parts.pop_back();
      continue;
    }
    parts.push_back(part);
  }
  return absl::StrCat("/", absl::StrJoin(parts, "/"));
}

const SyscallRule& internal::SyscallRules::For(const SyscallPolicy& policy,
                                               int nr) {
  const SyscallRules& r = *policy.rules_;
  if (nr < 0 || nr >= kMaxSyscall || !r.rules[nr].listed) return r.unlisted;
  return r.rules[nr];
}

SyscallPolicy& SyscallPolicy::Allow(int nr) {
  return Set(*this, Mutable(), nr, {.action = SyscallAction::kAllow});
}

SyscallPolicy& SyscallPolicy::AllowWrite(std::initializer_list<int> fds) {
  SyscallRule rule = internal::SyscallRules::For(*this, SYS_write);
  if (rule.action != SyscallAction::kAllowWrite) {
    rule = {.action = SyscallAction::kAllowWrite};
  }
  for (int fd : fds) {
    if (fd >= 0 && fd < 64) rule.fd_mask |= uint64_t{1} << fd;
  }
  return Set(*this, Mutable(), SYS_write, rule);
}

SyscallPolicy& SyscallPolicy::AllowGetrandom() {
  return Set(*this, Mutable(), SYS_getrandom,
             {.action = SyscallAction::kAllowGetrandom});
}

SyscallPolicy& SyscallPolicy::AllowClock() {
  for (int nr : {SYS_clock_gettime, SYS_gettimeofday, SYS_time}) {
    Set(*this, Mutable(), nr, {.action = SyscallAction::kAllowClock});
  }
  return *this;
}

SyscallPolicy& SyscallPolicy::AllowFutex() {
  return Set(*this, Mutable(), SYS_futex,
             {.action = SyscallAction::kAllowFutex});
}

SyscallPolicy& SyscallPolicy::AllowMincore() {
  return Set(*this, Mutable(), SYS_mincore,
             {.action = SyscallAction::kAllowMincore});
}

SyscallPolicy& SyscallPolicy::AllowReadFile(absl::string_view path) {
  Mutable().read_files.push_back(
      internal::NormalisePath(path).value_or(std::string(path)));
  return *this;
}

SyscallPolicy& SyscallPolicy::AllowReadDirectory(absl::string_view path) {
  Mutable().read_dirs.push_back(
      internal::NormalisePath(path).value_or(std::string(path)));
  return *this;
}

SyscallPolicy& SyscallPolicy::Deny(int nr, int error) {
  return Set(*this, Mutable(), nr,
             {.action = SyscallAction::kErrno, .error = error});
}

SyscallPolicy& SyscallPolicy::Fail(int nr) {
  return Set(*this, Mutable(), nr, {.action = SyscallAction::kFailCall});
}

SyscallPolicy& SyscallPolicy::DenyOthersWithErrno(int error) {
  Mutable().unlisted = {.action = SyscallAction::kErrno, .error = error};
  return *this;
}

absl::Status SyscallPolicy::Validate() const {
  for (const auto* grants : {&rules_->read_files, &rules_->read_dirs}) {
    for (const std::string& path : *grants) {
      if (path.empty() || path[0] != '/') {
        return absl::InvalidArgumentError(absl::StrFormat(
            "the syscall policy grants reading '%s', which is not an "
            "absolute path (a compartment has no working directory)",
            path));
      }
    }
  }
  for (int nr = 0; nr < internal::kMaxSyscall; ++nr) {
    const SyscallAction a = rules_->rules[nr].action;
    if (a == SyscallAction::kFailCall || a == SyscallAction::kErrno) continue;
    absl::string_view why = NeverReason(nr);
    if (!why.empty()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "the syscall policy allows syscall %d, which is never allowed: %s",
          nr, why));
    }
    if (a == SyscallAction::kAllow && !TakesNoPointers(nr)) {
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
