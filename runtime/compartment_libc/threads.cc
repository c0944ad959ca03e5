// Thread synchronisation for loaded code: mutexes, rwlocks, condition
// variables, pthread_once, spinlocks, barriers and thread keys, on the
// compartment's own memory, over glibc's struct sizes (pthread_mutex_t's 40
// bytes, ...; glibc's static initializers are zeros but for a mutex's kind
// at offset 16, which these read the same way).
//
// Hand-written, not glibc's: glibc's write the thread descriptor (key 0:
// the robust list, the owner's tid from it) and errno, which fault under
// Ambient::kReadOnly.
//
// They block with a futex wait on compartment memory, asked of the runtime
// through the libc entry (kLibcThreads): with host rights it checks the
// word lies in the compartment's own memory (its heap, its images, its
// threads' stacks), bounds the wait by the call's deadline, and waits. The
// SyscallPolicy is not consulted: a private futex on a word of its own
// reaches nothing but the compartment, like its spinning would.
//
// pthread_create stays refused (EAGAIN): a thread started inside would run
// compartment code with no host thread, gate or deadline of its own.
#include "runtime/compartment_libc/threads.h"

#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <climits>
#include <cstring>

#include "allocator/compartment_heap.h"
#include "allocator/heap_cache.h"
#include "allocator/inside.h"
#include "runtime/call_timer.h"
#include "runtime/compartment_libc/bindings.h"
#include "runtime/compartment_libc/libc_entry.h"
#include "runtime/compartment_libc/libc_state.h"
#include "runtime/slot_registry.h"
#include "runtime/testing_switches.h"

