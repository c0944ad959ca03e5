// n uncontended lock/unlock pairs of one mutex of each kind: threads_bench
// runs it natively (glibc's pthread) and loaded (mpkbox's bindings).
#define _GNU_SOURCE
#include <pthread.h>

static pthread_mutex_t normal = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t recursive = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;

long mutex_loop(long n, int recursive_kind) {
  pthread_mutex_t* mu = recursive_kind ? &recursive : &normal;
  long failures = 0;
  for (long i = 0; i < n; ++i) {
    failures += pthread_mutex_lock(mu) != 0;
    failures += pthread_mutex_unlock(mu) != 0;
  }
  return failures;
}

static pthread_once_t once = PTHREAD_ONCE_INIT;
static void nothing(void) {}
static pthread_key_t key;
static int have_key;

// n pthread_once calls after the first, and n getspecific/setspecific pairs.
long once_and_keys_loop(long n) {
  long failures = 0;
  if (!have_key) {
    failures += pthread_key_create(&key, 0) != 0;
    have_key = 1;
  }
  for (long i = 0; i < n; ++i) {
    failures += pthread_once(&once, nothing) != 0;
    failures += pthread_setspecific(key, &failures) != 0;
    failures += pthread_getspecific(key) != &failures;
  }
  return failures;
}
