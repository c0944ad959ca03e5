// stdio for loaded code, with compartment rights (stdio.h). glibc's own
// functions lock the FILE and keep its state in key-0 memory (the host's
// streams, errno in TLS): these keep theirs in the compartment's
// CompartmentFile. Output is formatted inside (glibc's vsnprintf writes
// only the buffer it is given); bytes for stdout and stderr go to the host
// by the libc entry, bytes for a file through the write wrapper, and reads
// through the read wrapper, both judged by the compartment's policy.
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>

#include "runtime/compartment_libc/bindings.h"
#include "runtime/compartment_libc/compartment_libc.h"
#include "runtime/compartment_libc/files.h"
#include "runtime/compartment_libc/libc_entry.h"
#include "runtime/compartment_libc/stdio.h"

namespace mpkbox::internal {
namespace {

// glibc's _flags bits (libio.h), for its inline feof/ferror macros.
constexpr int kIoMagic = static_cast<int>(0xFBAD0000u);
constexpr int kNoReads = 0x4;
constexpr int kNoWrites = 0x8;
constexpr int kEofSeen = 0x10;
constexpr int kErrSeen = 0x20;
constexpr int kUserLock = 0x8000;

constexpr uint32_t kReadBuffer = 4096;

int& Errno() { return *mpkbox_compartment_errno_location(); }

long L(const void* p) {
  return static_cast<long>(reinterpret_cast<intptr_t>(p));
}

// The FILE* loaded code passed, if it is one of this compartment's streams;
// otherwise the call ends as a fault (glibc would use whatever it points
// to). Reading a host address faults here already, with compartment rights.
CompartmentFile* Checked(FILE* fp) {
  auto* f = reinterpret_cast<CompartmentFile*>(fp);
  if (f == nullptr || f->magic != kFileMagic || f->self != f) {
    EnterLibc(LibcOp(kLibcStdio, kStdioBadStream),
              reinterpret_cast<uint64_t>(fp));
    __builtin_trap();  // the host ended the call
  }
  return f;
}

void SetFlag(CompartmentFile* f, int flag) { f->file._flags |= flag; }

// stdout's or stderr's bytes to the host, which checks they are this
// compartment's memory and copies them.
size_t ToSink(FileKind kind, const void* p, size_t n) {
  if (n != 0) {
    EnterLibc(LibcOp(kLibcStdio, kStdioWrite, static_cast<uint32_t>(kind)),
              reinterpret_cast<uint64_t>(p), n);
  }
  return n;
}

// Read-ahead a write must not skip: the descriptor goes back to where the
// caller thinks the stream is.
void DropReadAhead(CompartmentFile* f) {
  const long ahead = static_cast<long>(f->end - f->start) + (f->unget >= 0);
  if (ahead != 0) {
    LibcSyscall(SYS_lseek, f->file._fileno, -ahead, SEEK_CUR);
  }
  f->start = f->end = 0;
  f->unget = -1;
}

size_t Put(CompartmentFile* f, const void* p, size_t n) {
  if (f->file._flags & kNoWrites) {
    SetFlag(f, kErrSeen);
    Errno() = EBADF;
    return 0;
  }
  switch (f->kind) {
    case FileKind::kStdout:
    case FileKind::kStderr:
      return ToSink(f->kind, p, n);
    case FileKind::kDescriptor: {
      DropReadAhead(f);
      const char* bytes = static_cast<const char*>(p);
      size_t done = 0;
      while (done < n) {
        const long w = LibcSyscall(SYS_write, f->file._fileno, L(bytes + done),
                                   static_cast<long>(n - done));
        if (w < 0 && Errno() == EINTR) continue;
        if (w <= 0) {
          SetFlag(f, kErrSeen);
          break;
        }
        done += static_cast<size_t>(w);
      }
      return done;
    }
    default:  // a forged kind: the host refuses it and ends the call
      return ToSink(f->kind, p, n);
  }
}

// Refills the read buffer: its bytes, or 0 at end of file or an error.
uint32_t Fill(CompartmentFile* f) {
  if (f->kind != FileKind::kDescriptor) {
    SetFlag(f, f->kind == FileKind::kStdin ? kEofSeen : kErrSeen);
    if (f->kind != FileKind::kStdin) Errno() = EBADF;
    return 0;
  }
  if (f->file._flags & kNoReads) {
    SetFlag(f, kErrSeen);
    Errno() = EBADF;
    return 0;
  }
  if (f->buffer == nullptr) {
    f->buffer = static_cast<unsigned char*>(malloc(kReadBuffer));
    if (f->buffer == nullptr) {
      SetFlag(f, kErrSeen);
      return 0;
    }
  }
  long n;
  do {
    n = LibcSyscall(SYS_read, f->file._fileno, L(f->buffer), kReadBuffer);
  } while (n < 0 && Errno() == EINTR);
  f->start = f->end = 0;
  if (n <= 0) {
    SetFlag(f, n == 0 ? kEofSeen : kErrSeen);
    return 0;
  }
  f->end = static_cast<uint32_t>(n);
  return f->end;
}

int GetByte(CompartmentFile* f) {
  if (f->unget >= 0) {
    const int c = f->unget;
    f->unget = -1;
    return c;
  }
  if (f->start >= f->end && Fill(f) == 0) return EOF;
  return f->buffer[f->start++];
}

// ---- output -----------------------------------------------------------------

// Formats into the stack, or the compartment's heap when it is long, and
// hands the bytes to `put`.
template <typename PutFn>
int FormatAndPut(const char* format, va_list ap, PutFn put) {
  char stack[1024];
  va_list again;
  va_copy(again, ap);
  const int n = vsnprintf(stack, sizeof(stack), format, ap);
  if (n < 0) {
    va_end(again);
    return -1;
  }
  char* out = stack;
  if (static_cast<size_t>(n) >= sizeof(stack)) {
    out = static_cast<char*>(malloc(static_cast<size_t>(n) + 1));
    if (out == nullptr) {
      va_end(again);
      Errno() = ENOMEM;
      return -1;
    }
    vsnprintf(out, static_cast<size_t>(n) + 1, format, again);
  }
  va_end(again);
  const size_t written = put(out, static_cast<size_t>(n));
  if (out != stack) free(out);
  return written == static_cast<size_t>(n) ? n : -1;
}

int Vfprintf(FILE* fp, const char* format, va_list ap) {
  CompartmentFile* f = Checked(fp);
  return FormatAndPut(format, ap,
                      [f](const char* p, size_t n) { return Put(f, p, n); });
}
int Fprintf(FILE* fp, const char* format, ...) {
  va_list ap;
  va_start(ap, format);
  const int r = Vfprintf(fp, format, ap);
  va_end(ap);
  return r;
}
int Vprintf(const char* format, va_list ap) {
  return FormatAndPut(format, ap, [](const char* p, size_t n) {
    return ToSink(FileKind::kStdout, p, n);
  });
}
int Printf(const char* format, ...) {
  va_list ap;
  va_start(ap, format);
  const int r = Vprintf(format, ap);
  va_end(ap);
  return r;
}
// The _chk forms' flag asks glibc to refuse %n in writable formats: the
// compartment's own memory either way.
int VfprintfChk(FILE* fp, int, const char* format, va_list ap) {
  return Vfprintf(fp, format, ap);
}
int FprintfChk(FILE* fp, int, const char* format, ...) {
  va_list ap;
  va_start(ap, format);
  const int r = Vfprintf(fp, format, ap);
  va_end(ap);
  return r;
}
int VprintfChk(int, const char* format, va_list ap) {
  return Vprintf(format, ap);
}
int PrintfChk(int, const char* format, ...) {
  va_list ap;
  va_start(ap, format);
  const int r = Vprintf(format, ap);
  va_end(ap);
  return r;
}
int Vdprintf(int fd, const char* format, va_list ap) {
  return FormatAndPut(format, ap, [fd](const char* p, size_t n) {
    const long w = LibcSyscall(SYS_write, fd, L(p), static_cast<long>(n));
    return w < 0 ? size_t{0} : static_cast<size_t>(w);
  });
}
int Dprintf(int fd, const char* format, ...) {
  va_list ap;
  va_start(ap, format);
  const int r = Vdprintf(fd, format, ap);
  va_end(ap);
  return r;
}
int VdprintfChk(int fd, int, const char* format, va_list ap) {
  return Vdprintf(fd, format, ap);
}
int DprintfChk(int fd, int, const char* format, ...) {
  va_list ap;
  va_start(ap, format);
  const int r = Vdprintf(fd, format, ap);
  va_end(ap);
  return r;
}

// fread's and fwrite's size * count, or 0 (an overflow is an error).
size_t Total(CompartmentFile* f, size_t size, size_t count) {
  size_t total;
  if (__builtin_mul_overflow(size, count, &total)) {
    SetFlag(f, kErrSeen);
    Errno() = EINVAL;
    return 0;
  }
  return total;
}

size_t Fwrite(const void* p, size_t size, size_t count, FILE* fp) {
  CompartmentFile* f = Checked(fp);
  const size_t total = Total(f, size, count);
  if (total == 0) return 0;
  return Put(f, p, total) / size;
}
int Fputs(const char* s, FILE* fp) {
  CompartmentFile* f = Checked(fp);
  const size_t n = strlen(s);
  return Put(f, s, n) == n ? 1 : EOF;
}
int Puts(const char* s) {
  const size_t n = strlen(s);
  char newline = '\n';  // on the compartment's stack, not in host data
  ToSink(FileKind::kStdout, s, n);
  ToSink(FileKind::kStdout, &newline, 1);
  return 1;
}
int Fputc(int c, FILE* fp) {
  CompartmentFile* f = Checked(fp);
  const unsigned char byte = static_cast<unsigned char>(c);
  return Put(f, &byte, 1) == 1 ? byte : EOF;
}
int Putchar(int c) {
  const unsigned char byte = static_cast<unsigned char>(c);
  ToSink(FileKind::kStdout, &byte, 1);
  return byte;
}
// glibc's putc_unlocked macro calls this when its buffer has no room, which
// ours never has.
int Overflow(FILE* fp, int c) { return c == EOF ? 0 : Fputc(c, fp); }
void Perror(const char* s) {
  const int err = Errno();
  // Untranslated: strerror_r's gettext takes a lock in key-0 memory.
  char buf[32];
  const char* message = strerrordesc_np(err);
  if (message == nullptr) {
    snprintf(buf, sizeof(buf), "Unknown error %d", err);
    message = buf;
  }
  char line[256];
  const int n =
      snprintf(line, sizeof(line), "%s%s%s\n", s != nullptr && *s ? s : "",
               s != nullptr && *s ? ": " : "", message);
  if (n > 0) {
    ToSink(FileKind::kStderr, line,
           static_cast<size_t>(n) < sizeof(line) ? static_cast<size_t>(n)
                                                 : sizeof(line) - 1);
  }
}

// Nothing is buffered inside: the host collects lines.
int Fflush(FILE* fp) {
  if (fp != nullptr) Checked(fp);
  return 0;
}
int Setvbuf(FILE* fp, char*, int, size_t) {
  Checked(fp);
  return 0;
}
void Setbuf(FILE* fp, char*) { Checked(fp); }
void Setbuffer(FILE* fp, char*, size_t) { Checked(fp); }
void Setlinebuf(FILE* fp) { Checked(fp); }
// The objects are the compartment's own, and not shared with another
// compartment: glibc's lock would be key-0 state.
void Flockfile(FILE* fp) { Checked(fp); }
int Ftrylockfile(FILE* fp) {
  Checked(fp);
  return 0;
}
int Fileno(FILE* fp) { return Checked(fp)->file._fileno; }
int Feof(FILE* fp) { return (Checked(fp)->file._flags & kEofSeen) != 0; }
int Ferror(FILE* fp) { return (Checked(fp)->file._flags & kErrSeen) != 0; }
void Clearerr(FILE* fp) { Checked(fp)->file._flags &= ~(kEofSeen | kErrSeen); }

// ---- files and input --------------------------------------------------------

// fopen's mode as open(2) flags, or -1.
int ModeFlags(const char* mode) {
  int flags;
  switch (mode[0]) {
    case 'r':
      flags = O_RDONLY;
      break;
    case 'w':
      flags = O_WRONLY | O_CREAT | O_TRUNC;
      break;
    case 'a':
      flags = O_WRONLY | O_CREAT | O_APPEND;
      break;
    default:
      return -1;
  }
  for (const char* m = mode + 1; *m != 0; ++m) {
    if (*m == '+') flags = (flags & ~O_ACCMODE) | O_RDWR;
    if (*m == 'e') flags |= O_CLOEXEC;
    if (*m == 'x') flags |= O_EXCL;
  }
  return flags;
}

FILE* NewFile(int fd, int flags) {
  auto* f = static_cast<CompartmentFile*>(malloc(sizeof(CompartmentFile)));
  if (f == nullptr) return nullptr;
  const int access = flags & O_ACCMODE;
  InitFile(f, FileKind::kDescriptor, fd, access != O_WRONLY,
           access != O_RDONLY);
  return &f->file;
}

FILE* Fopen(const char* path, const char* mode) {
  const int flags = ModeFlags(mode);
  if (flags < 0) {
    Errno() = EINVAL;
    return nullptr;
  }
  const int fd = CompartmentOpen(path, flags, 0666);
  if (fd < 0) return nullptr;  // errno is set
  FILE* f = NewFile(fd, flags);
  if (f == nullptr) {
    LibcSyscall(SYS_close, fd);
    Errno() = ENOMEM;
  }
  return f;
}
FILE* Fdopen(int fd, const char* mode) {
  const int flags = ModeFlags(mode);
  if (flags < 0 || fd < 0) {
    Errno() = fd < 0 ? EBADF : EINVAL;
    return nullptr;
  }
  FILE* f = NewFile(fd, flags);
  if (f == nullptr) Errno() = ENOMEM;
  return f;
}
// Streams loaded code cannot have: no temporary files or reopened
// descriptors inside (popen: refusals.cc). They fail as the functions may.
FILE* Tmpfile() {
  Errno() = EACCES;
  return nullptr;
}
FILE* Freopen(const char*, const char*, FILE* fp) {
  Checked(fp);
  Errno() = EACCES;
  return nullptr;
}
int Fclose(FILE* fp) {
  CompartmentFile* f = Checked(fp);
  if (f->kind != FileKind::kDescriptor) return 0;  // the page's, kept
  const long r = LibcSyscall(SYS_close, f->file._fileno);
  f->magic = 0;  // a use after fclose is a bad stream
  free(f->buffer);
  free(f);
  return r == 0 ? 0 : EOF;
}

size_t Fread(void* p, size_t size, size_t count, FILE* fp) {
  CompartmentFile* f = Checked(fp);
  const size_t total = Total(f, size, count);
  if (total == 0) return 0;
  unsigned char* out = static_cast<unsigned char*>(p);
  size_t done = 0;
  if (f->unget >= 0) {
    out[done++] = static_cast<unsigned char>(f->unget);
    f->unget = -1;
  }
  while (done < total) {
    if (f->start >= f->end && Fill(f) == 0) break;
    const size_t n =
        f->end - f->start < total - done ? f->end - f->start : total - done;
    memcpy(out + done, f->buffer + f->start, n);
    f->start += static_cast<uint32_t>(n);
    done += n;
  }
  return done / size;
}
int Fgetc(FILE* fp) { return GetByte(Checked(fp)); }
int Getchar() { return EOF; }  // stdin is empty
char* Fgets(char* s, int size, FILE* fp) {
  CompartmentFile* f = Checked(fp);
  if (size <= 0) {
    Errno() = EINVAL;
    return nullptr;
  }
  int i = 0;
  while (i < size - 1) {
    const int c = GetByte(f);
    if (c == EOF) break;
    s[i++] = static_cast<char>(c);
    if (c == '\n') break;
  }
  if (i == 0 && size > 1) return nullptr;
  s[i] = 0;
  return s;
}
ssize_t Getdelim(char** line, size_t* capacity, int delim, FILE* fp) {
  CompartmentFile* f = Checked(fp);
  if (line == nullptr || capacity == nullptr) {
    Errno() = EINVAL;
    return -1;
  }
  size_t n = 0;
  for (;;) {
    const int c = GetByte(f);
    if (c == EOF) break;
    if (*line == nullptr || n + 2 > *capacity) {
      const size_t grown = *capacity < 60 ? 120 : *capacity * 2;
      char* p = static_cast<char*>(realloc(*line, grown));
      if (p == nullptr) {
        SetFlag(f, kErrSeen);
        Errno() = ENOMEM;
        return -1;
      }
      *line = p;
      *capacity = grown;
    }
    (*line)[n++] = static_cast<char>(c);
    if (c == delim) break;
  }
  if (n == 0) return -1;
  (*line)[n] = 0;
  return static_cast<ssize_t>(n);
}
ssize_t Getline(char** line, size_t* capacity, FILE* fp) {
  return Getdelim(line, capacity, '\n', fp);
}
int Ungetc(int c, FILE* fp) {
  CompartmentFile* f = Checked(fp);
  if (c == EOF || f->unget >= 0) return EOF;
  f->unget = static_cast<unsigned char>(c);
  f->file._flags &= ~kEofSeen;
  return f->unget;
}

long Ftell(FILE* fp) {
  CompartmentFile* f = Checked(fp);
  if (f->kind != FileKind::kDescriptor) {
    Errno() = ESPIPE;
    return -1;
  }
  const long at = LibcSyscall(SYS_lseek, f->file._fileno, 0, SEEK_CUR);
  if (at < 0) return -1;
  return at - static_cast<long>(f->end - f->start) - (f->unget >= 0);
}
int Fseek(FILE* fp, long offset, int whence) {
  CompartmentFile* f = Checked(fp);
  if (f->kind != FileKind::kDescriptor) {
    Errno() = ESPIPE;
    return -1;
  }
  if (whence == SEEK_CUR) {
    offset -= static_cast<long>(f->end - f->start) + (f->unget >= 0);
  }
  if (LibcSyscall(SYS_lseek, f->file._fileno, offset, whence) < 0) {
    return -1;
  }
  f->start = f->end = 0;
  f->unget = -1;
  f->file._flags &= ~kEofSeen;
  return 0;
}
void Rewind(FILE* fp) {
  Fseek(fp, 0, SEEK_SET);
  Checked(fp)->file._flags &= ~kErrSeen;
}
int Fgetpos(FILE* fp, fpos_t* pos) {
  const long at = Ftell(fp);
  if (at < 0) return -1;
  memset(pos, 0, sizeof(*pos));
  pos->__pos = at;
  return 0;
}
int Fsetpos(FILE* fp, const fpos_t* pos) {
  return Fseek(fp, static_cast<long>(pos->__pos), SEEK_SET);
}

constexpr char kSink[] =
    "formats with compartment rights; only bytes leave, which the host "
    "checks are the compartment's and copies to the sink within the budget";
constexpr char kStream[] =
    "on the compartment's own FILE object (checked to be one); files are "
    "read and written through the syscall wrappers, judged by its policy";
constexpr char kOpen[] =
    "opens through CompartmentOpen (files.h), the policy's judgement; the "
    "FILE object is on the compartment's heap";

}  // namespace

void InitFile(CompartmentFile* f, FileKind kind, int fd, bool readable,
              bool writable) {
  memset(static_cast<void*>(f), 0, sizeof(*f));
  f->file._flags = kIoMagic | kUserLock | (readable ? 0 : kNoReads) |
                   (writable ? 0 : kNoWrites);
  f->file._fileno = fd;
  f->file._mode = -1;  // byte-oriented
  f->magic = kFileMagic;
  f->self = f;
  f->kind = kind;
  f->unget = -1;
}

absl::Span<const LibcBinding> StdioBindings() {
  static const LibcBinding kBindings[] = {
      {"printf", LibcFn(&Printf), kSink},
      {"vprintf", LibcFn(&Vprintf), kSink},
      {"__printf_chk", LibcFn(&PrintfChk), kSink},
      {"__vprintf_chk", LibcFn(&VprintfChk), kSink},
      {"fprintf", LibcFn(&Fprintf), kSink},
      {"vfprintf", LibcFn(&Vfprintf), kSink},
      {"__fprintf_chk", LibcFn(&FprintfChk), kSink},
      {"__vfprintf_chk", LibcFn(&VfprintfChk), kSink},
      {"dprintf", LibcFn(&Dprintf), kStream},
      {"vdprintf", LibcFn(&Vdprintf), kStream},
      {"__dprintf_chk", LibcFn(&DprintfChk), kStream},
      {"__vdprintf_chk", LibcFn(&VdprintfChk), kStream},
      {"fwrite", LibcFn(&Fwrite), kSink},
      {"fwrite_unlocked", LibcFn(&Fwrite), kSink},
      {"fputs", LibcFn(&Fputs), kSink},
      {"fputs_unlocked", LibcFn(&Fputs), kSink},
      {"puts", LibcFn(&Puts), kSink},
      {"fputc", LibcFn(&Fputc), kSink},
      {"fputc_unlocked", LibcFn(&Fputc), kSink},
      {"putc", LibcFn(&Fputc), kSink},
      {"putc_unlocked", LibcFn(&Fputc), kSink},
      {"_IO_putc", LibcFn(&Fputc), kSink},
      {"putchar", LibcFn(&Putchar), kSink},
      {"putchar_unlocked", LibcFn(&Putchar), kSink},
      {"__overflow", LibcFn(&Overflow), kSink},
      {"perror", LibcFn(&Perror), kSink},
      {"fflush", LibcFn(&Fflush), kStream},
      {"fflush_unlocked", LibcFn(&Fflush), kStream},
      {"setvbuf", LibcFn(&Setvbuf), kStream},
      {"setbuf", LibcFn(&Setbuf), kStream},
      {"setbuffer", LibcFn(&Setbuffer), kStream},
      {"setlinebuf", LibcFn(&Setlinebuf), kStream},
      {"flockfile", LibcFn(&Flockfile), kStream},
      {"funlockfile", LibcFn(&Flockfile), kStream},
      {"ftrylockfile", LibcFn(&Ftrylockfile), kStream},
      {"fileno", LibcFn(&Fileno), kStream},
      {"fileno_unlocked", LibcFn(&Fileno), kStream},
      {"feof", LibcFn(&Feof), kStream},
      {"feof_unlocked", LibcFn(&Feof), kStream},
      {"ferror", LibcFn(&Ferror), kStream},
      {"ferror_unlocked", LibcFn(&Ferror), kStream},
      {"clearerr", LibcFn(&Clearerr), kStream},
      {"clearerr_unlocked", LibcFn(&Clearerr), kStream},
      {"fopen", LibcFn(&Fopen), kOpen},
      {"fopen64", LibcFn(&Fopen), kOpen},
      {"fdopen", LibcFn(&Fdopen), kStream},
      {"tmpfile", LibcFn(&Tmpfile), "fails with EACCES: no temporary files"},
      {"tmpfile64", LibcFn(&Tmpfile), "fails with EACCES: no temporary files"},
      {"freopen", LibcFn(&Freopen),
       "fails with EACCES; the stream is unchanged"},
      {"freopen64", LibcFn(&Freopen),
       "fails with EACCES; the stream is unchanged"},
      {"fclose", LibcFn(&Fclose), kStream},
      {"fread", LibcFn(&Fread), kStream},
      {"fread_unlocked", LibcFn(&Fread), kStream},
      {"fgetc", LibcFn(&Fgetc), kStream},
      {"fgetc_unlocked", LibcFn(&Fgetc), kStream},
      {"getc", LibcFn(&Fgetc), kStream},
      {"getc_unlocked", LibcFn(&Fgetc), kStream},
      {"_IO_getc", LibcFn(&Fgetc), kStream},
      {"__uflow", LibcFn(&Fgetc), kStream},
      {"getchar", LibcFn(&Getchar), "stdin inside is empty"},
      {"getchar_unlocked", LibcFn(&Getchar), "stdin inside is empty"},
      {"fgets", LibcFn(&Fgets), kStream},
      {"fgets_unlocked", LibcFn(&Fgets), kStream},
      {"getline", LibcFn(&Getline), kStream},
      {"getdelim", LibcFn(&Getdelim), kStream},
      {"__getdelim", LibcFn(&Getdelim), kStream},
      {"ungetc", LibcFn(&Ungetc), kStream},
      {"ftell", LibcFn(&Ftell), kStream},
      {"ftello", LibcFn(&Ftell), kStream},
      {"ftello64", LibcFn(&Ftell), kStream},
      {"fseek", LibcFn(&Fseek), kStream},
      {"fseeko", LibcFn(&Fseek), kStream},
      {"fseeko64", LibcFn(&Fseek), kStream},
      {"rewind", LibcFn(&Rewind), kStream},
      {"fgetpos", LibcFn(&Fgetpos), kStream},
      {"fgetpos64", LibcFn(&Fgetpos), kStream},
      {"fsetpos", LibcFn(&Fsetpos), kStream},
      {"fsetpos64", LibcFn(&Fsetpos), kStream},
  };
  return kBindings;
}

}  // namespace mpkbox::internal
