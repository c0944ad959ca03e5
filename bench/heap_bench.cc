// malloc/free inside a compartment against native jemalloc and glibc malloc,
// measured in the same run (docs/DESIGN.md 7). bench/run.sh runs this binary;
// bench/verdicts.py turns its JSON into the "Heap" section of
// bench/RESULTS.md.
//
// One iteration of every benchmark below is kPairs (1000) malloc/free pairs
// of one size (16 B to 64 KiB): p = malloc(size); one byte stored through p;
// free(p). verdicts.py divides by the `pairs` counter to give ns per pair.
//
//   BM_MallocFreeInside/N        one box->Call(&InsideLoop, kPairs, N): the
//                                loop runs in the compartment, on its
//                                per-thread HeapCache (magazines and free
//                                buffer, <= 64 KiB) and the allocator entry
//                                (callback gate) behind it.
//   BM_MallocFreeInsideEmpty     the same Call with 0 pairs: what one Call
//                                adds to a batch; verdicts.py subtracts it.
//   BM_MallocFreeNativeJemalloc/N
//                                the loop on the host through libjemalloc.so's
//                                own malloc and free (dlsym on the loaded
//                                library: the process's `malloc` is mpkbox's):
//                                jemalloc's default arenas and thread cache,
//                                the baseline of the 2x target.
//   BM_MallocFreeGlibc/N         the loop through glibc's malloc and free
//                                (dlsym on libc.so.6): glibc's own heap, which
//                                works alongside jemalloc's.
//   BM_MallocFreeHost/N          the loop on the host with plain malloc and
//                                free: mpkbox's routing to the host arena
//                                (jemalloc mallocx on the trusted key).
//
// The pair loop takes malloc's LIFO best case (the hot slot inside, the
// tcache's top natively). The batch form holds kBatch regions, then frees
// them in the order they came: inside, the frees go through the free buffer
// and the runtime's check, and the mallocs through the magazines.
//
//   BM_MallocFreeBatchInside/N, BM_MallocFreeBatchNativeJemalloc/N
//                                1000 pairs as 125 rounds of 8 mallocs then
//                                8 frees, in the compartment and native.
//   BM_MallocFreeBatch4KiBStoreAt{Inside,NativeJemalloc}/W
//                                the same at 4 KiB, the byte stored W bytes
//                                into each region (a header field).
//   BM_MallocFreeInsidePrivateJemalloc/N,
//   BM_MallocFreeBatchInsidePrivateJemalloc/N
//                                the two above in a compartment whose heap
//                                is an arena of mpkbox's private jemalloc
//                                (the heaps past the process's jemalloc's
//                                4,092 arenas: allocator/jemalloc_instance.h).
//
// A parser's mix (libxml2: nodes, attributes, names and text of 16 B to
// 4 KiB, which live for a while): L regions live, then 1000 times one of
// them, picked at random, is freed and replaced by a region of a size drawn
// from a fixed mix; then all L are freed (1000 + L pairs an iteration, the
// same sequence inside and native):
//
//   BM_MallocFreeMixedInside/L, BM_MallocFreeMixedNativeJemalloc/L
//
// Two more jemalloc baselines, to break the figures above down (both on
// jemalloc's default arenas and thread cache, without mpkbox's routing):
//
//   BM_MallocFreeMallocx/N       mallocx(N, 0) and dallocx(p, 0): the
//                                non-standard API the host path and the
//                                allocator entry call, which skips the fast
//                                paths of malloc and free.
//   BM_MallocFreeMallocxAlign16/N
//                                mallocx(N, MALLOCX_ALIGN(16)) and dallocx:
//                                what the allocator entry asks for when a
//                                compartment's request takes the gate (> 4
//                                KiB). With an alignment flag, jemalloc 5.3
//                                serves a large size (> 14 KiB) from the
//                                arena's extents, not from the thread cache.
#include <benchmark/benchmark.h>
#include <dlfcn.h>
#include <jemalloc/jemalloc.h>  // mallocx, dallocx: libjemalloc.so's own

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "allocator/jemalloc_instance.h"
#include "mpkbox/mpkbox.h"

