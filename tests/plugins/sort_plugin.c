/* Loaded code that sorts with libc's qsort and qsort_r (loader_test.cc):
   they bind to the compartment's own merge sort, because glibc's writes
   errno and static variables (key 0) once an array reaches 1 KiB. */
#define _GNU_SOURCE /* qsort_r */
#include <stdlib.h>

struct record {
  int key;
  int seq;
};

static int by_key(const void* a, const void* b) {
  const int x = ((const struct record*)a)->key;
  const int y = ((const struct record*)b)->key;
  return (x > y) - (x < y);
}

static int by_key_r(const void* a, const void* b, void* descending) {
  const int order = by_key(a, b);
  return *(const int*)descending ? -order : order;
}

void sort_records(struct record* r, size_t n) {
  qsort(r, n, sizeof(*r), by_key);
}

void sort_records_r(struct record* r, size_t n, int descending) {
  qsort_r(r, n, sizeof(*r), by_key_r, &descending);
}
