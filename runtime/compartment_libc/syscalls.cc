// The C library's plain syscall wrappers for loaded code. glibc's are
// cancellation points, which in a process with more than one thread write
// the thread's descriptor (key 0) around the syscall, and they set errno in
// TLS (key 0): both fault under Ambient::kReadOnly. These make the syscall
// (trampolines/compartment_syscall.S: still SIGSYS and the compartment's
// policy) and put errno in the HeapCache slot loaded code's __errno_location
// returns.
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>

#include "runtime/compartment_libc/compartment_libc.h"
#include "trampolines/trampolines.h"

namespace {

long Result(long r) {
  if (r < 0 && r > -4096) {
    *mpkbox_compartment_errno_location() = static_cast<int>(-r);
    return -1;
  }
  return r;
}

long Syscall(long nr, long a = 0, long b = 0, long c = 0, long d = 0) {
  return Result(mpkbox_compartment_syscall(nr, a, b, c, d, 0, 0));
}

// A syscall argument, as syscall(2) takes it.
long L(const void* p) {
  return static_cast<long>(reinterpret_cast<intptr_t>(p));
}
long L(size_t n) { return static_cast<long>(n); }

ssize_t Read(int fd, void* buf, size_t n) {
  return Syscall(SYS_read, fd, L(buf), L(n));
}
ssize_t Write(int fd, const void* buf, size_t n) {
  return Syscall(SYS_write, fd, L(buf), L(n));
}
int Close(int fd) { return static_cast<int>(Syscall(SYS_close, fd)); }
off_t Lseek(int fd, off_t offset, int whence) {
  return Syscall(SYS_lseek, fd, offset, whence);
}
ssize_t Pread(int fd, void* buf, size_t n, off_t offset) {
  return Syscall(SYS_pread64, fd, L(buf), L(n), offset);
}
ssize_t Pwrite(int fd, const void* buf, size_t n, off_t offset) {
  return Syscall(SYS_pwrite64, fd, L(buf), L(n), offset);
}
ssize_t Getrandom(void* buf, size_t n, unsigned flags) {
  return Syscall(SYS_getrandom, L(buf), L(n), flags);
}

struct Wrapper {
  const char* name;
  void* fn;
};

}  // namespace

extern "C" void* mpkbox_compartment_syscall_wrapper(const char* name) {
  static const Wrapper kWrappers[] = {
      {"read", reinterpret_cast<void*>(&Read)},
      {"write", reinterpret_cast<void*>(&Write)},
      {"close", reinterpret_cast<void*>(&Close)},
      {"lseek", reinterpret_cast<void*>(&Lseek)},
      {"lseek64", reinterpret_cast<void*>(&Lseek)},
      {"pread", reinterpret_cast<void*>(&Pread)},
      {"pread64", reinterpret_cast<void*>(&Pread)},
      {"pwrite", reinterpret_cast<void*>(&Pwrite)},
      {"pwrite64", reinterpret_cast<void*>(&Pwrite)},
      {"getrandom", reinterpret_cast<void*>(&Getrandom)},
  };
  for (const Wrapper& w : kWrappers) {
    if (strcmp(w.name, name) == 0) return w.fn;
  }
  return nullptr;
}
