// Loaded code that synchronises several host threads inside one compartment
#define _GNU_SOURCE
// with the pthread functions a library imports (libc_threads_test.cc).
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

// ---- a mutex of each type, hammered ----------------------------------------

static pthread_mutex_t normal_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t recursive_mu = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
static pthread_mutex_t errorcheck_mu;
static long counter;  // plain, not atomic: only the mutex keeps it exact

long setup_errorcheck(void) {
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  int r = pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK);
  if (r == 0) r = pthread_mutex_init(&errorcheck_mu, &attr);
  pthread_mutexattr_destroy(&attr);
  return r;
}

// Increments `counter` n times under the mutex of `type` (0 normal, 1
// recursive taken twice, 2 errorcheck); a nonzero result is an error.
long hammer(int type, long n) {
  for (long i = 0; i < n; ++i) {
    pthread_mutex_t* mu = type == 0   ? &normal_mu
                          : type == 1 ? &recursive_mu
                                      : &errorcheck_mu;
    int r = pthread_mutex_lock(mu);
    if (r != 0) return r;
    if (type == 1 && (r = pthread_mutex_lock(mu)) != 0) return r;
    long c = counter;
    if ((i & 63) == 0) sched_yield();  // widen the window a lost update needs
    counter = c + 1;
    if (type == 1 && (r = pthread_mutex_unlock(mu)) != 0) return r;
    if ((r = pthread_mutex_unlock(mu)) != 0) return r;
  }
  return 0;
}

long get_counter(void) { return counter; }
void reset_counter(void) { counter = 0; }

static pthread_spinlock_t spin;
long setup_spin(void) { return pthread_spin_init(&spin, 0); }
long spin_hammer(long n) {
  for (long i = 0; i < n; ++i) {
    pthread_spin_lock(&spin);
    long c = counter;
    counter = c + 1;
    pthread_spin_unlock(&spin);
  }
  return 0;
}

// ---- the errors each type reports ------------------------------------------

// Returns 0 if every check holds, else the number of the first that failed.
long mutex_semantics(void) {
  int n = 0;
  ++n;
  if (pthread_mutex_lock(&errorcheck_mu) != 0) return n;
  ++n;
  if (pthread_mutex_lock(&errorcheck_mu) != EDEADLK) return n;
  ++n;
  if (pthread_mutex_trylock(&errorcheck_mu) != EBUSY) return n;
  ++n;
  if (pthread_mutex_unlock(&errorcheck_mu) != 0) return n;
  ++n;
  if (pthread_mutex_unlock(&errorcheck_mu) != EPERM) return n;
  ++n;
  if (pthread_mutex_lock(&recursive_mu) != 0) return n;
  ++n;
  if (pthread_mutex_trylock(&recursive_mu) != 0) return n;
  ++n;
  if (pthread_mutex_unlock(&recursive_mu) != 0) return n;
  ++n;
  if (pthread_mutex_unlock(&recursive_mu) != 0) return n;
  ++n;
  if (pthread_mutex_unlock(&recursive_mu) != EPERM) return n;
  ++n;
  if (pthread_mutex_lock(&normal_mu) != 0) return n;
  ++n;
  if (pthread_mutex_trylock(&normal_mu) != EBUSY) return n;
  ++n;
  struct timespec past = {1, 0};
  if (pthread_mutex_timedlock(&normal_mu, &past) != ETIMEDOUT) return n;
  ++n;
  struct timespec bad = {1, 2000000000};
  if (pthread_mutex_timedlock(&normal_mu, &bad) != EINVAL) return n;
  ++n;
  if (pthread_mutex_unlock(&normal_mu) != 0) return n;
  ++n;
  pthread_mutex_t* heap_mu = malloc(sizeof(pthread_mutex_t));
  if (pthread_mutex_init(heap_mu, NULL) != 0) return n;
  ++n;
  if (pthread_mutex_lock(heap_mu) != 0) return n;
  ++n;
  if (pthread_mutex_destroy(heap_mu) != EBUSY) return n;
  ++n;
  if (pthread_mutex_unlock(heap_mu) != 0 || pthread_mutex_destroy(heap_mu))
    return n;
  free(heap_mu);
  ++n;
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  int type = -1;
  if (pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE) != 0 ||
      pthread_mutexattr_gettype(&attr, &type) != 0 ||
      type != PTHREAD_MUTEX_RECURSIVE)
    return n;
  ++n;
  if (pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED) != ENOTSUP)
    return n;
  ++n;
  if (pthread_self() == 0 || !pthread_equal(pthread_self(), pthread_self()))
    return n;
  return 0;
}

