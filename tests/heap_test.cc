// Compartment heaps: where compartment allocations come from and which key
// they carry, every allocation entry point, limits and stats, the host's
// Allocate/Free/Contains, Reset and destruction, threads, and the host heap
// on the trusted key. The attacks on the heap are in heap_attack_*_test.cc.
#include <errno.h>
#include <jemalloc/jemalloc.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpkbox/mpkbox.h"
#include "allocator/address_zone.h"
#include "allocator/heap_cache.h"
#include "trampolines/thread_block.h"
#include "runtime/fault_report.h"
#include "runtime/runtime_state.h"
#include "tests/test_util.h"

namespace mpkbox {
namespace {

using ::mpkbox::internal::PkeyOfAddress;
using ::mpkbox::testing::Churn;
using ::mpkbox::testing::CountMappings;
using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::UnderEmulation;
using ::mpkbox::testing::MappingsSnapshot;
using ::mpkbox::testing::RssPages;
using ::mpkbox::testing::Spin;
using ::mpkbox::testing::Value;

// ---- compartment code ------------------------------------------------------

// GCC removes a malloc whose result is only freed: keep results opaque.
[[gnu::noinline]] void* Opaque(void* p) {
  asm volatile("" : "+r"(p));
  return p;
}

uintptr_t MallocFill(size_t n) {
  auto* p = static_cast<unsigned char*>(Opaque(malloc(n)));
  if (p != nullptr) memset(p, 0x5a, n);
  return reinterpret_cast<uintptr_t>(p);
}

void FreeIt(void* p) { free(Opaque(p)); }

// Two live regions of n bytes (the second from the magazine the first one's
// refill filled), each filled; and a third malloc after freeing the second,
// which must give it back (the hot slot).
void MallocTwoBig(size_t n, uintptr_t* out) {
  for (int i = 0; i < 2; ++i) {
    auto* p = static_cast<unsigned char*>(Opaque(malloc(n)));
    if (p != nullptr) memset(p, 0x30 + i, n);
    out[i] = reinterpret_cast<uintptr_t>(p);
  }
  free(Opaque(reinterpret_cast<void*>(out[1])));
  out[2] = reinterpret_cast<uintptr_t>(Opaque(malloc(n)));
}

uintptr_t ReadByte(const unsigned char* p) { return *p; }

// Where this thread's SelectorPage words and heap-cache entry, which
// malloc and free load every time, lie in their pages.
uintptr_t DomainWordAddress() {
  return reinterpret_cast<uintptr_t>(&mpkbox_tls_thread->current_domain);
}
uintptr_t CacheEntryAddress() {
  internal::SelectorPage* sel = mpkbox_tls_thread;
  return reinterpret_cast<uintptr_t>(
      &internal::HeapCacheTable(sel)[internal::SlotOfDomain(
          sel->current_domain)]);
}

enum EntryPoint : int {
  kMalloc,
  kCalloc,
  kRealloc,
  kPosixMemalign,
  kAlignedAlloc,
  kMemalign,
  kValloc,
  kPvalloc,
  kNew,
  kNewArray,
  kNewAligned,
  kNewNothrow,
  kNumEntryPoints,
};

// Allocates n bytes with one entry point, writes all of them, returns the
// address; its usable size lands in *usable (compartment memory: a local).
uintptr_t AllocateWith(int which, size_t n) {
  void* p = nullptr;
  switch (which) {
    case kMalloc: p = malloc(n); break;
    case kCalloc: {
      p = calloc(n, 1);
      for (size_t i = 0; p != nullptr && i < n; ++i) {
        if (static_cast<unsigned char*>(p)[i] != 0) return 1;  // not zeroed
      }
      break;
    }
    case kRealloc: {
      void* q = Opaque(malloc(8));
      if (q != nullptr) memset(q, 0x11, 8);
      p = realloc(q, n);
      if (p != nullptr && static_cast<unsigned char*>(p)[7] != 0x11) return 2;
      break;
    }
    case kPosixMemalign:
      if (posix_memalign(&p, 256, n) != 0) p = nullptr;
      if ((reinterpret_cast<uintptr_t>(p) & 255) != 0) return 3;
      break;
    case kAlignedAlloc:
      p = aligned_alloc(64, n);
      if ((reinterpret_cast<uintptr_t>(p) & 63) != 0) return 3;
      break;
    case kMemalign:
      p = memalign(128, n);
      if ((reinterpret_cast<uintptr_t>(p) & 127) != 0) return 3;
      break;
    case kValloc:
    case kPvalloc:
      p = which == kValloc ? valloc(n) : pvalloc(n);
      if ((reinterpret_cast<uintptr_t>(p) & 4095) != 0) return 3;
      break;
    case kNew: p = ::operator new(n); break;
    case kNewArray: p = ::operator new[](n); break;
    case kNewAligned: p = ::operator new(n, std::align_val_t{512}); break;
    case kNewNothrow: p = ::operator new(n, std::nothrow); break;
  }
  p = Opaque(p);
  if (p == nullptr) return 4;
  if (malloc_usable_size(p) < n) return 5;
  memset(p, 0x77, n);
  return reinterpret_cast<uintptr_t>(p);
}

void ReleaseWith(int which, void* p) {
  switch (which) {
    case kNew: ::operator delete(p, 16); break;
    case kNewArray: ::operator delete[](p); break;
    case kNewAligned: ::operator delete(p, std::align_val_t{512}); break;
    case kNewNothrow: ::operator delete(p, std::nothrow); break;
    default: free(p);
  }
}

// Allocates `size` bytes until malloc fails; returns how many succeeded,
// with errno in the top bits. Keeps them (the test resets the heap).
uint64_t AllocateUntilFull(size_t size) {
  uint64_t n = 0;
  while (Opaque(malloc(size)) != nullptr) ++n;
  return n | (static_cast<uint64_t>(errno) << 48);
}

// Keeps `count` allocations of `size` bytes in a compartment-owned array.
void** KeepMany(size_t count, size_t size) {
  auto** ptrs = static_cast<void**>(malloc(count * sizeof(void*)));
  for (size_t i = 0; i < count; ++i) ptrs[i] = Opaque(malloc(size));
  return ptrs;
}

void FreeMany(void** ptrs, size_t count) {
  for (size_t i = 0; i < count; ++i) free(ptrs[i]);
  free(ptrs);
}

// Allocates `count` regions of `size` bytes, frees them in a shuffled
// order, allocates as many again: how many of these lie above the one
// malloc gave just before.
uint64_t AscendingAfterShuffledFrees(size_t count, size_t size) {
  auto** ptrs = static_cast<void**>(malloc(count * sizeof(void*)));
  if (ptrs == nullptr) return 0;
  for (size_t i = 0; i < count; ++i) ptrs[i] = Opaque(malloc(size));
  uint64_t x = 88172645463325252u;  // xorshift64: Fisher-Yates
  for (size_t i = count - 1; i > 0; --i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    std::swap(ptrs[i], ptrs[x % (i + 1)]);
  }
  for (size_t i = 0; i < count; ++i) free(ptrs[i]);
  for (size_t i = 0; i < count; ++i) ptrs[i] = Opaque(malloc(size));
  uint64_t ascending = 0;
  for (size_t i = 1; i < count; ++i) ascending += ptrs[i] > ptrs[i - 1];
  for (size_t i = 0; i < count; ++i) free(ptrs[i]);
  free(ptrs);
  return ascending;
}

uint64_t Strings(int n) {
  std::vector<std::string> v;
  for (int i = 0; i < n; ++i) v.push_back(std::string(20 + i % 300, 'x'));
  uint64_t total = 0;
  for (const std::string& s : v) total += s.size();
  return total;
}

// ---- tests -----------------------------------------------------------------

TEST(HeapTest, CompartmentAllocationsCarryTheCompartmentsKey) {
  auto box = MakeBox({.name = "keyed"});
  for (size_t size : {size_t{16}, size_t{4096}, size_t{100000},
                      size_t{16} << 20}) {
    uintptr_t p = Value(box->Call(&MallocFill, size));
    ASSERT_NE(p, 0u) << size;
    EXPECT_TRUE(box->Contains(reinterpret_cast<void*>(p), size)) << size;
    EXPECT_EQ(PkeyOfAddress(p), box->pkey()) << size;
    EXPECT_EQ(PkeyOfAddress(p + size - 1), box->pkey()) << size;
    EXPECT_EQ(*reinterpret_cast<unsigned char*>(p + size - 1), 0x5a);
    EXPECT_TRUE(box->Call(&FreeIt, reinterpret_cast<void*>(p)).ok());
  }
}

// Compartment malloc and free load current_domain and the cache's table
// entry on every call. A load at the page offset of a store still in flight
// waits for it (4K aliasing), and regions of 512 B and up start at
// multiples of 512 in their pages (4 KiB ones at 0): neither word may sit
// in the first 256 bytes after one, or a loop writing such regions' headers
// runs 2-3x slower (bench/RESULTS.md, issue 16 item 5). Without the slot
// order, the first compartment takes slot 0, whose entry is at offset 0.
TEST(HeapTest, AllocatorWordsKeepOffRegionHeaders) {
  std::vector<std::unique_ptr<Compartment>> boxes;
  for (int i = 0; i < 20; ++i) {
    boxes.push_back(MakeBox({.name = "aliasing"}));
    for (uintptr_t a : {Value(boxes.back()->Call(&DomainWordAddress)),
                        Value(boxes.back()->Call(&CacheEntryAddress))}) {
      EXPECT_GE(a % 512, 256u) << std::hex << a << " in compartment " << i;
    }
  }
}

// The magazines above 4 KiB (issue 16, item 5) hold regions of the
// compartment's own window with its key, like every other.
TEST(HeapTest, BigClassRegionsComeFromTheWindowWithItsKey) {
  auto box = MakeBox({.name = "big"});
  absl::StatusOr<void*> out = box->Allocate(3 * sizeof(uintptr_t));
  ASSERT_TRUE(out.ok());
  auto* r = static_cast<uintptr_t*>(*out);
  for (size_t size : {size_t{4097}, size_t{5000}, size_t{8192}, size_t{14336},
                      size_t{16384}, size_t{20000}, size_t{32768},
                      size_t{65536}}) {
    ASSERT_TRUE(box->Call(&MallocTwoBig, size, r).ok()) << size;
    for (int i = 0; i < 2; ++i) {
      ASSERT_NE(r[i], 0u) << size;
      EXPECT_TRUE(box->Contains(reinterpret_cast<void*>(r[i]), size)) << size;
      EXPECT_EQ(PkeyOfAddress(r[i]), box->pkey()) << size;
      EXPECT_EQ(PkeyOfAddress(r[i] + size - 1), box->pkey()) << size;
      EXPECT_EQ(*reinterpret_cast<unsigned char*>(r[i] + size - 1), 0x30 + i);
      EXPECT_GE(malloc_usable_size(reinterpret_cast<void*>(r[i])), size);
    }
    EXPECT_NE(r[0], r[1]);
    EXPECT_EQ(r[2], r[1]) << size;  // freed right after: malloc's next
    for (int i : {0, 2}) {
      EXPECT_TRUE(box->Call(&FreeIt, reinterpret_cast<void*>(r[i])).ok());
    }
  }
  box->Free(r);
  EXPECT_EQ(box->stats().bytes_in_use, 0u);
}

// The cached classes are jemalloc's own: the runtime gives a region back
// with sdallocx and the class's size.
TEST(HeapTest, CachedClassesAreJemallocsSizeClasses) {
  for (size_t c = 0; c < internal::kNumCachedClasses; ++c) {
    const size_t size = internal::kClassSize[c];
    EXPECT_EQ(nallocx(size, 0), size) << c;
    EXPECT_EQ(internal::CachedClassOf(size), c);
    if (c > 0) {
      EXPECT_EQ(internal::CachedClassOf(internal::kClassSize[c - 1] + 1), c);
      EXPECT_GT(nallocx(internal::kClassSize[c - 1] + 1, 0),
                internal::kClassSize[c - 1]);
    }
  }
}

TEST(HeapTest, HostHeapCarriesTheTrustedKey) {
  ASSERT_TRUE(Runtime::Init().ok());
  const int trusted = internal::Keys().trusted;
  for (size_t size : {size_t{16}, size_t{4096}, size_t{1} << 20,
                      size_t{64} << 20}) {  // small, large, huge
    std::unique_ptr<char[]> p(new char[size]);
    EXPECT_EQ(PkeyOfAddress(reinterpret_cast<uintptr_t>(p.get())), trusted)
        << size;
    EXPECT_EQ(PkeyOfAddress(reinterpret_cast<uintptr_t>(p.get()) + size - 1),
              trusted)
        << size;
  }
  // Threads created after the first malloc inherit the key.
  int key = -1;
  std::thread([&key] {
    std::string s(1000, 'y');
    key = PkeyOfAddress(reinterpret_cast<uintptr_t>(s.data()));
  }).join();
  EXPECT_EQ(key, trusted);
}

class EntryPointTest : public ::testing::TestWithParam<int> {};

TEST_P(EntryPointTest, ServesTheCompartmentHeap) {
  auto box = MakeBox({.name = "entry"});
  for (size_t size : {size_t{24}, size_t{3000}, size_t{70000}}) {
    uintptr_t p = Value(box->Call(&AllocateWith, GetParam(), size));
    ASSERT_GT(p, 16u) << "entry point " << GetParam() << " size " << size
                      << " failed with code " << p;
    EXPECT_TRUE(box->Contains(reinterpret_cast<void*>(p), size));
    EXPECT_EQ(PkeyOfAddress(p), box->pkey());
    EXPECT_TRUE(
        box->Call(&ReleaseWith, GetParam(), reinterpret_cast<void*>(p)).ok());
  }
  EXPECT_EQ(box->stats().bytes_in_use, 0u);
  EXPECT_EQ(box->last_fault(), nullptr);
}

INSTANTIATE_TEST_SUITE_P(Every, EntryPointTest,
                         ::testing::Range(0, static_cast<int>(kNumEntryPoints)));

TEST(HeapTest, LibraryCodeInsideUsesTheHeap) {
  auto box = MakeBox({.name = "strings"});
  uint64_t expected = 0;
  for (int i = 0; i < 5000; ++i) expected += 20 + i % 300;
  EXPECT_EQ(Value(box->Call(&Strings, 5000)), expected);
  EXPECT_NE(Value(box->Call(&Churn, 200000)), 0u);
  CompartmentStats s = box->stats();
  EXPECT_EQ(s.bytes_in_use, 0u);
  EXPECT_GT(s.allocations, 200000u);
  EXPECT_GT(s.peak_bytes, 5000u * 20);
}

TEST(HeapTest, LimitGivesEnomemInsideAndNeverHurtsTheHost) {
  constexpr size_t kLimit = 1 << 20;
  auto box = MakeBox({.name = "small", .heap_limit_bytes = kLimit});
  for (size_t size : {size_t{64}, size_t{100000}}) {
    const uint64_t r = Value(box->Call(&AllocateUntilFull, size));
    const uint64_t count = r & ((uint64_t{1} << 48) - 1);
    EXPECT_EQ(r >> 48, static_cast<uint64_t>(ENOMEM)) << size;
    EXPECT_GT(count * size, kLimit / 2) << size;
    EXPECT_LE(count * size, kLimit) << size;
    CompartmentStats s = box->stats();
    EXPECT_GE(s.failed_allocations, 1u);
    EXPECT_LE(s.bytes_in_use, kLimit);
    EXPECT_EQ(box->Allocate(kLimit).status().code(),
              absl::StatusCode::kResourceExhausted);
    std::vector<std::unique_ptr<char[]>> host;  // the host is not limited
    for (int i = 0; i < 64; ++i) host.emplace_back(new char[1 << 20]);
    ASSERT_TRUE(box->Reset().ok());
    EXPECT_EQ(box->stats().bytes_in_use, 0u);
  }
  EXPECT_EQ(box->last_fault(), nullptr);
}

// Regions a thread freed stay in its stash for reuse (issue 14), but they
// count against the limit and go back to jemalloc as soon as it would
// refuse a request: the host's and compartment code's alike.
TEST(HeapTest, FreedRegionsKeptForReuseYieldToTheLimit) {
  constexpr size_t kLimit = size_t{4} << 20;
  constexpr size_t kCount = 24576;  // 3 MiB of 128-byte regions
  auto box = MakeBox({.name = "stash-limit", .heap_limit_bytes = kLimit});
  for (int round = 0; round < 2; ++round) {
    void** kept = Value(box->Call(&KeepMany, kCount, size_t{128}));
    ASSERT_NE(kept, nullptr);
    ASSERT_TRUE(box->Call(&FreeMany, kept, kCount).ok());
    EXPECT_EQ(box->stats().bytes_in_use, 0u);
    // 3 MiB more: fits only once the stash (up to a quarter of the limit)
    // is given back, the magazines holding up to an eighth.
    if (round == 0) {
      absl::StatusOr<void*> p = box->Allocate(kLimit * 3 / 4);
      ASSERT_TRUE(p.ok()) << p.status();
      box->Free(*p);
    } else {
      const uintptr_t p = Value(box->Call(&MallocFill, kLimit * 3 / 4));
      ASSERT_NE(p, 0u);
      ASSERT_TRUE(box->Call(&FreeIt, reinterpret_cast<void*>(p)).ok());
    }
  }
  EXPECT_EQ(box->stats().failed_allocations, 0u);
  EXPECT_EQ(box->last_fault(), nullptr);
}

// Once a thread recycles more regions than the caches hold, Refill hands
// them out in address order, whatever order they were freed in, so a
// structure built again lies in memory in the order it is walked (libxml2
// at 1 MiB: bench/RESULTS.md). In the order freed, about half would be.
TEST(HeapTest, RecycledRegionsComeBackInAddressOrder) {
  constexpr size_t kCount = 40000;  // 5 MiB of 128-byte regions
  auto box = MakeBox({.name = "stash-order"});
  const uint64_t ascending =
      Value(box->Call(&AscendingAfterShuffledFrees, kCount, size_t{128}));
  EXPECT_GT(ascending, kCount * 8 / 10);
}

TEST(HeapTest, StatsFollowAllocationsAndFrees) {
  auto box = MakeBox({.name = "counted"});
  EXPECT_EQ(box->stats().bytes_in_use, 0u);
  void** kept = Value(box->Call(&KeepMany, size_t{100}, size_t{1000}));
  CompartmentStats s = box->stats();
  EXPECT_GE(s.bytes_in_use, 100u * 1000);
  EXPECT_LE(s.bytes_in_use, 100u * 1024 + 1024);
  EXPECT_GE(s.allocations, 101u);
  EXPECT_GE(s.peak_bytes, s.bytes_in_use);
  ASSERT_TRUE(box->Call(&FreeMany, kept, size_t{100}).ok());
  CompartmentStats after = box->stats();
  EXPECT_EQ(after.bytes_in_use, 0u);
  EXPECT_GE(after.peak_bytes, 100u * 1000);
  EXPECT_EQ(after.failed_allocations, 0u);
}

TEST(HeapTest, HostAllocateFreeContains) {
  auto box = MakeBox({.name = "shared", .heap_limit_bytes = 1 << 20});
  auto other = MakeBox({.name = "other"});
  absl::StatusOr<void*> p = box->Allocate(3000, 64);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(reinterpret_cast<uintptr_t>(*p) % 64, 0u);
  EXPECT_TRUE(box->Contains(*p, 3000));
  EXPECT_FALSE(other->Contains(*p, 1));
  EXPECT_EQ(PkeyOfAddress(reinterpret_cast<uintptr_t>(*p)), box->pkey());
  // The compartment may use it.
  memset(*p, 0x42, 3000);
  EXPECT_EQ(Value(box->Call(&ReadByte,
                            static_cast<const unsigned char*>(*p) + 2999)),
            0x42u);
  EXPECT_GE(box->stats().bytes_in_use, 3000u);
  EXPECT_TRUE(box->TryFree(*p).ok());
  EXPECT_EQ(box->TryFree(*p).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(box->stats().bytes_in_use, 0u);

  int host_local = 0;
  auto host_heap = std::make_unique<int>(0);
  EXPECT_FALSE(box->Contains(&host_local, sizeof(host_local)));
  EXPECT_FALSE(box->Contains(host_heap.get(), sizeof(int)));
  EXPECT_EQ(box->TryFree(host_heap.get()).code(),
            absl::StatusCode::kInvalidArgument);
  box->Free(host_heap.get());  // ignored
  *host_heap = 5;

  EXPECT_EQ(box->Allocate(2 << 20).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(box->Allocate(16, 3).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(
      absl::StrContains(box->Allocate(2 << 20).status().message(), "shared"));
}

TEST(HeapTest, HostFreesWhatTheCompartmentAllocated) {
  auto box = MakeBox({.name = "producer"});
  uintptr_t p = Value(box->Call(&MallocFill, size_t{200}));
  EXPECT_GT(box->stats().bytes_in_use, 0u);
  free(reinterpret_cast<void*>(p));  // back to the compartment's heap
  EXPECT_EQ(box->stats().bytes_in_use, 0u);
  uintptr_t q = Value(box->Call(&MallocFill, size_t{50000}));
  void* r = realloc(reinterpret_cast<void*>(q), 100000);
  ASSERT_NE(r, nullptr);
  EXPECT_TRUE(box->Contains(r, 100000));
  EXPECT_EQ(static_cast<unsigned char*>(r)[49999], 0x5a);
  EXPECT_GE(malloc_usable_size(r), 100000u);
  free(r);
  EXPECT_EQ(box->stats().bytes_in_use, 0u);
}

// Reset keeps the arena and its window (mapped, with the key) but drops
// every allocation and every page: what the old state wrote reads zero.
TEST(HeapTest, ResetKeepsTheWindowButNothingOfItsContents) {
  auto box = MakeBox({.name = "reset"});
  uintptr_t small = Value(box->Call(&MallocFill, size_t{64}));
  uintptr_t big = Value(box->Call(&MallocFill, size_t{1} << 20));
  ASSERT_TRUE(box->Contains(reinterpret_cast<void*>(big), 1 << 20));
  const uintptr_t big_end = big + (1 << 20) - 1;
  ASSERT_EQ(Value(box->Call(&ReadByte, reinterpret_cast<const unsigned char*>(
                                           big_end))),
            0x5au);
  const MappingsSnapshot before;
  ASSERT_TRUE(box->Reset().ok());
  const MappingsSnapshot after;
  // Nothing mapped again (the dropped thread state may free a host block).
  EXPECT_LE(after.count(), before.count()) << after.DiffFrom(before);
  EXPECT_EQ(PkeyOfAddress(big), box->pkey());
  EXPECT_EQ(box->stats().bytes_in_use, 0u);
  EXPECT_EQ(box->TryFree(reinterpret_cast<void*>(small)).code(),
            absl::StatusCode::kInvalidArgument);
  for (uintptr_t p : {small, big, big_end}) {
    EXPECT_EQ(Value(box->Call(
                  &ReadByte, reinterpret_cast<const unsigned char*>(p))),
              0u)
        << std::hex << p;
  }
  uintptr_t again = Value(box->Call(&MallocFill, size_t{64}));
  EXPECT_TRUE(box->Contains(reinterpret_cast<void*>(again), 64));
  // Freeing a region of the old state is a bad free, not a double use.
  EXPECT_EQ(box->Call(&FreeIt, reinterpret_cast<void*>(big)).code(),
            absl::StatusCode::kAborted);
}

// A destroyed compartment's arena waits, cleared, for the next compartment
// in its slot: in between no page keeps the freed key, and the next owner
// reads zeros where the last one left its data.
TEST(HeapTest, DestroyedHeapsLeaveNothingToTheNextInTheirSlot) {
  uintptr_t big = 0;
  {
    auto first = MakeBox({.name = "first"});
    big = Value(first->Call(&MallocFill, size_t{1} << 20));
    ASSERT_NE(big, 0u);
  }
  EXPECT_EQ(PkeyOfAddress(big), 0);  // parked: PROT_NONE, key 0
  auto next = MakeBox({.name = "next"});
  ASSERT_TRUE(next->Contains(reinterpret_cast<void*>(big), 1))
      << "the next compartment did not get the slot";
  EXPECT_EQ(PkeyOfAddress(big), next->pkey());
  EXPECT_EQ(next->stats().bytes_in_use, 0u);
  for (uintptr_t p : {big, big + (1 << 19), big + (1 << 20) - 1}) {
    EXPECT_EQ(Value(next->Call(
                  &ReadByte, reinterpret_cast<const unsigned char*>(p))),
              0u)
        << std::hex << p;
  }
  EXPECT_EQ(next->Call(&FreeIt, reinterpret_cast<void*>(big)).code(),
            absl::StatusCode::kAborted);  // not a live allocation of next
}

// Resets reuse the window: a heap that allocates the same each time does not
// move further into it (each new 4 MiB would land 4 MiB further).
TEST(HeapTest, ResetsReuseTheWindow) {
  auto box = MakeBox({.name = "resets"});
  uintptr_t low = UINTPTR_MAX, high = 0;
  for (int i = 0; i < 50; ++i) {
    uintptr_t big = Value(box->Call(&MallocFill, size_t{4} << 20));
    ASSERT_NE(big, 0u);
    low = std::min(low, big);
    high = std::max(high, big);
    ASSERT_TRUE(box->Reset().ok());
  }
  EXPECT_LT(high - low, size_t{4} << 20);
}

// Freed host extents stay mapped (their pages purged): unmapped one by one,
// they punched holes into larger mappings whenever jemalloc's decay came due,
// and mapping counts then depended on the machine's speed.
TEST(HeapTest, PurgedHostExtentsKeepTheirMappings) {
  ASSERT_TRUE(Runtime::Init().ok());
  std::vector<void*> blocks;
  for (int i = 0; i < 64; ++i) blocks.push_back(malloc(96 << 10));
  for (size_t i = 0; i < blocks.size(); i += 2) free(blocks[i]);
  const MappingsSnapshot before;
  // Every arena, now: what decay would do later.
  const std::string purge =
      "arena." + std::to_string(MALLCTL_ARENAS_ALL) + ".purge";
  ASSERT_EQ(mallctl(purge.c_str(), nullptr, nullptr, nullptr, 0), 0);
  const MappingsSnapshot after;
  EXPECT_EQ(after.count(), before.count()) << after.DiffFrom(before);
  for (size_t i = 1; i < blocks.size(); i += 2) free(blocks[i]);
}

TEST(HeapTest, TenThousandCyclesLeaveMappingsAndRssFlat) {
  auto cycle = [] {
    auto box = MakeBox({.name = "cycle"});
    ASSERT_NE(Value(box->Call(&MallocFill, size_t{100})), 0u);
    ASSERT_NE(Value(box->Call(&MallocFill, size_t{200000})), 0u);
  };
  for (int i = 0; i < 100; ++i) cycle();  // warm up lazy state
  const MappingsSnapshot before;
  const long rss = RssPages();
  // Under emulation each cycle takes ~80 ms; a leak per cycle shows as
  // clearly in 1,000.
  const int cycles = UnderEmulation() ? 1000 : 10000;
  for (int i = 0; i < cycles; ++i) cycle();
  const MappingsSnapshot after;
  // A leak grows the count. It may shrink: a fresh CI clone once saw one
  // 32 KiB mapping go (private jemalloc; not reproduced in 12 runs, cause
  // not proven: perhaps the arena a heap past half its window budget
  // swaps for a new one every few hundred cycles).
  EXPECT_LE(after.count(), before.count()) << after.DiffFrom(before);
  EXPECT_LT(RssPages(), rss + 512);          // under 2 MiB of growth
}

// The VmFlags of every mapping of /proc/self/smaps that overlaps [lo, hi),
// one string each.
std::vector<std::string> VmFlagsIn(uintptr_t lo, uintptr_t hi) {
  std::ifstream smaps("/proc/self/smaps");
  std::vector<std::string> flags;
  bool inside = false;
  for (std::string line; std::getline(smaps, line);) {
    uintptr_t start = 0, end = 0;
    if (sscanf(line.c_str(), "%lx-%lx ", &start, &end) == 2) {  // a mapping
      inside = start < hi && lo < end;
    } else if (inside && absl::StartsWith(line, "VmFlags:")) {
      flags.push_back(line);
    }
  }
  return flags;
}

// Under transparent huge pages `always`, sparsely touched metadata backed by
// 2 MiB pages took 10 to 15 GB for 4,092 compartments (bench/RESULTS.md,
// "Huge pages"): the live bitmaps and jemalloc's own metadata opt out.
TEST(HeapTest, HeapMetadataOptsOutOfHugePages) {
  const char* thp = nullptr;
  size_t len = sizeof(thp);
  ASSERT_EQ(mallctl("opt.thp", &thp, &len, nullptr, 0), 0);
  EXPECT_STREQ(thp, "never");
  const uintptr_t lo = internal::g_zone.bitmap_base;
  const uintptr_t hi =
      lo + internal::kMaxCompartments * internal::kMetadataBytesPerWindow;
  auto expect_no_huge_pages = [&] {
    const std::vector<std::string> flags = VmFlagsIn(lo, hi);
    ASSERT_FALSE(flags.empty());
    for (const std::string& f : flags) {
      EXPECT_THAT(f + " ", ::testing::HasSubstr(" nh ")) << f;
    }
  };
  {
    auto box = MakeBox({.name = "metadata"});
    ASSERT_NE(Value(box->Call(&MallocFill, size_t{100})), 0u);
    ASSERT_NE(lo, 0u);
    expect_no_huge_pages();  // a tagged bitmap
  }
  expect_no_huge_pages();  // and one given back to the zone
}

TEST(HeapTest, ThreadsShareAndSeparateHeaps) {
  auto shared = MakeBox({.name = "shared"});
  std::vector<std::unique_ptr<Compartment>> own;
  for (int i = 0; i < 4; ++i) own.push_back(MakeBox({.name = "own"}));
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      for (int round = 0; round < 20; ++round) {
        if (Value(shared->Call(&Churn, 5000)) == 0) ++failures;
        if (Value(own[i]->Call(&Churn, 5000)) == 0) ++failures;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(shared->stats().bytes_in_use, 0u);
  EXPECT_EQ(shared->last_fault(), nullptr);
}

// A host handler runs with host rights while compartment code is suspended
// under it: what it allocates is host memory.
std::atomic<uintptr_t> handler_allocation{0};
void AllocatingHandler(int) {
  // Only a signal that interrupted compartment code counts (the call's
  // frame is on the thread's frame stack; the handler adds its bias).
  const internal::ThreadBlock* tb = internal::CurrentThreadBlock();
  if (tb == nullptr || (tb->depth & 0xffffffff) == 0) return;
  void* p = malloc(48);
  handler_allocation.store(reinterpret_cast<uintptr_t>(p));
  free(p);
}

TEST(HeapTest, HostSignalHandlerInsideACallAllocatesFromTheHost) {
  auto box = MakeBox({.name = "spinner"});
  ASSERT_TRUE(Runtime::Init().ok());
  struct sigaction act {}, old{};
  act.sa_handler = AllocatingHandler;
  sigemptyset(&act.sa_mask);
  ASSERT_EQ(sigaction(SIGALRM, &act, &old), 0);
  handler_allocation = 0;
  itimerval timer{};
  timer.it_value.tv_usec = 2000;
  timer.it_interval.tv_usec = 2000;
  ASSERT_EQ(setitimer(ITIMER_REAL, &timer, nullptr), 0);
  for (int i = 0; i < 200 && handler_allocation.load() == 0; ++i) {
    ASSERT_TRUE(box->Call(&Spin, uint64_t{1000000}).ok());
  }
  timer = itimerval{};
  setitimer(ITIMER_REAL, &timer, nullptr);
  sigaction(SIGALRM, &old, nullptr);
  const uintptr_t p = handler_allocation.load();
  ASSERT_NE(p, 0u);
  EXPECT_FALSE(box->Contains(reinterpret_cast<void*>(p), 1));
  EXPECT_EQ(PkeyOfAddress(p), internal::Keys().trusted);
}

}  // namespace
}  // namespace mpkbox
