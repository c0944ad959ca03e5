// Loaded code for bench/libc_bench.cc: libc's syscall wrappers called
// `times` times in a row, as a library calls them (through its imports).
#include <sys/random.h>
#include <unistd.h>

long write_loop(int fd, const char* buf, long n, int times) {
  long r = 0;
  for (int i = 0; i < times; ++i) r = write(fd, buf, (size_t)n);
  return r;
}

long getrandom_loop(char* buf, long n, int times) {
  long r = 0;
  for (int i = 0; i < times; ++i) r = getrandom(buf, (size_t)n, 0);
  return r;
}