// pthread_create and friends: refused with an errno.
long create_thread(void) {
  pthread_t t;
  return pthread_create(&t, NULL, (void* (*)(void*))abort, NULL);
}
long join_thread(void) { return pthread_join(pthread_self(), NULL); }
long detach_thread(void) { return pthread_detach(pthread_self()); }

// ---- a condition variable: producer and consumer ---------------------------

enum { kQueue = 8 };
static pthread_mutex_t q_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_not_empty = PTHREAD_COND_INITIALIZER;
static pthread_cond_t q_not_full = PTHREAD_COND_INITIALIZER;
static long q_items[kQueue];
static int q_head, q_count;

long produce(long n) {
  for (long i = 1; i <= n; ++i) {
    pthread_mutex_lock(&q_mu);
    while (q_count == kQueue) pthread_cond_wait(&q_not_full, &q_mu);
    q_items[(q_head + q_count++) % kQueue] = i;
    pthread_cond_signal(&q_not_empty);
    pthread_mutex_unlock(&q_mu);
  }
  return 0;
}

// The sum of n items taken off the queue.
long consume(long n) {
  long sum = 0;
  for (long i = 0; i < n; ++i) {
    pthread_mutex_lock(&q_mu);
    while (q_count == 0) pthread_cond_wait(&q_not_empty, &q_mu);
    sum += q_items[q_head];
    q_head = (q_head + 1) % kQueue;
    --q_count;
    pthread_cond_broadcast(&q_not_full);
    pthread_mutex_unlock(&q_mu);
  }
  return sum;
}

// A timed wait nobody signals, on the condattr's clock (0 REALTIME, 1
// MONOTONIC): ETIMEDOUT expected.
long timed_wait(int monotonic, long ms) {
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  clockid_t clock = monotonic ? CLOCK_MONOTONIC : CLOCK_REALTIME;
  if (pthread_condattr_setclock(&attr, clock) != 0) return -1;
  clockid_t got;
  if (pthread_condattr_getclock(&attr, &got) != 0 || got != clock) return -2;
  pthread_cond_t cond;
  pthread_cond_init(&cond, &attr);
  pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;  // on this thread's stack
  struct timespec until;
  clock_gettime(clock, &until);
  until.tv_nsec += ms * 1000000;
  until.tv_sec += until.tv_nsec / 1000000000;
  until.tv_nsec %= 1000000000;
  pthread_mutex_lock(&mu);
  int r = pthread_cond_timedwait(&cond, &mu, &until);
  if (pthread_mutex_unlock(&mu) != 0) return -3;  // the wait relocked it
  pthread_cond_destroy(&cond);
  return r;
}

// Waits on a condition nobody signals: only the call's timeout ends it.
long wait_forever(void) {
  static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  static pthread_cond_t never = PTHREAD_COND_INITIALIZER;
  pthread_mutex_lock(&mu);
  for (;;) pthread_cond_wait(&never, &mu);
}

// Locks a normal mutex twice: deadlocks, as POSIX lets it.
long self_deadlock(void) {
  static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  pthread_mutex_lock(&mu);
  return pthread_mutex_lock(&mu);
}

// ---- rwlock ----------------------------------------------------------------

static pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;
static long rw_a, rw_b;

