// Files for loaded code (docs/INTERNALS.md, "Files"). Nothing is reachable
// unless the policy grants it (SyscallPolicy::AllowReadFile and
// AllowReadDirectory); what is not granted fails with the errno the policy's
// rule for the syscall gives (Deny(SYS_openat, e)), ENOENT by default, so
// libraries take their fallback paths.
//
// Compartment side: open/stat/access/opendir/realpath ask the host through
// the libc entry. Host side: the path is copied out of the compartment's
// own memory (bounded, checked page by page), normalised lexically, matched
// against the grants, and opened by the host: a granted file by the host's
// own path string, a path beneath a granted directory with openat2
// RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS from that directory, read-only. The
// descriptor is the compartment's (LibcState::files), closed at Reset and
// destruction; its read/lseek/fstat/close go through DescriptorSyscall.
#include "runtime/compartment_libc/files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <linux/openat2.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <string>

#include "runtime/compartment_libc/bindings.h"
#include "runtime/compartment_libc/compartment_libc.h"
#include "runtime/compartment_libc/libc_state.h"
#include "runtime/syscall_dispatch.h"
#include "runtime/syscall_rules.h"
#include "runtime/testing_switches.h"

namespace mpkbox::internal {
namespace {

// A compartment's open descriptors, at most: a leak inside cannot exhaust
// the host's table.
constexpr size_t kMaxFiles = 256;

// ---- host side ----

long Errno() { return -errno; }

// The NUL-terminated path at `p`, copied out of the compartment's own
// memory one page at a time (each checked before it is read), so another
// thread of the compartment cannot change what is checked after.
long CopyPath(const CallContext& ctx, uint64_t p, char (&out)[PATH_MAX]) {
  size_t i = 0;
  while (i < sizeof(out)) {
    const uint64_t at = p + i;
    const uint64_t page_end = (at | (MPKBOX_PAGE_SIZE - 1)) + 1;
    const size_t n = std::min<uint64_t>(page_end - at, sizeof(out) - i);
    if (at < p || !InOwnMemory(ctx, at, n)) return -EFAULT;
    memcpy(out + i, reinterpret_cast<const void*>(at), n);
    if (memchr(out + i, 0, n) != nullptr) return 0;
    i += n;
  }
  return -ENAMETOOLONG;
}

// What a compartment's normalised path reaches: a granted file (opened by
// the host's own path) or a path beneath a granted directory.
struct Grant {
  const std::string* base;
  std::string beneath;  // empty for a granted file, "." for the directory
  bool directory;
};

std::optional<Grant> FindGrant(const SyscallRules& rules,
                               const std::string& path) {
  for (const std::string& f : rules.read_files) {
    if (path == f) return Grant{&f, "", false};
  }
  for (const std::string& d : rules.read_dirs) {
    if (path == d) return Grant{&d, ".", true};
    const size_t n = d == "/" ? 0 : d.size();
    if (path.size() > n + 1 && path.compare(0, n, d, 0, n) == 0 &&
        path[n] == '/') {
      return Grant{&d, path.substr(n + 1), true};
    }
  }
  return std::nullopt;
}

// The open flags a grant allows: read-only, nothing that creates,
// truncates or changes what the descriptor is.
bool ReadOnlyFlags(int flags) {
  constexpr int kKernelLargefile = 0100000;
  constexpr int kHarmless = O_CLOEXEC | O_NOCTTY | O_NONBLOCK | O_DIRECTORY |
                            O_NOFOLLOW | O_NOATIME | kKernelLargefile;
  return (flags & O_ACCMODE) == O_RDONLY && (flags & ~kHarmless) == 0;
}

// Opens what `grant` names with `flags` (O_RDONLY or O_PATH and harmless
// bits), close-on-exec: a host descriptor, or -errno.
long OpenGrant(const Grant& grant, int flags) {
  flags |= (flags & O_PATH) ? O_CLOEXEC : O_CLOEXEC | O_NOCTTY;
  if (!grant.directory) {
    const int fd = open(grant.base->c_str(), flags);
    return fd >= 0 ? fd : Errno();
  }
  const int dir = open(grant.base->c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return Errno();
  open_how how{};
  how.flags = static_cast<uint64_t>(flags);
  how.resolve =
      MPKBOX_SWITCHED_OFF(skip_files_beneath)
          ? 0
          : RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  const long fd =
      syscall(SYS_openat2, dir, grant.beneath.c_str(), &how, sizeof(how));
  const long r = fd >= 0 ? fd : Errno();
  close(dir);
  return r;
}

// An answer, or the call ends (the policy's Fail).
struct Answer {
  long value = 0;
  bool fail_call = false;
  long nr = 0;  // the syscall the policy failed
};

Answer NotGranted(const LibcCaller& c, long nr) {
  int error;
  if (!RefusalErrno(c, nr, ENOENT, &error)) return {0, true, nr};
  return {-error};
}

// Where `path` (from `dirfd`, as the *at calls take it) leads: its
// normalised absolute path, or an errno (*answer). A relative path needs a
// directory the compartment opened: it has no working directory.
std::optional<std::string> FullPath(const LibcCaller& c, int dirfd,
                                    uint64_t path, long nr, Answer* answer) {
  char copy[PATH_MAX];
  if (long r = CopyPath(*c.ctx, path, copy); r < 0) {
    *answer = {r};
    return std::nullopt;
  }
  std::string full;
  if (copy[0] == '/') {
    full = copy;
  } else if (copy[0] == '\0') {
    *answer = {-ENOENT};
    return std::nullopt;
  } else if (dirfd == AT_FDCWD) {
    *answer = NotGranted(c, nr);
    return std::nullopt;
  } else {
    absl::ReaderMutexLock lock(&c.state->mu);
    auto it = c.state->files.find(dirfd);
    if (it == c.state->files.end()) {
      *answer = {-EBADF};
      return std::nullopt;
    }
    full = it->second + "/" + copy;
  }
  std::optional<std::string> norm = NormalisePath(full);
  if (!norm) *answer = NotGranted(c, nr);
  return norm;
}

// The host's own O_PATH open (stat, access, realpath): compartment code
// cannot ask for O_PATH, which ReadOnlyFlags refuses.
constexpr int kPathOnly = -1;

// Opens `path` for the compartment with `flags` if a grant covers it: a
// host descriptor (not yet the compartment's) or -errno. *norm: its path.
long OpenForCompartment(const LibcCaller& c, int dirfd, uint64_t path,
                        int flags, long nr, Answer* answer,
                        std::string* norm) {
  std::optional<std::string> full = FullPath(c, dirfd, path, nr, answer);
  if (!full) return 0;
  std::optional<Grant> grant =
      FindGrant(SyscallRules::Of(*c.ctx->policy), *full);
  if (!grant) {
    *answer = NotGranted(c, nr);
    return 0;
  }
  // Granted or not is decided first: an ungranted write open fails as any
  // ungranted path does, a granted one with EACCES.
  if (flags != kPathOnly && !ReadOnlyFlags(flags)) {
    *answer = {-EACCES};
    return 0;
  }
  *norm = *std::move(full);
  const long fd = OpenGrant(*grant, flags == kPathOnly ? O_PATH : flags);
  if (fd < 0) *answer = {fd};
  return fd;
}

Answer OpenAt(const LibcCaller& c, const uint64_t a[5]) {
  Answer answer;
  std::string norm;
  const long fd = OpenForCompartment(c, static_cast<int>(a[0]), a[1],
                                     static_cast<int>(a[2]), SYS_openat,
                                     &answer, &norm);
  if (answer.fail_call || answer.value < 0) return answer;
  absl::MutexLock lock(&c.state->mu);
  if (c.state->files.size() >= kMaxFiles) {
    close(static_cast<int>(fd));
    return {-EMFILE};
  }
  c.state->files[static_cast<int>(fd)] = std::move(norm);
  return {fd};
}

// An O_PATH descriptor for what `path` names, if granted (stat, access).
long PathFd(const LibcCaller& c, int dirfd, uint64_t path, long nr,
            Answer* answer) {
  std::string norm;
  const long fd =
      OpenForCompartment(c, dirfd, path, kPathOnly, nr, answer, &norm);
  return answer->fail_call || answer->value < 0 ? -1 : fd;
}

// Copies `n` bytes to the compartment's own memory at `to`.
long CopyOut(const CallContext& ctx, uint64_t to, const void* from,
             size_t n) {
  if (!InOwnMemory(ctx, to, n)) return -EFAULT;
  memcpy(reinterpret_cast<void*>(to), from, n);
  return 0;
}

Answer StatAt(const LibcCaller& c, const uint64_t a[5]) {
  if (!InOwnMemory(*c.ctx, a[2], sizeof(struct stat))) return {-EFAULT};
  Answer answer;
  const long fd =
      PathFd(c, static_cast<int>(a[0]), a[1], SYS_newfstatat, &answer);
  if (fd < 0) return answer;
  struct stat st;
  const long r = fstat(static_cast<int>(fd), &st) == 0 ? 0 : Errno();
  close(static_cast<int>(fd));
  return {r < 0 ? r : CopyOut(*c.ctx, a[2], &st, sizeof(st))};
}

Answer Statx(const LibcCaller& c, const uint64_t a[5]) {
  if (!InOwnMemory(*c.ctx, a[4], sizeof(struct statx))) return {-EFAULT};
  Answer answer;
  const long fd = PathFd(c, static_cast<int>(a[0]), a[1], SYS_statx, &answer);
  if (fd < 0) return answer;
  struct statx stx;
  const long r = statx(static_cast<int>(fd), "", AT_EMPTY_PATH,
                       static_cast<unsigned>(a[3]), &stx) == 0
                     ? 0
                     : Errno();
  close(static_cast<int>(fd));
  return {r < 0 ? r : CopyOut(*c.ctx, a[4], &stx, sizeof(stx))};
}

Answer AccessAt(const LibcCaller& c, const uint64_t a[5]) {
  const int mode = static_cast<int>(a[2]);
  if (mode & ~(R_OK | W_OK | X_OK)) return {-EINVAL};
  Answer answer;
  std::string norm;
  // Readable means it opens read-only; the grant is never more than that.
  const long fd = OpenForCompartment(c, static_cast<int>(a[0]), a[1],
                                     (mode & R_OK) ? O_RDONLY : kPathOnly,
                                     SYS_access, &answer, &norm);
  if (answer.fail_call || answer.value < 0) return answer;
  close(static_cast<int>(fd));
  return {(mode & (W_OK | X_OK)) ? -EACCES : 0};
}

Answer Realpath(const LibcCaller& c, const uint64_t a[5]) {
  Answer answer;
  std::string norm;
  const long fd = OpenForCompartment(c, AT_FDCWD, a[0], kPathOnly, SYS_openat,
                                     &answer, &norm);
  if (answer.fail_call || answer.value < 0) return answer;
  close(static_cast<int>(fd));
  if (norm.size() >= PATH_MAX) return {-ENAMETOOLONG};
  return {CopyOut(*c.ctx, a[1], norm.c_str(), norm.size() + 1)};
}

bool IsDescriptorCall(long nr) {
  switch (nr) {
    case SYS_read:
    case SYS_pread64:
    case SYS_lseek:
    case SYS_close:
    case SYS_fstat:
    case SYS_getdents64:
    case SYS_fcntl:
    case SYS_fsync:
    case SYS_fdatasync:
      return true;
  }
  return false;
}

// `nr` on the compartment's own descriptor a[0], with `state->mu` held.
long OnOwnDescriptor(const LibcCaller& c, long nr, const uint64_t a[6]) {
  const int fd = static_cast<int>(a[0]);
  switch (nr) {
    case SYS_read:
    case SYS_pread64:
    case SYS_getdents64: {
      // The kernel writes the compartment's memory with host rights: only
      // where the compartment may write itself.
      if (!InOwnMemory(*c.ctx, a[1], a[2])) return -EFAULT;
      const long r = syscall(nr, fd, a[1], a[2], a[3]);
      return r >= 0 ? r : Errno();
    }
    case SYS_lseek:
    case SYS_fsync:
    case SYS_fdatasync: {
      const long r = syscall(nr, fd, a[1], a[2]);
      return r >= 0 ? r : Errno();
    }
    case SYS_fstat: {
      struct stat st;
      if (fstat(fd, &st) != 0) return Errno();
      return CopyOut(*c.ctx, a[1], &st, sizeof(st));
    }
    case SYS_fcntl: {
      // What a library asks of a file it reads; no dup (the table is the
      // host's), no locks, no flag changes.
      const int cmd = static_cast<int>(a[1]);
      if (cmd == F_GETFD || cmd == F_GETFL) {
        const long r = fcntl(fd, cmd);
        return r >= 0 ? r : Errno();
      }
      if (cmd == F_SETFD) return 0;  // it stays close-on-exec
      return -EINVAL;
    }
  }
  return -ENOSYS;
}

// ---- compartment side ----

int& ErrnoSlot() { return *mpkbox_compartment_errno_location(); }

int Close(int fd) { return static_cast<int>(LibcSyscall(SYS_close, fd)); }

long Ask(FilesRequest request, uint64_t a = 0, uint64_t b = 0,
         uint64_t c = 0, uint64_t d = 0, uint64_t e = 0) {
  return LibcResult(EnterLibc(LibcOp(kLibcFiles, request), a, b, c, d, e));
}

uint64_t U(const void* p) { return reinterpret_cast<uint64_t>(p); }
uint64_t U(int v) { return static_cast<uint64_t>(static_cast<int64_t>(v)); }

int OpenAtImpl(int dirfd, const char* path, int flags) {
  return static_cast<int>(Ask(kFilesOpenAt, U(dirfd), U(path), U(flags)));
}
// The mode is read only when it exists (O_CREAT, O_TMPFILE), as libc does;
// no grant creates a file anyway.
int Open(const char* path, int flags, ...) {
  return OpenAtImpl(AT_FDCWD, path, flags);
}
int Open2(const char* path, int flags) {
  return OpenAtImpl(AT_FDCWD, path, flags);
}
int OpenAtImport(int dirfd, const char* path, int flags, ...) {
  return OpenAtImpl(dirfd, path, flags);
}
int OpenAt2(int dirfd, const char* path, int flags) {
  return OpenAtImpl(dirfd, path, flags);
}
int Creat(const char* path, mode_t) {
  return OpenAtImpl(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC);
}

int FstatAt(int dirfd, const char* path, struct stat* st, int flags) {
  if ((flags & AT_EMPTY_PATH) && path != nullptr && path[0] == '\0') {
    return static_cast<int>(LibcSyscall(
        SYS_fstat, dirfd, static_cast<long>(reinterpret_cast<intptr_t>(st))));
  }
  return static_cast<int>(
      Ask(kFilesStatAt, U(dirfd), U(path), U(st), U(flags)));
}
int Stat(const char* path, struct stat* st) {
  return FstatAt(AT_FDCWD, path, st, 0);
}
int Lstat(const char* path, struct stat* st) {
  return FstatAt(AT_FDCWD, path, st, AT_SYMLINK_NOFOLLOW);
}
int Fstat(int fd, struct stat* st) {
  return static_cast<int>(LibcSyscall(
      SYS_fstat, fd, static_cast<long>(reinterpret_cast<intptr_t>(st))));
}
// glibc's versioned stat entry points (libraries built before 2.33); the
// version names the x86-64 struct stat either way.
int Xstat(int, const char* path, struct stat* st) { return Stat(path, st); }
int Lxstat(int, const char* path, struct stat* st) { return Lstat(path, st); }
int Fxstat(int, int fd, struct stat* st) { return Fstat(fd, st); }
int FxstatAt(int, int dirfd, const char* path, struct stat* st, int flags) {
  return FstatAt(dirfd, path, st, flags);
}
int StatxImport(int dirfd, const char* path, int flags, unsigned mask,
          struct statx* out) {
  return static_cast<int>(
      Ask(kFilesStatx, U(dirfd), U(path), U(flags), mask, U(out)));
}

int FaccessAt(int dirfd, const char* path, int mode, int) {
  return static_cast<int>(Ask(kFilesAccessAt, U(dirfd), U(path), U(mode)));
}
int Access(const char* path, int mode) {
  return FaccessAt(AT_FDCWD, path, mode, 0);
}

char* RealpathImpl(const char* path, char* resolved) {
  char* out = resolved != nullptr ? resolved
                                  : static_cast<char*>(malloc(PATH_MAX));
  if (out == nullptr) {
    ErrnoSlot() = ENOMEM;
    return nullptr;
  }
  if (Ask(kFilesRealpath, U(path), U(out)) < 0) {
    if (resolved == nullptr) free(out);
    return nullptr;
  }
  return out;
}
char* RealpathChk(const char* path, char* resolved, size_t) {
  return RealpathImpl(path, resolved);
}
char* CanonicalizeFileName(const char* path) {
  return RealpathImpl(path, nullptr);
}

int Fcntl(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  const long arg = va_arg(ap, long);
  va_end(ap);
  return static_cast<int>(LibcSyscall(SYS_fcntl, fd, cmd, arg));
}
int Fsync(int fd) { return static_cast<int>(LibcSyscall(SYS_fsync, fd)); }
int Fdatasync(int fd) {
  return static_cast<int>(LibcSyscall(SYS_fdatasync, fd));
}

// A directory stream on the compartment's heap, read with getdents64 (whose
// records have struct dirent's layout on x86-64).
struct Directory {
  int fd;
  size_t pos;
  size_t end;
  struct dirent entry;
  alignas(8) char buf[4096];
};
static_assert(offsetof(struct dirent, d_name) == 19);

DIR* Fdopendir(int fd) {
  struct stat st;
  if (Fstat(fd, &st) != 0) return nullptr;
  if (!S_ISDIR(st.st_mode)) {
    ErrnoSlot() = ENOTDIR;
    return nullptr;
  }
  auto* d = static_cast<Directory*>(malloc(sizeof(Directory)));
  if (d == nullptr) {
    ErrnoSlot() = ENOMEM;
    return nullptr;
  }
  d->fd = fd;
  d->pos = d->end = 0;
  return reinterpret_cast<DIR*>(d);
}
DIR* Opendir(const char* path) {
  const int fd = OpenAtImpl(AT_FDCWD, path, O_RDONLY | O_DIRECTORY);
  if (fd < 0) return nullptr;
  DIR* d = Fdopendir(fd);
  if (d == nullptr) Close(fd);
  return d;
}
struct dirent* Readdir(DIR* dir) {
  auto* d = reinterpret_cast<Directory*>(dir);
  if (d->pos >= d->end) {
    const long n = LibcSyscall(
        SYS_getdents64, d->fd,
        static_cast<long>(reinterpret_cast<intptr_t>(d->buf)),
        static_cast<long>(sizeof(d->buf)));
    if (n <= 0) return nullptr;  // the end (errno untouched) or an error
    d->pos = 0;
    d->end = static_cast<size_t>(n);
  }
  const auto* rec = reinterpret_cast<const struct dirent*>(d->buf + d->pos);
  const size_t len = std::min<size_t>(rec->d_reclen, sizeof(d->entry));
  memcpy(&d->entry, rec, len);
  d->pos += rec->d_reclen;
  return &d->entry;
}
int Closedir(DIR* dir) {
  auto* d = reinterpret_cast<Directory*>(dir);
  const int r = Close(d->fd);
  free(d);
  return r;
}
int Dirfd(DIR* dir) { return reinterpret_cast<Directory*>(dir)->fd; }
void Rewinddir(DIR* dir) {
  auto* d = reinterpret_cast<Directory*>(dir);
  LibcSyscall(SYS_lseek, d->fd, 0, SEEK_SET);
  d->pos = d->end = 0;
}

constexpr char kPath[] =
    "the host copies the path out of the compartment's memory and opens it "
    "only if the policy grants it, read-only, beneath the grant";
constexpr char kOwnFd[] =
    "the host acts only on descriptors this compartment opened (EBADF for "
    "the host's)";
constexpr char kDir[] =
    "a stream on the compartment's heap over open and getdents64 of its own "
    "descriptor (both checked by the host)";

}  // namespace

int CompartmentOpen(const char* path, int flags, unsigned) {
  return OpenAtImpl(AT_FDCWD, path, flags);
}

bool DescriptorSyscall(const LibcCaller& c, long nr, const uint64_t a[6],
                       long* result) {
  if (!IsDescriptorCall(nr)) return false;
  const int fd = static_cast<int>(a[0]);
  if (nr == SYS_close) {
    absl::MutexLock lock(&c.state->mu);
    if (c.state->files.erase(fd) == 1) {
      *result = close(fd) == 0 ? 0 : Errno();
      return true;
    }
  } else {
    // Shared while it is used: close waits, so the number cannot go back
    // to the host's table mid-read.
    absl::ReaderMutexLock lock(&c.state->mu);
    if (c.state->files.contains(fd)) {
      *result = OnOwnDescriptor(c, nr, a);
      return true;
    }
  }
  // The host's descriptor. The policy's Deny still picks the errno (and
  // Fail still ends the call), but nothing reads, moves or closes it.
  int error;
  if (!RefusalErrno(c, nr, EBADF, &error)) return false;
  *result = -error;
  return true;
}

uint64_t LibcFilesRequest(const LibcCaller& caller, uint64_t op,
                          const uint64_t a[5]) {
  Answer answer;
  switch (op & 0xff) {
    case kFilesOpenAt:
      answer = OpenAt(caller, a);
      break;
    case kFilesStatAt:
      answer = StatAt(caller, a);
      break;
    case kFilesStatx:
      answer = Statx(caller, a);
      break;
    case kFilesAccessAt:
      answer = AccessAt(caller, a);
      break;
    case kFilesRealpath:
      answer = Realpath(caller, a);
      break;
    case kFilesRefuse: {
      int error;
      if (!RefusalErrno(caller, static_cast<int32_t>(op >> 32),
                        static_cast<int>(a[0]), &error)) {
        answer = {0, true, static_cast<int32_t>(op >> 32)};
      } else {
        answer = {error};
      }
      break;
    }
    default:
      AbandonCallback(caller.tb, FaultKind::kSyscallDenied, op,
                      "an unknown files request");
  }
  if (answer.fail_call) {
    // Every destructor has run: the callback can be abandoned.
    RecordFault(caller.tb, FaultKind::kSyscallDenied,
                {.signal = SIGSYS,
                 .syscall = answer.nr,
                 .what = "the compartment's syscall policy denies it (a "
                         "libc function that would make it)"});
    AbandonRecordedCallback(caller.tb);
  }
  return static_cast<uint64_t>(answer.value);
}

absl::Span<const LibcBinding> FileBindings() {
  static const LibcBinding kBindings[] = {
      {"open", LibcFn(&Open), kPath},
      {"open64", LibcFn(&Open), kPath},
      {"__open_2", LibcFn(&Open2), kPath},
      {"__open64_2", LibcFn(&Open2), kPath},
      {"openat", LibcFn(&OpenAtImport), kPath},
      {"openat64", LibcFn(&OpenAtImport), kPath},
      {"__openat_2", LibcFn(&OpenAt2), kPath},
      {"__openat64_2", LibcFn(&OpenAt2), kPath},
      {"creat", LibcFn(&Creat), kPath},
      {"creat64", LibcFn(&Creat), kPath},
      {"stat", LibcFn(&Stat), kPath},
      {"stat64", LibcFn(&Stat), kPath},
      {"lstat", LibcFn(&Lstat), kPath},
      {"lstat64", LibcFn(&Lstat), kPath},
      {"fstatat", LibcFn(&FstatAt), kPath},
      {"fstatat64", LibcFn(&FstatAt), kPath},
      {"__xstat", LibcFn(&Xstat), kPath},
      {"__xstat64", LibcFn(&Xstat), kPath},
      {"__lxstat", LibcFn(&Lxstat), kPath},
      {"__lxstat64", LibcFn(&Lxstat), kPath},
      {"__fxstatat", LibcFn(&FxstatAt), kPath},
      {"__fxstatat64", LibcFn(&FxstatAt), kPath},
      {"statx", LibcFn(&StatxImport), kPath},
      {"access", LibcFn(&Access), kPath},
      {"faccessat", LibcFn(&FaccessAt), kPath},
      {"euidaccess", LibcFn(&Access), kPath},
      {"eaccess", LibcFn(&Access), kPath},
      {"realpath", LibcFn(&RealpathImpl), kPath},
      {"__realpath_chk", LibcFn(&RealpathChk), kPath},
      {"canonicalize_file_name", LibcFn(&CanonicalizeFileName), kPath},
      {"fstat", LibcFn(&Fstat), kOwnFd},
      {"fstat64", LibcFn(&Fstat), kOwnFd},
      {"__fxstat", LibcFn(&Fxstat), kOwnFd},
      {"__fxstat64", LibcFn(&Fxstat), kOwnFd},
      {"fcntl", LibcFn(&Fcntl), kOwnFd},
      {"fcntl64", LibcFn(&Fcntl), kOwnFd},
      {"fsync", LibcFn(&Fsync), kOwnFd},
      {"fdatasync", LibcFn(&Fdatasync), kOwnFd},
      {"opendir", LibcFn(&Opendir), kDir},
      {"fdopendir", LibcFn(&Fdopendir), kDir},
      {"readdir", LibcFn(&Readdir), kDir},
      {"readdir64", LibcFn(&Readdir), kDir},
      {"closedir", LibcFn(&Closedir), kDir},
      {"dirfd", LibcFn(&Dirfd), kDir},
      {"rewinddir", LibcFn(&Rewinddir), kDir},
  };
  return kBindings;
}

}  // namespace mpkbox::internal
