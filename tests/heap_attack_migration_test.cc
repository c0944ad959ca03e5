// Regions moving between the host heap and a compartment heap, both ways,
// small, large and huge (heap attacks: heap_attack_util.h): what one side
// frees never serves the other, and what a compartment hands the host to
// free releases only its own live allocations.
#include <dlfcn.h>
#include <jemalloc/jemalloc.h>
#include <link.h>
#include <malloc.h>
#include <string.h>
#include <unistd.h>

#include <cstdint>
#include <new>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "allocator/address_zone.h"
#include "allocator/host_heap.h"
#include "gtest/gtest.h"
#include "mpkbox/mpkbox.h"
#include "runtime/fault_report.h"
#include "runtime/runtime_state.h"
#include "tests/heap_attack_util.h"
#include "tests/test_util.h"

namespace mpkbox::heap_attack {
namespace {

using ::mpkbox::internal::PkeyOfAddress;
using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::Value;

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
                         [](const ::testing::TestParamInfo<SizeCase>& param_info) {
                           return std::string(param_info.param.name);
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
  void* freed = Malloc(64);
  void* live = Malloc(64);
  // Before the free: its malloc would take the region just freed back from
  // the hot stack.
  out[3] = UnpoppedMagazineRegion(64);
  Free(freed);  // hot until the call returns, then freed
  out[0] = reinterpret_cast<uintptr_t>(live) + 16;  // interior
  out[1] = reinterpret_cast<uintptr_t>(live) + 8;
  out[2] = reinterpret_cast<uintptr_t>(MyCache());
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

}  // namespace
}  // namespace mpkbox::heap_attack
