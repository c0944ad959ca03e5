// Loaded code for bench/stdio_bench.cc: `times` lines printed to stderr
// with fprintf, as a library's warning handler prints them.
#include <stdio.h>

int fprintf_loop(int times) {
  int r = 0;
  for (int i = 0; i < times; ++i) {
    r = fprintf(stderr, "warning %d: %s\n", i, "x");
  }
  return r;
}