namespace mpkbox::internal {
namespace {

enum ThreadsRequest : uint64_t {
  kFutexWait = 0,  // word, expected, absolute timeout or 0; clock in extra
  kFutexWake = 1,  // word, how many
  kThreadId = 2,   // the calling thread's tid
  kYield = 3,      // sched_yield
};

// ---- compartment side: the futex and the thread's identity ----------------

// 0, or -errno (EAGAIN: the word changed; ETIMEDOUT; EINTR; EFAULT: not the
// compartment's memory; EINVAL: a bad timeout).
long FutexWait(uint32_t* word, uint32_t expected, const timespec* abs,
               clockid_t clock) {
  return static_cast<long>(
      EnterLibc(LibcOp(kLibcThreads, kFutexWait, static_cast<uint32_t>(clock)),
                reinterpret_cast<uintptr_t>(word), expected,
                reinterpret_cast<uintptr_t>(abs)));
}

void FutexWake(uint32_t* word, int n) {
  EnterLibc(LibcOp(kLibcThreads, kFutexWake),
            reinterpret_cast<uintptr_t>(word), static_cast<uint64_t>(n));
}

HeapCache* MyCache() {
  SelectorPage* sel = CompartmentThread();
  return sel != nullptr ? EnsureCache(sel) : nullptr;
}

// The thread's tid, asked once per compartment and kept in its HeapCache
// (compartment memory: a forged one misleads only the compartment's locks).
int32_t Self() {
  HeapCache* cache = MyCache();
  if (cache != nullptr && cache->thread_id != 0) return cache->thread_id;
  const auto tid =
      static_cast<int32_t>(EnterLibc(LibcOp(kLibcThreads, kThreadId)));
  if (cache != nullptr) cache->thread_id = tid;
  return tid;
}

uint32_t Load(const uint32_t* p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
int32_t Load(const int32_t* p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
void Store(uint32_t* p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
void Store(int32_t* p, int32_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
bool Cas(uint32_t* p, uint32_t* expected, uint32_t desired) {
  return __atomic_compare_exchange_n(p, expected, desired, false,
                                     __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}
uint32_t Exchange(uint32_t* p, uint32_t v) {
  return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST);
}
uint32_t Add(uint32_t* p, uint32_t v) {
  return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}
uint32_t Sub(uint32_t* p, uint32_t v) {
  return __atomic_fetch_sub(p, v, __ATOMIC_SEQ_CST);
}

bool BadTimeout(const timespec* abs) {
  return abs != nullptr && (abs->tv_nsec < 0 || abs->tv_nsec >= 1000000000);
}

// A word lock (Drepper, "Futexes are tricky", mutex 3): 0 free, 1 locked,
// 2 locked with waiters. 0 or an errno.
int LockWord(uint32_t* w, const timespec* abs, clockid_t clock) {
  uint32_t c = 0;
  if (Cas(w, &c, 1)) return 0;
  if (c != 2) c = Exchange(w, 2);
  while (c != 0) {
    const long r = FutexWait(w, 2, abs, clock);
    if (r == -ETIMEDOUT || r == -EFAULT || r == -EINVAL) {
      return static_cast<int>(-r);
    }
    c = Exchange(w, 2);
  }
  return 0;
}

void UnlockWord(uint32_t* w) {
  if (Exchange(w, 0) == 2) FutexWake(w, 1);
}

// ---- mutexes ---------------------------------------------------------------

struct Mutex {
  uint32_t word;   // LockWord's
  uint32_t count;  // a recursive mutex's depth beyond the first lock
  int32_t owner;   // tid of a recursive or errorcheck one's, 0 when free
  uint32_t unused;
  int32_t kind;    // offset 16, as glibc's static initializers set it
  uint8_t rest[20];
};
static_assert(sizeof(Mutex) == sizeof(pthread_mutex_t));

// A mutexattr: the type in the low bits (glibc's too), the rest unused.
static_assert(sizeof(pthread_mutexattr_t) == sizeof(int));
constexpr int kTypeMask = 3;

int KindOf(const Mutex* m) { return Load(&m->kind) & kTypeMask; }
bool Checked(int kind) {
  return kind == PTHREAD_MUTEX_RECURSIVE || kind == PTHREAD_MUTEX_ERRORCHECK;
}

int MutexInit(pthread_mutex_t* mp, const pthread_mutexattr_t* attr) {
  auto* m = reinterpret_cast<Mutex*>(mp);
  memset(m, 0, sizeof(*m));
  if (attr != nullptr) {
    m->kind = *reinterpret_cast<const int*>(attr) & kTypeMask;
  }
  return 0;
}

int MutexDestroy(pthread_mutex_t* mp) {
  auto* m = reinterpret_cast<Mutex*>(mp);
  return Load(&m->word) != 0 ? EBUSY : 0;
}

// Only recursive and errorcheck mutexes track their owner (a normal one's
// lock is then the word's alone, as fast as glibc's); the owner is read
// only by its own thread, so relaxed stores do.
void SetOwner(Mutex* m, int32_t owner) {
  __atomic_store_n(&m->owner, owner, __ATOMIC_RELAXED);
}
bool OwnedByMe(const Mutex* m, int32_t me) {
  return __atomic_load_n(&m->owner, __ATOMIC_RELAXED) == me;
}

int MutexLockUntil(pthread_mutex_t* mp, const timespec* abs, clockid_t clock) {
  auto* m = reinterpret_cast<Mutex*>(mp);
  const int kind = KindOf(m);
  if (BadTimeout(abs)) return EINVAL;
  if (!Checked(kind)) return LockWord(&m->word, abs, clock);
  const int32_t me = Self();
  if (OwnedByMe(m, me)) {
    if (kind == PTHREAD_MUTEX_ERRORCHECK) return EDEADLK;
    if (m->count == UINT32_MAX) return EAGAIN;
    ++m->count;
    return 0;
  }
  if (int r = LockWord(&m->word, abs, clock); r != 0) return r;
  SetOwner(m, me);
  m->count = 0;
  return 0;
}

int MutexLock(pthread_mutex_t* m) {
  return MutexLockUntil(m, nullptr, CLOCK_REALTIME);
}
int MutexTimedLock(pthread_mutex_t* m, const timespec* abs) {
  return MutexLockUntil(m, abs, CLOCK_REALTIME);
}
int MutexClockLock(pthread_mutex_t* m, clockid_t clock, const timespec* abs) {
  if (clock != CLOCK_REALTIME && clock != CLOCK_MONOTONIC) return EINVAL;
  return MutexLockUntil(m, abs, clock);
}

int MutexTryLock(pthread_mutex_t* mp) {
  auto* m = reinterpret_cast<Mutex*>(mp);
  const int kind = KindOf(m);
  const int32_t me = Checked(kind) ? Self() : 0;
  if (Checked(kind) && OwnedByMe(m, me)) {
    if (kind == PTHREAD_MUTEX_ERRORCHECK) return EBUSY;
    if (m->count == UINT32_MAX) return EAGAIN;
    ++m->count;
    return 0;
  }
  uint32_t c = 0;
  if (!Cas(&m->word, &c, 1)) return EBUSY;
  if (Checked(kind)) {
    SetOwner(m, me);
    m->count = 0;
  }
  return 0;
}

int MutexUnlock(pthread_mutex_t* mp) {
  auto* m = reinterpret_cast<Mutex*>(mp);
  if (Checked(KindOf(m))) {
    if (!OwnedByMe(m, Self())) return EPERM;
    if (m->count > 0) {
      --m->count;
      return 0;
    }
    SetOwner(m, 0);
  }
  UnlockWord(&m->word);
  return 0;
}

int MutexattrInit(pthread_mutexattr_t* a) {
  *reinterpret_cast<int*>(a) = PTHREAD_MUTEX_DEFAULT;
  return 0;
}
int AttrDestroy(void*) { return 0; }
int MutexattrSettype(pthread_mutexattr_t* a, int type) {
  if (type < 0 || type > PTHREAD_MUTEX_ADAPTIVE_NP) return EINVAL;
  *reinterpret_cast<int*>(a) = type;
  return 0;
}
int MutexattrGettype(const pthread_mutexattr_t* a, int* type) {
  *type = *reinterpret_cast<const int*>(a) & kTypeMask;
  return 0;
}
// Only private objects: there is no memory a compartment shares with
// another process.
int SetPshared(void*, int pshared) {
  if (pshared == PTHREAD_PROCESS_PRIVATE) return 0;
  return pshared == PTHREAD_PROCESS_SHARED ? ENOTSUP : EINVAL;
}
int GetPshared(const void*, int* pshared) {
  *pshared = PTHREAD_PROCESS_PRIVATE;
  return 0;
}
int MutexattrSetrobust(pthread_mutexattr_t*, int robust) {
  if (robust == PTHREAD_MUTEX_STALLED) return 0;
  return robust == PTHREAD_MUTEX_ROBUST ? ENOTSUP : EINVAL;
}
int MutexattrSetprotocol(pthread_mutexattr_t*, int protocol) {
  if (protocol == PTHREAD_PRIO_NONE) return 0;
  return protocol == PTHREAD_PRIO_INHERIT || protocol == PTHREAD_PRIO_PROTECT
             ? ENOTSUP
             : EINVAL;
}

int MutexattrGetrobust(const pthread_mutexattr_t*, int* robust) {
  *robust = PTHREAD_MUTEX_STALLED;
  return 0;
}
int MutexattrGetprotocol(const pthread_mutexattr_t*, int* protocol) {
  *protocol = PTHREAD_PRIO_NONE;
  return 0;
}
int MutexConsistent(pthread_mutex_t*) { return EINVAL; }  // none is robust

// ---- condition variables ---------------------------------------------------

struct Cond {
  uint32_t seq;      // bumped by every signal and broadcast with waiters
  uint32_t waiters;  // threads between their wait's start and end
  int32_t clock;     // the condattr's; 0 (CLOCK_REALTIME) as initialized
  uint8_t rest[36];
};
static_assert(sizeof(Cond) == sizeof(pthread_cond_t));
static_assert(sizeof(pthread_condattr_t) == sizeof(int));
static_assert(CLOCK_REALTIME == 0);

int CondInit(pthread_cond_t* cp, const pthread_condattr_t* attr) {
  auto* c = reinterpret_cast<Cond*>(cp);
  memset(c, 0, sizeof(*c));
  if (attr != nullptr) c->clock = *reinterpret_cast<const int*>(attr);
  return 0;
}

int CondDestroy(pthread_cond_t* cp) {
  auto* c = reinterpret_cast<Cond*>(cp);
  return Load(&c->waiters) != 0 ? EBUSY : 0;
}

// The mutex is released fully (a recursive one's depth kept) after the
// sequence is read, so a signal after the release changes what the wait
// expects and the wait returns at once: no wakeup is lost.
int CondWaitUntil(pthread_cond_t* cp, pthread_mutex_t* mp,
                  const timespec* abs, clockid_t clock) {
  auto* c = reinterpret_cast<Cond*>(cp);
  auto* m = reinterpret_cast<Mutex*>(mp);
  if (BadTimeout(abs)) return EINVAL;
  const bool checked = Checked(KindOf(m));
  const int32_t me = checked ? Self() : 0;
  if (checked && !OwnedByMe(m, me)) return EPERM;
  Add(&c->waiters, 1);
  const uint32_t seq = Load(&c->seq);
  const uint32_t depth = m->count;
  if (checked) {
    m->count = 0;
    SetOwner(m, 0);
  }
  UnlockWord(&m->word);
  const long r = FutexWait(&c->seq, seq, abs, clock);
  Sub(&c->waiters, 1);
  const int relock = LockWord(&m->word, nullptr, CLOCK_REALTIME);
  if (checked) {
    SetOwner(m, me);
    m->count = depth;
  }
  if (relock != 0) return relock;
  if (r == -ETIMEDOUT || r == -EFAULT || r == -EINVAL) {
    return static_cast<int>(-r);
  }
  return 0;
}

int CondWait(pthread_cond_t* c, pthread_mutex_t* m) {
  return CondWaitUntil(c, m, nullptr, CLOCK_REALTIME);
}
int CondTimedWait(pthread_cond_t* cp, pthread_mutex_t* m,
                  const timespec* abs) {
  auto* c = reinterpret_cast<Cond*>(cp);
  return CondWaitUntil(cp, m, abs, Load(&c->clock));
}
int CondClockWait(pthread_cond_t* c, pthread_mutex_t* m, clockid_t clock,
                  const timespec* abs) {
  if (clock != CLOCK_REALTIME && clock != CLOCK_MONOTONIC) return EINVAL;
  return CondWaitUntil(c, m, abs, clock);
}

int CondWake(pthread_cond_t* cp, int n) {
  auto* c = reinterpret_cast<Cond*>(cp);
  if (Load(&c->waiters) == 0) return 0;
  Add(&c->seq, 1);
  FutexWake(&c->seq, n);
  return 0;
}
int CondSignal(pthread_cond_t* c) { return CondWake(c, 1); }
int CondBroadcast(pthread_cond_t* c) { return CondWake(c, INT_MAX); }

int CondattrInit(pthread_condattr_t* a) {
  *reinterpret_cast<int*>(a) = CLOCK_REALTIME;
  return 0;
}
int CondattrSetclock(pthread_condattr_t* a, clockid_t clock) {
  if (clock != CLOCK_REALTIME && clock != CLOCK_MONOTONIC) return EINVAL;
  *reinterpret_cast<int*>(a) = clock;
  return 0;
}
int CondattrGetclock(const pthread_condattr_t* a, clockid_t* clock) {
  *clock = *reinterpret_cast<const int*>(a);
  return 0;
}

// ---- rwlocks ---------------------------------------------------------------

struct RwLock {
  uint32_t state;    // readers, or kWriter
  uint32_t waiters;  // threads about to wait or waiting
  uint32_t seq;      // bumped by an unlock that finds waiters
  int32_t writer;    // the writer's tid
  uint8_t rest[40];
};
static_assert(sizeof(RwLock) == sizeof(pthread_rwlock_t));
static_assert(sizeof(pthread_rwlockattr_t) == 2 * sizeof(int));
constexpr uint32_t kWriter = 0x80000000u;

int RwlockInit(pthread_rwlock_t* lp, const pthread_rwlockattr_t*) {
  memset(lp, 0, sizeof(RwLock));
  return 0;
}
int RwlockDestroy(pthread_rwlock_t* lp) {
  auto* l = reinterpret_cast<RwLock*>(lp);
  return Load(&l->state) != 0 ? EBUSY : 0;
}

// Waits for the lock's state to change from one that blocks; the waiter
// counts itself before it reads the sequence, the unlocker changes the
// state before it reads the count (both sequentially consistent).
int RwWait(RwLock* l, bool (*blocked)(uint32_t), const timespec* abs,
           clockid_t clock) {
  Add(&l->waiters, 1);
  const uint32_t seq = Load(&l->seq);
  long r = 0;
  if (blocked(Load(&l->state))) r = FutexWait(&l->seq, seq, abs, clock);
  Sub(&l->waiters, 1);
  if (r == -ETIMEDOUT || r == -EFAULT || r == -EINVAL) {
    return static_cast<int>(-r);
  }
  return 0;
}

int RdLockUntil(pthread_rwlock_t* lp, const timespec* abs, clockid_t clock,
                bool try_only) {
  auto* l = reinterpret_cast<RwLock*>(lp);
  if (BadTimeout(abs)) return EINVAL;
  for (;;) {
    uint32_t s = Load(&l->state);
    if (!(s & kWriter)) {
      if (s == kWriter - 1) return EAGAIN;
      if (Cas(&l->state, &s, s + 1)) return 0;
      continue;
    }
    if (Load(&l->writer) == Self()) return EDEADLK;
    if (try_only) return EBUSY;
    if (int r = RwWait(
            l, [](uint32_t st) { return (st & kWriter) != 0; }, abs, clock);
        r != 0) {
      return r;
    }
  }
}

int WrLockUntil(pthread_rwlock_t* lp, const timespec* abs, clockid_t clock,
                bool try_only) {
  auto* l = reinterpret_cast<RwLock*>(lp);
  if (BadTimeout(abs)) return EINVAL;
  const int32_t me = Self();
  for (;;) {
    uint32_t s = 0;
    if (Cas(&l->state, &s, kWriter)) {
      Store(&l->writer, me);
      return 0;
    }
    if (s == kWriter && Load(&l->writer) == me) return EDEADLK;
    if (try_only) return EBUSY;
    if (int r = RwWait(
            l, [](uint32_t st) { return st != 0; }, abs, clock);
        r != 0) {
      return r;
    }
  }
}

int RwlockUnlock(pthread_rwlock_t* lp) {
  auto* l = reinterpret_cast<RwLock*>(lp);
  const uint32_t s = Load(&l->state);
  if (s == 0) return EPERM;
  if (s == kWriter) {
    Store(&l->writer, 0);
    Store(&l->state, 0);
  } else if (Sub(&l->state, 1) != 1) {
    return 0;  // other readers remain
  }
  if (Load(&l->waiters) != 0) {
    Add(&l->seq, 1);
    FutexWake(&l->seq, INT_MAX);
  }
  return 0;
}

int RwRdLock(pthread_rwlock_t* l) {
  return RdLockUntil(l, nullptr, CLOCK_REALTIME, false);
}
int RwTryRdLock(pthread_rwlock_t* l) {
  return RdLockUntil(l, nullptr, CLOCK_REALTIME, true);
}
int RwTimedRdLock(pthread_rwlock_t* l, const timespec* abs) {
  return RdLockUntil(l, abs, CLOCK_REALTIME, false);
}
int RwWrLock(pthread_rwlock_t* l) {
  return WrLockUntil(l, nullptr, CLOCK_REALTIME, false);
}
int RwTryWrLock(pthread_rwlock_t* l) {
  return WrLockUntil(l, nullptr, CLOCK_REALTIME, true);
}
int RwTimedWrLock(pthread_rwlock_t* l, const timespec* abs) {
  return WrLockUntil(l, abs, CLOCK_REALTIME, false);
}

int RwClockRdLock(pthread_rwlock_t* l, clockid_t clock, const timespec* abs) {
  if (clock != CLOCK_REALTIME && clock != CLOCK_MONOTONIC) return EINVAL;
  return RdLockUntil(l, abs, clock, false);
}
int RwClockWrLock(pthread_rwlock_t* l, clockid_t clock, const timespec* abs) {
  if (clock != CLOCK_REALTIME && clock != CLOCK_MONOTONIC) return EINVAL;
  return WrLockUntil(l, abs, clock, false);
}

int RwlockattrInit(pthread_rwlockattr_t* a) {
  memset(a, 0, sizeof(*a));
  return 0;
}
// The kind is a scheduling preference: kept, and read back, not acted on
// (these prefer readers, glibc's default).
int RwlockattrSetkind(pthread_rwlockattr_t* a, int kind) {
  if (kind < 0 || kind > PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP) {
    return EINVAL;
  }
  *reinterpret_cast<int*>(a) = kind;
  return 0;
}
int RwlockattrGetkind(const pthread_rwlockattr_t* a, int* kind) {
  *kind = *reinterpret_cast<const int*>(a);
  return 0;
}

// ---- once, spinlocks, barriers ---------------------------------------------

// 0 not run, 1 running, 3 running with waiters, 2 done.
int Once(pthread_once_t* control, void (*init)()) {
  auto* w = reinterpret_cast<uint32_t*>(control);
  for (;;) {
    uint32_t v = __atomic_load_n(w, __ATOMIC_ACQUIRE);
    if (v == 2) return 0;
    if (v == 0) {
      if (!Cas(w, &v, 1)) continue;
      init();
      if (Exchange(w, 2) == 3) FutexWake(w, INT_MAX);
      return 0;
    }
    if (v == 1 && !Cas(w, &v, 3)) continue;
    if (FutexWait(w, 3, nullptr, CLOCK_REALTIME) == -EFAULT) return EFAULT;
  }
}

int SpinInit(pthread_spinlock_t* s, int) {
  Store(reinterpret_cast<uint32_t*>(const_cast<int*>(s)), 0);
  return 0;
}
int SpinDestroy(pthread_spinlock_t*) { return 0; }
int SpinLock(pthread_spinlock_t* s) {
  auto* w = reinterpret_cast<uint32_t*>(const_cast<int*>(s));
  while (Exchange(w, 1) != 0) {
    while (__atomic_load_n(w, __ATOMIC_RELAXED) != 0) __builtin_ia32_pause();
  }
  return 0;
}
int SpinTryLock(pthread_spinlock_t* s) {
  auto* w = reinterpret_cast<uint32_t*>(const_cast<int*>(s));
  return Exchange(w, 1) == 0 ? 0 : EBUSY;
}
int SpinUnlock(pthread_spinlock_t* s) {
  Store(reinterpret_cast<uint32_t*>(const_cast<int*>(s)), 0);
  return 0;
}

struct Barrier {
  uint32_t lock;  // LockWord's
  uint32_t count;
  uint32_t arrived;
  uint32_t seq;  // bumped as each round completes
  uint8_t rest[16];
};
static_assert(sizeof(Barrier) == sizeof(pthread_barrier_t));
static_assert(sizeof(pthread_barrierattr_t) == sizeof(int));

int BarrierInit(pthread_barrier_t* bp, const pthread_barrierattr_t*,
                unsigned count) {
  if (count == 0) return EINVAL;
  auto* b = reinterpret_cast<Barrier*>(bp);
  memset(b, 0, sizeof(*b));
  b->count = count;
  return 0;
}
int BarrierDestroy(pthread_barrier_t* bp) {
  auto* b = reinterpret_cast<Barrier*>(bp);
  return Load(&b->arrived) != 0 ? EBUSY : 0;
}
int BarrierWait(pthread_barrier_t* bp) {
  auto* b = reinterpret_cast<Barrier*>(bp);
  if (int r = LockWord(&b->lock, nullptr, CLOCK_REALTIME); r != 0) return r;
  const uint32_t seq = Load(&b->seq);
  if (++b->arrived >= b->count) {
    b->arrived = 0;
    Store(&b->seq, seq + 1);
    UnlockWord(&b->lock);
    FutexWake(&b->seq, INT_MAX);
    return PTHREAD_BARRIER_SERIAL_THREAD;
  }
  UnlockWord(&b->lock);
  while (Load(&b->seq) == seq) {
    if (FutexWait(&b->seq, seq, nullptr, CLOCK_REALTIME) == -EFAULT) {
      return EFAULT;
    }
  }
  return 0;
}
int BarrierattrInit(pthread_barrierattr_t* a) {
  *reinterpret_cast<int*>(a) = 0;
  return 0;
}

// ---- thread keys -----------------------------------------------------------

ThreadKeyTable* Keys() {
  HeapCache* cache = MyCache();
  return cache != nullptr ? cache->thread_keys : nullptr;
}

int KeyCreate(pthread_key_t* key, void (*destructor)(void*)) {
  ThreadKeyTable* t = Keys();
  if (t == nullptr) return EAGAIN;
  if (int r = LockWord(&t->lock, nullptr, CLOCK_REALTIME); r != 0) return r;
  for (uint32_t i = 0; i < kMaxThreadKeys; ++i) {
    if ((t->seq[i] & 1) == 0) {
      t->destructor[i] = destructor;
      __atomic_store_n(&t->seq[i], t->seq[i] + 1, __ATOMIC_RELEASE);
      UnlockWord(&t->lock);
      *key = i;
      return 0;
    }
  }
  UnlockWord(&t->lock);
  return EAGAIN;
}

int KeyDelete(pthread_key_t key) {
  ThreadKeyTable* t = Keys();
  if (t == nullptr || key >= kMaxThreadKeys) return EINVAL;
  if (int r = LockWord(&t->lock, nullptr, CLOCK_REALTIME); r != 0) return r;
  int result = EINVAL;
  if (t->seq[key] & 1) {
    t->destructor[key] = nullptr;
    __atomic_store_n(&t->seq[key], t->seq[key] + 1, __ATOMIC_RELEASE);
    result = 0;
  }
  UnlockWord(&t->lock);
  return result;
}

ThreadSpecific::Entry* EntryOf(HeapCache* cache, pthread_key_t key,
                               bool make) {
  ThreadSpecific* spec = cache->thread_specific;
  if (spec == nullptr) {
    if (!make) return nullptr;
    spec = static_cast<ThreadSpecific*>(calloc(1, sizeof(ThreadSpecific)));
    if (spec == nullptr) return nullptr;
    cache->thread_specific = spec;
  }
  ThreadSpecific::Entry*& block = spec->blocks[key / kThreadKeysPerBlock];
  if (block == nullptr) {
    if (!make) return nullptr;
    block = static_cast<ThreadSpecific::Entry*>(
        calloc(kThreadKeysPerBlock, sizeof(ThreadSpecific::Entry)));
    if (block == nullptr) return nullptr;
  }
  return &block[key % kThreadKeysPerBlock];
}

void* GetSpecific(pthread_key_t key) {
  HeapCache* cache = MyCache();
  if (cache == nullptr || cache->thread_keys == nullptr ||
      key >= kMaxThreadKeys) {
    return nullptr;
  }
  ThreadSpecific::Entry* e = EntryOf(cache, key, false);
  if (e == nullptr) return nullptr;
  const uint64_t seq =
      __atomic_load_n(&cache->thread_keys->seq[key], __ATOMIC_ACQUIRE);
  return e->seq == seq ? e->value : nullptr;
}

int SetSpecific(pthread_key_t key, const void* value) {
  HeapCache* cache = MyCache();
  if (cache == nullptr || cache->thread_keys == nullptr ||
      key >= kMaxThreadKeys) {
    return EINVAL;
  }
  const uint64_t seq =
      __atomic_load_n(&cache->thread_keys->seq[key], __ATOMIC_ACQUIRE);
  if ((seq & 1) == 0) return EINVAL;
  ThreadSpecific::Entry* e = EntryOf(cache, key, true);
  if (e == nullptr) return ENOMEM;
  e->seq = seq;
  e->value = const_cast<void*>(value);
  return 0;
}

// Inside, on the exiting thread: POSIX's rounds of destructors (values a
// destructor sets again get up to PTHREAD_DESTRUCTOR_ITERATIONS), then the
// thread's values are freed.
void RunKeyDestructorsInside() {
  HeapCache* cache = MyCache();
  if (cache == nullptr) return;
  ThreadKeyTable* t = cache->thread_keys;
  ThreadSpecific* spec = cache->thread_specific;
  if (spec == nullptr) return;
  for (int round = 0; t != nullptr && round < PTHREAD_DESTRUCTOR_ITERATIONS;
       ++round) {
    bool ran = false;
    for (uint32_t key = 0; key < kMaxThreadKeys; ++key) {
      ThreadSpecific::Entry* block = spec->blocks[key / kThreadKeysPerBlock];
      if (block == nullptr) {
        key += kThreadKeysPerBlock - 1;
        continue;
      }
      ThreadSpecific::Entry& e = block[key % kThreadKeysPerBlock];
      void (*destructor)(void*) = t->destructor[key];
      if (e.value == nullptr || destructor == nullptr ||
          e.seq != __atomic_load_n(&t->seq[key], __ATOMIC_ACQUIRE)) {
        continue;
      }
      void* value = e.value;
      e.value = nullptr;
      destructor(value);
      ran = true;
    }
    if (!ran) break;
  }
  cache->thread_specific = nullptr;
  for (ThreadSpecific::Entry* block : spec->blocks) free(block);
  free(spec);
}

// ---- threads ---------------------------------------------------------------

int Create(pthread_t*, const pthread_attr_t*, void* (*)(void*), void*) {
  return EAGAIN;
}
// No thread was started inside, so none of these names one of its own.
int NoSuchThread(pthread_t) { return ESRCH; }
int JoinNone(pthread_t, void**) { return ESRCH; }
int KillNone(pthread_t, int) { return ESRCH; }
int TimedJoinNone(pthread_t, void**, const timespec*) { return ESRCH; }
int Equal(pthread_t a, pthread_t b) { return a == b; }
// Nothing inside is ever cancelled: the state is told, and kept nowhere.
int SetCancelState(int state, int* old) {
  if (state != PTHREAD_CANCEL_ENABLE && state != PTHREAD_CANCEL_DISABLE) {
    return EINVAL;
  }
  if (old != nullptr) *old = PTHREAD_CANCEL_ENABLE;
  return 0;
}
int SetCancelType(int type, int* old) {
  if (type != PTHREAD_CANCEL_DEFERRED && type != PTHREAD_CANCEL_ASYNCHRONOUS) {
    return EINVAL;
  }
  if (old != nullptr) *old = PTHREAD_CANCEL_DEFERRED;
  return 0;
}
void TestCancel() {}
int Yield() {
  EnterLibc(LibcOp(kLibcThreads, kYield));
  return 0;
}

constexpr char kOwnMemory[] =
    "on the caller's object, with compartment rights; it blocks through a "
    "futex the host checks lies in the compartment's own memory";
constexpr char kAttr[] =
    "writes or reads only the caller's attribute object, with compartment "
    "rights";
constexpr char kNoThread[] =
    "returns an errno: no thread runs inside but the host's, so there is "
    "none to join, detach, cancel or signal";

}  // namespace

absl::Span<const LibcBinding> ThreadBindings() {
  static const LibcBinding kBindings[] = {
      {"pthread_mutex_init", LibcFn(&MutexInit), kOwnMemory},
      {"pthread_mutex_destroy", LibcFn(&MutexDestroy), kOwnMemory},
      {"pthread_mutex_lock", LibcFn(&MutexLock), kOwnMemory},
      {"pthread_mutex_trylock", LibcFn(&MutexTryLock), kOwnMemory},
      {"pthread_mutex_timedlock", LibcFn(&MutexTimedLock), kOwnMemory},
      {"pthread_mutex_clocklock", LibcFn(&MutexClockLock), kOwnMemory},
      {"pthread_mutex_unlock", LibcFn(&MutexUnlock), kOwnMemory},
      {"pthread_mutexattr_init", LibcFn(&MutexattrInit), kAttr},
      {"pthread_mutexattr_destroy", LibcFn(&AttrDestroy), kAttr},
      {"pthread_mutexattr_settype", LibcFn(&MutexattrSettype), kAttr},
      {"pthread_mutexattr_gettype", LibcFn(&MutexattrGettype), kAttr},
      {"pthread_mutexattr_setpshared", LibcFn(&SetPshared), kAttr},
      {"pthread_mutexattr_getpshared", LibcFn(&GetPshared), kAttr},
      {"pthread_mutexattr_setrobust", LibcFn(&MutexattrSetrobust), kAttr},
      {"pthread_mutexattr_setprotocol", LibcFn(&MutexattrSetprotocol), kAttr},
      {"pthread_mutexattr_getrobust", LibcFn(&MutexattrGetrobust), kAttr},
      {"pthread_mutexattr_getprotocol", LibcFn(&MutexattrGetprotocol), kAttr},
      {"pthread_mutex_consistent", LibcFn(&MutexConsistent),
       "returns EINVAL: no mutex inside is robust"},
      {"pthread_cond_init", LibcFn(&CondInit), kOwnMemory},
      {"pthread_cond_destroy", LibcFn(&CondDestroy), kOwnMemory},
      {"pthread_cond_wait", LibcFn(&CondWait), kOwnMemory},
      {"pthread_cond_timedwait", LibcFn(&CondTimedWait), kOwnMemory},
      {"pthread_cond_clockwait", LibcFn(&CondClockWait), kOwnMemory},
      {"pthread_cond_signal", LibcFn(&CondSignal), kOwnMemory},
      {"pthread_cond_broadcast", LibcFn(&CondBroadcast), kOwnMemory},
      {"pthread_condattr_init", LibcFn(&CondattrInit), kAttr},
      {"pthread_condattr_destroy", LibcFn(&AttrDestroy), kAttr},
      {"pthread_condattr_setclock", LibcFn(&CondattrSetclock), kAttr},
      {"pthread_condattr_getclock", LibcFn(&CondattrGetclock), kAttr},
      {"pthread_condattr_setpshared", LibcFn(&SetPshared), kAttr},
      {"pthread_condattr_getpshared", LibcFn(&GetPshared), kAttr},
      {"pthread_rwlock_init", LibcFn(&RwlockInit), kOwnMemory},
      {"pthread_rwlock_destroy", LibcFn(&RwlockDestroy), kOwnMemory},
      {"pthread_rwlock_rdlock", LibcFn(&RwRdLock), kOwnMemory},
      {"pthread_rwlock_tryrdlock", LibcFn(&RwTryRdLock), kOwnMemory},
      {"pthread_rwlock_timedrdlock", LibcFn(&RwTimedRdLock), kOwnMemory},
      {"pthread_rwlock_wrlock", LibcFn(&RwWrLock), kOwnMemory},
      {"pthread_rwlock_trywrlock", LibcFn(&RwTryWrLock), kOwnMemory},
      {"pthread_rwlock_timedwrlock", LibcFn(&RwTimedWrLock), kOwnMemory},
      {"pthread_rwlock_clockrdlock", LibcFn(&RwClockRdLock), kOwnMemory},
      {"pthread_rwlock_clockwrlock", LibcFn(&RwClockWrLock), kOwnMemory},
      {"pthread_rwlock_unlock", LibcFn(&RwlockUnlock), kOwnMemory},
      {"pthread_rwlockattr_init", LibcFn(&RwlockattrInit), kAttr},
      {"pthread_rwlockattr_destroy", LibcFn(&AttrDestroy), kAttr},
      {"pthread_rwlockattr_setkind_np", LibcFn(&RwlockattrSetkind), kAttr},
      {"pthread_rwlockattr_getkind_np", LibcFn(&RwlockattrGetkind), kAttr},
      {"pthread_rwlockattr_setpshared", LibcFn(&SetPshared), kAttr},
      {"pthread_rwlockattr_getpshared", LibcFn(&GetPshared), kAttr},
      {"pthread_once", LibcFn(&Once), kOwnMemory},
      {"pthread_spin_init", LibcFn(&SpinInit), kOwnMemory},
      {"pthread_spin_destroy", LibcFn(&SpinDestroy), kOwnMemory},
      {"pthread_spin_lock", LibcFn(&SpinLock),
       "spins on the caller's word with compartment rights (the call's "
       "timeout still ends it)"},
      {"pthread_spin_trylock", LibcFn(&SpinTryLock), kOwnMemory},
      {"pthread_spin_unlock", LibcFn(&SpinUnlock), kOwnMemory},
      {"pthread_barrier_init", LibcFn(&BarrierInit), kOwnMemory},
      {"pthread_barrier_destroy", LibcFn(&BarrierDestroy), kOwnMemory},
      {"pthread_barrier_wait", LibcFn(&BarrierWait), kOwnMemory},
      {"pthread_barrierattr_init", LibcFn(&BarrierattrInit), kAttr},
      {"pthread_barrierattr_destroy", LibcFn(&AttrDestroy), kAttr},
      {"pthread_barrierattr_setpshared", LibcFn(&SetPshared), kAttr},
      {"pthread_barrierattr_getpshared", LibcFn(&GetPshared), kAttr},
      {"pthread_key_create", LibcFn(&KeyCreate),
       "the compartment's key table, in its memory, under a futex lock"},
      {"pthread_key_delete", LibcFn(&KeyDelete),
       "the compartment's key table, in its memory, under a futex lock"},
      {"pthread_getspecific", LibcFn(&GetSpecific),
       "reads this thread's values in compartment memory"},
      {"pthread_setspecific", LibcFn(&SetSpecific),
       "writes this thread's values in compartment memory (its malloc)"},
      {"pthread_self", LibcFn(&pthread_self),
       "glibc's: reads the thread pointer, no write"},
      {"pthread_equal", LibcFn(&Equal), "compares two integers"},
      {"sched_yield", LibcFn(&Yield),
       "the host yields the CPU: no argument, whatever the policy"},
      {"pthread_create", LibcFn(&Create),
       "returns EAGAIN: a thread started inside would run without a host "
       "thread's gate and deadline"},
      {"pthread_detach", LibcFn(&NoSuchThread), kNoThread},
      {"pthread_cancel", LibcFn(&NoSuchThread), kNoThread},
      {"pthread_join", LibcFn(&JoinNone), kNoThread},
      {"pthread_tryjoin_np", LibcFn(&JoinNone), kNoThread},
      {"pthread_timedjoin_np", LibcFn(&TimedJoinNone), kNoThread},
      {"pthread_kill", LibcFn(&KillNone), kNoThread},
      {"pthread_setcancelstate", LibcFn(&SetCancelState),
       "writes only the caller's int: nothing inside is ever cancelled"},
      {"pthread_setcanceltype", LibcFn(&SetCancelType),
       "writes only the caller's int: nothing inside is ever cancelled"},
      {"pthread_testcancel", LibcFn(&TestCancel), "does nothing"},
  };
  return kBindings;
}

// ---- host side -------------------------------------------------------------

namespace {

// The word (aligned) lies in the compartment's own memory: its heap and
// images, or one of its threads' stacks.
bool OwnWord(const LibcCaller& caller, uint64_t p, uint64_t n) {
  if (p % alignof(uint32_t) != 0) return false;
  if (MPKBOX_SWITCHED_OFF(skip_futex_address_check)) return true;
  const CompartmentHeap* heap = HeapOfSlot(caller.slot);
  if (heap != nullptr && heap->domain() == caller.domain &&
      heap->Contains(p, n)) {
    return true;
  }
  return SlotStacksContain(caller.slot, p, n);
}

constexpr uint64_t kNsPerSecond = 1000000000;

long Wait(const LibcCaller& caller, uint64_t op, const uint64_t a[5]) {
  if (!OwnWord(caller, a[0], sizeof(uint32_t))) return -EFAULT;
  const auto clock = static_cast<clockid_t>(op >> 32);
  if (clock != CLOCK_REALTIME && clock != CLOCK_MONOTONIC) return -EINVAL;
  // Relative to now; 0 means no timeout of the caller's own.
  uint64_t wait_ns = 0;
  if (a[2] != 0) {
    if (!OwnWord(caller, a[2], sizeof(timespec))) return -EFAULT;
    timespec abs;
    memcpy(&abs, reinterpret_cast<const void*>(a[2]), sizeof(abs));
    if (abs.tv_nsec < 0 || abs.tv_nsec >= static_cast<long>(kNsPerSecond)) {
      return -EINVAL;
    }
    timespec now;
    clock_gettime(clock, &now);
    if (abs.tv_sec < now.tv_sec ||
        (abs.tv_sec == now.tv_sec && abs.tv_nsec <= now.tv_nsec)) {
      return -ETIMEDOUT;
    }
    const uint64_t secs = static_cast<uint64_t>(abs.tv_sec - now.tv_sec);
    wait_ns = secs > UINT64_MAX / kNsPerSecond - 1
                  ? UINT64_MAX
                  : secs * kNsPerSecond + static_cast<uint64_t>(abs.tv_nsec) -
                        static_cast<uint64_t>(now.tv_nsec);
  }
  // Not past the call's deadline: its timer's signal lands here, in host
  // code, and cannot end the call while the kernel waits.
  bool bounded_by_deadline = false;
  if (const uint64_t deadline = NearestDeadlineNs(caller.tb); deadline != 0) {
    const uint64_t now = MonotonicNowNs();
    const uint64_t left = deadline > now ? deadline - now : 1;
    if (wait_ns == 0 || left < wait_ns) {
      wait_ns = left;
      bounded_by_deadline = true;
    }
  }
  timespec rel{};
  if (wait_ns != 0) {
    rel.tv_sec = static_cast<time_t>(wait_ns / kNsPerSecond);
    rel.tv_nsec = static_cast<long>(wait_ns % kNsPerSecond);
  }
  long r = syscall(SYS_futex, a[0], FUTEX_WAIT_PRIVATE,
                   static_cast<uint32_t>(a[1]), wait_ns != 0 ? &rel : nullptr,
                   nullptr, 0);
  r = r == -1 ? -errno : r;
  if (AnyDeadlinePassed(caller.tb, MonotonicNowNs())) {
    RecordFault(caller.tb, FaultKind::kTimeout,
                {.address = a[0],
                 .what = "the call's timeout passed while it waited on a "
                         "lock or condition inside"});
    AbandonRecordedCallback(caller.tb);
  }
  if (r == -ETIMEDOUT && bounded_by_deadline) return -EINTR;  // not its own
  return r;
}

}  // namespace

uint64_t LibcThreadsRequest(const LibcCaller& caller, uint64_t op,
                            const uint64_t a[5]) {
  switch (op & 0xff) {
    case kFutexWait:
      return static_cast<uint64_t>(Wait(caller, op, a));
    case kFutexWake: {
      if (!OwnWord(caller, a[0], sizeof(uint32_t))) {
        return static_cast<uint64_t>(-EFAULT);
      }
      const int n = a[1] > INT_MAX ? INT_MAX : static_cast<int>(a[1]);
      const long r = syscall(SYS_futex, a[0], FUTEX_WAKE_PRIVATE, n, nullptr,
                             nullptr, 0);
      return static_cast<uint64_t>(r == -1 ? -errno : r);
    }
    case kThreadId:
      return static_cast<uint64_t>(gettid());
    case kYield:
      sched_yield();
      return 0;
    default:
      AbandonCallback(caller.tb, FaultKind::kSyscallDenied, op,
                      "an unknown threads request");
  }
}

void RunThreadKeyDestructorsAtExit(SelectorPage* sel) {
  // The main thread's thread-local destructors run in exit(), where POSIX
  // runs no key destructors (and compartments may be half torn down).
  if (gettid() == getpid()) return;
  HeapCache** caches = HeapCacheTable(sel);  // selector key: always readable
  for (size_t slot = 0; slot < kMaxCompartments; ++slot) {
    if (caches[slot] == nullptr) continue;
    // Under the lock no Reset or destruction runs, so the cache, in the
    // compartment's heap, stays mapped while it is read.
    absl::MutexLock lock(&LibcExitMutex(slot));
    LibcState* state = LibcStateOfSlot(slot);
    if (state == nullptr || state->retired.load() || !state->call_inside) {
      continue;
    }
    // Compartment memory: only a hint that the call inside has work.
    if (caches[slot] == nullptr || caches[slot]->thread_specific == nullptr) {
      continue;
    }
    // A fault is the compartment's own (it then refuses calls until Reset);
    // the thread exits either way.
    state->call_inside(&RunKeyDestructorsInside).IgnoreError();
  }
}

}  // namespace mpkbox::internal
