/* loader_attack_imports_test.cc: imports mpkbox refuses, used at call time.
   Each would run with the compartment's rights on host state (stdio, threads,
   signal dispositions). */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int la_call_fopen(const char* path) {
  FILE* f = fopen(path, "w");
  if (f == NULL) return 0;
  fputs("written from a compartment\n", f);
  fclose(f);
  return 1;
}

/* Reads the host's `stderr` (a FILE*) and writes through it. */
int la_read_stderr(void) {
  FILE* f = stderr;
  return f != NULL ? fputs("compartment on the host's stderr\n", f) : -1;
}

static void* la_thread_main(void* arg) { return arg; }

int la_call_pthread_create(void) {
  pthread_t t;
  int r = pthread_create(&t, NULL, la_thread_main, NULL);
  if (r == 0) pthread_join(t, NULL);
  return r;
}

static void la_handler(int sig) { (void)sig; }

long la_call_signal(void) { return (long)signal(SIGUSR1, la_handler); }

int la_call_sigaction(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = la_handler;
  return sigaction(SIGUSR2, &sa, NULL);
}

int la_ok(int x) { return 2 * x + 1; }

/* getenv is on the allowlist ("the environment is key-0 memory"). */
const char* la_getenv(const char* name) { return getenv(name); }

/* What the loader bound each refused import to, as this object sees it
   (its GOT entries). */
void* la_import_address(int which) {
  switch (which) {
    case 0:
      return (void*)&fopen;
    case 1:
      return (void*)&stderr;
    case 2:
      return (void*)&pthread_create;
    case 3:
      return (void*)&signal;
    case 4:
      return (void*)&sigaction;
    default:
      return NULL;
  }
}
