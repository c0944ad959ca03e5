// Cost of crossing the call gate, against baselines measured in the same run
// (DESIGN.md 7). bench/run.sh runs this binary; bench/report.py turns its
// JSON into bench/RESULTS.md.
//
//   BM_WrpkruPair        the floor: two WRPKRUs (a different value, then the
//                        original), nothing else. Any gate pays at least this.
//   BM_WrpkruPairSame    the same with both writes of the unchanged value, to
//                        show whether the CPU short-cuts a no-op write.
//   BM_WrpkruPairLoads   the pair with a chain of three dependent loads after
//                        each write (what a gate's post-WRPKRU check does):
//                        shows how much work next to a WRPKRU overlaps it.
//   BM_PlainCall         an empty function through a volatile pointer.
//   BM_GateRoundTrip     box->Call(&Empty): host -> compartment -> host.
//   BM_GateRoundTripArgs box->Call(&Add, a, b) returning Tainted<int>.
//   BM_CallbackRoundTrip/N
//                        one box->Call of a compartment function that calls
//                        a registered host callback N times (N = 0 and 64).
//                        report.py takes (t(64) - t(0)) / 64 as the cost of
//                        one callback round trip (compartment -> host ->
//                        compartment), with the enclosing Call subtracted.
//   BM_CallbackNative/N  the same loop run directly in the host, calling the
//                        callback function itself: the unsandboxed baseline.
//
// A bare WRPKRU is fine here: this binary is a measurement tool, not the
// runtime, and it never runs untrusted code.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "mpkbox/mpkbox.h"

