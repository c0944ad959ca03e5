// Loaded code for bench/libc_memory_bench.cc: mmap, touch and munmap of
// `bytes` anonymous bytes `times` times in a row, through libc's imports.
#include <sys/mman.h>

long mmap_loop(unsigned long bytes, int times) {
  long sum = 0;
  for (int i = 0; i < times; ++i) {
    char* p = mmap(0, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return -1;
    p[0] = 1;
    sum += p[0];
    if (munmap(p, bytes) != 0) return -1;
  }
  return sum;
}
