// Heap exhaustion (heap attacks: heap_attack_util.h): every allocator
// returns NULL with ENOMEM at the limit and the host is unaffected, a huge
// alignment buys no memory past the limit, a deadline hit inside the
// allocator leaves its lock free, and frees parked by an idle thread do not
// starve the others.
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>
#include <cstdint>
#include <new>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "allocator/address_zone.h"
#include "allocator/compartment_heap.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "allocator/heap_cache.h"
#include "mpkbox/mpkbox.h"
#include "tests/heap_attack_util.h"
#include "tests/test_util.h"

namespace mpkbox::heap_attack {
namespace {

using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::UnderEmulation;
using ::mpkbox::testing::Value;
using ::testing::HasSubstr;

constexpr size_t kSmallLimit = 1 << 20;

enum Allocator : int { kUseMalloc, kUseCalloc, kUseAligned, kUseNew };
struct ExhaustResult {
  uint64_t count;
  uint64_t bytes;
  int err;
  int recovered;
};

// Allocates until NULL (a list threaded through the allocations), reads
// errno, frees everything and allocates again.
void Exhaust(int how, size_t size, ExhaustResult* r) {
  void* head = nullptr;
  for (;;) {
    void* p = nullptr;
    switch (how) {
      case kUseMalloc: p = Malloc(size); break;
      case kUseCalloc: p = Opaque(calloc(1, size)); break;
      case kUseAligned: p = Opaque(aligned_alloc(4096, size)); break;
      case kUseNew: p = Opaque(::operator new(size, std::nothrow)); break;
    }
    if (p == nullptr) {
      r->err = errno;
      break;
    }
    *static_cast<void**>(p) = head;
    head = p;
    ++r->count;
    r->bytes += size;
    if (r->count > 100000) break;
  }
  while (head != nullptr) {
    void* next = *static_cast<void**>(head);
    Free(head);
    head = next;
  }
  void* again = Malloc(size);
  r->recovered = again != nullptr;
  Free(again);
}

using ExhaustCase = std::tuple<int, size_t>;
class ExhaustionTest : public ::testing::TestWithParam<ExhaustCase> {};

TEST_P(ExhaustionTest, NullWithEnomemAndTheHostIsUnaffected) {
  const auto [how, size] = GetParam();
  auto box = MakeBox({.name = "hungry", .heap_limit_bytes = kSmallLimit});
  HostCanary canary;
  for (int round = 0; round < 2; ++round) {
    absl::StatusOr<void*> out = box->Allocate(sizeof(ExhaustResult));
    ASSERT_TRUE(out.ok());
    auto* r = static_cast<ExhaustResult*>(*out);
    memset(r, 0, sizeof(*r));
    const size_t failed = box->stats().failed_allocations;
    ASSERT_TRUE(box->Call(&Exhaust, how, size, r).ok())
        << box->last_fault()->what;
    EXPECT_EQ(r->err, ENOMEM);
    EXPECT_GT(r->count, 0u);
    EXPECT_LE(r->bytes, kSmallLimit);
    EXPECT_GT(r->bytes, kSmallLimit / 8);
    EXPECT_EQ(r->recovered, 1);
    CompartmentStats s = box->stats();
    EXPECT_GT(s.failed_allocations, failed);
    EXPECT_LE(s.peak_bytes, kSmallLimit);
    box->Free(r);
    EXPECT_EQ(box->stats().bytes_in_use, 0u);
  }
  EXPECT_TRUE(canary.Intact());
  HostAllocatesHeavily();
  ResetAndExpectWorking(box.get());
}

std::string ExhaustCaseName(const ::testing::TestParamInfo<ExhaustCase>& param_info) {
  static const char* const kNames[] = {"Malloc", "Calloc", "AlignedAlloc"};
  return absl::StrFormat("%s%u", kNames[std::get<0>(param_info.param)],
                         std::get<1>(param_info.param));
}

INSTANTIATE_TEST_SUITE_P(
    EveryAllocator, ExhaustionTest,
    ::testing::Combine(::testing::Values(kUseMalloc, kUseCalloc, kUseAligned),
                       ::testing::Values(size_t{1000}, size_t{64} << 10)),
    ExhaustCaseName);

// operator new(size, std::nothrow) inside a compartment whose heap is full
// returns nullptr.
// A throw-and-catch nothrow new would fault on libstdc++'s key-0 state inside.
TEST(ExhaustionTest, NothrowNewReturnsNullWhenFull) {
  auto box = MakeBox({.name = "nothrow", .heap_limit_bytes = kSmallLimit});
  for (size_t size : {size_t{1000}, size_t{64} << 10}) {
    absl::StatusOr<void*> out = box->Allocate(sizeof(ExhaustResult));
    ASSERT_TRUE(out.ok());
    auto* r = static_cast<ExhaustResult*>(*out);
    memset(r, 0, sizeof(*r));
    absl::Status s = box->Call(&Exhaust, static_cast<int>(kUseNew), size, r);
    EXPECT_TRUE(s.ok()) << s << "\n"
                        << (box->last_fault() != nullptr
                                ? absl::StrJoin(box->last_fault()->backtrace,
                                                "\n")
                                : "");
    EXPECT_GT(r->count, 0u);
    ASSERT_TRUE(box->Reset().ok());
  }
  ExpectCompartmentWorks(box.get());
}

uint64_t HoldUntilFull(size_t size) {
  uint64_t n = 0;
  while (Malloc(size) != nullptr) ++n;
  return n;
}
void* GrowUntilFailure(int* err, int* intact) {
  auto* p = static_cast<uint8_t*>(Malloc(64));
  FillPattern(p, 64, 9, 1);
  size_t n = 64;
  for (;;) {
    void* q = Realloc(p, n * 2);
    if (q == nullptr) {
      *err = errno;
      break;
    }
    p = static_cast<uint8_t*>(q);
    n *= 2;
  }
  *intact = CheckPattern(p, 64, 9, 1) ? 1 : 0;
  return p;
}

TEST(ExhaustionTest, FullHeapRefusesTheHostsAllocateAndGrowth) {
  auto box = MakeBox({.name = "full", .heap_limit_bytes = kSmallLimit});
  int* err = static_cast<int*>(*box->Allocate(2 * sizeof(int)));
  err[0] = err[1] = 0;
  const uintptr_t p = reinterpret_cast<uintptr_t>(
      Value(box->Call(&GrowUntilFailure, err, err + 1)));
  EXPECT_EQ(err[0], ENOMEM);
  EXPECT_EQ(err[1], 1);
  EXPECT_TRUE(box->Contains(reinterpret_cast<void*>(p), 64));
  EXPECT_GT(Value(box->Call(&HoldUntilFull, size_t{100})), 0u);
  absl::StatusOr<void*> more = box->Allocate(64 << 10);
  EXPECT_EQ(more.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(more.status().message()), HasSubstr("'full'"));
  EXPECT_EQ(Value(box->Call(&Malloc, size_t{2} << 20)), nullptr);
  EXPECT_GE(box->stats().failed_allocations, 3u);
  EXPECT_LE(box->stats().bytes_in_use, kSmallLimit);
  HostAllocatesHeavily();
  ResetAndExpectWorking(box.get());
  EXPECT_TRUE(box->Allocate(64 << 10).ok());
}

// Runs past its deadline while almost all of its time is spent inside the
// allocator entry (host code holding the heap's lock): the deadline must
// take the thread out of compartment code only, never out of the entry, or
// the heap's lock would stay held and the next allocation would hang.
void HammerTheEntry() {
  for (;;) {
    const uint64_t p = ForgeEntry(internal::kOpMalloc, 20000, 0);
    ForgeEntry(internal::kOpUsableSize, p, 0);
    ForgeEntry(internal::kOpFree, p, 0);
    Free(Malloc(16));
  }
}

TEST(ExhaustionTest, DeadlineWhileHammeringTheAllocator) {
  // Under emulation even 10 rounds of the final workout take over 20 ms
  // (each WRPKRU costs ~2 us there); the hammer runs forever whatever the
  // deadline.
  auto box = MakeBox({.name = "hammer",
                      .call_timeout = absl::Milliseconds(
                          UnderEmulation() ? 1000 : 20)});
  for (int i = 0; i < 20; ++i) {
    absl::Status s = box->Call(&HammerTheEntry);
    EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
    // The heap's lock is free: the host's Allocate and Free go through.
    absl::StatusOr<void*> p = box->Allocate(100);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_TRUE(box->TryFree(*p).ok());
    ASSERT_TRUE(box->Reset().ok());
  }
  // Small enough to finish well inside the 20 ms on a loaded machine.
  EXPECT_EQ(Value(box->Call(&Workout, 100)), 1);
  HostAllocatesHeavily();
}

uintptr_t AlignedInside(size_t alignment, size_t n) {
  return reinterpret_cast<uintptr_t>(Opaque(aligned_alloc(alignment, n)));
}
void WriteByte(uintptr_t p) { *reinterpret_cast<volatile uint8_t*>(p) = 1; }

// A huge alignment must not buy more writable memory than the limit.
// Else aligned_alloc(1 GiB, 16) under a 1 MiB limit gives 1 GiB to write.
TEST(ExhaustionTest, AlignmentDoesNotBypassTheLimit) {
  auto box = MakeBox({.name = "aligned", .heap_limit_bytes = kSmallLimit});
  const uintptr_t warm =
      Value(box->Call(&AlignedInside, size_t{64}, size_t{64}));
  ASSERT_NE(warm, 0u);
  ASSERT_GT(Value(box->Call(&HoldUntilFull, size_t{1000})), 0u);
  const size_t normal = WritableHeapBytes(box.get(), warm);
  // A full heap keeps what it can write near its limit.
  EXPECT_LE(normal, kSmallLimit + (64 << 20));
  ASSERT_TRUE(box->Reset().ok());
  const uintptr_t p =
      Value(box->Call(&AlignedInside, size_t{1} << 30, size_t{16}));
  const size_t writable = WritableHeapBytes(box.get(), p != 0 ? p : warm);
  EXPECT_LE(writable, kSmallLimit + (64 << 20))
      << "with heap_limit_bytes = 1 MiB, aligned_alloc(1 GiB, 16) returned "
      << std::hex << p << std::dec << " and left " << (writable >> 20)
      << " MiB writable by the compartment";
  if (p != 0 && writable > (512u << 20)) {
    // It is really the compartment's to write: its last page.
    const uintptr_t base = p & ~(internal::kWindowBytes - 1);
    EXPECT_TRUE(box->Call(&WriteByte, base + writable - 1).ok());
  }
  ResetAndExpectWorking(box.get());
}

// Parked frees count against heap_limit_bytes until their thread drains them.
uint64_t AllocateThenFreeSeveralClasses(size_t per_class) {
  std::vector<void*> kept;
  for (size_t size : {512, 640, 768, 896, 1024, 1280, 1536}) {
    for (size_t b = 0; b + size <= per_class; b += size) {
      void* p = Malloc(size);
      if (p == nullptr) return 0;
      kept.push_back(p);
    }
  }
  for (void* p : kept) Free(p);
  return kept.size();
}

TEST(ExhaustionTest, FreesParkedByAnIdleThreadDoNotStarveOthers) {
  auto box = MakeBox({.name = "parked", .heap_limit_bytes = 1 << 20});
  uint64_t n = 0;
  std::atomic<int> done{0}, leave{0};
  std::thread idle([&] {  // stays alive: its magazines stay as they are
    n = Value(box->Call(&AllocateThenFreeSeveralClasses, size_t{120} << 10));
    done = 1;
    while (leave.load() == 0) std::this_thread::yield();
  });
  while (done.load() == 0) std::this_thread::yield();
  EXPECT_GT(n, 0u);
  EXPECT_EQ(box->stats().bytes_in_use, 0u);
  absl::StatusOr<void*> host = box->Allocate(512 << 10);
  EXPECT_TRUE(host.ok()) << "the host's Allocate";
  if (host.ok()) box->Free(*host);
  EXPECT_NE(Value(box->Call(&Malloc, size_t{512} << 10)), nullptr)
      << "another thread's malloc";
  leave = 1;
  idle.join();
}

}  // namespace
}  // namespace mpkbox::heap_attack
