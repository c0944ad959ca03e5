// Threads: many host threads call the same and different compartments at
// once, each on its own stack; a thread's first entry prepares it (rseq); a
// thread's exit returns its stacks.
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <barrier>
#include <cstdint>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "mpkbox/mpkbox.h"
#include "runtime/keys/pku.h"
#include "runtime/thread_block.h"
#include "runtime/testing_switches.h"
#include "tests/test_util.h"

namespace mpkbox {
namespace {

using ::mpkbox::testing::CountMappings;
using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::StackAddress;

uint64_t Mix(uint64_t a, uint64_t b) { return a * 31 + b; }
uint32_t Pkru() { return internal::ReadPkru(); }

TEST(ThreadTest, ManyThreadsSharedAndOwnCompartments) {
  auto shared = MakeBox({.name = "shared"});
  constexpr int kThreads = 8;
  constexpr int kCalls = 20000;
  std::atomic<int> failures{0};
  std::vector<uintptr_t> stacks(kThreads);
  std::barrier all_recorded(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto own = Compartment::Create({.name = "own"});
      if (!own.ok()) {
        ++failures;
        return;
      }
      for (int i = 0; i < kCalls; ++i) {
        Compartment* box = (i % 2) ? shared.get() : own->get();
        auto r = box->Call(&Mix, uint64_t(t), uint64_t(i));
        if (!r.ok() || r->UnverifiedValue("test") != uint64_t(t) * 31 + i) {
          ++failures;
        }
        if (internal::ReadPkru() != 0) ++failures;
      }
      auto p = (*own)->Call(&Pkru);
      if (!p.ok() || p->UnverifiedValue("test") != (*own)->pkru()) ++failures;
      auto s = shared->Call(&StackAddress, 1000);
      if (!s.ok()) ++failures;
      stacks[t] = s.ok() ? s->UnverifiedValue("test") : 0;
      all_recorded.arrive_and_wait();  // no stack is unmapped and reused yet
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  // Each thread ran on a stack of its own inside the shared compartment.
  for (int i = 0; i < kThreads; ++i) {
    for (int j = i + 1; j < kThreads; ++j) {
      EXPECT_GT(stacks[i] > stacks[j] ? stacks[i] - stacks[j]
                                      : stacks[j] - stacks[i],
                4096u);
    }
  }
}

TEST(ThreadTest, ExitedThreadsReturnTheirStacks) {
  auto box = MakeBox({.name = "churn"});
  auto one_thread = [&] {
    std::thread([&] { ASSERT_TRUE(box->Call(&StackAddress, 1).ok()); })
        .join();
  };
  one_thread();  // first use maps runtime state once
  const int before = CountMappings();
  for (int i = 0; i < 200; ++i) one_thread();
  EXPECT_LE(CountMappings(), before + 2);
}

// A thread that existed before Runtime::Init: pkey_alloc opened the new keys
// only in the thread that called it. Runs in a fresh process.
TEST(ThreadDeathTest, ThreadStartedBeforeInit) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        absl::Notification initialized;
        bool ok = false;
        std::thread early([&] {
          initialized.WaitForNotification();
          auto box = Compartment::Create({.name = "late"});
          ok = box.ok() && (*box)->Call(&Mix, 2, 3).ok() &&
               (*box)->Call(&Mix, 2, 3)->UnverifiedValue("test") == 65;
        });
        if (!Runtime::Init().ok()) _exit(2);
        auto main_box = Compartment::Create({.name = "main"});
        if (!main_box.ok() || !(*main_box)->Call(&Mix, 1, 1).ok()) _exit(3);
        initialized.Notify();
        early.join();
        _exit(ok ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

// The kernel updates a thread's rseq area (TLS, key 0) after a migration.
// Inside a compartment key 0 is read-only, so that update kills the thread
// unless the runtime unregistered rseq at the thread's first entry.
MPKBOX_COMPARTMENT_READABLE std::atomic<bool> stop_spinning;
std::atomic<bool> spinning;
uint64_t SpinUntilStopped() {
  uint64_t n = 0;
  while (!stop_spinning.load(std::memory_order_relaxed)) ++n;
  return n;
}

// Returns true if the spinning thread survived `migrations` forced moves.
bool SpinWhileMigrating(Compartment* box, int migrations) {
  stop_spinning = false;
  spinning = false;
  std::atomic<pid_t> tid{0};
  bool ok = false;
  std::thread spinner([&] {
    tid = static_cast<pid_t>(syscall(SYS_gettid));
    spinning = true;  // compartment code cannot write host memory
    ok = box->Call(&SpinUntilStopped).ok();
  });
  while (!spinning.load()) sched_yield();
  for (int i = 0; i < migrations; ++i) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(i % 2, &set);
    sched_setaffinity(tid.load(), sizeof(set), &set);
    usleep(50);
  }
  stop_spinning = true;
  spinner.join();
  return ok;
}

bool HaveTwoCpus() {
  cpu_set_t set;
  return sched_getaffinity(0, sizeof(set), &set) == 0 &&
         CPU_ISSET(0, &set) && CPU_ISSET(1, &set);
}

TEST(ThreadTest, MigrationsWhileInsideDoNotKillTheThread) {
  if (!HaveTwoCpus()) GTEST_SKIP() << "needs CPUs 0 and 1";
  auto box = MakeBox({.name = "migrant"});
  EXPECT_TRUE(SpinWhileMigrating(box.get(), 1000));
}

TEST(ThreadDeathTest, ControlWithoutRseqUnregistrationTheThreadDies) {
  if (!HaveTwoCpus()) GTEST_SKIP() << "needs CPUs 0 and 1";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        internal::SkipRseqUnregistrationForTesting();
        auto box = Compartment::Create({.name = "migrant"});
        if (!box.ok()) _exit(2);
        SpinWhileMigrating(box->get(), 2000);
        _exit(0);
      },
      ::testing::KilledBySignal(SIGSEGV), "");
}

}  // namespace
}  // namespace mpkbox