namespace {

inline uint32_t Rdpkru() {
  uint32_t eax, edx;
  asm volatile("rdpkru" : "=a"(eax), "=d"(edx) : "c"(0));
  return eax;
}

// Two writes in one asm statement: nothing touches memory while PKRU holds
// `first`, so `first` may deny anything. The "memory" clobber keeps the
// compiler from moving loads or stores across it, as a real gate would.
inline void WrpkruPair(uint32_t first, uint32_t second) {
  asm volatile(
      "wrpkru\n\t"
      "movl %[second], %%eax\n\t"
      "wrpkru"
      : "+a"(first)
      : "c"(0), "d"(0), [second] "r"(second)
      : "memory");
}

// ---------------------------------------------------------------------------
// Functions run inside the compartment. noinline plus an empty asm keeps each
// a real call with a real body.

__attribute__((noinline)) void Empty() { asm volatile(""); }

__attribute__((noinline)) int Add(int a, int b) {
  asm volatile("" : "+r"(a));
  return a + b;
}

// The host callback: trivially cheap, so the loop measures the crossing.
__attribute__((noinline)) int HostIncrement(int x) {
  asm volatile("" : "+r"(x));
  return x + 1;
}

// Runs in the compartment: calls `cb` n times. Only registers and the
// compartment's own stack are written.
__attribute__((noinline)) int CallbackLoop(int (*cb)(int), int n) {
  int acc = 0;
  for (int i = 0; i < n; ++i) acc = cb(acc);
  return acc;
}

void (*volatile plain_target)() = &Empty;

// ---------------------------------------------------------------------------
// One compartment for the whole binary, created on first use and never
// destroyed (the process exit returns its pages).

mpkbox::Compartment& Box() {
  static mpkbox::Compartment* box = [] {
    auto b = mpkbox::Compartment::Create({.name = "bench"});
    if (!b.ok()) {
      std::fprintf(stderr, "gate_bench: Compartment::Create: %s\n",
                   b.status().ToString().c_str());
      std::exit(2);
    }
    return b->release();
  }();
  return *box;
}

// Fails the benchmark (rather than measuring an error path) on a bad status.
template <typename S>
bool Check(benchmark::State& state, const S& s) {
  if (s.ok()) return true;
  state.SkipWithError("gate call failed");
  return false;
}

// ---------------------------------------------------------------------------

void BM_WrpkruPair(benchmark::State& state) {
  const uint32_t orig = Rdpkru();
  // Toggle write-disable of key 15: key 0 stays usable either way.
  const uint32_t other = orig ^ (2u << 30);
  for (auto _ : state) WrpkruPair(other, orig);
  if (Rdpkru() != orig) state.SkipWithError("PKRU not restored");
}
BENCHMARK(BM_WrpkruPair);

void BM_WrpkruPairSame(benchmark::State& state) {
  const uint32_t orig = Rdpkru();
  for (auto _ : state) WrpkruPair(orig, orig);
  if (Rdpkru() != orig) state.SkipWithError("PKRU not restored");
}
BENCHMARK(BM_WrpkruPairSame);

// A 3-link chain of pointers in ordinary memory.
void* chain[4];
void BM_WrpkruPairLoads(benchmark::State& state) {
  chain[0] = &chain[1];
  chain[1] = &chain[2];
  chain[2] = &chain[3];
  const uint32_t orig = Rdpkru();
  const uint32_t other = orig ^ (2u << 30);
  for (auto _ : state) {
    uint32_t eax = other;
    asm volatile(
        "wrpkru\n\t"
        "movq (%[p]), %%r8\n\t"
        "movq (%%r8), %%r8\n\t"
        "movq (%%r8), %%r8\n\t"
        "movl %[orig], %%eax\n\t"
        "wrpkru\n\t"
        "movq (%[p]), %%r8\n\t"
        "movq (%%r8), %%r8\n\t"
        "movq (%%r8), %%r8"
        : "+a"(eax)
        : "c"(0), "d"(0), [orig] "r"(orig), [p] "r"(chain)
        : "r8", "memory");
  }
  if (Rdpkru() != orig) state.SkipWithError("PKRU not restored");
}
BENCHMARK(BM_WrpkruPairLoads);

void BM_PlainCall(benchmark::State& state) {
  for (auto _ : state) plain_target();
}
BENCHMARK(BM_PlainCall);

void BM_GateRoundTrip(benchmark::State& state) {
  mpkbox::Compartment& box = Box();
  if (!Check(state, box.Call(&Empty))) return;  // thread set-up, untimed
  for (auto _ : state) {
    absl::Status s = box.Call(&Empty);
    benchmark::DoNotOptimize(s);
  }
  if (!box.Call(&Empty).ok()) state.SkipWithError("gate call failed");
}
BENCHMARK(BM_GateRoundTrip);

void BM_GateRoundTripArgs(benchmark::State& state) {
  mpkbox::Compartment& box = Box();
  if (!Check(state, box.Call(&Add, 1, 2))) return;
  int a = 1;
  for (auto _ : state) {
    benchmark::DoNotOptimize(a);
    auto r = box.Call(&Add, a, 2);
    benchmark::DoNotOptimize(r);
  }
  auto r = box.Call(&Add, 40, 2);
  if (!r.ok() || r->UnverifiedValue("bench self-check") != 42) {
    state.SkipWithError("Add through the gate gave a wrong result");
  }
}
BENCHMARK(BM_GateRoundTripArgs);

void BM_CallbackRoundTrip(benchmark::State& state) {
  mpkbox::Compartment& box = Box();
  static auto cb = box.RegisterCallback(&HostIncrement);
  if (!cb.ok()) {
    state.SkipWithError("RegisterCallback failed");
    return;
  }
  int (*fn)(int) = cb->get();
  const int n = static_cast<int>(state.range(0));
  auto first = box.Call(&CallbackLoop, fn, n);
  if (!first.ok() || first->UnverifiedValue("bench self-check") != n) {
    state.SkipWithError("callback loop gave a wrong result");
    return;
  }
  for (auto _ : state) {
    auto r = box.Call(&CallbackLoop, fn, n);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_CallbackRoundTrip)->Arg(0)->Arg(64);

void BM_CallbackNative(benchmark::State& state) {
  int (*volatile target)(int) = &HostIncrement;
  const int n = static_cast<int>(state.range(0));
  for (auto _ : state) {
    int r = CallbackLoop(target, n);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_CallbackNative)->Arg(0)->Arg(64);

}  // namespace

int main(int argc, char** argv) {
  if (!mpkbox::Runtime::IsSupported()) {
    std::fprintf(stderr, "gate_bench: no PKU on this machine\n");
    return 2;
  }
  Box();  // create the compartment before any timing
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
