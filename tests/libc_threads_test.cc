// Loaded code's pthread synchronisation (runtime/compartment_libc/
// threads.cc), with several host threads inside one compartment at once,
// and the futex request it blocks through, attacked from inside.
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpkbox/mpkbox.h"
#include "runtime/compartment_libc/libc_entry.h"
#include "runtime/testing_switches.h"
#include "tests/test_util.h"

namespace mpkbox {
namespace {

using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::Value;

// A compartment with threads_plugin loaded, and its functions by name.
struct Plugin {
  std::unique_ptr<Compartment> box;

  // A broken lock fails its test (a lost wakeup ends in the timeout)
  // instead of hanging it.
  explicit Plugin(CompartmentOptions options = {
                      .name = "threads",
                      .call_timeout = absl::Seconds(60)}) {
    box = MakeBox(std::move(options));
    if (box != nullptr) {
      absl::Status s = box->Load(THREADS_PLUGIN);
      EXPECT_TRUE(s.ok()) << s;
    }
  }
  template <typename Fn>
  Fn* Get(const char* name) {
    absl::StatusOr<Fn*> f = box->Lookup<Fn>(name);
    EXPECT_TRUE(f.ok()) << f.status();
    return f.ok() ? *f : nullptr;
  }
  // fn(args...) inside; its result.
  template <typename... A>
  long Run(const char* name, A... args) {
    auto* fn = Get<long(A...)>(name);
    if (fn == nullptr) return -9999;
    return Value(box->Call(fn, args...));
  }
};

// Runs body(i) on `n` host threads at once, each inside the same
// compartment, and joins them. Each thread enters once first (its first
// call prepares it) and all start together, so their calls overlap.
void OnThreads(Plugin& p, int n, const std::function<void(int)>& body) {
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      p.Run("get_counter");
      ++ready;
      while (ready.load() < n) std::this_thread::yield();
      body(i);
    });
  }
  for (std::thread& t : threads) t.join();
}

constexpr long kIterations = 20000;

class MutexHammerTest : public ::testing::TestWithParam<int> {};

// Two host threads increment one plain counter under one mutex inside a
// plugin: the total is exact only if the mutex excludes.
TEST_P(MutexHammerTest, TwoThreadsExactTotal) {
  Plugin p;
  ASSERT_EQ(p.Run("setup_errorcheck"), 0);
  OnThreads(p, 2, [&](int) {
    EXPECT_EQ(p.Run("hammer", GetParam(), kIterations), 0);
  });
  EXPECT_EQ(p.Run("get_counter"), 2 * kIterations);
}
std::string TypeName(const ::testing::TestParamInfo<int>& param) {
  static const char* const kNames[] = {"Normal", "Recursive", "Errorcheck"};
  return kNames[param.param];
}
INSTANTIATE_TEST_SUITE_P(Types, MutexHammerTest, ::testing::Values(0, 1, 2),
                         TypeName);

TEST(LibcThreadsTest, SpinlockTwoThreadsExactTotal) {
  Plugin p;
  ASSERT_EQ(p.Run("setup_spin"), 0);
  OnThreads(p, 2, [&](int) { EXPECT_EQ(p.Run("spin_hammer", kIterations), 0); });
  EXPECT_EQ(p.Run("get_counter"), 2 * kIterations);
}

TEST(LibcThreadsTest, MutexTypesReportPosixErrors) {
  Plugin p;
  ASSERT_EQ(p.Run("setup_errorcheck"), 0);
  EXPECT_EQ(p.Run("mutex_semantics"), 0) << "the check that failed";
  EXPECT_EQ(p.Run("rw_semantics"), 0) << "the check that failed";
  EXPECT_EQ(p.Run("key_semantics"), 0) << "the check that failed";
  EXPECT_EQ(p.Run("misc_semantics"), 0) << "the check that failed";
}

// Refused with an errno the library can take a fallback on, not a fault.
TEST(LibcThreadsTest, ThreadCreationIsRefusedWithAnErrno) {
  Plugin p;
  EXPECT_EQ(p.Run("create_thread"), EAGAIN);
  EXPECT_EQ(p.Run("join_thread"), ESRCH);
  EXPECT_EQ(p.Run("detach_thread"), ESRCH);
  EXPECT_EQ(p.box->last_fault(), nullptr);
}

TEST(LibcThreadsTest, CondvarProducerConsumer) {
  Plugin p;
  constexpr long kItems = 20000;
  long sum = 0;
  OnThreads(p, 2, [&](int i) {
    if (i == 0) {
      EXPECT_EQ(p.Run("produce", kItems), 0);
    } else {
      sum = p.Run("consume", kItems);
    }
  });
  EXPECT_EQ(sum, kItems * (kItems + 1) / 2);
}

