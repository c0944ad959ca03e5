// Attacks on the heaps (DESIGN.md 6, items 9, 10 and 11), done from
// compartment code for real, as an attacker would:
// 1. hostile frees (host heap, host stack, host global, another
//    compartment's allocation, interior pointers, double frees, wild
//    pointers, its own stack, regions still in its cache, its cache itself),
//    through each path: the free buffer checked when the call returns, a full
//    buffer that makes the free enter the allocator, realloc, and a first
//    free before the thread has a cache;
// 2. tampering with its own HeapCache: forged magazine entries, huge counts,
//    garbage in the free buffer, replayed regions, the cache table, another
//    thread scribbling on the cache in use, a thread that exits with a
//    garbage cache;
// 3. forged calls of the allocator entry (callback 0) with any op code and
//    arguments, what the entry leaves in registers, and jemalloc's own API
//    (mallocx, dallocx, mallctl) called directly, bypassing the entry;
// 4. regions moving between the host heap and a compartment heap, both ways,
//    small, large and huge;
// 5. heap exhaustion, alignment tricks, a deadline hit inside allocation;
// 6. a compartment that corrupts its own heap (overflows, its whole window).
// Each attack must be stopped (kAborted naming the compartment and the
// address, or the escape simply fails), the host's memory must be unchanged,
// the host must go on allocating heavily, and the compartment must work
// after Reset(). Tests named Control* show what a check stops, by doing the
// same thing where nothing stops it.
#include <dlfcn.h>
#include <errno.h>
#include <jemalloc/jemalloc.h>
#include <link.h>
#include <malloc.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <memory>
#include <new>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "allocator/address_zone.h"
#include "allocator/compartment_heap.h"
#include "allocator/host_heap.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpkbox/internal/heap_cache.h"
#include "mpkbox/mpkbox.h"
#include "runtime/fault_report.h"
#include "runtime/runtime_state.h"
#include "tests/test_util.h"

extern "C" char mpkbox_callback_stubs[];  // stub 0: the allocator entry

namespace mpkbox {
namespace {

using internal::HeapCache;
using internal::kClassSize;
using internal::kFreeSlots;
using internal::kMagazineSlots;
using internal::kNumCachedClasses;
using internal::Magazine;
using ::mpkbox::internal::PkeyOfAddress;
using ::mpkbox::testing::Churn;
using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::StackAddress;
using ::mpkbox::testing::UnderEmulation;
using ::mpkbox::testing::Value;
using ::testing::HasSubstr;

// ---- helpers shared by host and compartment code ---------------------------

// GCC deletes a malloc whose result is only freed, and stores to memory
// nobody reads: everything goes through these.
template <typename T>
[[gnu::always_inline]] inline T Opaque(T v) {
  asm volatile("" : "+r"(v));
  return v;
}
[[gnu::always_inline]] inline void Escape(const void* p) {
  asm volatile("" : : "r"(p) : "memory");
}
[[gnu::noinline]] void* Malloc(size_t n) { return Opaque(malloc(Opaque(n))); }
[[gnu::noinline]] void Free(void* p) { free(Opaque(p)); }
[[gnu::noinline]] void* Realloc(void* p, size_t n) {
  return Opaque(realloc(Opaque(p), Opaque(n)));
}

uint8_t PatternByte(uint64_t seed, size_t i) {
  return static_cast<uint8_t>((seed * 0x9e3779b97f4a7c15ull + i * 131) >> 24);
}

// Writes the pattern every `stride` bytes and at the last byte.
void FillPattern(void* p, size_t n, uint64_t seed, size_t stride = 61) {
  auto* b = static_cast<uint8_t*>(p);
  for (size_t i = 0; i < n; i += stride) b[i] = PatternByte(seed, i);
  if (n != 0) b[n - 1] = PatternByte(seed, n - 1);
  Escape(p);
}
bool CheckPattern(const void* p, size_t n, uint64_t seed, size_t stride = 61) {
  const auto* b = static_cast<const uint8_t*>(p);
  for (size_t i = 0; i < n; i += stride) {
    if (b[i] != PatternByte(seed, i)) return false;
  }
  return n == 0 || b[n - 1] == PatternByte(seed, n - 1);
}
// The first `n` bytes of a region of `old_n` filled by FillPattern (after a
// realloc that kept only that much).
bool CheckPrefix(const void* p, size_t n, size_t old_n, uint64_t seed) {
  const auto* b = static_cast<const uint8_t*>(p);
  for (size_t i = 0; i < n; i += 61) {
    if (b[i] != PatternByte(seed, i)) return false;
  }
  return old_n > n || old_n == 0 ||
         b[old_n - 1] == PatternByte(seed, old_n - 1);
}

struct XorShift {
  uint64_t s;
  uint64_t Next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
};

size_t ClassOf(size_t n) { return internal::kSizeClassOf.of[(n + 15) / 16]; }

// ---- host state that no attack may change ----------------------------------

int host_global = 0x600d;
constexpr size_t kCanaryBytes = 4096;

// A live host heap allocation full of a pattern.
struct HostCanary {
  std::unique_ptr<uint8_t[]> heap{new uint8_t[kCanaryBytes]};
  HostCanary() {
    for (size_t i = 0; i < kCanaryBytes; ++i) heap[i] = PatternByte(7, i);
  }
  bool Intact() const {
    for (size_t i = 0; i < kCanaryBytes; ++i) {
      if (heap[i] != PatternByte(7, i)) return false;
    }
    return true;
  }
  uintptr_t address() const { return reinterpret_cast<uintptr_t>(heap.get()); }
};

// Which protection key each mapping carries, read once from smaps.
class KeySnapshot {
 public:
  KeySnapshot() {
    std::ifstream smaps("/proc/self/smaps");
    std::string line;
    while (std::getline(smaps, line)) {
      uintptr_t lo, hi;
      char dash;
      std::istringstream head(line);
      if (line.find(':') > line.find(' ') &&
          (head >> std::hex >> lo >> dash >> hi) && dash == '-') {
        maps_.push_back({lo, hi, -1, line.find("[stack]") != line.npos});
        continue;
      }
      if (!maps_.empty() && line.rfind("ProtectionKey:", 0) == 0) {
        maps_.back().key = std::stoi(line.substr(14));
      }
    }
  }
  // -1 if nothing maps `a`.
  int KeyOf(uintptr_t a) const {
    const Map* m = Find(a);
    return m == nullptr ? -1 : m->key;
  }
  bool OnMainStack(uintptr_t a) const {
    const Map* m = Find(a);
    return m != nullptr && m->stack;
  }

