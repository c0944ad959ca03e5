// A compartment that corrupts its own heap (heap attacks:
// heap_attack_util.h): overflows of its allocations by kilobytes, and
// scribbles over its whole heap window, its HeapCache included.
#include <string.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "allocator/address_zone.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpkbox/mpkbox.h"
#include "tests/heap_attack_util.h"
#include "tests/test_util.h"

namespace mpkbox::heap_attack {
namespace {

using internal::HeapCache;
using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::Value;
using ::testing::HasSubstr;

// Overflows each of its allocations by `overflow` bytes (staying below
// `end`, which the host found mapped), then frees them all.
void OverflowEverything(size_t overflow, uintptr_t end) {
  void* p[140];
  size_t n[140];
  for (int i = 0; i < 140; ++i) {
    n[i] = i < 100 ? 64 : i < 130 ? 4096 : i < 138 ? (64 << 10) : (1 << 20);
    p[i] = Malloc(n[i]);
  }
  for (int i = 0; i < 140; ++i) {
    if (p[i] == nullptr) continue;
    const uintptr_t from = reinterpret_cast<uintptr_t>(p[i]);
    const uintptr_t to = std::min<uintptr_t>(from + n[i] + overflow, end);
    if (to > from) memset(p[i], 0xcc, to - from);
  }
  Escape(p);
  for (int i = 0; i < 140; ++i) Free(p[i]);
}

// Scribbles over [lo, hi): its whole heap, its HeapCache included.
enum Scribble : int { kScribbleA5, kScribbleZero, kScribbleRandom };
void ScribbleHeap(uintptr_t lo, uintptr_t hi, int how) {
  auto* w = reinterpret_cast<uint64_t*>(lo);
  const size_t n = (hi - lo) / 8;
  XorShift rng{0x1234567};
  for (size_t i = 0; i < n; ++i) {
    w[i] = how == kScribbleA5     ? 0xa5a5a5a5a5a5a5a5ull
           : how == kScribbleZero ? 0
                                  : rng.Next();
  }
  Escape(w);
}

uintptr_t Warm(int rounds) {
  if (Workout(rounds) != 1) return 0;
  void* p = Malloc(1 << 20);
  Free(p);
  return reinterpret_cast<uintptr_t>(p);
}

// An outcome of an attack on its own heap: it ran, or it ended as kAborted
// (its cache was garbage) naming it; nothing else.
void ExpectRanOrAborted(Compartment* box, const absl::Status& s) {
  if (s.ok()) return;
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("compartment '" + box->name() + "'"));
}

TEST(SelfCorruptionTest, OverflowingItsAllocationsByKilobytes) {
  auto box = MakeBox({.name = "overflow"});
  auto bystander = MakeBox({.name = "bystander"});
  HostCanary canary;
  const uintptr_t witness =
      Value(bystander->Call(&MallocFilled, size_t{4096}, uint64_t{11}));
  const uintptr_t some = Value(box->Call(&Warm, 2000));
  ASSERT_NE(some, 0u);
  const uintptr_t base = some & ~(internal::kWindowBytes - 1);
  const uintptr_t end = base + WritableHeapBytes(box.get(), some);
  for (size_t overflow : {size_t{1} << 10, size_t{8} << 10, size_t{64} << 10}) {
    absl::Status s = box->Call(&OverflowEverything, overflow, end);
    ExpectRanOrAborted(box.get(), s);
    EXPECT_TRUE(canary.Intact());
    EXPECT_EQ(host_global, 0x600d);
    // The host may still allocate in it and free in it before any Reset.
    absl::StatusOr<void*> p = box->Allocate(1000);
    ASSERT_TRUE(p.ok()) << p.status();
    memset(*p, 1, 1000);
    EXPECT_TRUE(box->TryFree(*p).ok());
    HostAllocatesHeavily(30000);
    ResetAndExpectWorking(box.get());
  }
  EXPECT_EQ(Value(bystander->Call(&CheckFilled,
                                  reinterpret_cast<const void*>(witness),
                                  size_t{4096}, uint64_t{11})),
            1);
  HostAllocatesHeavily();
}

class ScribbleTest : public ::testing::TestWithParam<int> {};

TEST_P(ScribbleTest, ScribblingOverItsWholeHeap) {
  const int how = GetParam();
  auto box = MakeBox({.name = "scribbler"});
  auto bystander = MakeBox({.name = "bystander"});
  HostCanary canary;
  const uintptr_t witness =
      Value(bystander->Call(&MallocFilled, size_t{4096}, uint64_t{12}));
  const uintptr_t some = Value(box->Call(&Warm, 3000));
  ASSERT_NE(some, 0u);
  // A host allocation in it and a live one of its own, both scribbled over.
  void* hosted = *box->Allocate(5000);
  // Above the cached sizes (64 KiB): live at once (see
  // HostFreeOfARegionFromTheMagazine; a scribbled count hides a region
  // popped from a magazine since the runtime last looked).
  const uintptr_t own =
      Value(box->Call(&MallocFilled, size_t{100000}, uint64_t{1}));
  const uintptr_t base = some & ~(internal::kWindowBytes - 1);
  const size_t bytes = WritableHeapBytes(box.get(), some);
  ASSERT_GT(bytes, size_t{1} << 20);
  absl::Status s = box->Call(&ScribbleHeap, base, base + bytes, how);
  if (how == kScribbleA5) {
    // Its free buffer now claims 0xa5a5a5a5 frees of 0xa5a5a5a5a5a5a5a5.
    ExpectFreeViolation(box.get(), s, 0xa5a5a5a5a5a5a5a5ull);
  } else {
    ExpectRanOrAborted(box.get(), s);
  }
  EXPECT_TRUE(canary.Intact());
  EXPECT_EQ(host_global, 0x600d);
  // Its live allocations are still its own to free, by the host too.
  EXPECT_TRUE(box->TryFree(hosted).ok());
  EXPECT_TRUE(box->TryFree(reinterpret_cast<void*>(own)).ok());
  for (int i = 0; i < 100; ++i) {
    absl::StatusOr<void*> p = box->Allocate(1 + i * 997);
    ASSERT_TRUE(p.ok()) << p.status();
    memset(*p, 2, 1 + i * 997);
    box->Free(*p);
  }
  if (s.ok()) ExpectCompartmentWorks(box.get());  // even without a Reset
  HostAllocatesHeavily();
  ResetAndExpectWorking(box.get());
  EXPECT_EQ(Value(bystander->Call(&CheckFilled,
                                  reinterpret_cast<const void*>(witness),
                                  size_t{4096}, uint64_t{12})),
            1);
}

INSTANTIATE_TEST_SUITE_P(A5ZeroRandom, ScribbleTest,
                         ::testing::Values(kScribbleA5, kScribbleZero,
                                           kScribbleRandom));

}  // namespace
}  // namespace mpkbox::heap_attack