TEST(LibcThreadsTest, CondTimedWaitTimesOutOnEitherClock) {
  Plugin p;
  EXPECT_EQ(p.Run("timed_wait", 0, 20L), ETIMEDOUT);
  EXPECT_EQ(p.Run("timed_wait", 1, 20L), ETIMEDOUT);
}

TEST(LibcThreadsTest, RwlockWritersExcludeReaders) {
  Plugin p;
  constexpr long kRounds = 5000;
  OnThreads(p, 4, [&](int i) {
    if (i % 2 == 0) {
      EXPECT_EQ(p.Run("rw_writer", kRounds), 0);
    } else {
      EXPECT_EQ(p.Run("rw_reader", kRounds), 0) << "torn reads";
    }
  });
  EXPECT_EQ(p.Run("rw_total"), 2 * kRounds);
}

TEST(LibcThreadsTest, OnceRunsOnceForEveryThread) {
  Plugin p;
  OnThreads(p, 4, [&](int) { EXPECT_EQ(p.Run("run_once"), 1); });
  EXPECT_EQ(p.Run("run_once"), 1);
}

TEST(LibcThreadsTest, BarrierHoldsEveryThreadUntilAllArrive) {
  Plugin p;
  constexpr long kThreads = 3;
  constexpr long kRounds = 40;
  ASSERT_EQ(p.Run("setup_barrier", kThreads), 0);
  std::atomic<long> serial{0};
  OnThreads(p, kThreads, [&](int) {
    const long s = p.Run("barrier_rounds", kRounds);
    EXPECT_GE(s, 0) << "a thread passed the barrier early";
    serial += s;
  });
  EXPECT_EQ(serial.load(), kRounds) << "one serial thread a round";
}

// Each thread's value is its own; when a thread that set one exits, the
// key's destructor runs inside on that thread and gets that value.
TEST(LibcThreadsTest, KeyValuesPerThreadDestructorsRunAtThreadExit) {
  Plugin p;
  ASSERT_EQ(p.Run("make_key"), 0);
  OnThreads(p, 3, [&](int i) {
    const long v = 10 * (i + 1);
    EXPECT_EQ(p.Run("set_value", v), v);
    std::this_thread::yield();
    EXPECT_EQ(p.Run("get_value"), v);
  });
  EXPECT_EQ(p.Run("destroyed"), 10 + 20 + 30);
  // This thread's value is untouched by the others' and stays until it
  // exits (at Reset and destruction no destructor runs, as at exit()).
  EXPECT_EQ(p.Run("get_value"), -1);
  EXPECT_EQ(p.Run("set_value", 7L), 7);
  EXPECT_EQ(p.Run("destroyed"), 60);
  EXPECT_EQ(p.Run("get_value"), 7);
  ASSERT_TRUE(p.box->Reset().ok());
  EXPECT_EQ(p.Run("make_key"), 0);
  EXPECT_EQ(p.Run("get_value"), -1) << "Reset drops every thread's values";
}

// Keys and values are per compartment: one thread's value in one is not
// seen in another, and at its exit each compartment's destructor runs.
TEST(LibcThreadsTest, KeysArePerCompartment) {
  Plugin a;
  Plugin b({.name = "threads-b"});
  ASSERT_EQ(a.Run("make_key"), 0);
  ASSERT_EQ(b.Run("make_key"), 0);
  std::thread t([&] {
    EXPECT_EQ(a.Run("set_value", 5L), 5);
    EXPECT_EQ(b.Run("get_value"), -1);
    EXPECT_EQ(b.Run("set_value", 9L), 9);
    EXPECT_EQ(a.Run("get_value"), 5);
  });
  t.join();
  EXPECT_EQ(a.Run("destroyed"), 5);
  EXPECT_EQ(b.Run("destroyed"), 9);
}

// A destructor that faults at a thread's exit ends only that call inside:
// the thread exits, the compartment refuses calls until Reset, and the
// process goes on.
TEST(LibcThreadsTest, AFaultingKeyDestructorIsContained) {
  Plugin p;
  ASSERT_EQ(p.Run("make_bad_key"), 0);
  std::thread t([&] { EXPECT_EQ(p.Run("set_bad_value"), 0); });
  t.join();
  auto* f = p.Get<long()>("get_counter");
  ASSERT_NE(f, nullptr);
  absl::StatusOr<Tainted<long>> r = p.box->Call(f);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition)
      << r.status();
  ASSERT_NE(p.box->last_fault(), nullptr);
  EXPECT_THAT(std::string(p.box->last_fault()->what),
              ::testing::HasSubstr("SIGSEGV"));
  ASSERT_TRUE(p.box->Reset().ok());
  EXPECT_EQ(p.Run("get_counter"), 0);
}