// Writers keep rw_a == rw_b; readers count the times they saw otherwise.
long rw_writer(long n) {
  for (long i = 0; i < n; ++i) {
    if (pthread_rwlock_wrlock(&rw) != 0) return -1;
    ++rw_a;
    if ((i & 31) == 0) sched_yield();
    ++rw_b;
    pthread_rwlock_unlock(&rw);
  }
  return 0;
}
long rw_reader(long n) {
  long torn = 0;
  for (long i = 0; i < n; ++i) {
    if (pthread_rwlock_rdlock(&rw) != 0) return -1;
    long a = rw_a;
    if ((i & 31) == 0) sched_yield();
    if (rw_b != a) ++torn;
    pthread_rwlock_unlock(&rw);
  }
  return torn;
}
long rw_total(void) { return rw_a == rw_b ? rw_a : -1; }
long rw_semantics(void) {
  pthread_rwlock_t l;
  if (pthread_rwlock_init(&l, NULL) != 0) return 1;
  if (pthread_rwlock_rdlock(&l) != 0) return 2;
  if (pthread_rwlock_tryrdlock(&l) != 0) return 3;
  if (pthread_rwlock_trywrlock(&l) != EBUSY) return 4;
  if (pthread_rwlock_unlock(&l) || pthread_rwlock_unlock(&l)) return 5;
  if (pthread_rwlock_wrlock(&l) != 0) return 6;
  if (pthread_rwlock_wrlock(&l) != EDEADLK) return 7;
  if (pthread_rwlock_tryrdlock(&l) != EDEADLK) return 8;
  if (pthread_rwlock_destroy(&l) != EBUSY) return 9;
  if (pthread_rwlock_unlock(&l) != 0) return 10;
  if (pthread_rwlock_destroy(&l) != 0) return 11;
  return 0;
}

// ---- once ------------------------------------------------------------------

static pthread_once_t once = PTHREAD_ONCE_INIT;
static long once_runs;
static void once_init(void) {
  for (int i = 0; i < 100; ++i) sched_yield();  // others arrive meanwhile
  ++once_runs;
}
// Every caller must see the initialisation done, and done once.
long run_once(void) {
  if (pthread_once(&once, once_init) != 0) return -1;
  return once_runs;
}

// ---- thread keys -----------------------------------------------------------

static pthread_key_t key;
static long destroyed_sum;  // what destructors received, summed
static pthread_mutex_t destroyed_mu = PTHREAD_MUTEX_INITIALIZER;

static void destroy_value(void* p) {
  pthread_mutex_lock(&destroyed_mu);
  destroyed_sum += *(long*)p;
  pthread_mutex_unlock(&destroyed_mu);
  free(p);
}

long make_key(void) { return pthread_key_create(&key, destroy_value); }

// Sets this thread's value to v (on the heap), and reads it back.
long set_value(long v) {
  if (pthread_getspecific(key) != NULL) return -1;  // fresh on each thread
  long* p = malloc(sizeof(long));
  *p = v;
  if (pthread_setspecific(key, p) != 0) return -2;
  return *(long*)pthread_getspecific(key);
}
long get_value(void) {
  long* p = pthread_getspecific(key);
  return p != NULL ? *p : -1;
}
long destroyed(void) {
  pthread_mutex_lock(&destroyed_mu);
  long s = destroyed_sum;
  pthread_mutex_unlock(&destroyed_mu);
  return s;
}
// A deleted key reads null, and a new key in its place too.
long key_semantics(void) {
  pthread_key_t k;
  if (pthread_key_create(&k, NULL) != 0) return 1;
  if (pthread_setspecific(k, &k) != 0) return 2;
  if (pthread_getspecific(k) != &k) return 3;
  if (pthread_key_delete(k) != 0) return 4;
  if (pthread_key_delete(k) != EINVAL) return 5;
  if (pthread_setspecific(k, &k) != EINVAL) return 6;
  pthread_key_t again;
  if (pthread_key_create(&again, NULL) != 0) return 7;
  if (again == k && pthread_getspecific(again) != NULL) return 8;
  if (pthread_key_delete(again) != 0) return 9;
  if (pthread_setspecific(1024, &k) != EINVAL) return 10;
  return 0;
}

