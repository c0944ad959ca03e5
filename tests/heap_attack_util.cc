// What the heap attack binaries share (heap_attack_util.h).
#include "tests/heap_attack_util.h"

#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <fstream>
#include <new>
#include <sstream>
#include <string>

#include "absl/strings/str_format.h"
#include "allocator/address_zone.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/runtime_state.h"
#include "tests/test_util.h"

extern "C" char mpkbox_callback_stubs[];  // stub 0: the allocator entry

namespace mpkbox::heap_attack {

using internal::HeapCache;
using internal::kMagazineSlots;
using internal::Magazine;
using ::mpkbox::testing::Value;
using ::testing::HasSubstr;

[[gnu::noinline]] void* Malloc(size_t n) { return Opaque(malloc(Opaque(n))); }
[[gnu::noinline]] void Free(void* p) { free(Opaque(p)); }
[[gnu::noinline]] void* Realloc(void* p, size_t n) {
  return Opaque(realloc(Opaque(p), Opaque(n)));
}

uint8_t PatternByte(uint64_t seed, size_t i) {
  return static_cast<uint8_t>((seed * 0x9e3779b97f4a7c15ull + i * 131) >> 24);
}

void FillPattern(void* p, size_t n, uint64_t seed, size_t stride) {
  auto* b = static_cast<uint8_t*>(p);
  for (size_t i = 0; i < n; i += stride) b[i] = PatternByte(seed, i);
  if (n != 0) b[n - 1] = PatternByte(seed, n - 1);
  Escape(p);
}
bool CheckPattern(const void* p, size_t n, uint64_t seed, size_t stride) {
  const auto* b = static_cast<const uint8_t*>(p);
  for (size_t i = 0; i < n; i += stride) {
    if (b[i] != PatternByte(seed, i)) return false;
  }
  return n == 0 || b[n - 1] == PatternByte(seed, n - 1);
}
bool CheckPrefix(const void* p, size_t n, size_t old_n, uint64_t seed) {
  const auto* b = static_cast<const uint8_t*>(p);
  for (size_t i = 0; i < n; i += 61) {
    if (b[i] != PatternByte(seed, i)) return false;
  }
  return old_n > n || old_n == 0 ||
         b[old_n - 1] == PatternByte(seed, old_n - 1);
}

size_t ClassOf(size_t n) { return internal::CachedClassOf(n); }

int host_global = 0x600d;

HostCanary::HostCanary() {
  for (size_t i = 0; i < kCanaryBytes; ++i) heap[i] = PatternByte(7, i);
}

bool HostCanary::Intact() const {
  for (size_t i = 0; i < kCanaryBytes; ++i) {
    if (heap[i] != PatternByte(7, i)) return false;
  }
  return true;
}

KeySnapshot::KeySnapshot() {
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

int KeySnapshot::KeyOf(uintptr_t a) const {
  const Map* m = MapOf(a);
  return m == nullptr ? -1 : m->key;
}

bool KeySnapshot::OnMainStack(uintptr_t a) const {
  const Map* m = MapOf(a);
  return m != nullptr && m->stack;
}

const KeySnapshot::Map* KeySnapshot::MapOf(uintptr_t a) const {
  auto it =
      std::upper_bound(maps_.begin(), maps_.end(), a,
                       [](uintptr_t v, const Map& m) { return v < m.lo; });
  if (it == maps_.begin()) return nullptr;
  --it;
  return a < it->hi ? &*it : nullptr;
}

void ExpectHostNeverHandsOut(uintptr_t p, size_t bytes, int n) {
  std::vector<void*> got;
  for (int i = 0; i < n; ++i) got.push_back(Malloc(bytes));
  for (void* q : got) {
    EXPECT_NE(reinterpret_cast<uintptr_t>(q), p) << "size " << bytes;
  }
  for (void* q : got) Free(q);
}

void HostAllocatesHeavily(int iterations) {
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

HeapCache* MyCache() {
  internal::SelectorPage* sel = mpkbox_tls_thread;
  return internal::HeapCacheTable(
      sel)[internal::SlotOfDomain(sel->current_domain)];
}

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

uint64_t ForgeEntry(uint64_t op, uint64_t a, uint64_t b) {
  using Entry = uint64_t (*)(uint64_t, uint64_t, uint64_t);
  return reinterpret_cast<Entry>(
      Opaque(reinterpret_cast<uintptr_t>(mpkbox_callback_stubs)))(op, a, b);
}

uintptr_t MallocFilled(size_t n, uint64_t seed) {
  void* p = Malloc(n);
  if (p != nullptr) FillPattern(p, n, seed);
  return reinterpret_cast<uintptr_t>(p);
}
uintptr_t MallocFilledSeen(size_t n, uint64_t seed) {
  const uintptr_t p = MallocFilled(n, seed);
  return malloc_usable_size(reinterpret_cast<void*>(p)) >= n ? p : 0;
}
int CheckFilled(const void* p, size_t n, uint64_t seed) {
  return CheckPattern(p, n, seed) ? 1 : 0;
}
void FreeOne(void* p) { Free(p); }
size_t UsableSizeInside(void* p) { return malloc_usable_size(Opaque(p)); }

uintptr_t UnpoppedMagazineRegion(size_t n) {
  Escape(Malloc(n));  // the cache exists and the magazine is full
  const Magazine& m = internal::MagazineAt(MyCache(), ClassOf(n));
  if (m.count == 0 || m.count > internal::MagazineSlotsOf(ClassOf(n))) {
    return 0;
  }
  return reinterpret_cast<uintptr_t>(m.slots[m.count - 1]);
}
uintptr_t MyCacheAddress() {
  Escape(Malloc(16));
  return reinterpret_cast<uintptr_t>(MyCache());
}

Scratch* NewScratch(Compartment* box) {
  absl::StatusOr<void*> p = box->Allocate(sizeof(Scratch));
  EXPECT_TRUE(p.ok()) << p.status();
  if (!p.ok()) return nullptr;
  memset(*p, 0, sizeof(Scratch));
  return static_cast<Scratch*>(*p);
}

void ExpectCompartmentWorks(Compartment* box) {
  EXPECT_EQ(Value(box->Call(&Workout, 3000)), 1) << box->name();
  EXPECT_EQ(box->last_fault(), nullptr);
}

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

}  // namespace mpkbox::heap_attack
