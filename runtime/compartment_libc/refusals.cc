// Failing is better than faulting: libc functions loaded code may not use
// but that have an error return give that error with a POSIX errno, so
// libraries take their fallback paths (no network, no child processes, no
// file system changes, no dynamic loading, no environment changes). A trap
// stays only where there is no error path, or where using it at all is a
// bug a sandbox should show (signal and sigaction keep their traps: a
// handler installed from inside could never run).
//
// Where the function is a syscall, the host picks the errno from the
// compartment's SyscallPolicy rule for it: Deny(nr, e) gives e, a catch-all
// DenyOthersWithErrno(e) gives e, Fail(nr) ends the call; otherwise the
// function's own default below. An Allow(nr) does not make the function
// run: its libc import never reaches the kernel.
#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <sys/syscall.h>

#include "runtime/compartment_libc/bindings.h"
#include "runtime/compartment_libc/compartment_libc.h"
#include "runtime/compartment_libc/files.h"
#include "runtime/syscall_rules.h"

namespace mpkbox::internal {
namespace {

using Action = SyscallAction;

constexpr int kNoSyscall = -1;

// Compartment side: the errno for refused syscall `nr` (the policy's), or
// `fallback` for a function that is no syscall.
int ErrnoFor(int nr, int fallback) {
  if (nr == kNoSyscall) return fallback;
  return static_cast<int>(
      EnterLibc(LibcOp(kLibcFiles, kFilesRefuse, static_cast<uint32_t>(nr)),
                static_cast<uint64_t>(fallback)));
}

// errno as the policy picks it; 0: the function sets none (dlopen).
void SetErrno(int nr, int fallback) {
  if (nr == kNoSyscall && fallback == 0) return;
  *mpkbox_compartment_errno_location() = ErrnoFor(nr, fallback);
}

// The shapes of refusal. Arguments are ignored (the SysV ABI lets a callee
// take fewer than it is passed), so one function serves every signature
// that returns the same kind of value; `long` -1 is also an int's -1.
template <int kNr, int kErrno>
long MinusOne() {
  SetErrno(kNr, kErrno);
  return -1;
}
template <int kNr, int kErrno>
void* Null() {
  SetErrno(kNr, kErrno);
  return nullptr;
}
// pthread-style and getaddrinfo-style: the error is the return value.
template <int kNr, int kErrno>
long ErrorCode() {
  return ErrnoFor(kNr, kErrno);
}
template <long kValue>
long Constant() {
  return kValue;
}
void Nothing() {}

// system(NULL) asks whether a shell exists: none does.
int System(const char* command) {
  if (command == nullptr) return 0;
  SetErrno(kNoSyscall, ENOSYS);
  return -1;
}

// isatty: no descriptor the compartment can use is a terminal.
int Isatty(int) {
  *mpkbox_compartment_errno_location() = ENOTTY;
  return 0;
}

// Answered without effect, as a raw rt_sigprocmask from inside is: the
// thread's mask is the host's. The old mask reads as empty.
int Sigprocmask(int how, const sigset_t*, sigset_t* old) {
  if (how != SIG_BLOCK && how != SIG_UNBLOCK && how != SIG_SETMASK) {
    *mpkbox_compartment_errno_location() = EINVAL;
    return -1;
  }
  if (old != nullptr) sigemptyset(old);
  return 0;
}

const char* Dlerror() {
  return "mpkbox: dynamic loading is not available inside a compartment";
}

void* F(auto* fn) { return reinterpret_cast<void*>(fn); }

constexpr char kSocket[] =
    "refused without reaching the kernel: errno from the policy's rule for "
    "the syscall (no network inside)";
constexpr char kProcess[] =
    "refused without reaching the kernel: no process, identity or signal "
    "control inside (errno from the policy's rule)";
constexpr char kFs[] =
    "refused without reaching the kernel: nothing inside changes the file "
    "system or the host's descriptors (errno from the policy's rule)";
constexpr char kDl[] =
    "refused: loaded code loads nothing itself (Compartment::Load does)";
constexpr char kEnv[] =
    "refused: loaded code sees no environment and changes none";
constexpr char kTty[] = "refused: no terminal inside";

}  // namespace

bool RefusalErrno(const LibcCaller& caller, long nr, int fallback,
                  int* error) {
  const SyscallRule& rule =
      SyscallRules::For(*caller.ctx->policy, static_cast<int>(nr));
  if (rule.action == Action::kErrno) {
    *error = rule.error;
    return true;
  }
  if (rule.listed && rule.action == Action::kFailCall) return false;
  *error = fallback;
  return true;
}

absl::Span<const LibcBinding> RefusalBindings() {
  static const LibcBinding kBindings[] = {
      // Sockets: none can be made, so every descriptor is not one.
      {"socket", F(&MinusOne<SYS_socket, EACCES>), kSocket},
      {"socketpair", F(&MinusOne<SYS_socketpair, EACCES>), kSocket},
      {"connect", F(&MinusOne<SYS_connect, EBADF>), kSocket},
      {"bind", F(&MinusOne<SYS_bind, EBADF>), kSocket},
      {"listen", F(&MinusOne<SYS_listen, EBADF>), kSocket},
      {"accept", F(&MinusOne<SYS_accept, EBADF>), kSocket},
      {"accept4", F(&MinusOne<SYS_accept4, EBADF>), kSocket},
      {"shutdown", F(&MinusOne<SYS_shutdown, EBADF>), kSocket},
      {"getsockopt", F(&MinusOne<SYS_getsockopt, EBADF>), kSocket},
      {"setsockopt", F(&MinusOne<SYS_setsockopt, EBADF>), kSocket},
      {"getsockname", F(&MinusOne<SYS_getsockname, EBADF>), kSocket},
      {"getpeername", F(&MinusOne<SYS_getpeername, EBADF>), kSocket},
      {"send", F(&MinusOne<SYS_sendto, EBADF>), kSocket},
      {"sendto", F(&MinusOne<SYS_sendto, EBADF>), kSocket},
      {"sendmsg", F(&MinusOne<SYS_sendmsg, EBADF>), kSocket},
      {"recv", F(&MinusOne<SYS_recvfrom, EBADF>), kSocket},
      {"recvfrom", F(&MinusOne<SYS_recvfrom, EBADF>), kSocket},
      {"recvmsg", F(&MinusOne<SYS_recvmsg, EBADF>), kSocket},
      {"getaddrinfo", F(&Constant<EAI_FAIL>), kSocket},
      {"getnameinfo", F(&Constant<EAI_FAIL>), kSocket},
      {"freeaddrinfo", F(&Nothing), "nothing to free: no lookup succeeds"},
      // Processes, identities, signals sent.
      {"fork", F(&MinusOne<SYS_fork, ENOSYS>), kProcess},
      {"vfork", F(&MinusOne<SYS_vfork, ENOSYS>), kProcess},
      {"execve", F(&MinusOne<SYS_execve, EACCES>), kProcess},
      {"execv", F(&MinusOne<SYS_execve, EACCES>), kProcess},
      {"execvp", F(&MinusOne<SYS_execve, EACCES>), kProcess},
      {"execvpe", F(&MinusOne<SYS_execve, EACCES>), kProcess},
      {"execl", F(&MinusOne<SYS_execve, EACCES>), kProcess},
      {"execlp", F(&MinusOne<SYS_execve, EACCES>), kProcess},
      {"execle", F(&MinusOne<SYS_execve, EACCES>), kProcess},
      {"fexecve", F(&MinusOne<SYS_execveat, EACCES>), kProcess},
      {"system", F(&System), kProcess},
      {"popen", F(&Null<SYS_clone, ENOSYS>), kProcess},
      {"pclose", F(&MinusOne<SYS_wait4, ECHILD>), kProcess},
      {"posix_spawn", F(&ErrorCode<SYS_clone, ENOSYS>), kProcess},
      {"posix_spawnp", F(&ErrorCode<SYS_clone, ENOSYS>), kProcess},
      {"wait", F(&MinusOne<SYS_wait4, ECHILD>), kProcess},
      {"waitpid", F(&MinusOne<SYS_wait4, ECHILD>), kProcess},
      {"wait3", F(&MinusOne<SYS_wait4, ECHILD>), kProcess},
      {"wait4", F(&MinusOne<SYS_wait4, ECHILD>), kProcess},
      {"waitid", F(&MinusOne<SYS_waitid, ECHILD>), kProcess},
      {"kill", F(&MinusOne<SYS_kill, EPERM>), kProcess},
      {"killpg", F(&MinusOne<SYS_kill, EPERM>), kProcess},
      {"sigqueue", F(&MinusOne<SYS_rt_sigqueueinfo, EPERM>), kProcess},
      {"sigaltstack", F(&MinusOne<SYS_sigaltstack, EPERM>), kProcess},
      {"sigprocmask", F(&Sigprocmask),
       "answered without effect, as a raw rt_sigprocmask from inside"},
      {"setuid", F(&MinusOne<SYS_setuid, EPERM>), kProcess},
      {"setgid", F(&MinusOne<SYS_setgid, EPERM>), kProcess},
      {"seteuid", F(&MinusOne<SYS_setresuid, EPERM>), kProcess},
      {"setegid", F(&MinusOne<SYS_setresgid, EPERM>), kProcess},
      {"setreuid", F(&MinusOne<SYS_setreuid, EPERM>), kProcess},
      {"setregid", F(&MinusOne<SYS_setregid, EPERM>), kProcess},
      {"setresuid", F(&MinusOne<SYS_setresuid, EPERM>), kProcess},
      {"setresgid", F(&MinusOne<SYS_setresgid, EPERM>), kProcess},
      {"setgroups", F(&MinusOne<SYS_setgroups, EPERM>), kProcess},
      {"setsid", F(&MinusOne<SYS_setsid, EPERM>), kProcess},
      {"setpgid", F(&MinusOne<SYS_setpgid, EPERM>), kProcess},
      {"setpriority", F(&MinusOne<SYS_setpriority, EACCES>), kProcess},
      {"setrlimit", F(&MinusOne<SYS_setrlimit, EPERM>), kProcess},
      {"prlimit", F(&MinusOne<SYS_prlimit64, EPERM>), kProcess},
      {"prlimit64", F(&MinusOne<SYS_prlimit64, EPERM>), kProcess},
      {"prctl", F(&MinusOne<SYS_prctl, EINVAL>), kProcess},
      {"ptrace", F(&MinusOne<SYS_ptrace, EPERM>), kProcess},
      {"chroot", F(&MinusOne<SYS_chroot, EPERM>), kProcess},
      // Dynamic loading.
      {"dlopen", F(&Null<kNoSyscall, 0>), kDl},
      {"dlmopen", F(&Null<kNoSyscall, 0>), kDl},
      {"dlsym", F(&Null<kNoSyscall, 0>), kDl},
      {"dlvsym", F(&Null<kNoSyscall, 0>), kDl},
      {"dlclose", F(&Constant<-1>), kDl},
      {"dladdr", F(&Constant<0>), kDl},
      {"dladdr1", F(&Constant<0>), kDl},
      {"dlerror", F(&Dlerror), kDl},
      // The environment.
      {"setenv", F(&MinusOne<kNoSyscall, ENOMEM>), kEnv},
      {"unsetenv", F(&MinusOne<kNoSyscall, ENOMEM>), kEnv},
      {"putenv", F(&MinusOne<kNoSyscall, ENOMEM>), kEnv},
      {"clearenv", F(&Constant<-1>), kEnv},
      // The file system and the host's descriptors.
      {"mkdir", F(&MinusOne<SYS_mkdir, EACCES>), kFs},
      {"mkdirat", F(&MinusOne<SYS_mkdirat, EACCES>), kFs},
      {"rmdir", F(&MinusOne<SYS_rmdir, EACCES>), kFs},
      {"unlink", F(&MinusOne<SYS_unlink, EACCES>), kFs},
      {"unlinkat", F(&MinusOne<SYS_unlinkat, EACCES>), kFs},
      {"remove", F(&MinusOne<SYS_unlink, EACCES>), kFs},
      {"rename", F(&MinusOne<SYS_rename, EACCES>), kFs},
      {"renameat", F(&MinusOne<SYS_renameat, EACCES>), kFs},
      {"renameat2", F(&MinusOne<SYS_renameat2, EACCES>), kFs},
      {"link", F(&MinusOne<SYS_link, EACCES>), kFs},
      {"linkat", F(&MinusOne<SYS_linkat, EACCES>), kFs},
      {"symlink", F(&MinusOne<SYS_symlink, EACCES>), kFs},
      {"symlinkat", F(&MinusOne<SYS_symlinkat, EACCES>), kFs},
      {"readlink", F(&MinusOne<SYS_readlink, ENOENT>), kFs},
      {"readlinkat", F(&MinusOne<SYS_readlinkat, ENOENT>), kFs},
      {"chmod", F(&MinusOne<SYS_chmod, EPERM>), kFs},
      {"fchmod", F(&MinusOne<SYS_fchmod, EBADF>), kFs},
      {"fchmodat", F(&MinusOne<SYS_fchmodat, EPERM>), kFs},
      {"chown", F(&MinusOne<SYS_chown, EPERM>), kFs},
      {"fchown", F(&MinusOne<SYS_fchown, EBADF>), kFs},
      {"lchown", F(&MinusOne<SYS_lchown, EPERM>), kFs},
      {"fchownat", F(&MinusOne<SYS_fchownat, EPERM>), kFs},
      {"truncate", F(&MinusOne<SYS_truncate, EACCES>), kFs},
      {"truncate64", F(&MinusOne<SYS_truncate, EACCES>), kFs},
      {"ftruncate", F(&MinusOne<SYS_ftruncate, EBADF>), kFs},
      {"ftruncate64", F(&MinusOne<SYS_ftruncate, EBADF>), kFs},
      {"utime", F(&MinusOne<SYS_utime, EACCES>), kFs},
      {"utimes", F(&MinusOne<SYS_utimes, EACCES>), kFs},
      {"utimensat", F(&MinusOne<SYS_utimensat, EACCES>), kFs},
      {"futimens", F(&MinusOne<SYS_utimensat, EBADF>), kFs},
      {"mknod", F(&MinusOne<SYS_mknod, EPERM>), kFs},
      {"mknodat", F(&MinusOne<SYS_mknodat, EPERM>), kFs},
      {"mkfifo", F(&MinusOne<SYS_mknod, EACCES>), kFs},
      {"mkstemp", F(&MinusOne<SYS_openat, EACCES>), kFs},
      {"mkstemp64", F(&MinusOne<SYS_openat, EACCES>), kFs},
      {"mkostemp", F(&MinusOne<SYS_openat, EACCES>), kFs},
      {"mkstemps", F(&MinusOne<SYS_openat, EACCES>), kFs},
      {"mkostemps", F(&MinusOne<SYS_openat, EACCES>), kFs},
      {"mkdtemp", F(&Null<SYS_mkdir, EACCES>), kFs},
      {"chdir", F(&MinusOne<SYS_chdir, EACCES>), kFs},
      {"fchdir", F(&MinusOne<SYS_fchdir, EBADF>), kFs},
      {"getcwd", F(&Null<SYS_getcwd, EACCES>), kFs},
      {"dup", F(&MinusOne<SYS_dup, EBADF>), kFs},
      {"dup2", F(&MinusOne<SYS_dup2, EBADF>), kFs},
      {"dup3", F(&MinusOne<SYS_dup3, EBADF>), kFs},
      {"pipe", F(&MinusOne<SYS_pipe, EMFILE>), kFs},
      {"pipe2", F(&MinusOne<SYS_pipe2, EMFILE>), kFs},
      {"epoll_create", F(&MinusOne<SYS_epoll_create, EMFILE>), kFs},
      {"epoll_create1", F(&MinusOne<SYS_epoll_create1, EMFILE>), kFs},
      {"eventfd", F(&MinusOne<SYS_eventfd2, EMFILE>), kFs},
      {"inotify_init", F(&MinusOne<SYS_inotify_init, EMFILE>), kFs},
      {"inotify_init1", F(&MinusOne<SYS_inotify_init1, EMFILE>), kFs},
      {"signalfd", F(&MinusOne<SYS_signalfd4, EMFILE>), kProcess},
      {"flock", F(&MinusOne<SYS_flock, EBADF>), kFs},
      {"ioctl", F(&MinusOne<SYS_ioctl, ENOTTY>), kFs},
      {"mount", F(&MinusOne<SYS_mount, EPERM>), kFs},
      {"umount", F(&MinusOne<SYS_umount2, EPERM>), kFs},
      {"umount2", F(&MinusOne<SYS_umount2, EPERM>), kFs},
      // Terminals.
      {"isatty", F(&Isatty), kTty},
      {"ttyname", F(&Null<kNoSyscall, ENOTTY>), kTty},
      {"tcgetattr", F(&MinusOne<SYS_ioctl, ENOTTY>), kTty},
      {"tcsetattr", F(&MinusOne<SYS_ioctl, ENOTTY>), kTty},
  };
  return kBindings;
}

}  // namespace mpkbox::internal