// ---- barrier ---------------------------------------------------------------

static pthread_barrier_t barrier;
static long arrived[64];
static long threads;

long setup_barrier(long n) {
  threads = n;
  return pthread_barrier_init(&barrier, NULL, (unsigned)n);
}
// `rounds` rounds: each thread counts itself in, waits, and checks that
// every thread had counted itself in. Returns the rounds it was the serial
// thread, or -1 on a round that let it through early.
long barrier_rounds(long rounds) {
  long serial = 0;
  for (long r = 0; r < rounds && r < 64; ++r) {
    __atomic_fetch_add(&arrived[r], 1, __ATOMIC_SEQ_CST);
    int w = pthread_barrier_wait(&barrier);
    if (w == PTHREAD_BARRIER_SERIAL_THREAD) {
      ++serial;
    } else if (w != 0) {
      return -2;
    }
    if (__atomic_load_n(&arrived[r], __ATOMIC_SEQ_CST) < threads) return -1;
  }
  return serial;
}

// A key whose destructor faults (a write through a null pointer): it runs
// when a thread that set a value exits.
static pthread_key_t bad_key;
static void bad_destructor(void* p) {
  (void)p;
  *(volatile long*)0 = 1;
}
long make_bad_key(void) { return pthread_key_create(&bad_key, bad_destructor); }
long set_bad_value(void) { return pthread_setspecific(bad_key, &bad_key); }

// The rest of the attribute and cancellation surface: 0 if all holds.
long misc_semantics(void) {
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  int v = -1;
  if (pthread_mutexattr_getrobust(&attr, &v) || v != PTHREAD_MUTEX_STALLED)
    return 1;
  if (pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST) != ENOTSUP)
    return 2;
  if (pthread_mutexattr_getprotocol(&attr, &v) || v != PTHREAD_PRIO_NONE)
    return 3;
  if (pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &v) ||
      v != PTHREAD_CANCEL_ENABLE)
    return 4;
  pthread_testcancel();
  pthread_rwlock_t l = PTHREAD_RWLOCK_INITIALIZER;
  struct timespec past = {1, 0};
  if (pthread_rwlock_wrlock(&l)) return 5;
  if (pthread_rwlock_clockrdlock(&l, CLOCK_MONOTONIC, &past) != EDEADLK)
    return 6;
  if (pthread_rwlock_unlock(&l) || pthread_rwlock_rdlock(&l)) return 7;
  if (pthread_rwlock_clockwrlock(&l, CLOCK_MONOTONIC, &past) != ETIMEDOUT)
    return 8;
  if (pthread_rwlock_timedwrlock(&l, &past) != ETIMEDOUT) return 9;
  if (pthread_rwlock_unlock(&l)) return 10;
  pthread_barrier_t b;
  if (pthread_barrier_init(&b, NULL, 0) != EINVAL) return 11;
  if (pthread_barrier_init(&b, NULL, 1)) return 12;
  if (pthread_barrier_wait(&b) != PTHREAD_BARRIER_SERIAL_THREAD) return 13;
  if (pthread_barrier_destroy(&b)) return 14;
  if (pthread_spin_init(&spin, 0) || pthread_spin_trylock(&spin)) return 15;
  if (pthread_spin_trylock(&spin) != EBUSY) return 16;
  if (pthread_spin_unlock(&spin)) return 17;
  return 0;
}

// A key whose destructor never returns (it waits on a condition nobody
// signals).
static pthread_key_t blocking_key;
static void blocking_destructor(void* p) {
  (void)p;
  wait_forever();
}
long make_blocking_key(void) {
  return pthread_key_create(&blocking_key, blocking_destructor);
}
long set_blocking_value(void) {
  return pthread_setspecific(blocking_key, &blocking_key);
}
