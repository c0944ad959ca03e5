// Compartment lifecycle: keys and stacks come and go with compartments; the
// stack is tagged with the compartment's key; Reset gives fresh stacks.
#include <sys/mman.h>

#include <atomic>
#include <cstdint>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "mpkbox/mpkbox.h"
#include "allocator/address_zone.h"
#include "runtime/fault_report.h"
#include "runtime/runtime_state.h"
#include "runtime/testing_switches.h"
#include "tests/test_util.h"

namespace mpkbox {
namespace {

using ::mpkbox::internal::PkeyOfAddress;
using ::mpkbox::testing::CountMappings;
using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::MappingsSnapshot;
using ::mpkbox::testing::StackAddress;
using ::mpkbox::testing::Value;

int Twice(int x) { return 2 * x; }

TEST(LifecycleTest, ThousandCreateDestroyCyclesReuseKeysAndMappings) {
  { MakeBox({.name = "warm-up"})->Call(&Twice, 1).IgnoreError(); }
  const MappingsSnapshot before;
  std::set<int> keys;
  for (int i = 0; i < 1000; ++i) {
    auto box = Compartment::Create({.name = "cycle"});
    ASSERT_TRUE(box.ok()) << "cycle " << i << ": " << box.status();
    keys.insert((*box)->pkey());
    ASSERT_EQ(Value((*box)->Call(&Twice, i)), 2 * i);
  }
  EXPECT_LE(keys.size(), 2u);  // the same key or two, handed back each time
  const MappingsSnapshot after;
  EXPECT_EQ(after.count(), before.count()) << after.DiffFrom(before);
}

TEST(LifecycleTest, StackAndGuardCarryTheCompartmentsKey) {
  auto box = MakeBox({.name = "tagged", .stack_bytes = 64 << 10});
  uintptr_t sp = Value(box->Call(&StackAddress, 0));
  EXPECT_EQ(PkeyOfAddress(sp), box->pkey());
  EXPECT_TRUE(box->Contains(reinterpret_cast<void*>(sp), 4));
  // The guard page is just below the 64 KiB stack.
  uintptr_t top = (sp + 4095) & ~uintptr_t{4095};
  EXPECT_EQ(PkeyOfAddress(top - (64 << 10) - 1), box->pkey());
  EXPECT_FALSE(box->Contains(reinterpret_cast<void*>(top - (64 << 10) - 1), 1));
  int host_local = 0;
  EXPECT_EQ(PkeyOfAddress(reinterpret_cast<uintptr_t>(&host_local)),
            internal::Keys().trusted);  // a host stack
  EXPECT_FALSE(box->Contains(&host_local, sizeof(host_local)));
}

uintptr_t LeaveMarkDeep() {
  volatile uint32_t deep[2048];
  deep[0] = 0x5a5a5a5a;
  return reinterpret_cast<uintptr_t>(&deep[0]);
}
uint32_t ReadAt(uintptr_t addr) {
  return *reinterpret_cast<volatile uint32_t*>(addr);
}

// Reset keeps each thread's stack mapping (no munmap, mmap and re-tag on the
// next call) but drops its pages: what the old state left there reads zero.
TEST(LifecycleTest, ResetKeepsStacksButNotTheirContents) {
  auto box = MakeBox({.name = "reset"});
  uintptr_t mark = Value(box->Call(&LeaveMarkDeep));
  ASSERT_EQ(Value(box->Call(&ReadAt, mark)), 0x5a5a5a5au);
  const int mappings = CountMappings();
  ASSERT_TRUE(box->Reset().ok());
  EXPECT_EQ(CountMappings(), mappings);  // the stack stayed mapped
  EXPECT_EQ(PkeyOfAddress(mark), box->pkey());
  EXPECT_EQ(Value(box->Call(&Twice, 4)), 8);
  ASSERT_TRUE(box->Contains(reinterpret_cast<void*>(mark), 4));
  EXPECT_EQ(Value(box->Call(&ReadAt, mark)), 0u);
  EXPECT_EQ(box->last_fault(), nullptr);
}

uintptr_t LeaveMarkShallow() {
  volatile uint32_t shallow[4];
  shallow[0] = 0x5a5a5a5a;
  return reinterpret_cast<uintptr_t>(&shallow[0]);
}

// The top of the stack, which every call uses, is zeroed in place by Reset
// (kept mapped, no page fault on the next call); the pages below it are
// dropped. Read by the host right after Reset, before any call reuses them.
TEST(LifecycleTest, ResetClearsTheStackTopInPlaceAndDropsTheRest) {
  auto box = MakeBox({.name = "scrub"});
  const uintptr_t shallow = Value(box->Call(&LeaveMarkShallow));
  const uintptr_t deep = Value(box->Call(&LeaveMarkDeep));
  ASSERT_TRUE(box->Contains(reinterpret_cast<void*>(shallow), 4));
  ASSERT_EQ(Value(box->Call(&ReadAt, shallow)), 0x5a5a5a5au);
  ASSERT_EQ(Value(box->Call(&ReadAt, deep)), 0x5a5a5a5au);
  ASSERT_TRUE(box->Reset().ok());
  // The shallow mark's page stayed resident (zeroed in place), the deep
  // one's was dropped (asked before a read maps the zero page there).
  const uintptr_t page = ~uintptr_t{4095};
  unsigned char resident = 0;
  ASSERT_EQ(mincore(reinterpret_cast<void*>(shallow & page), 4096, &resident),
            0);
  EXPECT_EQ(resident & 1, 1);
  ASSERT_EQ(mincore(reinterpret_cast<void*>(deep & page), 4096, &resident), 0);
  EXPECT_EQ(resident & 1, 0);
  EXPECT_EQ(ReadAt(shallow), 0u);
  EXPECT_EQ(ReadAt(deep), 0u);
}

int Seven() { return 7; }
int CallInt(int (*cb)()) { return cb(); }

// A compartment per request: Reset after Reset, each cycle allocating a few
// MiB, must never run out of heap (jemalloc hands a reset arena's extents
// out no more; without a fresh arena now and then, the window ran out at
// the 17th Reset at this limit).
TEST(LifecycleTest, ManyResetsOfABusyHeapNeverRunOutOfWindow) {
  auto box = MakeBox({.name = "per-request", .heap_limit_bytes = 8 << 20});
  for (int cycle = 0; cycle < 100; ++cycle) {
    for (int call = 0; call < 8; ++call) {
      ASSERT_NE(Value(box->Call(&testing::Churn, 500)), 0u)
          << "cycle " << cycle << ", call " << call << ": "
          << box->stats().failed_allocations << " failed allocations";
    }
    ASSERT_TRUE(box->Reset().ok()) << "cycle " << cycle;
  }
}

// A destroyed compartment's arena waits, parked, for the next heap in its
// window, with all it carved (jemalloc never carves a reset arena's extents
// again). A heap with a smaller limit than the last one took none of it:
// before, it found no window left and every malloc failed from the start.
TEST(LifecycleTest, ANewHeapNeverInheritsAUsedUpWindow) {
  auto big = MakeBox({.name = "busy-big", .heap_limit_bytes = 64 << 20});
  const uintptr_t big_block = reinterpret_cast<uintptr_t>(*big->Allocate(16));
  // About 3 MB a cycle: past 48 MiB, under half of this heap's budget (80).
  for (int cycle = 0; cycle < 20; ++cycle) {
    for (int call = 0; call < 8; ++call) {
      ASSERT_NE(Value(big->Call(&testing::Churn, 500)), 0u) << cycle;
    }
    ASSERT_TRUE(big->Reset().ok());
  }
  big.reset();
  auto small = MakeBox({.name = "small", .heap_limit_bytes = 8 << 20});
  absl::StatusOr<void*> small_block_or = small->Allocate(16);
  ASSERT_TRUE(small_block_or.ok()) << small_block_or.status();
  const uintptr_t small_block = reinterpret_cast<uintptr_t>(*small_block_or);
  // The same window, so the parked arena was on offer.
  ASSERT_EQ(big_block >> internal::kWindowShift,
            small_block >> internal::kWindowShift);
  for (int call = 0; call < 8; ++call) {
    ASSERT_NE(Value(small->Call(&testing::Churn, 500)), 0u)
        << "call " << call << ": " << small->stats().failed_allocations
        << " failed allocations";
  }
}

TEST(LifecycleTest, CallbacksSurviveResetAndOutliveTheCompartment) {
  auto box = MakeBox({.name = "cb-reset"});
  auto cb = box->RegisterCallback(&Seven);
  ASSERT_TRUE(cb.ok());
  ASSERT_TRUE(box->Reset().ok());
  EXPECT_EQ(Value(box->Call(&CallInt, cb->get())), 7);
  box.reset();  // the Callback is released after its compartment: no crash
}

// Keys are a cache (slot_registry.h): more compartments than keys are fine,
// but while every key is held by a compartment a thread is running (here:
// blocked in a callback), a call into another one waits, then fails with a
// clear error; once a key is free again it works.
std::atomic<int> g_blocked{0};
absl::Notification* g_unblock = nullptr;
void BlockUntilReleased() {
  g_blocked.fetch_add(1);
  g_unblock->WaitForNotification();
}
void CallVoidCallback(void (*cb)()) { cb(); }

TEST(LifecycleTest, RunningOutOfKeysIsAClearErrorAndRecoverable) {
  constexpr int kKeys = 13;  // 16 less key 0, trusted and selector
  absl::Notification unblock;
  g_unblock = &unblock;
  g_blocked = 0;
  std::vector<std::unique_ptr<Compartment>> hogs;
  std::vector<Callback<void()>> callbacks;  // registered while used
  std::vector<std::thread> threads;
  for (int i = 0; i < kKeys; ++i) {
    hogs.push_back(MakeBox({.name = "hog-" + std::to_string(i)}));
    auto cb = hogs.back()->RegisterCallback(&BlockUntilReleased);
    ASSERT_TRUE(cb.ok()) << cb.status();
    callbacks.push_back(*std::move(cb));
    Compartment* box = hogs.back().get();
    threads.emplace_back([box, fn = callbacks.back().get()] {
      absl::Status s = box->Call(&CallVoidCallback, fn);
      EXPECT_TRUE(s.ok()) << s;
    });
  }
  const absl::Time give_up = absl::Now() + absl::Seconds(20);
  while (g_blocked.load() < kKeys && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  if (g_blocked.load() < kKeys) {
    unblock.Notify();
    for (std::thread& t : threads) t.join();
    FAIL() << "only " << g_blocked.load() << " compartments entered";
  }
  auto late = MakeBox({.name = "late"});
  absl::StatusOr<Tainted<int>> r = late->Call(&Twice, 21);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(r.status().message().find("late"), std::string::npos) << r.status();
  EXPECT_NE(r.status().message().find("protection key"), std::string::npos)
      << r.status();
  unblock.Notify();
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(Value(late->Call(&Twice, 21)), 42);
  for (auto& hog : hogs) EXPECT_EQ(Value(hog->Call(&Twice, 2)), 4);
}

TEST(LifecycleTest, NamesAreDefaultedAndShown) {
  auto a = MakeBox();
  auto b = MakeBox();
  EXPECT_FALSE(a->name().empty());
  EXPECT_NE(a->name(), b->name());
  auto named = MakeBox({.name = "visible"});
  EXPECT_EQ(named->name(), "visible");
}

TEST(LifecycleTest, LoadErrorsSayWhichCompartmentAndFile) {
  auto box = MakeBox({.name = "later"});
  absl::Status load = box->Load("/nonexistent.so");
  EXPECT_EQ(load.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(load.message().find("later"), std::string::npos);
  EXPECT_NE(load.message().find("/nonexistent.so"), std::string::npos);
}

}  // namespace
}  // namespace mpkbox

namespace mpkbox {
namespace {

TEST(RuntimeDeathTest, WithoutPkuInitAndCreateSayWhy) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // a fresh process
  EXPECT_EXIT(
      {
        internal::PretendNoPkuForTesting();
        if (Runtime::IsSupported()) _exit(1);
        absl::Status init = Runtime::Init();
        if (init.code() != absl::StatusCode::kFailedPrecondition) _exit(2);
        if (init.message().find("protection keys") == absl::string_view::npos) {
          _exit(3);
        }
        auto box = Compartment::Create({.name = "nowhere"});
        if (box.ok() ||
            box.status().code() != absl::StatusCode::kFailedPrecondition) {
          _exit(4);
        }
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}
MPKBOX_TEST_RUNS_WITHOUT_PKU(RuntimeDeathTest, WithoutPkuInitAndCreateSayWhy);

// IsSupported must agree with the CPU flags the kernel reports.
TEST(RuntimeTest, IsSupportedMatchesCpuinfo) {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  bool pku = false, ospke = false;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream flags(line);
    std::string flag;
    while (flags >> flag) {
      pku |= flag == "pku";
      ospke |= flag == "ospke";
    }
    break;
  }
  EXPECT_EQ(Runtime::IsSupported(), pku && ospke);
}
MPKBOX_TEST_RUNS_WITHOUT_PKU(RuntimeTest, IsSupportedMatchesCpuinfo);

TEST(RuntimeTest, StrictModeKnowsTheAmdPkruKernels) {
  EXPECT_TRUE(internal::KernelMishandlesPkru("6.12.4", true));
  EXPECT_TRUE(internal::KernelMishandlesPkru("6.6.58-generic", true));
  EXPECT_TRUE(internal::KernelMishandlesPkru("5.15.0", true));
  EXPECT_FALSE(internal::KernelMishandlesPkru("6.12.5", true));
  EXPECT_FALSE(internal::KernelMishandlesPkru("6.18.44-fc-v657", true));
  EXPECT_FALSE(internal::KernelMishandlesPkru("6.1.0", false));  // Intel
  EXPECT_TRUE(Runtime::Init().ok());  // this machine passes
}

}  // namespace
}  // namespace mpkbox
