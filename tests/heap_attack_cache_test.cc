// Tampering with its own HeapCache (heap attacks: heap_attack_util.h):
// forged magazine entries, huge counts, garbage in the free buffer, replayed
// regions, the cache table, another thread scribbling on the cache in use,
// and a thread that exits with a garbage cache.
#include <malloc.h>
#include <string.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "allocator/compartment_heap.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "allocator/heap_cache.h"
#include "mpkbox/mpkbox.h"
#include "runtime/runtime_state.h"
#include "tests/heap_attack_util.h"
#include "tests/test_util.h"

namespace mpkbox::heap_attack {
namespace {

using internal::HeapCache;
using internal::kClassSize;
using internal::kFreeSlots;
using internal::kMagazineSlots;
using internal::kNumCachedClasses;
using internal::Magazine;
using ::mpkbox::testing::Churn;
using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::Value;
using ::testing::HasSubstr;

enum ForgedUse : int { kReturn, kRead, kWrite, kFreeIt };
// Set by the host; compartment code reads them.
MPKBOX_COMPARTMENT_READABLE uintptr_t forged_target;
MPKBOX_COMPARTMENT_READABLE size_t forged_size = 64;  // its class is forged

// Puts forged_target in the magazine of forged_size-byte regions, takes it
// with malloc and uses it.
uint64_t MallocForged(int use) {
  Free(Malloc(forged_size));  // the cache exists, the magazine was refilled
  Magazine& m = internal::MagazineAt(MyCache(), ClassOf(forged_size));
  m.nhot = 0;  // else malloc takes the region just freed first
  m.slots[0] = reinterpret_cast<void*>(forged_target);
  m.count = 1;
  auto* p = static_cast<volatile uint64_t*>(Malloc(forged_size));
  switch (use) {
    case kRead: return p[0] + p[7];
    case kWrite:
      for (int i = 0; i < 8; ++i) p[i] = 0x4141414141414141ull;
      break;
    case kFreeIt: Free(const_cast<uint64_t*>(p)); break;
  }
  return reinterpret_cast<uintptr_t>(p);
}

// The hot slot (the region free() gave back right after its malloc, which
// the next malloc takes first) forged instead: `hot` picks the way.
uint64_t MallocForgedHot(int use) {
  Free(Malloc(forged_size));  // on the hot stack
  Magazine& m = internal::MagazineAt(MyCache(), ClassOf(forged_size));
  m.hot[m.nhot - 1] = reinterpret_cast<void*>(forged_target);
  if (use == kFreeIt) return 0;  // left there: the runtime takes it as a free
  auto* p = static_cast<volatile uint64_t*>(Malloc(forged_size));
  if (use == kWrite) {
    for (int i = 0; i < 8; ++i) p[i] = 0x4141414141414141ull;
  }
  return reinterpret_cast<uintptr_t>(p);
}

// A forged entry (`attack`: MallocForged or MallocForgedHot) pointing at
// the host heap: believed by malloc inside, but the host's memory stays
// closed to it, and freed, the runtime refuses it.
void ExpectForgedHostEntryContained(uint64_t (*attack)(int)) {
  auto box = MakeBox({.name = "forger"});
  HostCanary canary;
  forged_target = canary.address();
  EXPECT_EQ(Value(box->Call(attack, static_cast<int>(kReturn))),
            canary.address());
  ExpectCompartmentWorks(box.get());
  ExpectKeyFault(box.get(), box->Call(attack, static_cast<int>(kWrite)).status(),
                 canary.address(), internal::Keys().trusted);
  EXPECT_TRUE(canary.Intact());
  ResetAndExpectWorking(box.get());
  // (MallocForgedHot leaves it in the slot: the runtime takes it as a free.)
  ExpectFreeViolation(box.get(),
                      box->Call(attack, static_cast<int>(kFreeIt)).status(),
                      canary.address());
  EXPECT_TRUE(canary.Intact());
  ExpectHostNeverHandsOut(canary.address(), kCanaryBytes);
  ResetAndExpectWorking(box.get());
}

TEST(HeapCacheTamperTest, ForgedHotEntryFaultsOnUseAndIsABadFree) {
  ExpectForgedHostEntryContained(&MallocForgedHot);
}

// The compartment's copy of the class bytes (heap_cache.h) forged: its own
// 16-byte region goes on the 4 KiB magazine's hot stack, and its next 4 KiB
// malloc hands it out. Only the compartment is misled: the runtime takes
// the region back by its own class.
uint64_t FreeWithForgedClass(uint64_t) {
  void* p = Malloc(16);
  HeapCache* cache = MyCache();
  const uintptr_t off = reinterpret_cast<uintptr_t>(p) - cache->window;
  reinterpret_cast<uint8_t*>(cache->window)[off >> 12] =
      static_cast<uint8_t>(ClassOf(4096) + 1);
  Free(p);
  void* q = Malloc(4096);
  memset(q, 0x41, 16);
  Free(q);  // on the 4 KiB hot stack again; checked when the call returns
  return q == p ? 1 : 0;
}

TEST(HeapCacheTamperTest, ForgedClassCopyMisleadsOnlyTheCompartment) {
  auto box = MakeBox({.name = "classes"});
  HostCanary canary;
  EXPECT_EQ(Value(box->Call(&FreeWithForgedClass, uint64_t{0})), 1u);
  EXPECT_EQ(box->last_fault(), nullptr);
  EXPECT_EQ(box->stats().bytes_in_use, 0u);
  EXPECT_TRUE(canary.Intact());
  ExpectCompartmentWorks(box.get());
  ResetAndExpectWorking(box.get());
}

// The window free() reads the class copy from, forged to the host heap: the
// read has the compartment's rights only.
void FreeWithForgedWindow(uint64_t host_pointer) {
  Free(Malloc(16));  // the cache exists
  HeapCache* cache = MyCache();
  cache->window = host_pointer - 1;
  // Page 1 of the forged window: its class byte is host_pointer's.
  Free(reinterpret_cast<void*>(host_pointer - 1 + 4096));
}

TEST(HeapCacheTamperTest, ForgedCacheWindowFaultsOnTheHostsKey) {
  auto box = MakeBox({.name = "window"});
  HostCanary canary;
  ExpectKeyFault(box.get(),
                 box->Call(&FreeWithForgedWindow,
                           static_cast<uint64_t>(canary.address())),
                 canary.address(), internal::Keys().trusted);
  EXPECT_TRUE(canary.Intact());
  ResetAndExpectWorking(box.get());
  HostAllocatesHeavily();
}

// Without a key check nothing would stop it: the fast path believes the
// magazine, and malloc inside returns exactly the forged pointer.
TEST(HeapCacheTamperTest, ControlMallocReturnsAForgedMagazineEntry) {
  auto box = MakeBox({.name = "forger"});
  HostCanary canary;
  forged_target = canary.address();
  EXPECT_EQ(Value(box->Call(&MallocForged, static_cast<int>(kReturn))),
            canary.address());
  // The runtime did not take the forged entry for one of its regions.
  ExpectCompartmentWorks(box.get());
  EXPECT_TRUE(canary.Intact());
}

TEST(HeapCacheTamperTest, ForgedHostHeapEntryFaultsOnUse) {
  auto box = MakeBox({.name = "forger"});
  HostCanary canary;
  forged_target = canary.address();
  for (int use : {kWrite, kRead}) {
    ExpectKeyFault(box.get(), box->Call(&MallocForged, use).status(),
                   canary.address(), internal::Keys().trusted);
    EXPECT_TRUE(canary.Intact());
    ResetAndExpectWorking(box.get());
  }
  ExpectFreeViolation(
      box.get(), box->Call(&MallocForged, static_cast<int>(kFreeIt)).status(),
      canary.address());
  EXPECT_TRUE(canary.Intact());
  ExpectHostNeverHandsOut(canary.address(), kCanaryBytes);
  ResetAndExpectWorking(box.get());
  HostAllocatesHeavily();
}

TEST(HeapCacheTamperTest, ForgedHostGlobalEntryFaultsOnWrite) {
  auto box = MakeBox({.name = "forger"});
  forged_target = reinterpret_cast<uintptr_t>(&host_global) & ~uintptr_t{15};
  ExpectKeyFault(box.get(),
                 box->Call(&MallocForged, static_cast<int>(kWrite)).status(),
                 forged_target, internal::Keys().trusted);  // host data
  EXPECT_EQ(host_global, 0x600d);
  ResetAndExpectWorking(box.get());
}

// A forged entry of forged_size bytes pointing at another compartment's
// live region: faults on use, a bad free, the victim's data intact.
void ExpectForeignEntryContained() {
  auto box = MakeBox({.name = "forger"});
  auto victim = MakeBox({.name = "victim"});
  const uintptr_t other =
      Value(victim->Call(&MallocFilled, forged_size, uint64_t{5}));
  ASSERT_NE(other, 0u);
  forged_target = other;
  for (int use : {kWrite, kRead}) {
    ExpectKeyFault(box.get(), box->Call(&MallocForged, use).status(), other,
                   victim->pkey());
    ResetAndExpectWorking(box.get());
  }
  ExpectFreeViolation(
      box.get(), box->Call(&MallocForged, static_cast<int>(kFreeIt)).status(),
      other);
  EXPECT_EQ(Value(victim->Call(&CheckFilled,
                               reinterpret_cast<const void*>(other),
                               forged_size, uint64_t{5})),
            1);
  EXPECT_TRUE(victim->Call(&FreeOne, reinterpret_cast<void*>(other)).ok());
  EXPECT_EQ(victim->last_fault(), nullptr);
}

TEST(HeapCacheTamperTest, ForgedEntryOfAnotherCompartmentFaults) {
  ExpectForeignEntryContained();
}

// The magazines above 4 KiB (issue 16, item 5: 5 KiB to 64 KiB, a few
// regions each) take the same forged entries as the small ones, and the
// same checks contain them.
class BigClassTamperTest : public ::testing::TestWithParam<size_t> {
 protected:
  void SetUp() override { forged_size = GetParam(); }
  void TearDown() override { forged_size = 64; }
};

TEST_P(BigClassTamperTest, ForgedHostEntryIsBelievedButFaultsAndIsABadFree) {
  ExpectForgedHostEntryContained(&MallocForged);
  ExpectForgedHostEntryContained(&MallocForgedHot);
}

TEST_P(BigClassTamperTest, ForgedEntryOfAnotherCompartmentFaults) {
  ExpectForeignEntryContained();
}

// Double frees of a big region: into the hot slot and then the buffer, the
// buffer twice, and a region already back in its magazine.
enum DoubleFree : int { kHotThenBuffer, kBufferTwice };
void DoubleFreeBig(size_t n, int how, Scratch* s) {
  void* p = Malloc(n);
  s->value = reinterpret_cast<uintptr_t>(p);
  if (how == kBufferTwice) Escape(Malloc(n));  // p is not malloc's last
  Free(p);
  Free(p);
  s->reached = 1;
}

uintptr_t MallocAndFreeBig(size_t n) {
  void* p = Malloc(n);
  Free(p);
  return reinterpret_cast<uintptr_t>(p);
}

TEST_P(BigClassTamperTest, DoubleFreeIsCaught) {
  const size_t size = GetParam();
  auto box = MakeBox({.name = "big-double"});
  for (int how : {kHotThenBuffer, kBufferTwice}) {
    Scratch* s = NewScratch(box.get());
    ASSERT_NE(s, nullptr);
    absl::Status st = box->Call(&DoubleFreeBig, size, how, s);
    EXPECT_TRUE(box->Contains(reinterpret_cast<void*>(s->value), size));
    ExpectFreeViolation(box.get(), st, s->value);
    ResetAndExpectWorking(box.get());
  }
  // Freed in one call (back in its magazine, not live), freed again.
  const uintptr_t p = Value(box->Call(&MallocAndFreeBig, size));
  ASSERT_NE(p, 0u);
  ExpectFreeViolation(
      box.get(), box->Call(&FreeOne, reinterpret_cast<void*>(p)), p);
  ResetAndExpectWorking(box.get());
}

INSTANTIATE_TEST_SUITE_P(
    Sizes, BigClassTamperTest,
    ::testing::Values(size_t{5000}, size_t{14336}, size_t{16384},
                      size_t{40000}, size_t{65536}));

// The free buffer's count and slots are the compartment's to write.
enum BufferFill : int { kZeros, kHostPointers, kRandom, kOwnTwice };
void ForgeFreeBuffer(uint32_t count, int fill, uint64_t host_pointer,
                     Scratch* s) {
  void* own[32];
  for (void*& p : own) p = Malloc(32);
  HeapCache* cache = MyCache();
  XorShift rng{12345};
  for (uint32_t i = 0; i < kFreeSlots; ++i) {
    void* v = nullptr;
    switch (fill) {
      case kZeros: break;
      case kHostPointers:
        v = reinterpret_cast<void*>(host_pointer + 16 * i);
        break;
      case kRandom: v = reinterpret_cast<void*>(rng.Next()); break;
      case kOwnTwice: v = own[(i / 2) % 32]; break;
    }
    cache->frees.slots[i] = v;
  }
  s->value = reinterpret_cast<uintptr_t>(cache->frees.slots[0]);
  if (fill == kOwnTwice) s->value = reinterpret_cast<uintptr_t>(own[0]);
  cache->frees.count = count;
  s->reached = 1;
}

TEST(HeapCacheTamperTest, FreeBufferWithHugeCountAndGarbage) {
  auto box = MakeBox({.name = "buffer"});
  HostCanary canary;
  for (uint32_t count : {kFreeSlots + 1, 0x80000000u, 0xffffffffu}) {
    for (int fill : {kHostPointers, kRandom, kOwnTwice}) {
      Scratch* s = NewScratch(box.get());
      ASSERT_NE(s, nullptr);
      absl::Status st = box->Call(&ForgeFreeBuffer, count, fill,
                                  static_cast<uint64_t>(canary.address()), s);
      EXPECT_EQ(s->reached, 1);
      // The first pointer that is no live allocation is named: slot 0, or
      // for kOwnTwice the second free of own[0].
      ExpectFreeViolation(box.get(), st, s->value);
      EXPECT_TRUE(canary.Intact());
      ResetAndExpectWorking(box.get());
    }
    // A huge count over empty slots frees nothing and hurts nothing.
    Scratch* s = NewScratch(box.get());
    ASSERT_NE(s, nullptr);
    EXPECT_TRUE(box->Call(&ForgeFreeBuffer, count, static_cast<int>(kZeros),
                          uint64_t{0}, s)
                    .ok());
    ExpectCompartmentWorks(box.get());
  }
  ExpectHostNeverHandsOut(canary.address(), kCanaryBytes);
  HostAllocatesHeavily();
}

// A huge count, then a legitimate free: the free enters the allocator,
// which checks the (garbage) buffer first.
void HugeCountThenFree(uint64_t host_pointer, Scratch* s) {
  void* p = Malloc(32);
  HeapCache* cache = MyCache();
  // A full hot stack: the free takes the buffer's path.
  internal::MagazineAt(cache, ClassOf(32)).nhot = internal::kHotSlots;
  for (uint32_t i = 0; i < kFreeSlots; ++i) {
    cache->frees.slots[i] = reinterpret_cast<void*>(host_pointer);
  }
  cache->frees.count = 0xfffffff0u;
  Free(p);
  s->reached = 1;
}

TEST(HeapCacheTamperTest, HugeFreeCountThenAFreeEntersAndIsCaught) {
  auto box = MakeBox({.name = "buffer"});
  HostCanary canary;
  Scratch* s = NewScratch(box.get());
  ASSERT_NE(s, nullptr);
  ExpectFreeViolation(
      box.get(),
      box->Call(&HugeCountThenFree, static_cast<uint64_t>(canary.address()), s),
      canary.address());
  EXPECT_EQ(s->reached, 0);
  EXPECT_TRUE(canary.Intact());
  ResetAndExpectWorking(box.get());
}

// Every magazine count set to `value`, then one malloc of every class:
// each enters the allocator and gets a fresh region of its own heap.
// (Raising a count hides what was popped since the runtime last looked:
// freeing such a region later is a hostile free, see ReplayMagazine. So the
// runtime looks first: malloc_usable_size always enters.)
void HugeMagazineCounts(uint32_t value, uintptr_t* out) {
  void* first = Malloc(16);
  Escape(reinterpret_cast<void*>(malloc_usable_size(first)));
  Free(first);
  HeapCache* cache = MyCache();
  for (size_t c = 0; c < kNumCachedClasses; ++c) {
    internal::MagazineAt(cache, c).count = value;
  }
  for (size_t c = 0; c < kNumCachedClasses; ++c) {
    void* p = Malloc(kClassSize[c]);
    if (p != nullptr) FillPattern(p, kClassSize[c], c, 1);
    out[c] = reinterpret_cast<uintptr_t>(p);
  }
  for (size_t c = 0; c < kNumCachedClasses; ++c) {
    if (!CheckPattern(reinterpret_cast<void*>(out[c]), kClassSize[c], c, 1)) {
      out[c] = 1;
    }
  }
  for (size_t c = 0; c < kNumCachedClasses; ++c) {
    Free(reinterpret_cast<void*>(out[c]));
  }
}

TEST(HeapCacheTamperTest, HugeMagazineCountsOnlyCostARefill) {
  auto box = MakeBox({.name = "counts"});
  for (uint32_t value : {kMagazineSlots + 1, 0x80000000u, 0xffffffffu}) {
    absl::StatusOr<void*> out =
        box->Allocate(kNumCachedClasses * sizeof(uintptr_t));
    ASSERT_TRUE(out.ok());
    auto* regions = static_cast<uintptr_t*>(*out);
    ASSERT_TRUE(box->Call(&HugeMagazineCounts, value, regions).ok())
        << box->last_fault()->what;
    std::vector<uintptr_t> seen;
    for (size_t c = 0; c < kNumCachedClasses; ++c) {
      ASSERT_GT(regions[c], 1u) << "class " << c;
      EXPECT_TRUE(
          box->Contains(reinterpret_cast<void*>(regions[c]), kClassSize[c]))
          << c;
      seen.push_back(regions[c]);
    }
    std::sort(seen.begin(), seen.end());
    EXPECT_EQ(std::adjacent_find(seen.begin(), seen.end()), seen.end());
    box->Free(regions);
    ExpectCompartmentWorks(box.get());
    EXPECT_EQ(box->stats().bytes_in_use, 0u);
  }
}

// Pops a region, puts the count back and pops it again: the same region
// twice. That only hurts its own heap; freeing both is a double free.
void ReplayMagazine(Scratch* s) {
  Free(Malloc(64));
  Magazine& m = internal::MagazineAt(MyCache(), ClassOf(64));
  void* first = Malloc(64);
  m.count = m.count + 1;
  void* second = Malloc(64);
  s->value = reinterpret_cast<uintptr_t>(first);
  s->extra = reinterpret_cast<uintptr_t>(second);
  Free(first);
  Free(second);
  s->reached = 1;
}

TEST(HeapCacheTamperTest, ReplayedRegionFreedTwiceIsADoubleFree) {
  auto box = MakeBox({.name = "replay"});
  Scratch* s = NewScratch(box.get());
  ASSERT_NE(s, nullptr);
  absl::Status st = box->Call(&ReplayMagazine, s);
  EXPECT_EQ(s->value, s->extra);  // the same region, handed out twice
  EXPECT_TRUE(box->Contains(reinterpret_cast<void*>(s->value), 64));
  ExpectFreeViolation(box.get(), st, s->value);
  ResetAndExpectWorking(box.get());
}

// Lowering a count makes the runtime count the regions as taken: the
// compartment may then free them (its own memory), nothing else.
uint64_t ZeroCountsThenFreeWhatWasLeft() {
  Free(Malloc(64));
  Magazine& m = internal::MagazineAt(MyCache(), ClassOf(64));
  const uint32_t n = m.count;
  void* left[kMagazineSlots];
  for (uint32_t i = 0; i < n; ++i) left[i] = m.slots[i];
  m.count = 0;
  for (uint32_t i = 0; i < n; ++i) Free(left[i]);
  return n;
}

TEST(HeapCacheTamperTest, LoweredCountsOnlyMoveItsOwnRegions) {
  auto box = MakeBox({.name = "lower"});
  EXPECT_GT(Value(box->Call(&ZeroCountsThenFreeWhatWasLeft)), 0u);
  ExpectCompartmentWorks(box.get());
  EXPECT_EQ(box->stats().bytes_in_use, 0u);
}

// The cache table is on the selector key: compartment code cannot point
// its cache (or another compartment's) somewhere else.
void RedirectCacheTable(uintptr_t fake) {
  internal::SelectorPage* sel = mpkbox_tls_thread;
  internal::HeapCacheTable(sel)[internal::SlotOfDomain(sel->current_domain)] =
      reinterpret_cast<HeapCache*>(fake);
}

TEST(HeapCacheTamperTest, CacheTableIsReadOnlyInside) {
  auto box = MakeBox({.name = "table"});
  HostCanary canary;
  const uintptr_t cache = Value(box->Call(&MyCacheAddress));
  ASSERT_NE(cache, 0u);
  internal::SelectorPage* sel = mpkbox_tls_thread;
  HeapCache** table = internal::HeapCacheTable(sel);
  HeapCache** entry = std::find(table, table + internal::kMaxCompartments,
                                reinterpret_cast<HeapCache*>(cache));
  ASSERT_NE(entry, table + internal::kMaxCompartments);
  ExpectKeyFault(box.get(), box->Call(&RedirectCacheTable, canary.address()),
                 reinterpret_cast<uintptr_t>(entry), internal::Keys().selector);
  EXPECT_EQ(*entry, reinterpret_cast<HeapCache*>(cache));
  ResetAndExpectWorking(box.get());
}

// Compartment code on one thread scribbles on another thread's HeapCache
// (same compartment, same key) while that thread enters the allocator
// again and again: the runtime must read each count and slot once and
// trust none.
std::atomic<int> race_stop{0};  // host global: compartment code reads it

enum RaceMode : int {
  kCountsOnly,  // counts (huge ones too) over empty free slots: all lies
                // the runtime must survive without failing a single call
  kEverything,  // garbage slots and forged magazine entries as well
};

volatile Magazine* MagazineOfClass(volatile HeapCache* cache, size_t c) {
  return reinterpret_cast<volatile Magazine*>(
      reinterpret_cast<volatile char*>(cache) + internal::MagazineOffset(c));
}

void ScribbleOtherCache(uintptr_t cache_address, uint64_t host_pointer,
                        int mode) {
  auto* cache = reinterpret_cast<volatile HeapCache*>(cache_address);
  if (mode == kCountsOnly) {
    for (uint32_t i = 0; i < kFreeSlots; ++i) cache->frees.slots[i] = nullptr;
  }
  XorShift rng{0xabcdef12345ull};
  while (race_stop.load(std::memory_order_relaxed) == 0) {
    for (int i = 0; i < 256; ++i) {
      const uint64_t r = rng.Next();
      const uint64_t v = r % 3 == 0 ? host_pointer : rng.Next();
      switch (mode == kCountsOnly ? r % 3 : r % 5) {
        case 0: cache->frees.count = static_cast<uint32_t>(r >> 32); break;
        case 1:
          MagazineOfClass(cache, (r >> 8) % kNumCachedClasses)->count =
              static_cast<uint32_t>(r >> 58);
          break;
        case 2: cache->frees.count = static_cast<uint32_t>(r >> 56); break;
        case 3:
          cache->frees.slots[(r >> 8) % kFreeSlots] =
              reinterpret_cast<void*>(v);
          break;
        case 4: {
          const size_t c = (r >> 8) % kNumCachedClasses;
          MagazineOfClass(cache, c)
              ->slots[(r >> 16) % internal::MagazineSlotsOf(c)] =
              reinterpret_cast<void*>(v);
          break;
        }
      }
    }
  }
}

// Enters the allocator three times a round (a malloc above every cached
// class, its size, its free): each entry reconciles the magazines and
// flushes the free buffer. A cached size would be wrong here: a lowered
// count makes the runtime count that magazine's regions as taken, live
// for good, and a refilled class would leak up to a magazine a lie until
// the heap's limit refuses (the liar's loss, but a failed call).
uint64_t EntryChurn(int rounds) {
  static_assert(internal::kMaxCachedSize < 80000);
  for (int i = 0; i < rounds; ++i) {
    const uint64_t n = 80000 + static_cast<uint64_t>(i % 3000);
    const uint64_t p = ForgeEntry(internal::kOpMalloc, n, 0);
    if (p == 0) return 0;
    *reinterpret_cast<volatile char*>(p + n - 1) = 1;
    if (ForgeEntry(internal::kOpUsableSize, p, 0) < n) return 0;
    ForgeEntry(internal::kOpFree, p, 0);
  }
  return 1;
}

class CacheRaceTest : public ::testing::TestWithParam<int> {};

TEST_P(CacheRaceTest, AnotherThreadScribblesOnTheCacheInUse) {
  const int mode = GetParam();
  auto box = MakeBox({.name = "racer"});
  HostCanary canary;
  const uintptr_t cache = Value(box->Call(&MyCacheAddress));
  ASSERT_NE(cache, 0u);
  race_stop = 0;
  std::atomic<int> started{0};
  absl::Status scribbler_status;
  std::thread scribbler([&] {
    started = 1;
    scribbler_status = box->Call(&ScribbleOtherCache, cache,
                                 static_cast<uint64_t>(canary.address()), mode);
  });
  while (started.load() == 0) std::this_thread::yield();
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  int ok = 0;
  absl::Status last;
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(1500);
  while (std::chrono::steady_clock::now() < deadline) {
    absl::StatusOr<Tainted<uint64_t>> r = mode == kCountsOnly
                                              ? box->Call(&EntryChurn, 200)
                                              : box->Call(&Churn, 2000);
    if (!r.ok()) {
      last = r.status();
      break;
    }
    EXPECT_NE(Value(r), 0u);
    ++ok;
  }
  race_stop = 1;
  scribbler.join();
  if (mode == kCountsOnly) {
    // Lies about counts cost the liar nothing but accounting.
    EXPECT_TRUE(last.ok()) << last;
    EXPECT_GT(ok, 10);
  } else if (!last.ok()) {
    // A forged magazine entry used, or a garbage free caught: kAborted.
    EXPECT_EQ(last.code(), absl::StatusCode::kAborted) << last;
    EXPECT_THAT(std::string(last.message()), HasSubstr("compartment 'racer'"));
  }
  EXPECT_TRUE(scribbler_status.ok() ||
              scribbler_status.code() == absl::StatusCode::kFailedPrecondition)
      << scribbler_status;
  EXPECT_TRUE(canary.Intact());
  EXPECT_EQ(host_global, 0x600d);
  ResetAndExpectWorking(box.get());
  HostAllocatesHeavily();
}

INSTANTIATE_TEST_SUITE_P(CountsOnlyAndEverything, CacheRaceTest,
                         ::testing::Values(kCountsOnly, kEverything));

// A thread leaves garbage in its cache and the call faults before the
// frees are checked; then the thread exits, and the runtime hands what the
// thread cached back to the arena (the heap stays): it must free only the
// compartment's live allocations, once.
void GarbageCacheThenFault(uint64_t host_pointer) {
  void* own[16];
  for (void*& p : own) p = Malloc(48);
  HeapCache* cache = MyCache();
  for (uint32_t i = 0; i < kFreeSlots; ++i) {
    cache->frees.slots[i] =
        i % 3 == 0 ? reinterpret_cast<void*>(host_pointer)
                   : own[(i / 3) % 16];  // each of its own, several times
  }
  cache->frees.count = 0xffffffffu;
  for (size_t c = 0; c < kNumCachedClasses; ++c) {
    internal::MagazineAt(cache, c).count = c % 2 == 0 ? 0 : 0xffffffffu;
  }
  __builtin_trap();
}

TEST(HeapCacheTamperTest, ThreadExitAfterAFaultWithAGarbageCache) {
  auto box = MakeBox({.name = "leaver"});
  HostCanary canary;
  absl::Status st;
  std::thread t([&] {
    st = box->Call(&GarbageCacheThenFault,
                   static_cast<uint64_t>(canary.address()));
  });
  t.join();  // the thread's cache goes back with the thread
  EXPECT_EQ(st.code(), absl::StatusCode::kAborted) << st;
  EXPECT_TRUE(canary.Intact());
  ExpectHostNeverHandsOut(canary.address(), kCanaryBytes);
  // The heap (not reset) still serves the host's Allocate.
  for (int i = 0; i < 50; ++i) {
    absl::StatusOr<void*> p = box->Allocate(48);
    ASSERT_TRUE(p.ok());
    memset(*p, 3, 48);
    EXPECT_TRUE(box->TryFree(*p).ok());
  }
  HostAllocatesHeavily();
  ResetAndExpectWorking(box.get());
}

}  // namespace
}  // namespace mpkbox::heap_attack
