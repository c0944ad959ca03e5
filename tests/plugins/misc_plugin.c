/* Loaded code that uses the C library's memory, locale, regex, process and
   time functions (libc_misc_test.cc), each returning -errno on failure so
   the test sees what libc told it. */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <langinfo.h>
#include <locale.h>
#include <regex.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>
#include <wctype.h>

/* ---- memory ---- */

long map_errno(void* addr, unsigned long n, int prot, int flags, int fd) {
  errno = 0;
  void* p = mmap(addr, n, prot, flags, fd, 0);
  return p == MAP_FAILED ? -errno : (long)(uintptr_t)p;
}

int unmap_errno(void* p, unsigned long n) {
  errno = 0;
  return munmap(p, n) == 0 ? 0 : -errno;
}

int protect_errno(void* p, unsigned long n, int prot) {
  errno = 0;
  return mprotect(p, n, prot) == 0 ? 0 : -errno;
}

int advise_errno(void* p, unsigned long n, int advice) {
  errno = 0;
  return madvise(p, n, advice) == 0 ? 0 : -errno;
}

int posix_advise(void* p, unsigned long n, int advice) {
  return posix_madvise(p, n, advice);
}

long remap_errno(void* p, unsigned long old_n, unsigned long new_n,
                 int flags) {
  errno = 0;
  void* q = mremap(p, old_n, new_n, flags);
  return q == MAP_FAILED ? -errno : (long)(uintptr_t)q;
}

/* Maps n bytes, checks they read zero, writes and reads them back, unmaps:
   the sum of what it wrote, or -errno, or -1000 if they were not zero. */
long map_use_unmap(unsigned long n) {
  unsigned char* p =
      mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return -errno;
  long sum = 0;
  for (unsigned long i = 0; i < n; ++i) {
    if (p[i] != 0) return -1000;
    p[i] = (unsigned char)i;
  }
  for (unsigned long i = 0; i < n; ++i) sum += p[i];
  if (munmap(p, n) != 0) return -errno;
  return sum;
}

/* free() of what it is given (a mapping: a bad free). */
void free_it(void* p) { free(p); }

/* xor eax,eax; xor ecx,ecx; xor edx,edx; wrpkru; ret: PKRU 0 opens every
   key. Volatile, so the bytes are stored one at a time and never appear
   together in this object's code. */
static volatile const unsigned char kOpenAllKeys[] = {
    0x31, 0xc0, 0x31, 0xc9, 0x31, 0xd2, 0x0f, 0x01, 0xef, 0xc3};

/* Writes the WRPKRU above into a fresh mapping and asks for PROT_EXEC; if
   `jump`, runs it whatever mprotect said and then writes 666 to `target`
   (host memory: faults unless the WRPKRU ran). Returns mprotect's -errno. */
int exec_wrpkru(volatile long* target, int jump) {
  unsigned char* p = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return -1000;
  for (unsigned i = 0; i < sizeof(kOpenAllKeys); ++i) p[i] = kOpenAllKeys[i];
  errno = 0;
  const int r = mprotect(p, 4096, PROT_READ | PROT_WRITE | PROT_EXEC) == 0
                    ? 0
                    : -errno;
  if (jump) {
    ((void (*)(void))(uintptr_t)p)();
    *target = 666;
  }
  return r;
}

/* mmap with PROT_EXEC and the same bytes, run if it succeeded. */
long map_exec(volatile long* target) {
  unsigned char* p =
      mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
           MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return -errno;
  for (unsigned i = 0; i < sizeof(kOpenAllKeys); ++i) p[i] = kOpenAllKeys[i];
  ((void (*)(void))(uintptr_t)p)();
  *target = 666;
  return 0;
}

/* A function of this object's code, for munmap and madvise of its image. */
int plugin_code(void) { return 42; }

/* ---- locale ---- */

const char* set_locale(int category, const char* name) {
  return setlocale(category, name);
}

const char* decimal_point(void) { return localeconv()->decimal_point; }

const char* langinfo(int item) { return nl_langinfo(item); }

