/* Loaded code that sets and reads errno (loader_test.cc): its
   __errno_location binds to the compartment's own slot, so this works with
   key 0 read-only. */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

int counter = 41;  /* .data: the compartment's, reset by Reset() */

int set_errno(int value) {
  errno = value;
  return errno;
}

/* malloc's ENOMEM, as loaded code sees it. */
int malloc_errno(unsigned long bytes) {
  errno = 0;
  void* p = malloc(bytes);
  int e = errno;
  free(p);
  return p == NULL ? e : 0;
}

int next_counter(void) { return ++counter; }

/* libc's write as loaded code calls it: the bytes written, or -errno. */
long write_or_errno(int fd, const void* buf, unsigned long n) {
  errno = 0;
  long r = write(fd, buf, n);
  return r < 0 ? -errno : r;
}
