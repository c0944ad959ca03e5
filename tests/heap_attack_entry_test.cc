// Forged calls of the allocator entry (heap attacks: heap_attack_util.h):
// callback 0 called with any op code and arguments, the libc entry points
// with overflowing arguments, and jemalloc's own API (mallocx, dallocx,
// mallctl) called directly, bypassing the entry.
#include <errno.h>
#include <jemalloc/jemalloc.h>
#include <malloc.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <iterator>
#include <string>

#include "allocator/address_zone.h"
#include "allocator/compartment_heap.h"
#include "allocator/host_heap.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "allocator/heap_cache.h"
#include "mpkbox/mpkbox.h"
#include "tests/heap_attack_util.h"
#include "tests/test_util.h"

namespace mpkbox::heap_attack {
namespace {

using internal::kOpAlignedAlloc;
using internal::kOpCalloc;
using internal::kOpFree;
using internal::kOpMalloc;
using internal::kOpRealloc;
using internal::kOpTlsBlock;
using internal::kOpUsableSize;
using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::Value;
using ::testing::HasSubstr;

// ForgeEntry, and errno as the entry left it (reading errno is allowed).
uint64_t ForgeEntryErrno(uint64_t op, uint64_t a, uint64_t b, int* err) {
  const uint64_t r = ForgeEntry(op, a, b);
  *err = errno;
  return r;
}

TEST(AllocatorEntryTest, UnknownOpsEndTheCall) {
  auto box = MakeBox({.name = "ops"});
  for (uint64_t op : {uint64_t{0}, uint64_t{kOpTlsBlock} + 1, uint64_t{255},
                      (uint64_t{1} << 32) | kOpMalloc, ~uint64_t{0}}) {
    absl::Status s =
        box->Call(&ForgeEntry, op, uint64_t{64}, uint64_t{0}).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << op << ": " << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr("compartment 'ops'"));
    EXPECT_THAT(std::string(s.message()),
                HasSubstr("unknown allocator request"));
    ResetAndExpectWorking(box.get());
  }
}

// The TLS op with no loaded object behind the module id (loaded TLS:
// loader_features_test.cc).
TEST(AllocatorEntryTest, ThreadLocalBlockOfNoModuleEndsTheCall) {
  auto box = MakeBox({.name = "tls-op"});
  for (uint64_t module : {uint64_t{0}, uint64_t{1}, ~uint64_t{0}}) {
    absl::Status s =
        box->Call(&ForgeEntry, uint64_t{kOpTlsBlock}, module, uint64_t{0})
            .status();
    EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << module << ": " << s;
    EXPECT_THAT(std::string(s.message()),
                HasSubstr("a module the compartment has not loaded"));
    ResetAndExpectWorking(box.get());
  }
}

TEST(AllocatorEntryTest, FreeAndReallocOfForeignPointersEndTheCall) {
  auto box = MakeBox({.name = "forged"});
  auto victim = MakeBox({.name = "victim"});
  HostCanary canary;
  int host_local = 1;
  const uintptr_t other =
      Value(victim->Call(&MallocFilled, size_t{64}, uint64_t{3}));
  for (uintptr_t bad :
       {canary.address(), reinterpret_cast<uintptr_t>(&host_local),
        reinterpret_cast<uintptr_t>(&host_global), other}) {
    for (uint64_t op : {uint64_t{kOpFree}, uint64_t{kOpRealloc}}) {
      for (uint64_t size : {uint64_t{0}, uint64_t{64}, uint64_t{1} << 20}) {
        if (op == kOpFree && size != 0) continue;
        ExpectFreeViolation(
            box.get(), box->Call(&ForgeEntry, op, uint64_t{bad}, size).status(),
            bad);
        ASSERT_TRUE(box->Reset().ok());
      }
    }
  }
  EXPECT_TRUE(canary.Intact());
  EXPECT_EQ(host_local, 1);
  ExpectHostNeverHandsOut(canary.address(), kCanaryBytes);
  EXPECT_EQ(
      Value(victim->Call(&CheckFilled, reinterpret_cast<const void*>(other),
                         size_t{64}, uint64_t{3})),
      1);
  ExpectCompartmentWorks(box.get());
  HostAllocatesHeavily();
}

TEST(AllocatorEntryTest, UsableSizeSaysNothingOfForeignMemory) {
  auto box = MakeBox({.name = "oracle"});
  auto victim = MakeBox({.name = "victim"});
  HostCanary canary;
  int host_local = 1;
  const uintptr_t other =
      Value(victim->Call(&MallocFilled, size_t{5000}, uint64_t{3}));
  const uintptr_t own =
      Value(box->Call(&MallocFilled, size_t{5000}, uint64_t{4}));
  const uintptr_t unpopped =
      Value(box->Call(&UnpoppedMagazineRegion, size_t{64}));
  const uintptr_t cache = Value(box->Call(&MyCacheAddress));
  // The control: the entry does answer for a live allocation of its own.
  EXPECT_GE(
      Value(box->Call(&ForgeEntry, uint64_t{kOpUsableSize}, own, uint64_t{0})),
      5000u);
  for (uintptr_t p :
       {canary.address(), reinterpret_cast<uintptr_t>(&host_local),
        reinterpret_cast<uintptr_t>(&host_global), other, own + 16, own + 1,
        unpopped, cache, uintptr_t{0}, ~uintptr_t{15},
        internal::WindowBase(internal::kAmbientWindow)}) {
    EXPECT_EQ(
        Value(box->Call(&ForgeEntry, uint64_t{kOpUsableSize}, p, uint64_t{0})),
        0u)
        << std::hex << p;
  }
  EXPECT_EQ(box->last_fault(), nullptr);
  EXPECT_TRUE(canary.Intact());
}

struct Absurd {
  uint64_t op, a, b;
  int err;
};

TEST(AllocatorEntryTest, AbsurdSizesAndAlignmentsFailCleanly) {
  auto box = MakeBox({.name = "absurd", .heap_limit_bytes = 16 << 20});
  constexpr uint64_t kMax = ~uint64_t{0};
  const Absurd cases[] = {
      {kOpAlignedAlloc, 0, 16, EINVAL},
      {kOpAlignedAlloc, 3, 16, EINVAL},
      {kOpAlignedAlloc, 24, 16, EINVAL},
      {kOpAlignedAlloc, kMax, 16, EINVAL},
      {kOpAlignedAlloc, uint64_t{1} << 63, 16, ENOMEM},
      {kOpAlignedAlloc, uint64_t{1} << 62, 16, ENOMEM},
      {kOpAlignedAlloc, uint64_t{1} << 40, 16, ENOMEM},
      {kOpAlignedAlloc, uint64_t{1} << 33, 16, ENOMEM},
      {kOpAlignedAlloc, 16, kMax, ENOMEM},
      {kOpAlignedAlloc, 4096, uint64_t{1} << 40, ENOMEM},
      {kOpAlignedAlloc, 64, 32 << 20, ENOMEM},  // over the limit
      {kOpCalloc, kMax, 2, ENOMEM},
      {kOpCalloc, 2, kMax, ENOMEM},
      {kOpCalloc, uint64_t{1} << 32, uint64_t{1} << 32, ENOMEM},
      {kOpCalloc, 1 << 20, 1 << 20, ENOMEM},
      {kOpMalloc, kMax, 0, ENOMEM},
      {kOpMalloc, kMax - 15, 0, ENOMEM},
      {kOpMalloc, uint64_t{1} << 63, 0, ENOMEM},
      {kOpMalloc, 32 << 20, 0, ENOMEM},
      {kOpRealloc, 0, kMax, ENOMEM},
  };
  int* err = static_cast<int*>(*box->Allocate(sizeof(int)));
  for (const Absurd& c : cases) {
    *err = 0;
    EXPECT_EQ(Value(box->Call(&ForgeEntryErrno, c.op, c.a, c.b, err)), 0u)
        << c.op << " " << c.a << " " << c.b;
    EXPECT_EQ(*err, c.err) << c.op << " " << c.a << " " << c.b;
  }
  EXPECT_EQ(box->last_fault(), nullptr);
  EXPECT_GE(box->stats().failed_allocations, std::size(cases));
  // The control: sane requests through the same door work.
  const uintptr_t p = Value(box->Call(&ForgeEntry, uint64_t{kOpAlignedAlloc},
                                      uint64_t{4096}, uint64_t{100}));
  ASSERT_NE(p, 0u);
  EXPECT_EQ(p % 4096, 0u);
  EXPECT_TRUE(box->Contains(reinterpret_cast<void*>(p), 100));
  const uintptr_t q = Value(box->Call(&ForgeEntry, uint64_t{kOpCalloc},
                                      uint64_t{100}, uint64_t{100}));
  ASSERT_NE(q, 0u);
  EXPECT_TRUE(box->Contains(reinterpret_cast<void*>(q), 10000));
  // realloc to an absurd size leaves the allocation as it was.
  const uintptr_t r = Value(box->Call(&MallocFilled, size_t{300}, uint64_t{8}));
  *err = 0;
  EXPECT_EQ(
      Value(box->Call(&ForgeEntryErrno, uint64_t{kOpRealloc}, r, kMax, err)),
      0u);
  EXPECT_EQ(*err, ENOMEM);
  EXPECT_EQ(Value(box->Call(&CheckFilled, reinterpret_cast<const void*>(r),
                            size_t{300}, uint64_t{8})),
            1);
  EXPECT_EQ(box->last_fault(), nullptr);
  HostAllocatesHeavily();
}

// The libc entry points inside with overflowing arguments.
uint64_t OverflowingLibcCalls(int* err) {
  uint64_t bad = 0;
  auto check = [&](void* p, int want) {
    if (p != nullptr || errno != want) ++bad;
  };
  // Opaque: GCC refuses to compile calls it can see are absurd.
  const size_t max = Opaque(~size_t{0});
  check(Opaque(calloc(max, 2)), ENOMEM);
  check(Opaque(calloc(Opaque(size_t{1} << 33), Opaque(size_t{1} << 33))),
        ENOMEM);
  check(Opaque(calloc(3, max / 2)), ENOMEM);
  check(Opaque(pvalloc(max)), ENOMEM);
  check(Opaque(pvalloc(max - 4096)), ENOMEM);
  check(Opaque(valloc(max - 100)), ENOMEM);
  check(Opaque(malloc(max)), ENOMEM);
  check(Opaque(memalign(Opaque(size_t{1} << 63), 16)), ENOMEM);
  check(Opaque(aligned_alloc(Opaque(size_t{3}), 16)), EINVAL);
  void* p = nullptr;
  if (posix_memalign(&p, Opaque(size_t{24}), 16) != EINVAL) ++bad;
  if (posix_memalign(&p, Opaque(size_t{1} << 62), 16) != ENOMEM) ++bad;
  void* q = Malloc(100);
  check(Realloc(q, max - 8), ENOMEM);
  Free(q);
  *err = errno;
  return bad;
}

TEST(AllocatorEntryTest, OverflowingLibcCallsInsideReturnNull) {
  auto box = MakeBox({.name = "overflow"});
  int* err = static_cast<int*>(*box->Allocate(sizeof(int)));
  EXPECT_EQ(Value(box->Call(&OverflowingLibcCalls, err)), 0u);
  EXPECT_EQ(box->last_fault(), nullptr);
  EXPECT_GT(box->stats().failed_allocations, 5u);
  ExpectCompartmentWorks(box.get());
}

// jemalloc's own entry points (mallocx, dallocx, rallocx, mallctl...) are
// exported by libjemalloc and not routed: compartment code can call them
// directly, bypassing the allocator entry. jemalloc then runs with the
// compartment's rights; its first write to its per-thread state (TLS, key
// 0), its thread cache or the host arena's metadata (trusted key) must
// fault before it changes anything. Each attempt runs in a child, so that
// an attack that worked could not hurt the other tests.
enum JemallocCall : int {
  kJeDallocx,  // free a host region into the host's thread cache
  kJeSdallocx,
  kJeDallocxNoCache,  // ... straight into the host arena
  kJeRallocx,
  kJeMallocx,  // take a region from the host's thread cache
  kJeMallocxHostArena,
  kJeTcacheFlush,  // mallctl: flush the host's thread cache
  kJeArenaReset,   // mallctl: drop every allocation of the host arena
  kNumJemallocCalls,
};
int host_arena_index = -1;  // set by the host; compartment code reads it

uint64_t CallJemalloc(int which, uint64_t host_pointer) {
  void* p = reinterpret_cast<void*>(Opaque(host_pointer));
  switch (which) {
    case kJeDallocx: dallocx(p, 0); break;
    case kJeSdallocx: sdallocx(p, kCanaryBytes, 0); break;
    case kJeDallocxNoCache: dallocx(p, MALLOCX_TCACHE_NONE); break;
    case kJeRallocx: return reinterpret_cast<uintptr_t>(rallocx(p, 10, 0));
    case kJeMallocx: return reinterpret_cast<uintptr_t>(mallocx(64, 0));
    case kJeMallocxHostArena:
      return reinterpret_cast<uintptr_t>(
          mallocx(64, MALLOCX_ARENA(host_arena_index)));
    case kJeTcacheFlush:
      return static_cast<uint64_t>(
          mallctl("thread.tcache.flush", nullptr, nullptr, nullptr, 0));
    case kJeArenaReset: {
      char name[32] = "arena.";
      int n = host_arena_index, len = 6;
      char digits[12];
      int d = 0;
      do {
        digits[d++] = static_cast<char>('0' + n % 10);
        n /= 10;
      } while (n != 0);
      while (d > 0) name[len++] = digits[--d];
      memcpy(name + len, ".reset", 7);
      return static_cast<uint64_t>(mallctl(name, nullptr, nullptr, nullptr, 0));
    }
  }
  return 0;
}

class JemallocDirectDeathTest : public ::testing::TestWithParam<int> {};

TEST_P(JemallocDirectDeathTest, CallingJemallocDirectlyFaults) {
  host_arena_index = static_cast<int>(
      ((static_cast<unsigned>(internal::g_host.host_flags) >> 20) & 0xfff) - 1);
  auto box = MakeBox({.name = "bypass"});
  ASSERT_NE(box, nullptr);
  ASSERT_TRUE(box->Call(&Workout, 100).ok());
  EXPECT_EXIT(
      {
        HostCanary canary;
        for (int i = 0; i < 100; ++i) Free(Malloc(kCanaryBytes));  // warm
        absl::Status s = box->Call(&CallJemalloc, GetParam(),
                                   static_cast<uint64_t>(canary.address()))
                             .status();
        bool contained = s.code() == absl::StatusCode::kAborted &&
                         box->last_fault() != nullptr &&
                         box->last_fault()->code == SEGV_PKUERR &&
                         canary.Intact();
        for (int i = 0; contained && i < 256; ++i) {
          void* q = Malloc(kCanaryBytes);
          contained = q != canary.heap.get() &&
                      !internal::InZone(reinterpret_cast<uintptr_t>(q));
          memset(q, 1, kCanaryBytes);
          Free(q);
        }
        if (!contained) fprintf(stderr, "%s\n", s.ToString().c_str());
        _exit(contained ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "")
      << "jemalloc call " << GetParam();
}

INSTANTIATE_TEST_SUITE_P(EachCall, JemallocDirectDeathTest,
                         ::testing::Range(0,
                                          static_cast<int>(kNumJemallocCalls)));

}  // namespace
}  // namespace mpkbox::heap_attack