namespace {

constexpr int kPairs = 1000;  // per iteration; verdicts.py reads `pairs`

using MallocFn = void* (*)(size_t);
using FreeFn = void (*)(void*);

// The pair loop, shared by every benchmark. The byte store through p and
// the empty asm taking p make the allocation's address observable, so the
// compiler can neither drop nor merge the malloc/free pair (GCC deletes a
// pair whose result is unused). Only registers, the stack and *p are
// written: compartment code may run it. Returns the last address handed
// out, or 0 if an allocation failed.
template <typename M, typename F>
inline __attribute__((always_inline)) uintptr_t Pairs(M m, F f, int n,
                                                      size_t size) {
  uintptr_t last = 1;
  for (int i = 0; i < n; ++i) {
    char* p = static_cast<char*>(m(size));
    if (p == nullptr) return 0;
    *static_cast<volatile char*>(p) = 1;
    // p escapes into the asm, which hands back its address as an integer
    // (taken before the free: GCC's -Wuse-after-free cannot follow it).
    asm volatile("" : "=r"(last) : "0"(p) : "memory");
    f(p);
  }
  return last;
}

constexpr int kBatch = 8;

// kBatch mallocs, then kBatch frees, n / kBatch times (n pairs); the byte
// stored is `at` bytes into each region.
template <typename M, typename F>
inline __attribute__((always_inline)) uintptr_t Batches(M m, F f, int n,
                                                        size_t size,
                                                        size_t at = 0) {
  uintptr_t last = 1;
  for (int i = 0; i < n / kBatch; ++i) {
    char* p[kBatch];
    for (char*& q : p) {
      q = static_cast<char*>(m(size));
      if (q == nullptr) return 0;
      static_cast<volatile char*>(q)[at] = 1;
    }
    asm volatile("" : "=r"(last) : "0"(p[kBatch - 1]) : "memory");
    for (char* q : p) f(q);
  }
  return last;
}

__attribute__((noinline)) uintptr_t InsideBatchLoop(int n, size_t size) {
  return Batches(&malloc, &free, n, size);
}

__attribute__((noinline)) uintptr_t PointerBatchLoop(MallocFn m, FreeFn f,
                                                     int n, size_t size) {
  return Batches(m, f, n, size);
}

// 4 KiB batches whose byte goes `at` bytes into each region (a header's
// field): a load of the allocator's at the same page offset would wait on
// it (4K aliasing, bench/RESULTS.md issue 16 item 5).
__attribute__((noinline)) uintptr_t InsideBatchStoreLoop(int n, size_t at) {
  return Batches(&malloc, &free, n, 4096, at);
}

__attribute__((noinline)) uintptr_t PointerBatchStoreLoop(MallocFn m, FreeFn f,
                                                          int n, size_t at) {
  return Batches(m, f, n, 4096, at);
}

constexpr int kMaxMixedLive = 1024;
// Mostly small (names, text, attributes, nodes), some buffers.
constexpr uint16_t kMixSizes[16] = {16,  24,  32,  40,  48,  64,  96,   120,
                                    16,  32,  48,  200, 256, 512, 1024, 4096};

template <typename M, typename F>
inline __attribute__((always_inline)) uintptr_t Mixed(M m, F f, int n,
                                                      size_t live) {
  char* p[kMaxMixedLive];
  if (live == 0 || live > kMaxMixedLive) return 0;
  uint32_t x = 0x9e3779b9u;
  for (size_t i = 0; i < live; ++i) {
    p[i] = static_cast<char*>(m(kMixSizes[i % 16]));
    if (p[i] == nullptr) return 0;
    *static_cast<volatile char*>(p[i]) = 1;
  }
  for (int i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    char*& slot = p[x % live];
    f(slot);
    slot = static_cast<char*>(m(kMixSizes[(x >> 20) % 16]));
    if (slot == nullptr) return 0;
    *static_cast<volatile char*>(slot) = 1;
  }
  uintptr_t last;
  asm volatile("" : "=r"(last) : "0"(p[0]) : "memory");
  for (size_t i = 0; i < live; ++i) f(p[i]);
  return last;
}

__attribute__((noinline)) uintptr_t InsideMixedLoop(int n, size_t live) {
  return Mixed(&malloc, &free, n, live);
}

__attribute__((noinline)) uintptr_t PointerMixedLoop(MallocFn m, FreeFn f,
                                                     int n, size_t live) {
  return Mixed(m, f, n, live);
}

// Runs in the compartment: its malloc and free are mpkbox's inside path.
__attribute__((noinline)) uintptr_t InsideLoop(int n, size_t size) {
  return Pairs(&malloc, &free, n, size);
}

// The host's plain malloc and free (mpkbox's host path).
__attribute__((noinline)) uintptr_t HostLoop(int n, size_t size) {
  return Pairs(&malloc, &free, n, size);
}

// Through pointers the compiler cannot see into.
__attribute__((noinline)) uintptr_t PointerLoop(MallocFn m, FreeFn f, int n,
                                                size_t size) {
  return Pairs(m, f, n, size);
}

struct Allocator {
  MallocFn malloc_fn = nullptr;
  FreeFn free_fn = nullptr;
  const char* error = nullptr;
};

// malloc and free as defined by an already loaded library: dlsym on its
// handle searches that library (and its dependencies) first, not the
// executable, whose definitions are mpkbox's.
Allocator LoadAllocator(const char* library) {
  Allocator a;
  void* h = dlopen(library, RTLD_NOLOAD | RTLD_NOW);
  if (h == nullptr) {
    a.error = "library not loaded";
    return a;
  }
  a.malloc_fn = reinterpret_cast<MallocFn>(dlsym(h, "malloc"));
  a.free_fn = reinterpret_cast<FreeFn>(dlsym(h, "free"));
  if (a.malloc_fn == nullptr || a.free_fn == nullptr) {
    a.error = "no malloc or free in the library";
  } else if (a.malloc_fn == &malloc) {
    a.error = "dlsym found the executable's (mpkbox's) malloc";
  }
  return a;
}

const Allocator& Jemalloc() {
  static const Allocator a = LoadAllocator("libjemalloc.so.2");
  return a;
}

const Allocator& Glibc() {
  static const Allocator a = LoadAllocator("libc.so.6");
  return a;
}

mpkbox::Compartment* MakeBox(const char* name) {
  auto b = mpkbox::Compartment::Create({.name = name});
  if (!b.ok()) {
    std::fprintf(stderr, "heap_bench: Compartment::Create: %s\n",
                 b.status().ToString().c_str());
    std::exit(2);
  }
  return b->release();
}

mpkbox::Compartment& Box() {
  static mpkbox::Compartment* box = MakeBox("bench-heap");
  return *box;
}

// A compartment whose heap comes from mpkbox's private jemalloc.
mpkbox::Compartment& PrivateJemallocBox() {
  static mpkbox::Compartment* box = [] {
    using mpkbox::internal::JemallocPreference;
    mpkbox::internal::SetJemallocPreferenceForTesting(
        JemallocPreference::kPrivateFirst);
    mpkbox::Compartment* b = MakeBox("bench-heap-private-jemalloc");
    mpkbox::internal::SetJemallocPreferenceForTesting(
        JemallocPreference::kSystemFirst);
    return b;
  }();
  return *box;
}

void SetCounters(benchmark::State& state, int pairs) {
  state.SetItemsProcessed(state.iterations() * pairs);
  state.counters["pairs"] = pairs;
}

// ---------------------------------------------------------------------------

// One untimed Call first (thread set-up, magazines filled), with checks that
// the allocations came from the compartment's heap and were all freed.
bool CheckInside(benchmark::State& state, mpkbox::Compartment& box, int n,
                 size_t size) {
  const size_t before = box.stats().allocations;
  auto r = box.Call(&InsideLoop, n, size);
  if (!r.ok()) {
    state.SkipWithError("the Call failed");
    return false;
  }
  const uintptr_t last = r->UnverifiedValue("bench self-check");
  const mpkbox::CompartmentStats after = box.stats();
  if (last == 0) {
    state.SkipWithError("malloc failed in the compartment");
    return false;
  }
  if (n > 0 && !box.Contains(reinterpret_cast<const void*>(last), 1)) {
    state.SkipWithError("malloc in the compartment gave a pointer outside "
                        "its heap");
    return false;
  }
  if (after.allocations - before != static_cast<size_t>(n) ||
      after.bytes_in_use != 0) {
    state.SkipWithError("the compartment's heap did not count every "
                        "allocation, or some are still live");
    return false;
  }
  return true;
}

// `loop` (InsideLoop or InsideBatchLoop) in one Call per iteration.
void InsideBench(benchmark::State& state, uintptr_t (*loop)(int, size_t),
                 mpkbox::Compartment& box = Box()) {
  const size_t size = static_cast<size_t>(state.range(0));
  if (!CheckInside(state, box, kPairs, size)) return;
  for (auto _ : state) {
    auto r = box.Call(loop, kPairs, size);
    if (!r.ok()) {
      state.SkipWithError("the Call failed");
      break;
    }
    benchmark::DoNotOptimize(r);
  }
  SetCounters(state, kPairs);
  if (!CheckInside(state, box, kPairs, size)) return;
}

void BM_MallocFreeInside(benchmark::State& state) {
  InsideBench(state, &InsideLoop);
}
BENCHMARK(BM_MallocFreeInside)->RangeMultiplier(4)->Range(16, 64 << 10);

void BM_MallocFreeBatchInside(benchmark::State& state) {
  InsideBench(state, &InsideBatchLoop);
}
BENCHMARK(BM_MallocFreeBatchInside)->RangeMultiplier(4)->Range(16, 64 << 10);

void BM_MallocFreeBatch4KiBStoreAtInside(benchmark::State& state) {
  mpkbox::Compartment& box = Box();
  if (!CheckInside(state, box, kPairs, 4096)) return;
  for (auto _ : state) {
    auto r = box.Call(&InsideBatchStoreLoop, kPairs,
                      static_cast<size_t>(state.range(0)));
    if (!r.ok()) {
      state.SkipWithError("the Call failed");
      break;
    }
    benchmark::DoNotOptimize(r);
  }
  SetCounters(state, kPairs);
}
BENCHMARK(BM_MallocFreeBatch4KiBStoreAtInside)
    ->DenseRange(0, 24, 8)
    ->Arg(64)
    ->Arg(256);

void BM_MallocFreeInsidePrivateJemalloc(benchmark::State& state) {
  InsideBench(state, &InsideLoop, PrivateJemallocBox());
}
BENCHMARK(BM_MallocFreeInsidePrivateJemalloc)
    ->RangeMultiplier(4)
    ->Range(16, 64 << 10);

void BM_MallocFreeBatchInsidePrivateJemalloc(benchmark::State& state) {
  InsideBench(state, &InsideBatchLoop, PrivateJemallocBox());
}
BENCHMARK(BM_MallocFreeBatchInsidePrivateJemalloc)
    ->RangeMultiplier(4)
    ->Range(16, 64 << 10);
void BM_MallocFreeMixedInside(benchmark::State& state) {
  InsideBench(state, &InsideMixedLoop);
  SetCounters(state, kPairs + static_cast<int>(state.range(0)));
}
BENCHMARK(BM_MallocFreeMixedInside)->Arg(64)->Arg(1024);

void BM_MallocFreeInsideEmpty(benchmark::State& state) {
  mpkbox::Compartment& box = Box();
  if (!CheckInside(state, box, 0, 16)) return;
  for (auto _ : state) {
    auto r = box.Call(&InsideLoop, 0, size_t{16});
    benchmark::DoNotOptimize(r);
  }
  state.counters["pairs"] = 0;
}
BENCHMARK(BM_MallocFreeInsideEmpty);

using LoopFn = uintptr_t (*)(MallocFn, FreeFn, int, size_t);

void PointerPairs(benchmark::State& state, const Allocator& a,
                  LoopFn loop = &PointerLoop) {
  if (a.error != nullptr) {
    state.SkipWithError(a.error);
    return;
  }
  const size_t size = static_cast<size_t>(state.range(0));
  if (loop(a.malloc_fn, a.free_fn, kPairs, size) == 0) {
    state.SkipWithError("malloc failed");
    return;
  }
  for (auto _ : state) {
    uintptr_t r = loop(a.malloc_fn, a.free_fn, kPairs, size);
    benchmark::DoNotOptimize(r);
  }
  SetCounters(state, kPairs);
}

void BM_MallocFreeNativeJemalloc(benchmark::State& state) {
  PointerPairs(state, Jemalloc());
}
BENCHMARK(BM_MallocFreeNativeJemalloc)->RangeMultiplier(4)->Range(16, 64 << 10);

void BM_MallocFreeBatchNativeJemalloc(benchmark::State& state) {
  PointerPairs(state, Jemalloc(), &PointerBatchLoop);
}
BENCHMARK(BM_MallocFreeBatchNativeJemalloc)
    ->RangeMultiplier(4)
    ->Range(16, 64 << 10);

void BM_MallocFreeBatch4KiBStoreAtNativeJemalloc(benchmark::State& state) {
  PointerPairs(state, Jemalloc(), &PointerBatchStoreLoop);
}
BENCHMARK(BM_MallocFreeBatch4KiBStoreAtNativeJemalloc)
    ->DenseRange(0, 24, 8)
    ->Arg(64)
    ->Arg(256);

void BM_MallocFreeMixedNativeJemalloc(benchmark::State& state) {
  PointerPairs(state, Jemalloc(), &PointerMixedLoop);
  SetCounters(state, kPairs + static_cast<int>(state.range(0)));
}
BENCHMARK(BM_MallocFreeMixedNativeJemalloc)->Arg(64)->Arg(1024);

void BM_MallocFreeGlibc(benchmark::State& state) {
  PointerPairs(state, Glibc());
}
BENCHMARK(BM_MallocFreeGlibc)->RangeMultiplier(4)->Range(16, 64 << 10);

void BM_MallocFreeHost(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  if (HostLoop(kPairs, size) == 0) {
    state.SkipWithError("malloc failed");
    return;
  }
  for (auto _ : state) {
    uintptr_t r = HostLoop(kPairs, size);
    benchmark::DoNotOptimize(r);
  }
  SetCounters(state, kPairs);
}
BENCHMARK(BM_MallocFreeHost)->RangeMultiplier(4)->Range(16, 64 << 10);

void* MallocxPlain(size_t n) { return mallocx(n, 0); }
void* MallocxAlign16(size_t n) { return mallocx(n, MALLOCX_ALIGN(16)); }
void Dallocx(void* p) { dallocx(p, 0); }

void BM_MallocFreeMallocx(benchmark::State& state) {
  PointerPairs(state, Allocator{&MallocxPlain, &Dallocx});
}
BENCHMARK(BM_MallocFreeMallocx)->RangeMultiplier(4)->Range(16, 64 << 10);

void BM_MallocFreeMallocxAlign16(benchmark::State& state) {
  PointerPairs(state, Allocator{&MallocxAlign16, &Dallocx});
}
BENCHMARK(BM_MallocFreeMallocxAlign16)
    ->RangeMultiplier(4)
    ->Range(16, 64 << 10);

}  // namespace

int main(int argc, char** argv) {
  if (!mpkbox::Runtime::IsSupported()) {
    std::fprintf(stderr, "heap_bench: no PKU on this machine\n");
    return 2;
  }
  Box();  // create the compartments and find the allocators before timing
  PrivateJemallocBox();
  for (const Allocator* a : {&Jemalloc(), &Glibc()}) {
    if (a->error != nullptr) {
      std::fprintf(stderr, "heap_bench: %s\n", a->error);
    }
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