 private:
  struct Map {
    uintptr_t lo, hi;
    int key;
    bool stack;
  };
  const Map* Find(uintptr_t a) const {
    auto it =
        std::upper_bound(maps_.begin(), maps_.end(), a,
                         [](uintptr_t v, const Map& m) { return v < m.lo; });
    if (it == maps_.begin()) return nullptr;
    --it;
    return a < it->hi ? &*it : nullptr;
  }
  std::vector<Map> maps_;  // in address order, as smaps lists them
};

// Fails the test unless none of `n` host allocations of `bytes` is `p`. A
// region the host frees comes back at once (ControlHostReusesWhatItFrees),
// so a region wrongly freed into the host heap would show up here.
void ExpectHostNeverHandsOut(uintptr_t p, size_t bytes, int n = 256) {
  std::vector<void*> got;
  for (int i = 0; i < n; ++i) got.push_back(Malloc(bytes));
  for (void* q : got) {
    EXPECT_NE(reinterpret_cast<uintptr_t>(q), p) << "size " << bytes;
  }
  for (void* q : got) Free(q);
}

// The process still works: 100k mixed-size allocations and frees by the
// host through every entry point, each checked for its content; none may
// come from the address zone of the compartment heaps, and every one that
// is live at the end must carry the trusted key.
void HostAllocatesHeavily(int iterations = 100000) {
  constexpr int kSlots = 1024;
  struct Slot {
    uint8_t* p = nullptr;
    size_t n = 0;
    uint64_t seed = 0;
    int how = 0;
  };
  std::vector<Slot> slots(kSlots);
  XorShift rng{0x2545f4914f6cdd1dull};
  auto release = [](Slot& s) {
    if (s.how == 3) {
      delete[] s.p;
    } else {
      Free(s.p);
    }
    s.p = nullptr;
  };
  for (int i = 0; i < iterations; ++i) {
    Slot& s = slots[rng.Next() % kSlots];
    if (s.p != nullptr) {
      ASSERT_TRUE(CheckPattern(s.p, s.n, s.seed)) << "iteration " << i;
      if (s.how != 3 && rng.Next() % 4 == 0) {  // grow or shrink in place
        const size_t n = 1 + rng.Next() % (2 * s.n + 16);
        auto* q = static_cast<uint8_t*>(Realloc(s.p, n));
        ASSERT_NE(q, nullptr);
        ASSERT_TRUE(CheckPrefix(q, std::min(n, s.n), s.n, s.seed));
        s.p = q;
        s.n = n;
        s.seed = i;
        FillPattern(s.p, s.n, s.seed);
        ASSERT_FALSE(internal::InZone(reinterpret_cast<uintptr_t>(s.p)));
        continue;
      }
      release(s);
    }
    const uint64_t r = rng.Next();
    const uint64_t pick = r % 100;
    size_t n;
    if (pick < 60) {
      n = 1 + (r >> 8) % 256;
    } else if (pick < 90) {
      n = 257 + (r >> 8) % 8000;
    } else if (pick < 99) {
      n = 8192 + (r >> 8) % (120 << 10);
    } else {
      n = (128 << 10) + (r >> 8) % (2 << 20);  // huge: 1%
    }
    s.how = static_cast<int>((r >> 40) % 5);
    void* p = nullptr;
    switch (s.how) {
      case 0: p = Malloc(n); break;
      case 1:
        p = Opaque(calloc(1, n));
        if (p != nullptr) {
          ASSERT_EQ(static_cast<uint8_t*>(p)[n - 1], 0) << "calloc not zero";
        }
        break;
      case 2: ASSERT_EQ(posix_memalign(&p, 64, n), 0); break;
      case 3: p = Opaque(new uint8_t[n]); break;
      case 4: p = Opaque(aligned_alloc(256, (n + 255) & ~size_t{255})); break;
    }
    ASSERT_NE(p, nullptr) << n;
    ASSERT_FALSE(internal::InZone(reinterpret_cast<uintptr_t>(p)))
        << "the host got memory of a compartment heap: " << p;
    s.p = static_cast<uint8_t*>(p);
    s.n = n;
    s.seed = i;
    FillPattern(s.p, s.n, s.seed);
  }
  KeySnapshot keys;
  const int trusted = internal::Keys().trusted;
  for (Slot& s : slots) {
    if (s.p == nullptr) continue;
    EXPECT_EQ(keys.KeyOf(reinterpret_cast<uintptr_t>(s.p)), trusted);
    EXPECT_EQ(keys.KeyOf(reinterpret_cast<uintptr_t>(s.p) + s.n - 1), trusted);
    EXPECT_TRUE(CheckPattern(s.p, s.n, s.seed));
    release(s);
  }
}

// ---- compartment code ------------------------------------------------------
// Runs with the compartment's rights: reads key 0, writes only its own
// memory, never errno.

// This thread's HeapCache for the running compartment, found the way any
// compartment code can: TLS, then the read-only table below the
// SelectorPage.
HeapCache* MyCache() {
  internal::SelectorPage* sel = mpkbox_tls_thread;
  return internal::HeapCacheTable(
      sel)[internal::SlotOfDomain(sel->current_domain)];
}

// Mixed allocations (malloc, calloc, realloc, posix_memalign, new) with
// content checks: 1 when everything came back as written.
int Workout(int rounds) {
  void* live[64] = {};
  size_t size[64] = {};
  XorShift rng{88172645463325252ull};
  for (int i = 0; i < rounds; ++i) {
    const int k = static_cast<int>(rng.Next() % 64);
    if (live[k] != nullptr) {
      if (!CheckPattern(live[k], size[k], k)) return 0;
      if (i % 3 == 0) {
        const size_t n = 1 + rng.Next() % 3000;
        void* q = Realloc(live[k], n);
        if (q == nullptr) return 0;
        if (!CheckPrefix(q, std::min(n, size[k]), size[k], k)) return 0;
        live[k] = q;
        size[k] = n;
        FillPattern(q, n, k);
        continue;
      }
      Free(live[k]);
    }
    const uint64_t r = rng.Next();
    size[k] = r % 16 == 0 ? 4096 + r % 100000 : 1 + r % 600;
    switch (r % 5) {
      case 0:
      case 1: live[k] = Malloc(size[k]); break;
      case 2: live[k] = Opaque(calloc(size[k], 1)); break;
      case 3:
        if (posix_memalign(&live[k], 128, size[k]) != 0) live[k] = nullptr;
        break;
      case 4: live[k] = Opaque(::operator new(size[k])); break;
    }
    if (live[k] == nullptr) return 0;
    FillPattern(live[k], size[k], k);
  }
  for (int k = 0; k < 64; ++k) {
    if (live[k] != nullptr && !CheckPattern(live[k], size[k], k)) return 0;
    Free(live[k]);
  }
  return 1;
}

// The compartment is healthy: a Workout inside returns 1 and leaves no
// fault.
void ExpectCompartmentWorks(Compartment* box) {
  EXPECT_EQ(Value(box->Call(&Workout, 3000)), 1) << box->name();
  EXPECT_EQ(box->last_fault(), nullptr);
}

// The end of a hostile free: kAborted naming the compartment, the address
// and why; calls refused until Reset.
void ExpectFreeViolation(Compartment* box, const absl::Status& s,
                         uintptr_t address) {
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  const std::string m(s.message());
  EXPECT_THAT(m, HasSubstr("compartment '" + box->name() + "'"));
  EXPECT_THAT(m, HasSubstr(absl::StrFormat("0x%x", address)));
  EXPECT_THAT(m, HasSubstr("not a live allocation of the compartment"));
  const FaultReport* f = box->last_fault();
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->address, address);
  EXPECT_EQ(f->compartment, box->name());
  EXPECT_EQ(box->Call(+[] {}).code(), absl::StatusCode::kFailedPrecondition);
}

// A contained memory fault at `address` (or within 64 bytes above it) on a
// page of key `key`.
void ExpectKeyFault(Compartment* box, const absl::Status& s, uintptr_t address,
                    int key) {
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("compartment '" + box->name() + "'"));
  const FaultReport* f = box->last_fault();
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->signal, SIGSEGV);
  EXPECT_EQ(f->code, SEGV_PKUERR) << f->what;
  EXPECT_EQ(f->pkey, key) << f->what;
  EXPECT_GE(f->address, address) << f->what;
  EXPECT_LT(f->address, address + 64) << f->what;
}

