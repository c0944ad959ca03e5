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
      {"socket", LibcFn(&MinusOne<SYS_socket, EACCES>), kSocket},
      {"socketpair", LibcFn(&MinusOne<SYS_socketpair, EACCES>), kSocket},
      {"connect", LibcFn(&MinusOne<SYS_connect, EBADF>), kSocket},
      {"bind", LibcFn(&MinusOne<SYS_bind, EBADF>), kSocket},
      {"listen", LibcFn(&MinusOne<SYS_listen, EBADF>), kSocket},
      {"accept", LibcFn(&MinusOne<SYS_accept, EBADF>), kSocket},
      {"accept4", LibcFn(&MinusOne<SYS_accept4, EBADF>), kSocket},
      {"shutdown", LibcFn(&MinusOne<SYS_shutdown, EBADF>), kSocket},
      {"getsockopt", LibcFn(&MinusOne<SYS_getsockopt, EBADF>), kSocket},
      {"setsockopt", LibcFn(&MinusOne<SYS_setsockopt, EBADF>), kSocket},
      {"getsockname", LibcFn(&MinusOne<SYS_getsockname, EBADF>), kSocket},
      {"getpeername", LibcFn(&MinusOne<SYS_getpeername, EBADF>), kSocket},
      {"send", LibcFn(&MinusOne<SYS_sendto, EBADF>), kSocket},
      {"sendto", LibcFn(&MinusOne<SYS_sendto, EBADF>), kSocket},
      {"sendmsg", LibcFn(&MinusOne<SYS_sendmsg, EBADF>), kSocket},
      {"recv", LibcFn(&MinusOne<SYS_recvfrom, EBADF>), kSocket},
      {"recvfrom", LibcFn(&MinusOne<SYS_recvfrom, EBADF>), kSocket},
      {"recvmsg", LibcFn(&MinusOne<SYS_recvmsg, EBADF>), kSocket},
      {"getaddrinfo", LibcFn(&Constant<EAI_FAIL>), kSocket},
      {"getnameinfo", LibcFn(&Constant<EAI_FAIL>), kSocket},
      {"freeaddrinfo", LibcFn(&Nothing), "nothing to free: no lookup succeeds"},
      // Processes, identities, signals sent.
      {"fork", LibcFn(&MinusOne<SYS_fork, ENOSYS>), kProcess},
      {"vfork", LibcFn(&MinusOne<SYS_vfork, ENOSYS>), kProcess},
      {"execve", LibcFn(&MinusOne<SYS_execve, EACCES>), kProcess},
      {"execv", LibcFn(&MinusOne<SYS_execve, EACCES>), kProcess},
      {"execvp", LibcFn(&MinusOne<SYS_execve, EACCES>), kProcess},
      {"execvpe", LibcFn(&MinusOne<SYS_execve, EACCES>), kProcess},
      {"execl", LibcFn(&MinusOne<SYS_execve, EACCES>), kProcess},
      {"execlp", LibcFn(&MinusOne<SYS_execve, EACCES>), kProcess},
      {"execle", LibcFn(&MinusOne<SYS_execve, EACCES>), kProcess},
      {"fexecve", LibcFn(&MinusOne<SYS_execveat, EACCES>), kProcess},
      {"system", LibcFn(&System), kProcess},
      {"popen", LibcFn(&Null<SYS_clone, ENOSYS>), kProcess},
      {"pclose", LibcFn(&MinusOne<SYS_wait4, ECHILD>), kProcess},
      {"posix_spawn", LibcFn(&ErrorCode<SYS_clone, ENOSYS>), kProcess},
      {"posix_spawnp", LibcFn(&ErrorCode<SYS_clone, ENOSYS>), kProcess},
      {"wait", LibcFn(&MinusOne<SYS_wait4, ECHILD>), kProcess},
      {"waitpid", LibcFn(&MinusOne<SYS_wait4, ECHILD>), kProcess},
      {"wait3", LibcFn(&MinusOne<SYS_wait4, ECHILD>), kProcess},
      {"wait4", LibcFn(&MinusOne<SYS_wait4, ECHILD>), kProcess},
      {"waitid", LibcFn(&MinusOne<SYS_waitid, ECHILD>), kProcess},
      {"kill", LibcFn(&MinusOne<SYS_kill, EPERM>), kProcess},
      {"killpg", LibcFn(&MinusOne<SYS_kill, EPERM>), kProcess},
      {"sigqueue", LibcFn(&MinusOne<SYS_rt_sigqueueinfo, EPERM>), kProcess},
      {"sigaltstack", LibcFn(&MinusOne<SYS_sigaltstack, EPERM>), kProcess},
      {"sigprocmask", LibcFn(&Sigprocmask),
       "answered without effect, as a raw rt_sigprocmask from inside"},
      {"setuid", LibcFn(&MinusOne<SYS_setuid, EPERM>), kProcess},
      {"setgid", LibcFn(&MinusOne<SYS_setgid, EPERM>), kProcess},
      {"seteuid", LibcFn(&MinusOne<SYS_setresuid, EPERM>), kProcess},
      {"setegid", LibcFn(&MinusOne<SYS_setresgid, EPERM>), kProcess},
      {"setreuid", LibcFn(&MinusOne<SYS_setreuid, EPERM>), kProcess},
      {"setregid", LibcFn(&MinusOne<SYS_setregid, EPERM>), kProcess},
      {"setresuid", LibcFn(&MinusOne<SYS_setresuid, EPERM>), kProcess},
      {"setresgid", LibcFn(&MinusOne<SYS_setresgid, EPERM>), kProcess},
      {"setgroups", LibcFn(&MinusOne<SYS_setgroups, EPERM>), kProcess},
      {"setsid", LibcFn(&MinusOne<SYS_setsid, EPERM>), kProcess},
      {"setpgid", LibcFn(&MinusOne<SYS_setpgid, EPERM>), kProcess},
      {"setpriority", LibcFn(&MinusOne<SYS_setpriority, EACCES>), kProcess},
      {"setrlimit", LibcFn(&MinusOne<SYS_setrlimit, EPERM>), kProcess},
      {"prlimit", LibcFn(&MinusOne<SYS_prlimit64, EPERM>), kProcess},
      {"prlimit64", LibcFn(&MinusOne<SYS_prlimit64, EPERM>), kProcess},
      {"prctl", LibcFn(&MinusOne<SYS_prctl, EINVAL>), kProcess},
      {"ptrace", LibcFn(&MinusOne<SYS_ptrace, EPERM>), kProcess},
      {"chroot", LibcFn(&MinusOne<SYS_chroot, EPERM>), kProcess},
      // Dynamic loading.
      {"dlopen", LibcFn(&Null<kNoSyscall, 0>), kDl},
      {"dlmopen", LibcFn(&Null<kNoSyscall, 0>), kDl},
      {"dlsym", LibcFn(&Null<kNoSyscall, 0>), kDl},
      {"dlvsym", LibcFn(&Null<kNoSyscall, 0>), kDl},
      {"dlclose", LibcFn(&Constant<-1>), kDl},
      {"dladdr", LibcFn(&Constant<0>), kDl},
      {"dladdr1", LibcFn(&Constant<0>), kDl},
      {"dlerror", LibcFn(&Dlerror), kDl},
      // The environment.
      {"setenv", LibcFn(&MinusOne<kNoSyscall, ENOMEM>), kEnv},
      {"unsetenv", LibcFn(&MinusOne<kNoSyscall, ENOMEM>), kEnv},
      {"putenv", LibcFn(&MinusOne<kNoSyscall, ENOMEM>), kEnv},
      {"clearenv", LibcFn(&Constant<-1>), kEnv},
      // The file system and the host's descriptors.
      {"mkdir", LibcFn(&MinusOne<SYS_mkdir, EACCES>), kFs},
      {"mkdirat", LibcFn(&MinusOne<SYS_mkdirat, EACCES>), kFs},
      {"rmdir", LibcFn(&MinusOne<SYS_rmdir, EACCES>), kFs},
      {"unlink", LibcFn(&MinusOne<SYS_unlink, EACCES>), kFs},
      {"unlinkat", LibcFn(&MinusOne<SYS_unlinkat, EACCES>), kFs},
      {"remove", LibcFn(&MinusOne<SYS_unlink, EACCES>), kFs},
      {"rename", LibcFn(&MinusOne<SYS_rename, EACCES>), kFs},
      {"renameat", LibcFn(&MinusOne<SYS_renameat, EACCES>), kFs},
      {"renameat2", LibcFn(&MinusOne<SYS_renameat2, EACCES>), kFs},
      {"link", LibcFn(&MinusOne<SYS_link, EACCES>), kFs},
      {"linkat", LibcFn(&MinusOne<SYS_linkat, EACCES>), kFs},
      {"symlink", LibcFn(&MinusOne<SYS_symlink, EACCES>), kFs},
      {"symlinkat", LibcFn(&MinusOne<SYS_symlinkat, EACCES>), kFs},
      {"readlink", LibcFn(&MinusOne<SYS_readlink, ENOENT>), kFs},
      {"readlinkat", LibcFn(&MinusOne<SYS_readlinkat, ENOENT>), kFs},
      {"chmod", LibcFn(&MinusOne<SYS_chmod, EPERM>), kFs},
      {"fchmod", LibcFn(&MinusOne<SYS_fchmod, EBADF>), kFs},
      {"fchmodat", LibcFn(&MinusOne<SYS_fchmodat, EPERM>), kFs},
      {"chown", LibcFn(&MinusOne<SYS_chown, EPERM>), kFs},
      {"fchown", LibcFn(&MinusOne<SYS_fchown, EBADF>), kFs},
      {"lchown", LibcFn(&MinusOne<SYS_lchown, EPERM>), kFs},
      {"fchownat", LibcFn(&MinusOne<SYS_fchownat, EPERM>), kFs},
      {"truncate", LibcFn(&MinusOne<SYS_truncate, EACCES>), kFs},
      {"truncate64", LibcFn(&MinusOne<SYS_truncate, EACCES>), kFs},
      {"ftruncate", LibcFn(&MinusOne<SYS_ftruncate, EBADF>), kFs},
      {"ftruncate64", LibcFn(&MinusOne<SYS_ftruncate, EBADF>), kFs},
      {"utime", LibcFn(&MinusOne<SYS_utime, EACCES>), kFs},
      {"utimes", LibcFn(&MinusOne<SYS_utimes, EACCES>), kFs},
      {"utimensat", LibcFn(&MinusOne<SYS_utimensat, EACCES>), kFs},
      {"futimens", LibcFn(&MinusOne<SYS_utimensat, EBADF>), kFs},
      {"mknod", LibcFn(&MinusOne<SYS_mknod, EPERM>), kFs},
      {"mknodat", LibcFn(&MinusOne<SYS_mknodat, EPERM>), kFs},
      {"mkfifo", LibcFn(&MinusOne<SYS_mknod, EACCES>), kFs},
      {"mkstemp", LibcFn(&MinusOne<SYS_openat, EACCES>), kFs},
      {"mkstemp64", LibcFn(&MinusOne<SYS_openat, EACCES>), kFs},
      {"mkostemp", LibcFn(&MinusOne<SYS_openat, EACCES>), kFs},
      {"mkstemps", LibcFn(&MinusOne<SYS_openat, EACCES>), kFs},
      {"mkostemps", LibcFn(&MinusOne<SYS_openat, EACCES>), kFs},
      {"mkdtemp", LibcFn(&Null<SYS_mkdir, EACCES>), kFs},
      {"chdir", LibcFn(&MinusOne<SYS_chdir, EACCES>), kFs},
      {"fchdir", LibcFn(&MinusOne<SYS_fchdir, EBADF>), kFs},
      {"getcwd", LibcFn(&Null<SYS_getcwd, EACCES>), kFs},
      {"dup", LibcFn(&MinusOne<SYS_dup, EBADF>), kFs},
      {"dup2", LibcFn(&MinusOne<SYS_dup2, EBADF>), kFs},
      {"dup3", LibcFn(&MinusOne<SYS_dup3, EBADF>), kFs},
      {"pipe", LibcFn(&MinusOne<SYS_pipe, EMFILE>), kFs},
      {"pipe2", LibcFn(&MinusOne<SYS_pipe2, EMFILE>), kFs},
      {"epoll_create", LibcFn(&MinusOne<SYS_epoll_create, EMFILE>), kFs},
      {"epoll_create1", LibcFn(&MinusOne<SYS_epoll_create1, EMFILE>), kFs},
      {"eventfd", LibcFn(&MinusOne<SYS_eventfd2, EMFILE>), kFs},
      {"inotify_init", LibcFn(&MinusOne<SYS_inotify_init, EMFILE>), kFs},
      {"inotify_init1", LibcFn(&MinusOne<SYS_inotify_init1, EMFILE>), kFs},
      {"signalfd", LibcFn(&MinusOne<SYS_signalfd4, EMFILE>), kProcess},
      {"flock", LibcFn(&MinusOne<SYS_flock, EBADF>), kFs},
      {"ioctl", LibcFn(&MinusOne<SYS_ioctl, ENOTTY>), kFs},
      {"mount", LibcFn(&MinusOne<SYS_mount, EPERM>), kFs},
      {"umount", LibcFn(&MinusOne<SYS_umount2, EPERM>), kFs},
      {"umount2", LibcFn(&MinusOne<SYS_umount2, EPERM>), kFs},
      // Terminals.
      {"isatty", LibcFn(&Isatty), kTty},
      {"ttyname", LibcFn(&Null<kNoSyscall, ENOTTY>), kTty},
      {"tcgetattr", LibcFn(&MinusOne<SYS_ioctl, ENOTTY>), kTty},
      {"tcsetattr", LibcFn(&MinusOne<SYS_ioctl, ENOTTY>), kTty},
  };
  return kBindings;
}

}  // namespace mpkbox::internal