// A destructor that never returns holds the exiting thread only until the
// compartment's call_timeout: the thread then exits, and the compartment
// refuses calls until Reset.
TEST(LibcThreadsTest, ABlockingKeyDestructorEndsAtTheCallTimeout) {
  Plugin p({.name = "blocking", .call_timeout = absl::Milliseconds(100)});
  ASSERT_EQ(p.Run("make_blocking_key"), 0);
  std::thread t([&] { EXPECT_EQ(p.Run("set_blocking_value"), 0); });
  t.join();  // returns: the destructor's call timed out
  ASSERT_NE(p.box->last_fault(), nullptr);
  auto* f = p.Get<long()>("get_counter");
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(p.box->Call(f).status().code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(p.box->Reset().ok());
  EXPECT_EQ(p.Run("get_counter"), 0);
}

// A thread exit that runs destructors inside while the compartment goes:
// the destruction waits for it, or the exit finds it gone.
TEST(LibcThreadsTest, ThreadExitRacesDestruction) {
  for (int round = 0; round < 20; ++round) {
    auto p = std::make_unique<Plugin>();
    ASSERT_EQ(p->Run("make_key"), 0);
    std::thread t([&] { EXPECT_EQ(p->Run("set_value", 1L), 1); });
    std::this_thread::yield();
    t.join();
    EXPECT_EQ(p->Run("destroyed"), 1);
    std::atomic<bool> returned{false};
    std::thread t2([&] {
      EXPECT_EQ(p->Run("set_value", 1L), 1);
      returned = true;
    });
    while (!returned) std::this_thread::yield();
    p->box.reset();  // after t2's call returned, maybe during its exit
    t2.join();
  }
}

// A wait nobody ends outlasts no call_timeout; the compartment recovers.
TEST(LibcThreadsTest, WaitsRespectTheCallTimeout) {
  Plugin p({.name = "waiter", .call_timeout = absl::Milliseconds(100)});
  for (const char* fn : {"wait_forever", "self_deadlock"}) {
    auto* f = p.Get<long()>(fn);
    ASSERT_NE(f, nullptr);
    absl::StatusOr<Tainted<long>> r = p.box->Call(f);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded)
        << fn << ": " << r.status();
    ASSERT_TRUE(p.box->Reset().ok());
    EXPECT_EQ(p.Run("run_once"), 1) << "works again after Reset";
  }
}

// Why the bindings are hand-written: glibc's own, run with compartment
// rights (Ambient::kReadOnly), write key-0 state. pthread_setspecific
// writes the thread's descriptor, pthread_key_create libc's key table.
int GlibcSetspecific(pthread_key_t key) {
  return pthread_setspecific(key, &key);
}
int GlibcKeyCreate(pthread_key_t* key) {
  return pthread_key_create(key, nullptr);
}

TEST(LibcThreadsTest, GlibcsOwnWriteKeyZeroAndFaultInside) {
  pthread_key_t key;
  ASSERT_EQ(pthread_key_create(&key, nullptr), 0);
  auto box = MakeBox({.name = "glibc-pthread"});
  ASSERT_NE(box, nullptr);
  absl::StatusOr<Tainted<int>> r = box->Call(&GlibcSetspecific, key);
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()),
              ::testing::HasSubstr("SEGV_PKUERR"));
  ASSERT_TRUE(box->Reset().ok());
  auto* out = testing::Buffer<pthread_key_t>(box.get());
  r = box->Call(&GlibcKeyCreate, out);
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()),
              ::testing::HasSubstr("SEGV_PKUERR"));
  pthread_key_delete(key);
}

// ---- the futex request, attacked from inside --------------------------------

using internal::EnterLibc;
using internal::kLibcThreads;
using internal::LibcOp;

// Runs inside (compartment rights): a futex wait on any address through
// the libc entry, as hostile loaded code could make it, with a timeout on
// its own stack; the request's raw result (0 or -errno).
long FutexWaitInside(uint64_t address, uint64_t expected, long timeout_ns) {
  timespec until;
  clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_nsec += timeout_ns;
  until.tv_sec += until.tv_nsec / 1000000000;
  until.tv_nsec %= 1000000000;
  return static_cast<long>(
      EnterLibc(LibcOp(kLibcThreads, 0, CLOCK_MONOTONIC), address, expected,
                reinterpret_cast<uintptr_t>(&until)));
}
long FutexWakeInside(uint64_t address) {
  return static_cast<long>(
      EnterLibc(LibcOp(kLibcThreads, 1), address, INT32_MAX));
}

