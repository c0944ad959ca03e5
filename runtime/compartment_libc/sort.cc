// qsort and qsort_r for loaded code. glibc's (2.36) save and restore errno
// around malloc, in TLS, and cache sysconf(_SC_PHYS_PAGES) in static
// variables on first use: writes of key-0 memory, which fault under
// Ambient::kReadOnly once an array reaches 1 KiB (libtiff's field table).
// This is glibc's algorithm, a stable merge sort with a temporary array,
// so loaded code gets the order it gets natively.
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/compartment_libc/compartment_libc.h"

namespace {

using Compare = int (*)(const void*, const void*, void*);

// glibc's msort_with_tmp: sorts n elements of s bytes at base, with tmp of
// n * s bytes.
void MergeSort(char* base, size_t n, size_t s, Compare cmp, void* arg,
               char* tmp) {
  if (n <= 1) return;
  size_t n1 = n / 2;
  size_t n2 = n - n1;
  char* b1 = base;
  char* b2 = base + n1 * s;
  MergeSort(b1, n1, s, cmp, arg, tmp);
  MergeSort(b2, n2, s, cmp, arg, tmp);
  char* out = tmp;
  while (n1 > 0 && n2 > 0) {
    if (cmp(b1, b2, arg) <= 0) {
      memcpy(out, b1, s);
      b1 += s;
      --n1;
    } else {
      memcpy(out, b2, s);
      b2 += s;
      --n2;
    }
    out += s;
  }
  if (n1 > 0) memcpy(out, b1, n1 * s);
  memcpy(base, tmp, (n - n2) * s);
}

// Without memory for the temporary array: stable, in place, O(n^2).
void InsertionSort(char* base, size_t n, size_t s, Compare cmp, void* arg) {
  for (size_t i = 1; i < n; ++i) {
    for (char* p = base + i * s; p > base && cmp(p - s, p, arg) > 0; p -= s) {
      for (size_t k = 0; k < s; ++k) {
        const char c = p[k];
        p[k] = p[k - s];
        p[k - s] = c;
      }
    }
  }
}

int CallWithoutArg(const void* a, const void* b, void* cmp) {
  return reinterpret_cast<int (*)(const void*, const void*)>(cmp)(a, b);
}

}  // namespace

extern "C" void mpkbox_compartment_qsort_r(void* base, size_t n, size_t s,
                                           Compare cmp, void* arg) {
  constexpr size_t kOnStack = 1024;
  if (n <= 1 || s == 0) return;
  char* b = static_cast<char*>(base);
  if (n > SIZE_MAX / s) return InsertionSort(b, n, s, cmp, arg);
  if (n * s <= kOnStack) {
    alignas(16) char tmp[kOnStack];
    return MergeSort(b, n, s, cmp, arg, tmp);
  }
  // The routed malloc, as loaded code's own: the compartment's heap. It
  // sets only the compartment's errno.
  char* tmp = static_cast<char*>(malloc(n * s));
  if (tmp == nullptr) return InsertionSort(b, n, s, cmp, arg);
  MergeSort(b, n, s, cmp, arg, tmp);
  free(tmp);
}

extern "C" void mpkbox_compartment_qsort(void* base, size_t n, size_t s,
                                         int (*cmp)(const void*, const void*)) {
  mpkbox_compartment_qsort_r(base, n, s, &CallWithoutArg,
                             reinterpret_cast<void*>(cmp));
}