void ResetAndExpectWorking(Compartment* box) {
  ASSERT_TRUE(box->Reset().ok());
  EXPECT_EQ(box->last_fault(), nullptr);
  ExpectCompartmentWorks(box);
}

// Written by compartment code: it lives in the compartment's heap.
struct Scratch {
  int reached;    // the code after the attack ran
  int had_cache;  // the thread had a HeapCache before the attack
  uint64_t value;
  uint64_t extra;
};

Scratch* NewScratch(Compartment* box) {
  absl::StatusOr<void*> p = box->Allocate(sizeof(Scratch));
  EXPECT_TRUE(p.ok()) << p.status();
  if (!p.ok()) return nullptr;
  memset(*p, 0, sizeof(Scratch));
  return static_cast<Scratch*>(*p);
}

uintptr_t MallocFilled(size_t n, uint64_t seed) {
  void* p = Malloc(n);
  if (p != nullptr) FillPattern(p, n, seed);
  return reinterpret_cast<uintptr_t>(p);
}
// The same, then an allocator entry (malloc_usable_size always enters), so
// that the runtime has seen the region taken even if it came from the
// magazine (see HostFreeOfARegionFromTheMagazine).
uintptr_t MallocFilledSeen(size_t n, uint64_t seed) {
  const uintptr_t p = MallocFilled(n, seed);
  return malloc_usable_size(reinterpret_cast<void*>(p)) >= n ? p : 0;
}
int CheckFilled(const void* p, size_t n, uint64_t seed) {
  return CheckPattern(p, n, seed) ? 1 : 0;
}
void FreeOne(void* p) { Free(p); }
size_t UsableSizeInside(void* p) { return malloc_usable_size(Opaque(p)); }

// A region the runtime put in the magazine of `n`-byte regions but did not
// hand out (it is not a live allocation).
uintptr_t UnpoppedMagazineRegion(size_t n) {
  Escape(Malloc(n));  // the cache exists and the magazine is full
  const Magazine& m = MyCache()->magazines[ClassOf(n)];
  if (m.count == 0 || m.count > kMagazineSlots) return 0;
  return reinterpret_cast<uintptr_t>(m.slots[m.count - 1]);
}
uintptr_t MyCacheAddress() {
  Escape(Malloc(16));
  return reinterpret_cast<uintptr_t>(MyCache());
}

