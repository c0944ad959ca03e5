// The C library's syscall wrappers for loaded code. glibc's are
// cancellation points, which in a process with more than one thread write
// the thread's descriptor (key 0) around the syscall, and they set errno in
// TLS (key 0): both fault under Ambient::kReadOnly. These ask the runtime
// through the libc entry instead: with host rights it judges the call by the
// compartment's policy exactly as it judges a raw syscall's SIGSYS
// (JudgeSyscall), without the signal's cost, and errno goes to the HeapCache
// slot loaded code's __errno_location returns.
#include <stdint.h>
#include <sys/syscall.h>
#include <sys/types.h>

#include "runtime/compartment_libc/bindings.h"
#include "runtime/compartment_libc/compartment_libc.h"
#include "runtime/compartment_libc/files.h"
#include "runtime/compartment_libc/libc_entry.h"
#include "runtime/syscall_dispatch.h"

namespace mpkbox::internal {
namespace {

enum SyscallRequest : uint64_t {
  kSyscall = 0,  // the number in the op's high half, five arguments
};

// A syscall argument, as syscall(2) takes it.
long L(const void* p) {
  return static_cast<long>(reinterpret_cast<intptr_t>(p));
}
long L(size_t n) { return static_cast<long>(n); }

ssize_t Read(int fd, void* buf, size_t n) {
  return LibcSyscall(SYS_read, fd, L(buf), L(n));
}
ssize_t Write(int fd, const void* buf, size_t n) {
  return LibcSyscall(SYS_write, fd, L(buf), L(n));
}
int Close(int fd) { return static_cast<int>(LibcSyscall(SYS_close, fd)); }
off_t Lseek(int fd, off_t offset, int whence) {
  return LibcSyscall(SYS_lseek, fd, offset, whence);
}
ssize_t Pread(int fd, void* buf, size_t n, off_t offset) {
  return LibcSyscall(SYS_pread64, fd, L(buf), L(n), offset);
}
ssize_t Pwrite(int fd, const void* buf, size_t n, off_t offset) {
  return LibcSyscall(SYS_pwrite64, fd, L(buf), L(n), offset);
}
ssize_t Getrandom(void* buf, size_t n, unsigned flags) {
  return LibcSyscall(SYS_getrandom, L(buf), L(n), flags);
}
pid_t Getpid() { return static_cast<pid_t>(LibcSyscall(SYS_getpid)); }
pid_t Gettid() { return static_cast<pid_t>(LibcSyscall(SYS_gettid)); }
// syscall(2) itself. Variadic in C; integer arguments travel in the same
// registers either way. The sixth argument is not passed: no call the
// policy can allow needs one.
long SyscallImport(long nr, long a, long b, long c, long d, long e) {
  return LibcSyscall(nr, a, b, c, d, e);
}

constexpr char kJudged[] =
    "judged by the compartment's policy with host rights, as its SIGSYS "
    "would be (pointers must be its memory; what is written is copied)";

}  // namespace

long LibcResult(uint64_t answer) {
  const long r = static_cast<long>(answer);
  if (r < 0 && r > -4096) {
    *mpkbox_compartment_errno_location() = static_cast<int>(-r);
    return -1;
  }
  return r;
}

long LibcSyscall(long nr, long a, long b, long c, long d, long e) {
  const uint64_t op =
      LibcOp(kLibcSyscalls, kSyscall, static_cast<uint32_t>(nr));
  return LibcResult(
      EnterLibc(op, static_cast<uint64_t>(a), static_cast<uint64_t>(b),
                static_cast<uint64_t>(c), static_cast<uint64_t>(d),
                static_cast<uint64_t>(e)));
}

absl::Span<const LibcBinding> SyscallBindings() {
  static const LibcBinding kBindings[] = {
      {"read", LibcFn(&Read), kJudged},
      {"write", LibcFn(&Write), kJudged},
      {"close", LibcFn(&Close), kJudged},
      {"lseek", LibcFn(&Lseek), kJudged},
      {"lseek64", LibcFn(&Lseek), kJudged},
      {"pread", LibcFn(&Pread), kJudged},
      {"pread64", LibcFn(&Pread), kJudged},
      {"pwrite", LibcFn(&Pwrite), kJudged},
      {"pwrite64", LibcFn(&Pwrite), kJudged},
      {"getrandom", LibcFn(&Getrandom), kJudged},
      {"getpid", LibcFn(&Getpid),
       "answered whatever the policy, like its syscall"},
      {"gettid", LibcFn(&Gettid),
       "answered whatever the policy, like its syscall"},
      {"syscall", LibcFn(&SyscallImport), kJudged},
  };
  return kBindings;
}

uint64_t LibcSyscallsRequest(const LibcCaller& caller, uint64_t op,
                             const uint64_t a[5]) {
  if ((op & 0xff) != kSyscall) {
    AbandonCallback(caller.tb, FaultKind::kSyscallDenied, op,
                    "an unknown syscall request");
  }
  // As the kernel reads it: an int.
  const long nr = static_cast<int32_t>(op >> 32);
  const uint64_t args[6] = {a[0], a[1], a[2], a[3], a[4], 0};
  long result;
  // Descriptors: the compartment's own are files.cc's, the host's are not
  // the compartment's to read or close.
  if (DescriptorSyscall(caller, nr, args, &result)) {
    return static_cast<uint64_t>(result);
  }
  if (!JudgeSyscall(caller.tb, *caller.ctx, nr, args, 0, &result)) {
    AbandonRecordedCallback(caller.tb);
  }
  return static_cast<uint64_t>(result);
}

}  // namespace mpkbox::internal