/* What libmagic does with a locale object; a bit per check that failed. */
int locale_object_errors(void) {
  int errors = 0;
  locale_t c = newlocale(LC_CTYPE_MASK, "C", (locale_t)0);
  if (c == (locale_t)0) return -1;
  locale_t old = uselocale(c);
  if (!isalpha_l('a', c) || isalpha_l('1', c)) errors |= 1;
  if (toupper_l('q', c) != 'Q' || tolower_l('Q', c) != 'q') errors |= 2;
  if (strtod_l("2.5", NULL, c) != 2.5) errors |= 4;
  if (strcasecmp_l("ABC", "abc", c) != 0) errors |= 8;
  if (strcmp(nl_langinfo_l(CODESET, c), nl_langinfo(CODESET)) != 0) {
    errors |= 16;
  }
  locale_t copy = duplocale(c);
  if (copy == (locale_t)0) errors |= 32;
  freelocale(copy);
  uselocale(old);
  freelocale(c);
  errno = 0;
  if (newlocale(LC_ALL_MASK, "de_DE.UTF-8", (locale_t)0) != (locale_t)0 ||
      errno != ENOENT) {
    errors |= 64;
  }
  if (newlocale(LC_ALL_MASK, "POSIX", (locale_t)0) == (locale_t)0) {
    errors |= 128;
  }
  return errors;
}

/* The C locale's multibyte and wide characters, as libmagic uses them; a
   bit per check that failed. */
int multibyte_errors(void) {
  int errors = 0;
  mbstate_t state;
  memset(&state, 0, sizeof(state));
  wchar_t wc = 0;
  if (mbrtowc(&wc, "A", 1, &state) != 1 || wc != L'A') errors |= 1;
  errno = 0;
  if (mbrtowc(&wc, "\xe9", 1, &state) != (size_t)-1 || errno != EILSEQ) {
    errors |= 2;
  }
  if (mbrtowc(&wc, "", 1, NULL) != 0 || mbrtowc(&wc, "A", 0, NULL) != (size_t)-2) {
    errors |= 4;
  }
  if (mbrlen("xy", 2, NULL) != 1 || mbtowc(&wc, "z", 1) != 1 || wc != L'z') {
    errors |= 8;
  }
  char out[4];
  if (wcrtomb(out, L'q', &state) != 1 || out[0] != 'q' ||
      wcrtomb(out, 0xe9, &state) != (size_t)-1) {
    errors |= 16;
  }
  if (btowc('b') != L'b' || btowc(0xe9) != WEOF || wctob(L'c') != 'c' ||
      !mbsinit(&state)) {
    errors |= 32;
  }
  if (!iswprint(L'A') || iswprint(0xe9) || !iswspace(L' ') ||
      towupper(L'a') != L'A' || towlower(L'B') != L'b') {
    errors |= 64;
  }
  return errors;
}

/* ---- regex ---- */

/* regcomp + regexec: 0 and the first submatch's offsets in so/eo, or the
   error's code with its message in err. */
int regex_match(const char* pattern, const char* text, int* offsets,
                char* err, unsigned long err_size) {
  regex_t re;
  int r = regcomp(&re, pattern, REG_EXTENDED);
  if (r != 0) {
    regerror(r, &re, err, err_size);
    return r;
  }
  regmatch_t m[2];
  r = regexec(&re, text, 2, m, 0);
  if (r == 0) {
    offsets[0] = (int)m[0].rm_so;
    offsets[1] = (int)m[0].rm_eo;
    offsets[2] = (int)m[1].rm_so;
    offsets[3] = (int)m[1].rm_eo;
  } else {
    regerror(r, &re, err, err_size);
  }
  regfree(&re);
  return r;
}

/* ---- process ---- */

long sysconf_errno(int name) {
  errno = 0;
  long r = sysconf(name);
  return r == -1 && errno != 0 ? -errno : r;
}

/* getauxval's value, with errno in *err. */
unsigned long auxval(unsigned long type, int* err) {
  errno = 0;
  unsigned long v = getauxval(type);
  *err = errno;
  return v;
}

long get_pid(void) { return getpid(); }
int page_size(void) { return getpagesize(); }

void exit_with(int how, int status) {
  switch (how) {
    case 0:
      exit(status);
    case 1:
      _exit(status);
    case 2:
      _Exit(status);
    default:
      quick_exit(status);
  }
}

/* ---- time ---- */

int broken_down(long t, struct tm* out, int local) {
  time_t tt = (time_t)t;
  errno = 0;
  struct tm* r = local ? localtime_r(&tt, out) : gmtime_r(&tt, out);
  return r == out ? 0 : -errno;
}

long from_broken_down(struct tm* tm, int local) {
  return (long)(local ? mktime(tm) : timegm(tm));
}

unsigned long format_time(char* out, unsigned long n, const char* format,
                          const struct tm* tm) {
  return strftime(out, n, format, tm);
}

char* ctime_of(long t, char* buf) {
  time_t tt = (time_t)t;
  return ctime_r(&tt, buf);
}