// Host memory (trusted key) a futex wait could read, one guess at a time.
alignas(64) uint32_t g_host_secret = 0x5ec7e7;

long Probe(Compartment* box, const void* p, uint32_t guess) {
  return Value(box->Call(&FutexWaitInside, reinterpret_cast<uint64_t>(p),
                         uint64_t{guess}, 1000000L));
}

TEST(LibcThreadsAttackTest, FutexWaitOnMemoryNotItsOwnIsEfault) {
  auto box = MakeBox({.name = "prober"});
  auto other = MakeBox({.name = "other"});
  ASSERT_NE(box, nullptr);
  ASSERT_NE(other, nullptr);
  auto* theirs = testing::Buffer<uint32_t>(other.get());
  *theirs = 42;
  auto* mine = testing::Buffer<uint32_t>(box.get());
  *mine = 42;
  // Its own word: the wait reads it (EAGAIN for a wrong guess, a timeout
  // for the right one).
  EXPECT_EQ(Probe(box.get(), mine, 41), -EAGAIN);
  EXPECT_EQ(Probe(box.get(), mine, 42), -ETIMEDOUT);
  // Anything else: EFAULT, right guess or wrong, so nothing is learnt.
  const void* targets[] = {&g_host_secret, theirs,
                           reinterpret_cast<const char*>(mine) + 2,
                           "key-0 rodata"};
  for (const void* target : targets) {
    for (uint32_t guess : {0x5ec7e7u, 42u, 0u}) {
      EXPECT_EQ(Probe(box.get(), target, guess), -EFAULT) << target;
    }
    EXPECT_EQ(Value(box->Call(&FutexWakeInside,
                              reinterpret_cast<uint64_t>(target))),
              -EFAULT);
  }
  EXPECT_EQ(g_host_secret, 0x5ec7e7u);
  EXPECT_EQ(*theirs, 42u);
  EXPECT_EQ(box->last_fault(), nullptr);
}

// Without the address check the wait is an oracle on host memory: its
// result tells a right guess from a wrong one.
TEST(LibcThreadsAttackDeathTest, WithoutTheCheckTheWaitReadsHostMemory) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        internal::SkipFutexAddressCheckForTesting();
        auto box = MakeBox({.name = "prober"});
        const bool leaks = Probe(box.get(), &g_host_secret, 0x5ec7e7) ==
                               -ETIMEDOUT &&
                           Probe(box.get(), &g_host_secret, 1) == -EAGAIN;
        _exit(leaks ? 3 : 0);
      },
      ::testing::ExitedWithCode(3), "");
}

// A host thread waiting on a futex word of its own is not woken by the
// compartment's wake; without the check it is.
long WakeHostWaiter(bool expect_woken) {
  alignas(64) static uint32_t word;
  word = 0;
  // Made first: under emulation (tests/guest) a Create can outlast a short
  // wait, and the control would then see a timeout, not the wake.
  auto box = MakeBox({.name = "waker"});
  // The control waits as long as the wake may take; the refusal's wait is
  // the test's length.
  const absl::Duration wait =
      expect_woken ? absl::Seconds(10) : absl::Milliseconds(300);
  std::atomic<long> result{1};
  std::atomic<bool> waiting{false};
  std::thread waiter([&] {
    timespec t = absl::ToTimespec(wait);
    waiting = true;
    result = syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 0, &t, nullptr, 0) ==
                     0
                 ? 0
                 : errno;
  });
  while (!waiting) std::this_thread::yield();
  // Until the wake reaches the waiter (it may not be asleep yet).
  const absl::Time give_up = absl::Now() + wait;
  long woken = 0;
  while (woken == 0 && absl::Now() < give_up) {
    woken = Value(box->Call(&FutexWakeInside, reinterpret_cast<uint64_t>(&word)));
    if (woken == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (!expect_woken && woken == -EFAULT) break;
  }
  waiter.join();
  return woken > 0 ? 0 : result.load();
}

TEST(LibcThreadsAttackTest, FutexWakeOfAHostWaiterIsRefused) {
  EXPECT_EQ(WakeHostWaiter(false), ETIMEDOUT);
}

TEST(LibcThreadsAttackDeathTest, WithoutTheCheckTheWakeReachesTheHost) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        internal::SkipFutexAddressCheckForTesting();
        _exit(WakeHostWaiter(true) == 0 ? 3 : 0);
      },
      ::testing::ExitedWithCode(3), "");
}

}  // namespace
}  // namespace mpkbox
