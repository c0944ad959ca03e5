/* Loaded code using stdio (libc_stdio_test.cc): stdout and stderr, files,
   formatting into memory, and attacks on the streams. Built with
   _FORTIFY_SOURCE, so printf is __printf_chk, and with glibc's inline
   putc_unlocked, which calls __overflow. */
#define _GNU_SOURCE
#include <errno.h>
#include <libintl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int print_mix(int n) {
  printf("printf %d\n", n);
  fprintf(stderr, "to stderr %s\n", "x");
  puts("puts");
  fputs("fputs ", stdout);
  fputc('c', stdout);
  putc('d', stdout);
  putchar('\n');
  fwrite("fw1\nfw2", 1, 7, stdout);
  fputc('\n', stdout);
  putc_unlocked('u', stdout);
  putc_unlocked('\n', stdout);
  errno = ENOENT;
  perror("perror");
  fflush(stdout);
  return fileno(stdout) * 10 + fileno(stderr);
}

/* `lines` lines of "0123456789". */
int print_lines(int lines) {
  for (int i = 0; i < lines; ++i) fputs("0123456789\n", stdout);
  return lines;
}

/* Writes to whatever FILE* it is given (as a number: Call would screen a
   host pointer argument itself). */
int put_to(unsigned long f) {
  return fputs("through a given FILE*\n", (FILE*)f);
}

/* fwrite from an address given as a number. */
unsigned long fwrite_from(unsigned long address, unsigned long n) {
  return fwrite((const void*)address, 1, n, stdout);
}

/* The layout of mpkbox's FILE objects (runtime/compartment_libc/stdio.h). */
struct forged_file {
  FILE file;
  unsigned long long magic;
  void* self;
  unsigned kind;
  int unget;
  unsigned char* buffer;
  unsigned start, end;
};

/* A copy of stdout's object, made to say another stream or descriptor. */
int forged_put(unsigned kind, int fd) {
  struct forged_file f;
  memcpy(&f, stdout, sizeof(f));
  f.self = &f;
  f.kind = kind;
  f.file._fileno = fd;
  return fputs("forged\n", (FILE*)&f);
}

/* libcrypto's configuration: fopen fails, errno says why. */
int open_config(void) {
  errno = 0;
  FILE* f = fopen("/etc/ssl/openssl.cnf", "r");
  if (f != NULL) {
    fclose(f);
    return -1;
  }
  return errno;
}

/* Streams it cannot have fail cleanly: each errno, packed. */
long other_streams(void) {
  errno = 0;
  long r = tmpfile() == NULL ? errno : -1;
  errno = 0;
  r = r * 1000 + (freopen("/etc/passwd", "r", stdout) == NULL ? errno : -1);
  errno = 0;
  r = r * 1000 + (popen("id", "r") == NULL ? errno : -1);
  return r;
}

/* Reads stdin: at its end at once. */
int read_stdin(void) {
  char line[16];
  int c = getchar();
  char* s = fgets(line, sizeof(line), stdin);
  return (c == EOF) + 2 * (s == NULL) + 4 * (feof(stdin) != 0);
}

/* Formatting and parsing, into `out`: compared with the same run natively. */
int format_things(char* out, unsigned long size) {
  char* a = NULL;
  int an = asprintf(&a, "asprintf %d %s %.2f", 42, "str", 2.5);
  int x = 0, y = 0;
  char word[16] = "";
  int scanned = sscanf("17 -5 hello", "%d %d %15s", &x, &y, word);
  errno = 0;
  char* end = NULL;
  long big = strtol("  99999999999999999999xyz", &end, 10);
  int big_errno = errno;
  long big_end = end - "  99999999999999999999xyz";
  errno = 0;
  long hex = strtol("-0x1fz", &end, 0);
  int hex_errno = errno;
  errno = 0;
  unsigned long neg = strtoul("-1", NULL, 10);
  long long small = strtoll("-9223372036854775809", NULL, 10);
  int small_errno = errno;
  errno = 0;
  long none = strtol("zz", &end, 10);
  int none_errno = errno;
  int bad_base = (int)strtol("10", NULL, 1);
  int bad_base_errno = errno;
  errno = 0;
  double d1 = strtod(" -1.5e3x", &end);
  long d1_end = end - " -1.5e3x";
  double d2 = strtod("0x1.8p1", NULL);
  double huge = strtod("1e999", NULL);
  int huge_errno = errno;
  errno = 0;
  double tiny = strtod("-1e-999", NULL);
  int tiny_errno = errno;
  double sd = 0;
  float sf = 0;
  int sn = sscanf("2.25 -0.125 rest", "%lf %f", &sd, &sf);
  int n = snprintf(out, size,
                   "%s|%d|%d %d %d %s|%ld %d %ld|%ld %d %c|%lu|%lld %d|%ld %d"
                   "|%d %d|%d|%g %ld %g %g %d %g %d|%d %g %g|%s %s",
                   a, an, scanned, x, y, word, big, big_errno, big_end, hex,
                   hex_errno, *end, neg, small, small_errno, none, none_errno,
                   bad_base, bad_base_errno, atoi("  -123abc"), d1, d1_end,
                   d2, huge, huge_errno, tiny, tiny_errno, sn, sd, sf,
                   gettext("untranslated"), ngettext("one", "many", 2));
  free(a);
  return n;
}

/* Reads a file through stdio: a line, a byte pushed back, positions, the
   size, then all of it again; a summary into `out`, compared natively. */
int read_file(const char* path, char* out, unsigned long size) {
  FILE* f = fopen(path, "r");
  if (f == NULL) return -errno;
  char line[64] = "";
  char* got = fgets(line, sizeof(line), f);
  int c = fgetc(f);
  int pushed = ungetc('#', f);
  long at = ftell(f);
  int again = getc(f);
  fseek(f, 0, SEEK_END);
  long end = ftell(f);
  int eof_before = feof(f);
  int past = fgetc(f);
  int eof_after = feof(f);
  rewind(f);
  char all[256] = "";
  size_t n = fread(all, 1, sizeof(all) - 1, f);
  fseek(f, -3, SEEK_END);
  char tail[8] = "";
  size_t tn = fread(tail, 1, sizeof(tail) - 1, f);
  int closed = fclose(f);
  return snprintf(out, size, "%s|%c|%c %ld %c|%ld %d %d %d|%zu %s|%zu %s|%d",
                  got != NULL ? line : "(null)", c, pushed, at, again, end,
                  eof_before, past, eof_after, n, all, tn, tail, closed);
}