// ---- 1. hostile frees -------------------------------------------------------

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
  void* live[kFreeSlots];
  for (uint32_t i = 0; i < kFreeSlots; ++i) live[i] = Malloc(16);
  HeapCache* cache = MyCache();
  s->had_cache = cache != nullptr;
  for (uint32_t i = 0; cache->frees.count < kFreeSlots && i < kFreeSlots; ++i) {
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
    EXPECT_EQ(Value(a->Call(&UsableSizeInside, reinterpret_cast<void*>(bad))),
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
                         [](const ::testing::TestParamInfo<FreeCase>& info) {
                           return std::string(Name(std::get<0>(info.param))) +
                                  "_" + Name(std::get<1>(info.param));
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
  s->extra = MyCache()->frees.count;
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

// ---- 2. tampering with the HeapCache ---------------------------------------

enum ForgedUse : int { kReturn, kRead, kWrite, kFreeIt };
uintptr_t forged_target;  // set by the host; compartment code reads it

// Puts forged_target in the magazine of 64-byte regions, takes it with
// malloc and uses it.
uint64_t MallocForged(int use) {
  Free(Malloc(64));  // the cache exists, the magazine was refilled
  Magazine& m = MyCache()->magazines[ClassOf(64)];
  m.slots[0] = reinterpret_cast<void*>(forged_target);
  m.count = 1;
  auto* p = static_cast<volatile uint64_t*>(Malloc(64));
  switch (use) {
    case kRead: return p[0] + p[7];
    case kWrite:
      for (int i = 0; i < 8; ++i) p[i] = 0x4141414141414141ull;
      break;
    case kFreeIt: Free(const_cast<uint64_t*>(p)); break;
  }
  return reinterpret_cast<uintptr_t>(p);
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
                 forged_target, 0);
  EXPECT_EQ(host_global, 0x600d);
  ResetAndExpectWorking(box.get());
}

TEST(HeapCacheTamperTest, ForgedEntryOfAnotherCompartmentFaults) {
  auto box = MakeBox({.name = "forger"});
  auto victim = MakeBox({.name = "victim"});
  const uintptr_t other =
      Value(victim->Call(&MallocFilled, size_t{64}, uint64_t{5}));
  ASSERT_NE(other, 0u);
  forged_target = other;
  for (int use : {kWrite, kRead}) {
    ExpectKeyFault(box.get(), box->Call(&MallocForged, use).status(), other,
                   victim->pkey());
    ResetAndExpectWorking(box.get());
  }
  EXPECT_EQ(
      Value(victim->Call(&CheckFilled, reinterpret_cast<const void*>(other),
                         size_t{64}, uint64_t{5})),
      1);
  EXPECT_TRUE(victim->Call(&FreeOne, reinterpret_cast<void*>(other)).ok());
  EXPECT_EQ(victim->last_fault(), nullptr);
}

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
    cache->magazines[c].count = value;
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
  Magazine& m = MyCache()->magazines[ClassOf(64)];
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
  Magazine& m = MyCache()->magazines[ClassOf(64)];
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
          cache->magazines[(r >> 8) % kNumCachedClasses].count =
              static_cast<uint32_t>(r >> 58);
          break;
        case 2: cache->frees.count = static_cast<uint32_t>(r >> 56); break;
        case 3:
          cache->frees.slots[(r >> 8) % kFreeSlots] =
              reinterpret_cast<void*>(v);
          break;
        case 4:
          cache->magazines[(r >> 8) % kNumCachedClasses]
              .slots[(r >> 16) % kMagazineSlots] = reinterpret_cast<void*>(v);
          break;
      }
    }
  }
}

uint64_t ForgeEntry(uint64_t op, uint64_t a, uint64_t b);

