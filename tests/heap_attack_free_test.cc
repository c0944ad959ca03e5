// Hostile frees (heap attacks: heap_attack_util.h): of the host heap, host
// stack, host global, another compartment's allocation, interior pointers,
// double frees, wild pointers, its own stack, regions still in its cache and
// its cache itself, through each path: the free buffer checked when the call
// returns, a full buffer that makes the free enter the allocator, realloc,
// and a first free before the thread has a cache.
#include <dlfcn.h>
#include <malloc.h>

#include <cstdint>
#include <new>
#include <string>
#include <tuple>
#include <vector>

#include "allocator/address_zone.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "allocator/heap_cache.h"
#include "mpkbox/mpkbox.h"
#include "tests/heap_attack_util.h"
#include "tests/test_util.h"

namespace mpkbox::heap_attack {
namespace {

using internal::HeapCache;
using internal::kFreeSlots;
using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::StackAddress;
using ::mpkbox::testing::Value;

enum class Path {
  kBuffered,    // into the free buffer, checked when the call returns
  kBufferFull,  // the buffer is full: the free enters the allocator
  kRealloc,     // realloc always enters the allocator
  kNoCacheYet,  // the thread's first heap operation: no cache to buffer in
};

// The free itself returns: the call fails when it returns.
void FreeBuffered(uintptr_t bad, Scratch* s) {
  Free(Malloc(48));  // the cache exists
  s->had_cache = MyCache() != nullptr;
  Free(reinterpret_cast<void*>(bad));
  s->reached = 1;
}

// Fills the free buffer with legitimate frees, then frees `bad`: that free
// enters the allocator and the call ends there.
void FreeWithFullBuffer(uintptr_t bad, Scratch* s) {
  // More than the buffer holds: the first frees of a class fill its
  // magazine's hot stack, not the buffer.
  void* live[kFreeSlots + internal::kHotSlots + 1];
  for (void*& p : live) p = Malloc(16);
  HeapCache* cache = MyCache();
  s->had_cache = cache != nullptr;
  // The hot stack of the class bad's page has (in the compartment's copy of
  // the class bytes) full too: only then does its free take the buffer.
  const uintptr_t off = bad - cache->window;
  if (off < internal::kWindowBytes) {
    const uint8_t c = reinterpret_cast<const uint8_t*>(cache->window)[off >> 12];
    if (c != 0 && c <= internal::kNumCachedClasses) {
      void* fill[internal::kHotSlots];
      for (void*& p : fill) p = Malloc(internal::kClassSize[c - 1]);
      for (void* p : fill) Free(p);
    }
  }
  for (uint32_t i = 0;
       cache->frees.count < kFreeSlots && i < kFreeSlots + internal::kHotSlots;
       ++i) {
    Free(live[i]);
  }
  s->value = cache->frees.count;
  Free(reinterpret_cast<void*>(bad));
  s->reached = 1;
}

void ReallocBad(uintptr_t bad, Scratch* s) {
  Free(Malloc(48));
  s->had_cache = MyCache() != nullptr;
  s->value =
      reinterpret_cast<uintptr_t>(Realloc(reinterpret_cast<void*>(bad), 64));
  s->reached = 1;
}

void FreeWithoutCache(uintptr_t bad, Scratch* s) {
  s->had_cache = MyCache() != nullptr;
  Free(reinterpret_cast<void*>(bad));
  s->reached = 1;
}

enum class Target {
  kHostHeap,
  kHostStack,
  kHostGlobal,
  kOtherCompartment,   // a live allocation of another compartment
  kInterior,           // 16 bytes into its own live allocation
  kUnalignedInterior,  // 8 bytes into it
  kDoubleFree,         // its own allocation, freed already
  kWild,               // nothing maps it
  kNonCanonical,
  kOwnStack,
  kUnpoppedRegion,  // in its magazine, never handed out
  kOwnHeapCache,    // the cache itself: compartment memory, not live
  kAmbientHeap,     // a live allocation of ld.so in the zone's key-0
                    // window: the link_map of a library dlopen loads
};

const char* Name(Path p) {
  switch (p) {
    case Path::kBuffered: return "Buffered";
    case Path::kBufferFull: return "BufferFull";
    case Path::kRealloc: return "Realloc";
    case Path::kNoCacheYet: return "NoCacheYet";
  }
  return "?";
}
const char* Name(Target t) {
  switch (t) {
    case Target::kHostHeap: return "HostHeap";
    case Target::kHostStack: return "HostStack";
    case Target::kHostGlobal: return "HostGlobal";
    case Target::kOtherCompartment: return "OtherCompartment";
    case Target::kInterior: return "Interior";
    case Target::kUnalignedInterior: return "UnalignedInterior";
    case Target::kDoubleFree: return "DoubleFree";
    case Target::kWild: return "Wild";
    case Target::kNonCanonical: return "NonCanonical";
    case Target::kOwnStack: return "OwnStack";
    case Target::kUnpoppedRegion: return "UnpoppedRegion";
    case Target::kOwnHeapCache: return "OwnHeapCache";
    case Target::kAmbientHeap: return "AmbientHeap";
  }
  return "?";
}

// Targets whose set-up gives the thread a cache cannot go with kNoCacheYet.
bool SetUpMakesCache(Target t) {
  return t == Target::kDoubleFree || t == Target::kUnpoppedRegion ||
         t == Target::kOwnHeapCache;
}

using FreeCase = std::tuple<Path, Target>;

std::vector<FreeCase> AllFreeCases() {
  std::vector<FreeCase> cases;
  for (Path p : {Path::kBuffered, Path::kBufferFull, Path::kRealloc,
                 Path::kNoCacheYet}) {
    for (int t = 0; t <= static_cast<int>(Target::kAmbientHeap); ++t) {
      if (p == Path::kNoCacheYet && SetUpMakesCache(static_cast<Target>(t))) {
        continue;
      }
      cases.emplace_back(p, static_cast<Target>(t));
    }
  }
  return cases;
}

class HostileFreeTest : public ::testing::TestWithParam<FreeCase> {};

TEST_P(HostileFreeTest, EndsTheCallAndFreesNothing) {
  const auto [path, target] = GetParam();
  auto a = MakeBox({.name = "attacker"});
  auto b = MakeBox({.name = "victim"});
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  HostCanary canary;
  volatile int host_local = 0x10ca1;
  Scratch* s = NewScratch(a.get());
  ASSERT_NE(s, nullptr);

  uintptr_t bad = 0;
  uintptr_t own = 0;  // the allocation an interior pointer points into
  uintptr_t other = 0;
  void* ambient = nullptr;  // a dlopen handle
  switch (target) {
    case Target::kHostHeap: bad = canary.address(); break;
    case Target::kHostStack:
      bad = reinterpret_cast<uintptr_t>(&host_local) & ~uintptr_t{15};
      break;
    case Target::kHostGlobal:
      bad = reinterpret_cast<uintptr_t>(&host_global);
      break;
    case Target::kOtherCompartment:
      other = Value(b->Call(&MallocFilled, size_t{64}, uint64_t{99}));
      ASSERT_NE(other, 0u);
      bad = other;
      break;
    case Target::kInterior:
    case Target::kUnalignedInterior: {
      absl::StatusOr<void*> p = a->Allocate(64);
      ASSERT_TRUE(p.ok());
      own = reinterpret_cast<uintptr_t>(*p);
      bad = own + (target == Target::kInterior ? 16 : 8);
      break;
    }
    case Target::kDoubleFree: {
      absl::StatusOr<void*> p = a->Allocate(64);
      ASSERT_TRUE(p.ok());
      bad = reinterpret_cast<uintptr_t>(*p);
      ASSERT_TRUE(a->Call(&FreeOne, *p).ok());  // the first, legitimate free
      break;
    }
    case Target::kWild: bad = 0x10000; break;
    case Target::kNonCanonical: bad = 0xdead00000000bee0ull; break;
    case Target::kOwnStack:
      bad = Value(a->Call(&StackAddress, 0)) & ~uintptr_t{15};
      break;
    case Target::kUnpoppedRegion:
      bad = Value(a->Call(&UnpoppedMagazineRegion, size_t{64}));
      ASSERT_NE(bad, 0u);
      ASSERT_TRUE(a->Contains(reinterpret_cast<void*>(bad), 64));
      break;
    case Target::kOwnHeapCache:
      bad = Value(a->Call(&MyCacheAddress));
      ASSERT_NE(bad, 0u);
      ASSERT_TRUE(a->Contains(reinterpret_cast<void*>(bad), sizeof(HeapCache)));
      break;
    case Target::kAmbientHeap:
      ambient = dlopen("libbz2.so.1.0", RTLD_NOW | RTLD_LOCAL);
      ASSERT_NE(ambient, nullptr) << dlerror();
      bad = reinterpret_cast<uintptr_t>(ambient);
      ASSERT_TRUE(internal::InZone(bad));
      ASSERT_EQ(internal::WindowOf(bad), internal::kAmbientWindow);
      ASSERT_GT(malloc_usable_size(ambient), 0u);  // live
      break;
  }
  // What it must never do: malloc_usable_size says nothing about it.
  if (path == Path::kBuffered) {
    // As an integer: Call refuses pointer arguments into host memory.
    EXPECT_EQ(Value(a->Call(+[](uintptr_t p) {
                return UsableSizeInside(reinterpret_cast<void*>(p));
              }, bad)),
              0u);
  }

  absl::Status st;
  switch (path) {
    case Path::kBuffered: st = a->Call(&FreeBuffered, bad, s); break;
    case Path::kBufferFull: st = a->Call(&FreeWithFullBuffer, bad, s); break;
    case Path::kRealloc: st = a->Call(&ReallocBad, bad, s); break;
    case Path::kNoCacheYet: st = a->Call(&FreeWithoutCache, bad, s); break;
  }
  ExpectFreeViolation(a.get(), st, bad);
  // The path taken is the one meant: a buffered free returns and the call
  // fails when it returns; every other path ends the call at the free.
  EXPECT_EQ(s->reached, path == Path::kBuffered ? 1 : 0);
  EXPECT_EQ(s->had_cache, path == Path::kNoCacheYet ? 0 : 1);
  if (path == Path::kBufferFull) {
    EXPECT_EQ(s->value, kFreeSlots);
  }

  // Nothing of the host changed and nothing was freed.
  EXPECT_TRUE(canary.Intact());
  EXPECT_EQ(host_global, 0x600d);
  EXPECT_EQ(host_local, 0x10ca1);
  if (target == Target::kHostHeap) {
    ExpectHostNeverHandsOut(canary.address(), kCanaryBytes);
  }
  if (own != 0) {
    EXPECT_TRUE(a->TryFree(reinterpret_cast<void*>(own)).ok())
        << "the allocation an interior pointer points into was freed";
  }
  if (ambient != nullptr) {  // ld.so's link_map is still its own
    EXPECT_GT(malloc_usable_size(ambient), 0u);
    EXPECT_NE(dlsym(ambient, "BZ2_bzlibVersion"), nullptr);
    EXPECT_EQ(dlclose(ambient), 0);
  }
  if (target == Target::kOtherCompartment) {
    EXPECT_EQ(Value(b->Call(&CheckFilled, reinterpret_cast<const void*>(other),
                            size_t{64}, uint64_t{99})),
              1);
    EXPECT_EQ(b->Call(&UsableSizeInside, reinterpret_cast<void*>(other))
                  ->UnverifiedValue("test"),
              64u);  // still live in b
    EXPECT_TRUE(b->Call(&FreeOne, reinterpret_cast<void*>(other)).ok());
    EXPECT_EQ(b->last_fault(), nullptr);
  }
  ResetAndExpectWorking(a.get());
  HostAllocatesHeavily();
}

INSTANTIATE_TEST_SUITE_P(EveryPathAndTarget, HostileFreeTest,
                         ::testing::ValuesIn(AllFreeCases()),
                         [](const ::testing::TestParamInfo<FreeCase>& param_info) {
                           return std::string(Name(std::get<0>(param_info.param))) +
                                  "_" + Name(std::get<1>(param_info.param));
                         });

// Both frees of a double free in the same batch of the buffer, and a double
// free across a flush (a realloc in between empties the buffer).
void DoubleFreeInOneBatch(Scratch* s) {
  void* p = Malloc(64);
  s->value = reinterpret_cast<uintptr_t>(p);
  Free(p);
  Free(p);
  s->reached = 1;
}
void DoubleFreeAcrossAFlush(Scratch* s) {
  void* p = Malloc(64);
  s->value = reinterpret_cast<uintptr_t>(p);
  Free(p);
  Free(Realloc(nullptr, 5000));  // enters the allocator: the buffer is checked
  s->extra = MyCache()->frees.count + MyCache()->frees.hot;
  Free(p);
  s->reached = 1;
}

TEST(HostileFreeTest, DoubleFreeInOneBatchAndAcrossAFlush) {
  auto box = MakeBox({.name = "twice"});
  for (auto* fn : {&DoubleFreeInOneBatch, &DoubleFreeAcrossAFlush}) {
    Scratch* s = NewScratch(box.get());
    ASSERT_NE(s, nullptr);
    absl::Status st = box->Call(fn, s);
    ExpectFreeViolation(box.get(), st, s->value);
    EXPECT_EQ(s->reached, 1);
    if (fn == &DoubleFreeAcrossAFlush) {
      EXPECT_EQ(s->extra, 1u);  // the realloc'd region's free
    }
    ResetAndExpectWorking(box.get());
  }
}

// The first of several bad frees is named; the good ones around it are
// released (the bitmap check is per pointer, not per batch).
void GoodAndBadFrees(uintptr_t bad, Scratch* s) {
  void* good[8];
  for (void*& p : good) p = Malloc(100);
  for (int i = 0; i < 8; ++i) {
    Free(good[i]);
    if (i == 3) Free(reinterpret_cast<void*>(bad));
    if (i == 5) Free(reinterpret_cast<void*>(bad + 4096));
  }
  s->reached = 1;
}

TEST(HostileFreeTest, FirstBadFreeOfABatchIsNamed) {
  auto box = MakeBox({.name = "batch"});
  HostCanary canary;
  Scratch* s = NewScratch(box.get());
  ASSERT_NE(s, nullptr);
  ExpectFreeViolation(box.get(),
                      box->Call(&GoodAndBadFrees, canary.address(), s),
                      canary.address());
  EXPECT_TRUE(canary.Intact());
  // The eight good frees went through: nothing is in use but the scratch.
  EXPECT_LE(box->stats().bytes_in_use, 2 * sizeof(Scratch) + 16);
  ResetAndExpectWorking(box.get());
}

// operator delete and the sized and aligned forms go the same way.
void DeleteHostPointer(uintptr_t bad) {
  ::operator delete (reinterpret_cast<void*>(Opaque(bad)), size_t{64},
                     std::align_val_t{64});
}

TEST(HostileFreeTest, DeleteOfAHostPointer) {
  auto box = MakeBox({.name = "deleter"});
  HostCanary canary;
  ExpectFreeViolation(box.get(),
                      box->Call(&DeleteHostPointer, canary.address()),
                      canary.address());
  EXPECT_TRUE(canary.Intact());
  ExpectHostNeverHandsOut(canary.address(), kCanaryBytes);
  ResetAndExpectWorking(box.get());
}

// The control for ExpectHostNeverHandsOut: the host heap hands a freed
// region out again at once, so a hostile free that went through would be
// seen.
TEST(HostileFreeTest, ControlHostReusesWhatItFrees) {
  for (size_t bytes : {size_t{64}, kCanaryBytes}) {
    void* p = Malloc(bytes);
    Free(p);
    void* q = Malloc(bytes);
    EXPECT_EQ(q, p) << bytes;
    Free(q);
  }
}

}  // namespace
}  // namespace mpkbox::heap_attack
