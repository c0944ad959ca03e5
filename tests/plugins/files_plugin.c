/* libc_files_test.cc: files, descriptors and refused functions from loaded
   code, through its libc imports as a library makes them. Results are
   values, or -errno. */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <signal.h>
#include <unistd.h>

static long neg(long r) { return r < 0 ? -errno : r; }

long fp_open(const char* path, int flags) { return neg(open(path, flags)); }
long fp_openat(int dirfd, const char* path) {
  return neg(openat(dirfd, path, O_RDONLY));
}
long fp_creat(const char* path) { return neg(creat(path, 0644)); }
long fp_close(int fd) { return neg(close(fd)); }
long fp_read(int fd, char* buf, long n) { return neg(read(fd, buf, (size_t)n)); }
long fp_lseek(int fd, long off) { return neg(lseek(fd, off, SEEK_SET)); }
long fp_fstat_size(int fd) {
  struct stat st;
  return fstat(fd, &st) != 0 ? -errno : (long)st.st_size;
}
long fp_fstat_to(int fd, void* out) { return neg(fstat(fd, out)); }
long fp_fcntl_getfd(int fd) { return neg(fcntl(fd, F_GETFD)); }

/* open, read up to n bytes, close: the bytes read or -errno. */
long fp_read_file(const char* path, char* buf, long n) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  long r = read(fd, buf, (size_t)n);
  long e = errno;
  close(fd);
  return r < 0 ? -e : r;
}

long fp_stat_size(const char* path) {
  struct stat st;
  return stat(path, &st) != 0 ? -errno : (long)st.st_size;
}
long fp_stat_to(const char* path, void* out) { return neg(stat(path, out)); }
long fp_lstat_mode(const char* path) {
  struct stat st;
  return lstat(path, &st) != 0 ? -errno : (long)st.st_mode;
}
long fp_statx_size(const char* path) {
  struct statx stx;
  return statx(AT_FDCWD, path, 0, STATX_SIZE, &stx) != 0 ? -errno
                                                        : (long)stx.stx_size;
}
long fp_access(const char* path, int mode) { return neg(access(path, mode)); }
long fp_realpath(const char* path, char* out) {
  return realpath(path, out) == NULL ? -errno : (long)strlen(out);
}

/* The names in a directory, each followed by '\n', in readdir's order. */
long fp_list(const char* path, char* out, long n) {
  DIR* d = opendir(path);
  if (d == NULL) return -errno;
  long used = 0;
  struct dirent* e;
  while ((e = readdir(d)) != NULL) {
    size_t len = strlen(e->d_name);
    if (used + (long)len + 1 >= n) break;
    memcpy(out + used, e->d_name, len);
    used += (long)len;
    out[used++] = '\n';
  }
  out[used] = '\0';
  closedir(d);
  return used;
}

/* Leaves `count` descriptors of `path` open (Reset must close them). */
long fp_leak(const char* path, int count) {
  long opened = 0;
  for (int i = 0; i < count; ++i) opened += open(path, O_RDONLY) >= 0;
  return opened;
}

/* Opens `path` (which another thread keeps changing) `times` times: how many
   opens succeeded with content other than `expected` (an escape). */
long fp_open_loop(const char* path, const char* expected, int times,
                  long* opened) {
  long escapes = 0;
  size_t len = strlen(expected);
  for (int i = 0; i < times; ++i) {
    char buf[64];
    int fd = open(path, O_RDONLY);
    if (fd < 0) continue;
    ++*opened;
    long r = read(fd, buf, sizeof(buf));
    if (r != (long)len || memcmp(buf, expected, len) != 0) ++escapes;
    close(fd);
  }
  return escapes;
}

/* Flips the path at `dst` between `a` and `b` until *stop; *flips counts. */
long fp_flip(char* dst, const char* a, const char* b, volatile int* stop,
             volatile long* flips) {
  while (!*stop) {
    strcpy(dst, (*flips & 1) ? b : a);
    ++*flips;
    /* Each path stays a while, so opens see both whole and torn ones. */
    for (volatile int spin = 0; spin < 2000; ++spin) {
    }
  }
  return *flips;
}

long fp_getpid(void) { return getpid(); }

/* Refused functions: each -errno (or the documented failure value). */
long fp_socket(void) { return neg(socket(AF_INET, SOCK_STREAM, 0)); }
long fp_connect(int fd) {
  struct sockaddr sa;
  memset(&sa, 0, sizeof(sa));
  return neg(connect(fd, &sa, sizeof(sa)));
}
long fp_getaddrinfo(void) {
  struct addrinfo* ai = NULL;
  return getaddrinfo("localhost", "80", NULL, &ai);
}
long fp_fork(void) { return neg(fork()); }
long fp_execv(void) {
  char* argv[] = {"/bin/true", NULL};
  return neg(execv("/bin/true", argv));
}
long fp_system(const char* cmd) {
  int r = system(cmd);
  return r < 0 ? -errno : r;
}
long fp_kill(void) { return neg(kill(getpid(), SIGTERM)); }
long fp_waitpid(void) { return neg(waitpid(-1, NULL, WNOHANG)); }
long fp_mkdir(const char* path) { return neg(mkdir(path, 0755)); }
long fp_unlink(const char* path) { return neg(unlink(path)); }
long fp_rename(const char* a, const char* b) { return neg(rename(a, b)); }
long fp_chdir(const char* path) { return neg(chdir(path)); }
long fp_getcwd(void) {
  char buf[256];
  return getcwd(buf, sizeof(buf)) == NULL ? -errno : 0;
}
long fp_setenv(void) { return neg(setenv("MPKBOX_FP", "1", 1)); }
long fp_dlopen(void) { return dlopen("libz.so.1", RTLD_NOW) == NULL ? 0 : 1; }
long fp_ioctl(int fd) {
  int n = 0;
  return neg(ioctl(fd, FIONREAD, &n));
}
long fp_dup(int fd) { return neg(dup(fd)); }
long fp_isatty(int fd) { return isatty(fd); }
long fp_pipe(void) {
  int fds[2];
  return neg(pipe(fds));
}