// Enters the allocator three times a round (a large malloc, its size, its
// free): each entry reconciles the magazines and flushes the free buffer.
uint64_t EntryChurn(int rounds) {
  for (int i = 0; i < rounds; ++i) {
    const uint64_t n = 5000 + static_cast<uint64_t>(i % 3000);
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
    cache->magazines[c].count = c % 2 == 0 ? 0 : 0xffffffffu;
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

// ---- 3. forged calls of the allocator entry --------------------------------

using internal::kOpAlignedAlloc;
using internal::kOpCalloc;
using internal::kOpFree;
using internal::kOpMalloc;
using internal::kOpRealloc;
using internal::kOpUsableSize;

// Calls callback stub 0 with any registers, as compartment code can.
uint64_t ForgeEntry(uint64_t op, uint64_t a, uint64_t b) {
  using Entry = uint64_t (*)(uint64_t, uint64_t, uint64_t);
  return reinterpret_cast<Entry>(
      Opaque(reinterpret_cast<uintptr_t>(mpkbox_callback_stubs)))(op, a, b);
}
// The same, and errno as the entry left it (reading errno is allowed).
uint64_t ForgeEntryErrno(uint64_t op, uint64_t a, uint64_t b, int* err) {
  const uint64_t r = ForgeEntry(op, a, b);
  *err = errno;
  return r;
}

TEST(AllocatorEntryTest, UnknownOpsEndTheCall) {
  auto box = MakeBox({.name = "ops"});
  for (uint64_t op : {uint64_t{0}, uint64_t{7}, uint64_t{255},
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

// ---- 4. regions moving between the host heap and a compartment heap --------

struct SizeCase {
  const char* name;
  size_t bytes;
  int host_tries;
  int compartment_tries;
};
const SizeCase kSizes[] = {
    {"Small", 64, 512, 512},
    {"Large", 64 << 10, 64, 64},
    {"Huge", 16 << 20, 4, 6},
};

class MigrationTest : public ::testing::TestWithParam<SizeCase> {};

// The compartment allocates, the host frees: the region goes back to the
// compartment's heap, never to the host's.
TEST_P(MigrationTest, CompartmentRegionFreedByTheHostNeverServesTheHost) {
  const SizeCase& c = GetParam();
  auto box = MakeBox({.name = "producer", .heap_limit_bytes = 256 << 20});
  const int trusted = internal::Keys().trusted;
  for (int round = 0; round < 4; ++round) {
    const uintptr_t p =
        Value(box->Call(&MallocFilledSeen, c.bytes, uint64_t{1}));
    ASSERT_NE(p, 0u);
    ASSERT_TRUE(box->Contains(reinterpret_cast<void*>(p), c.bytes));
    if (round % 2 == 0) {
      Free(reinterpret_cast<void*>(p));
    } else {
      ::operator delete(reinterpret_cast<void*>(Opaque(p)));
    }
    EXPECT_EQ(box->stats().bytes_in_use, 0u);
    std::vector<void*> got;
    for (int i = 0; i < c.host_tries; ++i) got.push_back(Malloc(c.bytes));
    KeySnapshot keys;
    for (void* q : got) {
      const uintptr_t a = reinterpret_cast<uintptr_t>(q);
      EXPECT_NE(a, p);
      EXPECT_FALSE(box->Contains(q, 1));
      EXPECT_FALSE(internal::InZone(a));
      EXPECT_EQ(keys.KeyOf(a), trusted);
      EXPECT_EQ(keys.KeyOf(a + c.bytes - 1), trusted);
    }
    for (void* q : got) Free(q);
  }
  ExpectCompartmentWorks(box.get());
  HostAllocatesHeavily();
}

// The host allocates, fills with a secret and frees: no compartment malloc
// ever returns that region.
TEST_P(MigrationTest, HostRegionFreedNeverServesACompartment) {
  const SizeCase& c = GetParam();
  auto box = MakeBox({.name = "consumer", .heap_limit_bytes = 256 << 20});
  absl::StatusOr<void*> out =
      box->Allocate(c.compartment_tries * sizeof(void*));
  ASSERT_TRUE(out.ok());
  auto* got = static_cast<uintptr_t*>(*out);
  for (int round = 0; round < 3; ++round) {
    void* host = Malloc(c.bytes);
    ASSERT_NE(host, nullptr);
    memset(host, 0x5e, c.bytes);
    const uintptr_t freed = reinterpret_cast<uintptr_t>(host);
    Free(host);
    for (int i = 0; i < c.compartment_tries; ++i) {
      got[i] = Value(box->Call(&MallocFilled, c.bytes, uint64_t{2}));
      ASSERT_NE(got[i], 0u);
    }
    KeySnapshot keys;
    for (int i = 0; i < c.compartment_tries; ++i) {
      EXPECT_NE(got[i], freed);
      EXPECT_TRUE(box->Contains(reinterpret_cast<void*>(got[i]), c.bytes));
      EXPECT_EQ(keys.KeyOf(got[i]), box->pkey());
      EXPECT_EQ(keys.KeyOf(got[i] + c.bytes - 1), box->pkey());
    }
    for (int i = 0; i < c.compartment_tries; ++i) {
      ASSERT_TRUE(box->Call(&FreeOne, reinterpret_cast<void*>(got[i])).ok());
    }
  }
  EXPECT_EQ(box->last_fault(), nullptr);
}

// What one compartment's region becomes after the host frees it is never
// another compartment's.
TEST_P(MigrationTest, RegionFreedByTheHostNeverServesAnotherCompartment) {
  const SizeCase& c = GetParam();
  auto a = MakeBox({.name = "a", .heap_limit_bytes = 256 << 20});
  auto b = MakeBox({.name = "b", .heap_limit_bytes = 256 << 20});
  for (int i = 0; i < 3; ++i) {  // the region of interest is not the first
    Escape(reinterpret_cast<void*>(
        Value(a->Call(&MallocFilled, c.bytes, uint64_t{1}))));
  }
  const uintptr_t p = Value(a->Call(&MallocFilledSeen, c.bytes, uint64_t{1}));
  ASSERT_NE(p, 0u);
  Free(reinterpret_cast<void*>(p));
  EXPECT_FALSE(a->TryFree(reinterpret_cast<void*>(p)).ok());  // it was freed
  for (int i = 0; i < c.compartment_tries; ++i) {
    const uintptr_t q = Value(b->Call(&MallocFilled, c.bytes, uint64_t{2}));
    ASSERT_NE(q, 0u);
    EXPECT_NE(q, p);
    EXPECT_TRUE(b->Contains(reinterpret_cast<void*>(q), c.bytes));
    EXPECT_FALSE(a->Contains(reinterpret_cast<void*>(q), 1));
  }
}

INSTANTIATE_TEST_SUITE_P(SmallLargeHuge, MigrationTest,
                         ::testing::ValuesIn(kSizes),
                         [](const ::testing::TestParamInfo<SizeCase>& info) {
                           return std::string(info.param.name);
                         });

// The host frees, reallocs and sizes a region compartment code took from
// its magazine without entering the runtime (docs/API.md: the host may free
// or realloc what a compartment allocated).
// Such a region must be live to the host at once, not at the next reconcile.
TEST(MigrationTest, HostFreeOfARegionFromTheMagazine) {
  auto box = MakeBox({.name = "magazine"});
  // The first malloc enters the allocator (live at once); the second comes
  // from the magazine the first one filled.
  const uintptr_t first =
      Value(box->Call(&MallocFilled, size_t{64}, uint64_t{1}));
  const uintptr_t second =
      Value(box->Call(&MallocFilled, size_t{64}, uint64_t{1}));
  ASSERT_NE(first, 0u);
  ASSERT_NE(second, 0u);
  EXPECT_EQ(malloc_usable_size(reinterpret_cast<void*>(second)), 64u);
  void* grown = Realloc(reinterpret_cast<void*>(second), 200);
  EXPECT_NE(grown, nullptr) << "host realloc of a compartment region failed";
  EXPECT_TRUE(
      box->TryFree(grown != nullptr ? grown : reinterpret_cast<void*>(second))
          .ok());
  EXPECT_TRUE(box->TryFree(reinterpret_cast<void*>(first)).ok());
  EXPECT_EQ(box->stats().bytes_in_use, 0u);
}

// Pointers a compartment hands the host to free: only its own live
// allocations are freed; the rest is refused and the host goes on.
void HandOver(uintptr_t* out, uintptr_t unused_window) {
  void* live = Malloc(64);
  void* freed = Malloc(64);
  Free(freed);
  out[0] = reinterpret_cast<uintptr_t>(live) + 16;  // interior
  out[1] = reinterpret_cast<uintptr_t>(live) + 8;
  out[2] = reinterpret_cast<uintptr_t>(MyCache());
  out[3] = UnpoppedMagazineRegion(64);
  out[4] = reinterpret_cast<uintptr_t>(freed);  // freed already
  out[5] = reinterpret_cast<uintptr_t>(live);   // the one good pointer
  out[6] = reinterpret_cast<uintptr_t>(live);   // and again
  out[7] = unused_window;                       // a window nobody has
}

TEST(MigrationTest, HostFreesWhateverTheCompartmentHandsOver) {
  auto box = MakeBox({.name = "liar"});
  absl::StatusOr<void*> out = box->Allocate(8 * sizeof(uintptr_t));
  ASSERT_TRUE(out.ok());
  auto* ptrs = static_cast<uintptr_t*>(*out);
  ASSERT_TRUE(
      box->Call(&HandOver, ptrs,
                internal::WindowBase(internal::kMaxCompartments - 1) + 4096)
          .ok());
  const size_t before = box->stats().bytes_in_use;
  for (int i = 0; i < 8; ++i) Free(reinterpret_cast<void*>(ptrs[i]));
  // Exactly the one live 64-byte allocation went back.
  EXPECT_EQ(box->stats().bytes_in_use, before - 64);
  EXPECT_EQ(PkeyOfAddress(ptrs[2]), box->pkey());  // the cache is still mapped
  ExpectCompartmentWorks(box.get());
  HostAllocatesHeavily();
}

// Deallocations jemalloc counted in the ambient arena (the zone's key-0
// window, where ld.so's allocations live).
uint64_t AmbientDeallocations() {
  uint64_t epoch = 1;
  size_t len = sizeof(epoch);
  mallctl("epoch", &epoch, &len, &epoch, len);
  const unsigned arena =
      ((static_cast<unsigned>(internal::g_host.ambient_flags) >> 20) & 0xfff) -
      1;
  uint64_t total = 0;
  for (const char* kind : {"small", "large"}) {
    const std::string name =
        absl::StrFormat("stats.arenas.%u.%s.ndalloc", arena, kind);
    uint64_t n = 0;
    len = sizeof(n);
    if (mallctl(name.c_str(), &n, &len, nullptr, 0) != 0) return ~uint64_t{0};
    total += n;
  }
  return total;
}

// Compartment code finds the link_map ld.so allocated for a library the
// host dlopen'ed (the r_debug chain is key-0 memory: readable) and hands
// the host a pointer 16 bytes into it.
uintptr_t LinkMapInterior() {
  for (link_map* m = _r_debug.r_map; m != nullptr; m = m->l_next) {
    if (m->l_name != nullptr && strstr(m->l_name, "libbz2") != nullptr) {
      return reinterpret_cast<uintptr_t>(m) + 16;
    }
  }
  return 0;
}

// Compartment code hands the host a pointer 16 bytes into ld.so's live
// link_map; the host frees or reallocs it, as docs/API.md allows for what a
// compartment hands out ("a pointer that is no live allocation is
// ignored"): nothing of the ambient heap may be released. Each attempt runs
// in a child, so that the parent's ld.so stays intact if it is released.
// Freed unchecked, such a pointer corrupts ld.so's heap from compartment code.
// free() cannot tell where an exact allocation start came from: a
// compartment that hands over the link_map's own address (or a host heap
// address it learnt) gets it freed. Pointers from a compartment are for
// Compartment::TryFree, which refuses anything not of its heap.
TEST(MigrationDeathTest, HostFreeOfAnAmbientPointerHandedOver) {
  auto box = MakeBox({.name = "liar"});
  void* handle = dlopen("libbz2.so.1.0", RTLD_NOW | RTLD_LOCAL);
  ASSERT_NE(handle, nullptr) << dlerror();
  const uintptr_t p = Value(box->Call(&LinkMapInterior));
  ASSERT_EQ(p, reinterpret_cast<uintptr_t>(handle) + 16);
  ASSERT_EQ(internal::WindowOf(p), internal::kAmbientWindow);
  ASSERT_NE(AmbientDeallocations(), ~uint64_t{0});
  for (bool use_realloc : {false, true}) {
    EXPECT_EXIT(
        {
          const uint64_t before = AmbientDeallocations();
          if (use_realloc) {
            Escape(Realloc(reinterpret_cast<void*>(p), 4096));
          } else {
            Free(reinterpret_cast<void*>(p));  // the host trusts free()
          }
          _exit(AmbientDeallocations() == before ? 0 : 1);
        },
        ::testing::ExitedWithCode(0), "")
        << (use_realloc ? "realloc" : "free")
        << " of a pointer into ld.so's link_map released it";
  }
  // The scoped way refuses even the exact start.
  const uint64_t before = AmbientDeallocations();
  EXPECT_EQ(box->TryFree(handle).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(box->TryFree(reinterpret_cast<void*>(p)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(AmbientDeallocations(), before);
  EXPECT_NE(dlsym(handle, "BZ2_bzlibVersion"), nullptr);
  EXPECT_EQ(dlclose(handle), 0);
}

// TryFree is scoped to its compartment: a pointer of another compartment is
// refused and stays live there.
TEST(MigrationTest, TryFreeOfAnotherCompartmentsPointerIsRefused) {
  auto a = MakeBox({.name = "a"});
  auto b = MakeBox({.name = "b"});
  const uintptr_t p = Value(b->Call(&MallocFilled, size_t{128}, uint64_t{6}));
  EXPECT_EQ(a->TryFree(reinterpret_cast<void*>(p)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Value(b->Call(&CheckFilled, reinterpret_cast<const void*>(p),
                          size_t{128}, uint64_t{6})),
            1);
  EXPECT_TRUE(b->TryFree(reinterpret_cast<void*>(p)).ok());
}

// ---- 5. exhaustion
// -----------------------------------------------------------

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

std::string ExhaustCaseName(const ::testing::TestParamInfo<ExhaustCase>& info) {
  static const char* const kNames[] = {"Malloc", "Calloc", "AlignedAlloc"};
  return absl::StrFormat("%s%u", kNames[std::get<0>(info.param)],
                         std::get<1>(info.param));
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
  auto box =
      MakeBox({.name = "hammer", .call_timeout = absl::Milliseconds(20)});
  for (int i = 0; i < 20; ++i) {
    absl::Status s = box->Call(&HammerTheEntry);
    EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
    // The heap's lock is free: the host's Allocate and Free go through.
    absl::StatusOr<void*> p = box->Allocate(100);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_TRUE(box->TryFree(*p).ok());
    ASSERT_TRUE(box->Reset().ok());
  }
  // Under emulation 1,000 rounds do not fit in the 20 ms deadline.
  EXPECT_EQ(Value(box->Call(&Workout, UnderEmulation() ? 10 : 1000)), 1);
  HostAllocatesHeavily();
}

// The memory a compartment can write: from the start of its heap's window,
// as far as Contains says yes.
size_t WritableHeapBytes(const Compartment* box, uintptr_t some_allocation) {
  const uintptr_t base = some_allocation & ~(internal::kWindowBytes - 1);
  size_t lo = 0, hi = internal::kWindowBytes;
  while (hi - lo > 4096) {
    const size_t mid = ((lo + hi) / 2) & ~size_t{4095};
    if (box->Contains(reinterpret_cast<void*>(base), mid)) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return lo;
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

// ---- 6. a compartment that corrupts its own heap ---------------------------

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
  // Large: live at once (see HostFreeOfARegionFromTheMagazine).
  const uintptr_t own =
      Value(box->Call(&MallocFilled, size_t{5000}, uint64_t{1}));
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

// ---- what the allocator entry and the gate leave in registers -----------

// Reads every register compartment code can read (AVX-512 machines).
// - dump(out) stores zmm0-31 (2048 bytes) and k0-7 (64 bytes) at out;
// - entry(op, a, b, out) calls callback stub 0, the allocator entry, as
//   malloc does, then stores rax, rdx, rcx, rsi, rdi, r8-r11 at out + 2112
//   and dumps the vector registers;
// - at_entry(out) stores what the Call gate left in the same registers.
asm(R"(
  .text
  .type mpkbox_test_dump_vectors, @function
mpkbox_test_dump_vectors:
  vmovdqu64 %zmm0, 0(%rdi)
  vmovdqu64 %zmm1, 64(%rdi)
  vmovdqu64 %zmm2, 128(%rdi)
  vmovdqu64 %zmm3, 192(%rdi)
  vmovdqu64 %zmm4, 256(%rdi)
  vmovdqu64 %zmm5, 320(%rdi)
  vmovdqu64 %zmm6, 384(%rdi)
  vmovdqu64 %zmm7, 448(%rdi)
  vmovdqu64 %zmm8, 512(%rdi)
  vmovdqu64 %zmm9, 576(%rdi)
  vmovdqu64 %zmm10, 640(%rdi)
  vmovdqu64 %zmm11, 704(%rdi)
  vmovdqu64 %zmm12, 768(%rdi)
  vmovdqu64 %zmm13, 832(%rdi)
  vmovdqu64 %zmm14, 896(%rdi)
  vmovdqu64 %zmm15, 960(%rdi)
  vmovdqu64 %zmm16, 1024(%rdi)
  vmovdqu64 %zmm17, 1088(%rdi)
  vmovdqu64 %zmm18, 1152(%rdi)
  vmovdqu64 %zmm19, 1216(%rdi)
  vmovdqu64 %zmm20, 1280(%rdi)
  vmovdqu64 %zmm21, 1344(%rdi)
  vmovdqu64 %zmm22, 1408(%rdi)
  vmovdqu64 %zmm23, 1472(%rdi)
  vmovdqu64 %zmm24, 1536(%rdi)
  vmovdqu64 %zmm25, 1600(%rdi)
  vmovdqu64 %zmm26, 1664(%rdi)
  vmovdqu64 %zmm27, 1728(%rdi)
  vmovdqu64 %zmm28, 1792(%rdi)
  vmovdqu64 %zmm29, 1856(%rdi)
  vmovdqu64 %zmm30, 1920(%rdi)
  vmovdqu64 %zmm31, 1984(%rdi)
  kmovq %k0, 2048(%rdi)
  kmovq %k1, 2056(%rdi)
  kmovq %k2, 2064(%rdi)
  kmovq %k3, 2072(%rdi)
  kmovq %k4, 2080(%rdi)
  kmovq %k5, 2088(%rdi)
  kmovq %k6, 2096(%rdi)
  kmovq %k7, 2104(%rdi)
  ret
  .size mpkbox_test_dump_vectors, . - mpkbox_test_dump_vectors

  .globl mpkbox_test_entry_regs
  .type mpkbox_test_entry_regs, @function
mpkbox_test_entry_regs:
  push %rbx
  mov %rcx, %rbx
  call mpkbox_callback_stubs
  mov %rax, 2112(%rbx)
  mov %rdx, 2120(%rbx)
  mov %rcx, 2128(%rbx)
  mov %rsi, 2136(%rbx)
  mov %rdi, 2144(%rbx)
  mov %r8, 2152(%rbx)
  mov %r9, 2160(%rbx)
  mov %r10, 2168(%rbx)
  mov %r11, 2176(%rbx)
  mov %rbx, %rdi
  call mpkbox_test_dump_vectors
  pop %rbx
  ret
  .size mpkbox_test_entry_regs, . - mpkbox_test_entry_regs

  .globl mpkbox_test_call_regs
  .type mpkbox_test_call_regs, @function
mpkbox_test_call_regs:
  mov %rax, 2112(%rdi)
  mov %rdx, 2120(%rdi)
  mov %rcx, 2128(%rdi)
  mov %rsi, 2136(%rdi)
  movq $0, 2144(%rdi)
  mov %r8, 2152(%rdi)
  mov %r9, 2160(%rdi)
  mov %r10, 2168(%rdi)
  mov %r11, 2176(%rdi)
  jmp mpkbox_test_dump_vectors
  .size mpkbox_test_call_regs, . - mpkbox_test_call_regs
)");
}  // namespace
}  // namespace mpkbox

extern "C" void mpkbox_test_entry_regs(uint64_t op, uint64_t a, uint64_t b,
                                       void* out);
extern "C" void mpkbox_test_call_regs(void* out);

namespace mpkbox {
namespace {

constexpr size_t kRegBytes = 2184;
constexpr size_t kRaxWord = 2112 / 8;  // the entry's result: not a leak

std::string RegisterName(size_t word) {
  if (word < 256) return absl::StrFormat("zmm%d[%d]", word / 8, word % 8);
  if (word < 264) return absl::StrFormat("k%d", word - 256);
  static const char* gpr[] = {"rax", "rdx", "rcx", "rsi", "rdi",
                              "r8",  "r9",  "r10", "r11"};
  return gpr[word - 264];
}

// After callback 0 returns into the compartment, no register holds an
// address of trusted memory or of the host's stack (rax is the result).
// Host code behind the entry leaves trusted pointers in xmm/zmm registers.
TEST(RegisterLeakTest, AllocatorEntryLeaksNoTrustedAddress) {
  if (!__builtin_cpu_supports("avx512f")) GTEST_SKIP() << "no AVX-512";
  auto box = MakeBox({.name = "prober"});
  auto* out = static_cast<uint64_t*>(*box->Allocate(4096, 64));
  const uintptr_t own =
      Value(box->Call(&MallocFilled, size_t{5000}, uint64_t{1}));
  const int trusted = internal::Keys().trusted;
  struct {
    uint64_t op, a, b;
  } const calls[] = {{kOpMalloc, 100, 0},       {kOpMalloc, 100000, 0},
                     {kOpUsableSize, own, 0},   {kOpCalloc, 10, 10},
                     {kOpAlignedAlloc, 64, 64}, {kOpRealloc, 0, 70}};
  for (const auto& c : calls) {
    memset(out, 0, kRegBytes);
    ASSERT_TRUE(box->Call(&mpkbox_test_entry_regs, c.op, c.a, c.b,
                          static_cast<void*>(out))
                    .ok());
    KeySnapshot keys;
    for (size_t w = 0; w < kRegBytes / 8; ++w) {
      if (w == kRaxWord || out[w] == 0) continue;
      EXPECT_NE(keys.KeyOf(out[w]), trusted)
          << "op " << c.op << ": " << RegisterName(w) << " = 0x" << std::hex
          << out[w] << " points into trusted memory";
      EXPECT_FALSE(keys.OnMainStack(out[w]))
          << "op " << c.op << ": " << RegisterName(w) << " = 0x" << std::hex
          << out[w] << " points into the host's stack";
    }
  }
}

// The bytes the host copied last before a Call are not in any register
// compartment code can read.
// glibc's memcpy moves data through zmm16-31, which the gate must clear.
TEST(RegisterLeakTest, CallGateLeavesNoHostDataInVectorRegisters) {
  if (!__builtin_cpu_supports("avx512f")) GTEST_SKIP() << "no AVX-512";
  auto box = MakeBox({.name = "prober"});
  auto* out = static_cast<uint64_t*>(*box->Allocate(4096, 64));
  constexpr uint64_t kSecret = 0x5ec2e75ec2e75ec2ull;
  std::unique_ptr<uint64_t[]> secret(new uint64_t[32]);
  std::unique_ptr<uint64_t[]> copy(new uint64_t[32]);
  for (int i = 0; i < 32; ++i) secret[i] = kSecret;
  void* (*volatile copy_fn)(void*, const void*, size_t) = memcpy;
  ASSERT_TRUE(box->Call(&mpkbox_test_call_regs, static_cast<void*>(out)).ok());
  int leaked = 0;
  for (size_t bytes : {size_t{64}, size_t{200}, size_t{256}}) {
    memset(out, 0, kRegBytes);
    copy_fn(copy.get(), secret.get(), bytes);  // the host's last copy
    ASSERT_TRUE(
        box->Call(&mpkbox_test_call_regs, static_cast<void*>(out)).ok());
    for (size_t w = 0; w < kRegBytes / 8; ++w) {
      if (out[w] == kSecret) {
        ++leaked;
        ADD_FAILURE() << "after a host memcpy of " << bytes
                      << " secret bytes, the compartment reads them in "
                      << RegisterName(w);
        break;
      }
    }
  }
  EXPECT_EQ(leaked, 0);
}

}  // namespace
}  // namespace mpkbox

namespace mpkbox {
namespace {

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
}  // namespace mpkbox
