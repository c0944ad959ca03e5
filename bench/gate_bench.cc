// Cost of crossing the call gate, of a contained fault and of Reset, against
// baselines measured in the same run (docs/DESIGN.md 7). bench/run.sh runs this
// binary; bench/verdicts.py turns its JSON into bench/RESULTS.md.
//
//   BM_WrpkruPair        the floor: two WRPKRUs (a different value, then the
//                        original), nothing else. Any gate pays at least this.
//   BM_WrpkruPairSame    the same with both writes of the unchanged value, to
//                        show whether the CPU short-cuts a no-op write.
//   BM_WrpkruPairLoads   the pair with a chain of three dependent loads after
//                        each write (what a gate's post-WRPKRU check does):
//                        shows how much work next to a WRPKRU overlaps it.
//   BM_WrpkruPairWithStores
//                        the pair with what the gate adds for Syscall User
//                        Dispatch: a byte store of BLOCK to the selector
//                        before the first WRPKRU and of ALLOW after the
//                        second (plain movb to a page-aligned buffer, in the
//                        gate's order). Its excess over BM_WrpkruPair is what
//                        the selector costs the gate.
//   BM_SelectorStorePair the two selector stores alone, without WRPKRU.
//   BM_FloorCall, BM_FloorSwitch, BM_FloorTrusted
//                        floor models of a gate (bench/gate_floor.S):
//                        the pair with a call and a check after each WRPKRU;
//                        + a stack switch; + callee-saved registers, host rsp
//                        and return address kept in a trusted block,
//                        registers cleared and checks against memory. What
//                        the gate's target is up against on this CPU.
//   BM_PlainCall         an empty function through a volatile pointer.
//   BM_GateRoundTrip     box->Call(&Empty): host -> compartment -> host.
//   BM_GateRoundTripArgs box->Call(&Add, a, b) returning Tainted<int>.
//   BM_CallbackRoundTrip/N
//                        one box->Call of a compartment function that calls
//                        a registered host callback N times (N = 0 and 64).
//                        verdicts.py takes (t(64) - t(0)) / 64 as the cost of
//                        one callback round trip (compartment -> host ->
//                        compartment), with the enclosing Call subtracted.
//   BM_CallbackNative/N  the same loop run directly in the host, calling the
//                        callback function itself: the unsandboxed baseline.

// System calls from compartment code (Syscall User Dispatch: SIGSYS, judged
// and emulated by runtime/syscall_dispatch.cc), on compartments of their own
// ("bench-syscalls", allowing getppid; "bench-deny", denying it with EPERM):
//
//   BM_PlainSyscall      syscall(SYS_getppid) from the host, on the benchmark
//                        thread (Syscall User Dispatch armed, selector ALLOW:
//                        the state of any host thread that uses compartments).
//   BM_PlainSyscallNoDispatch
//                        the same on a fresh thread that never entered a
//                        compartment (no dispatch armed): the kernel alone.
//   BM_InterceptedSyscall
//                        one box->Call of a compartment function issuing
//                        getppid with an inline `syscall` 16 times.
//   BM_DeniedSyscallErrno
//                        the same in the compartment whose policy denies
//                        getppid with EPERM (each syscall returns -EPERM).
//   BM_CompartmentEmpty16
//                        the same Call of the same loop without the syscall
//                        instruction. verdicts.py takes (t(Intercepted) -
//                        t(Empty16)) / 16 as the cost of one intercepted call.
//
// Faults and Reset, on a second compartment ("bench-faults") so that the gate
// benchmarks' compartment is never faulted or reset:
//
//   BM_FaultAndReset     box->Call(&Ud2) (ud2: SIGILL, contained, returned as
//                        kAborted with a FaultReport) then box->Reset(). Reset
//                        keeps the arena, the window and the thread's stack
//                        (their pages dropped), and the next Call makes the
//                        thread's stale context current again: this is one
//                        whole fault-and-recover cycle in steady state.
//   BM_FaultAndResetSegv the same with a write to a host global (SEGV_PKUERR).
//   BM_FaultAndResetNull the same with a write to address 8 (SEGV_MAPERR), a
//                        null pointer plus an offset.
//   BM_FaultToStatus, BM_FaultToStatusSegv
//                        fault to status alone: the faulting Call only (ud2,
//                        or the write to the host global), from the gate in
//                        to the kAborted status with its FaultReport, timed
//                        with steady_clock around that Call (manual time).
//                        The Reset and a Call that makes the context current
//                        again run untimed between iterations.
//   BM_Reset             box->Reset() then box->Call(&Empty): a Reset leaves
//                        the thread's context stale, so it is timed with the
//                        Call that renews it. The same cycle as
//                        BM_FaultAndReset minus the fault.
//   BM_CreateCallDestroy Compartment::Create, one Call, destruction: a
//                        compartment per request, against BM_ForkExitWait.
//   BM_SignalRoundTrip   tgkill(SIGUSR1) to the running thread with an empty
//                        SA_SIGINFO handler installed by libc's own sigaction
//                        (__sigaction, bypassing mpkbox's interposed one), on
//                        a thread that never entered a compartment: the
//                        kernel's signal delivery + sigreturn, the floor of any
//                        fault containment.
//   BM_SignalRoundTripHost
//                        the same on the benchmark thread (which has entered
//                        compartments) with the handler installed by the
//                        host's sigaction, which mpkbox interposes: the signal
//                        goes through mpkbox's signal entry and dispatch, and
//                        the thread's syscalls through Syscall User Dispatch.
//   BM_ForkExitWait      fork, _exit(0) in the child, waitpid: a lower bound
//                        for a process sandbox replacing a crashed worker (no
//                        exec, no sandbox set-up, no crash handling).
//
// Pieces of the fault path, to break BM_FaultAndReset down:
//
//   BM_SymbolizeOne      absl::Symbolize of Ud2's address (the fault report
//                        symbolizes each backtrace frame and the faulting ip;
//                        the symbolizer's cache is warm, as it is for a fault
//                        repeated at one address).
//   BM_ReadSmaps/<where> PkeyOfAddress (reads /proc/self/smaps up to the
//                        mapping holding the address, or the first one above
//                        it), the lookup reports did for a data fault's
//                        si_addr until they used si_pkey and the registry: at
//                        Ud2 (code), at the host global, and at address 8
//                        (unmapped, below the first mapping).
//
// A bare WRPKRU is fine here: this binary is a measurement tool, not the
// runtime, and it never runs untrusted code.
#include <benchmark/benchmark.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <thread>
#include <vector>

#include "absl/debugging/symbolize.h"
#include "mpkbox/mpkbox.h"
#include "runtime/fault_report.h"  // internal::PkeyOfAddress, for BM_ReadSmaps
#include "runtime/syscall_dispatch.h"  // internal::EmulatedSyscalls, a self-check

// libc's own sigaction: the host's `sigaction` is mpkbox's interposed one.
extern "C" int __sigaction(int, const struct sigaction*, struct sigaction*);

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

// Runs in the compartment: getppid with an inline `syscall`, kSyscallsPerCall
// times (Syscall User Dispatch turns each into a SIGSYS); returns the last
// result. Registers only.
constexpr int kSyscallsPerCall = 16;  // verdicts.py divides by it

__attribute__((noinline)) long GetppidLoop() {
  long r = 0;
  for (int i = 0; i < kSyscallsPerCall; ++i) {
    long ret;
    asm volatile("syscall"
                 : "=a"(ret)
                 : "a"(static_cast<long>(SYS_getppid))
                 : "rcx", "r11", "memory");
    r = ret;
  }
  return r;
}

// The same loop with the same constraints and no instruction: returns
// SYS_getppid (rax is never changed).
__attribute__((noinline)) long EmptyLoop16() {
  long r = 0;
  for (int i = 0; i < kSyscallsPerCall; ++i) {
    long ret;
    asm volatile(""
                 : "=a"(ret)
                 : "a"(static_cast<long>(SYS_getppid))
                 : "rcx", "r11", "memory");
    r = ret;
  }
  return r;
}

void (*volatile plain_target)() = &Empty;

// ud2: SIGILL (ILL_ILLOPN) at this function's first instruction.
__attribute__((noinline)) void Ud2() { __builtin_trap(); }

// Key-0 memory; compartments have read-only ambient rights by default, so a
// write from inside is SEGV_PKUERR.
int host_global = 0;
__attribute__((noinline)) void WriteHostGlobal() {
  *static_cast<volatile int*>(&host_global) = 1;
}

// A null pointer plus an offset, the commonest crash: SEGV_MAPERR at 8.
int* volatile bad_pointer = reinterpret_cast<int*>(8);
__attribute__((noinline)) void WriteNullPlus8() { *bad_pointer = 1; }

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

// The compartment the fault and Reset benchmarks fault and reset.
mpkbox::Compartment& FaultBox() {
  static mpkbox::Compartment* box = [] {
    auto b = mpkbox::Compartment::Create({.name = "bench-faults"});
    if (!b.ok()) {
      std::fprintf(stderr, "gate_bench: Compartment::Create: %s\n",
                   b.status().ToString().c_str());
      std::exit(2);
    }
    return b->release();
  }();
  return *box;
}

mpkbox::Compartment& MakeBox(const char* name, mpkbox::SyscallPolicy policy) {
  auto b = mpkbox::Compartment::Create({.name = name, .syscalls = policy});
  if (!b.ok()) {
    std::fprintf(stderr, "gate_bench: Compartment::Create(%s): %s\n", name,
                 b.status().ToString().c_str());
    std::exit(2);
  }
  return *b->release();
}

// getppid allowed (run by the dispatcher for the compartment).
mpkbox::Compartment& SyscallBox() {
  static mpkbox::Compartment& box = MakeBox(
      "bench-syscalls", mpkbox::SyscallPolicy().Allow(SYS_getppid));
  return box;
}

// getppid denied with EPERM.
mpkbox::Compartment& DenyBox() {
  static mpkbox::Compartment& box = MakeBox(
      "bench-deny", mpkbox::SyscallPolicy().Deny(SYS_getppid, EPERM));
  return box;
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

// Stands in for the thread's SelectorPage: a page of its own.
alignas(4096) volatile uint8_t selector_page[4096];

// The gate's order: BLOCK before the WRPKRU into the compartment, ALLOW
// after the WRPKRU back (trampolines/gate.S).
void BM_WrpkruPairWithStores(benchmark::State& state) {
  const uint32_t orig = Rdpkru();
  const uint32_t other = orig ^ (2u << 30);
  for (auto _ : state) {
    uint32_t eax = other;
    asm volatile(
        "movb $1, (%[sel])\n\t"  // MPKBOX_SELECTOR_BLOCK
        "wrpkru\n\t"
        "movl %[orig], %%eax\n\t"
        "wrpkru\n\t"
        "movb $0, (%[sel])"       // MPKBOX_SELECTOR_ALLOW
        : "+a"(eax)
        : "c"(0), "d"(0), [orig] "r"(orig), [sel] "r"(selector_page)
        : "memory");
  }
  if (Rdpkru() != orig) state.SkipWithError("PKRU not restored");
  if (selector_page[0] != 0) state.SkipWithError("selector not ALLOW");
}
BENCHMARK(BM_WrpkruPairWithStores);

void BM_SelectorStorePair(benchmark::State& state) {
  for (auto _ : state) {
    asm volatile(
        "movb $1, (%[sel])\n\t"
        "movb $0, (%[sel])"
        :
        : [sel] "r"(selector_page)
        : "memory");
  }
  if (selector_page[0] != 0) state.SkipWithError("selector not ALLOW");
}
BENCHMARK(BM_SelectorStorePair);

// The floor models, each run with PKRU toggled as in BM_WrpkruPair.
extern "C" void mpkbox_floor_call(uint32_t inside, uint32_t host);
extern "C" void mpkbox_floor_switch(uint32_t inside, uint32_t host);
extern "C" void mpkbox_floor_trusted(uint32_t inside, uint32_t host);

template <void (*kFloor)(uint32_t, uint32_t)>
void BM_Floor(benchmark::State& state) {
  const uint32_t orig = Rdpkru();
  const uint32_t other = orig ^ (2u << 30);
  for (auto _ : state) kFloor(other, orig);
  if (Rdpkru() != orig) state.SkipWithError("PKRU not restored");
}
BENCHMARK(BM_Floor<mpkbox_floor_call>)->Name("BM_FloorCall");
BENCHMARK(BM_Floor<mpkbox_floor_switch>)->Name("BM_FloorSwitch");
BENCHMARK(BM_Floor<mpkbox_floor_trusted>)->Name("BM_FloorTrusted");

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

// The gate against the trusted floor, interleaved: blocks of kRatioBlock
// floor calls and kRatioBlock gate calls alternate (the order flips every
// iteration), each block timed with the TSC; the counters are medians over
// the blocks, so preemption, frequency steps and a neighbour's build hit
// both sides alike. `ratio` is the median of per-pair ratios; `stack_off`
// (the host stack's page offset, randomised per process) is there to look
// for layout effects between processes.
constexpr int kRatioBlock = 200;

inline uint64_t Tsc() {
  uint32_t lo, hi;
  asm volatile("lfence\n\trdtsc\n\tlfence" : "=a"(lo), "=d"(hi)::"memory");
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  return v[v.size() / 2];
}

void BM_GateOverFloor(benchmark::State& state) {
  mpkbox::Compartment& box = Box();
  if (!Check(state, box.Call(&Empty))) return;
  const uint32_t orig = Rdpkru();
  const uint32_t other = orig ^ (2u << 30);
  std::vector<double> gate, floor, ratio;
  gate.reserve(1 << 16);
  floor.reserve(1 << 16);
  ratio.reserve(1 << 16);
  const auto wall0 = std::chrono::steady_clock::now();
  const uint64_t tsc0 = Tsc();
  bool floor_first = true;
  auto time_floor = [&] {
    const uint64_t t = Tsc();
    for (int i = 0; i < kRatioBlock; ++i) mpkbox_floor_trusted(other, orig);
    return static_cast<double>(Tsc() - t);
  };
  auto time_gate = [&] {
    const uint64_t t = Tsc();
    for (int i = 0; i < kRatioBlock; ++i) {
      absl::Status s = box.Call(&Empty);
      benchmark::DoNotOptimize(s);
    }
    return static_cast<double>(Tsc() - t);
  };
  for (auto _ : state) {
    double f, g;
    if (floor_first) {
      f = time_floor();
      g = time_gate();
    } else {
      g = time_gate();
      f = time_floor();
    }
    floor_first = !floor_first;
    if (gate.size() < gate.capacity()) {
      floor.push_back(f);
      gate.push_back(g);
      ratio.push_back(g / f);
    }
  }
  const double ns_per_tick =
      std::chrono::duration<double, std::nano>(
          std::chrono::steady_clock::now() - wall0)
          .count() /
      static_cast<double>(Tsc() - tsc0);
  state.counters["ratio"] = Median(ratio);
  state.counters["gate_ns"] = Median(gate) * ns_per_tick / kRatioBlock;
  state.counters["floor_ns"] = Median(floor) * ns_per_tick / kRatioBlock;
  state.counters["stack_off"] =
      static_cast<double>(reinterpret_cast<uintptr_t>(&orig) & 4095);
  if (Rdpkru() != orig) state.SkipWithError("PKRU not restored");
  if (!box.Call(&Empty).ok()) state.SkipWithError("gate call failed");
}
BENCHMARK(BM_GateOverFloor)->MinTime(0.5);

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

// Call checks where pointer arguments point (host stacks, data and heap are
// refused before the gate); integer arguments pay nothing. The same load
// inside, given a pointer or the same address as an integer.
__attribute__((noinline)) long LoadPointer(const long* p) {
  asm volatile("" : "+r"(p));
  return *p;
}
__attribute__((noinline)) long LoadAddress(uintptr_t p) {
  asm volatile("" : "+r"(p));
  return *reinterpret_cast<const long*>(p);
}

const long* BoxLong() {
  static const long* p = []() -> const long* {
    absl::StatusOr<void*> mem = Box().Allocate(sizeof(long));
    if (!mem.ok()) return nullptr;
    *static_cast<long*>(*mem) = 42;
    return static_cast<const long*>(*mem);
  }();
  return p;
}

template <typename Arg, long (*kLoad)(Arg)>
void BM_GateRoundTripLoad(benchmark::State& state) {
  mpkbox::Compartment& box = Box();
  const Arg p = reinterpret_cast<Arg>(BoxLong());
  if (BoxLong() == nullptr || !Check(state, box.Call(kLoad, p))) return;
  for (auto _ : state) {
    benchmark::DoNotOptimize(p);
    auto r = box.Call(kLoad, p);
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_GateRoundTripLoad<const long*, LoadPointer>)
    ->Name("BM_GateRoundTripPointerArg");
BENCHMARK(BM_GateRoundTripLoad<uintptr_t, LoadAddress>)
    ->Name("BM_GateRoundTripIntegerArg");

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

// ---------------------------------------------------------------------------
// System calls.

void PlainSyscall(benchmark::State& state) {
  const long expected = getppid();
  for (auto _ : state) {
    long r = syscall(SYS_getppid);
    benchmark::DoNotOptimize(r);
  }
  if (syscall(SYS_getppid) != expected) state.SkipWithError("wrong getppid");
}

void BM_PlainSyscall(benchmark::State& state) {
  // Make sure this thread has entered a compartment, so that dispatch is
  // armed whatever order the repetitions run in.
  if (!Check(state, Box().Call(&Empty))) return;
  PlainSyscall(state);
}
BENCHMARK(BM_PlainSyscall);

void BM_PlainSyscallNoDispatch(benchmark::State& state) {
  std::thread t([&state] { PlainSyscall(state); });
  t.join();
}
BENCHMARK(BM_PlainSyscallNoDispatch);

// One Call of `fn` in `box`; untimed first, checking its result and that
// `emulated` of its syscalls went through the dispatcher.
void SyscallLoop(benchmark::State& state, mpkbox::Compartment& box,
                 long (*fn)(), long expected, uint64_t emulated) {
  const uint64_t before = mpkbox::internal::EmulatedSyscalls();
  auto first = box.Call(fn);
  const uint64_t after = mpkbox::internal::EmulatedSyscalls();
  if (!first.ok()) {
    state.SkipWithError("the Call failed");
    return;
  }
  if (first->UnverifiedValue("bench self-check") != expected) {
    state.SkipWithError("the compartment function gave a wrong result");
    return;
  }
  if (after - before != emulated) {
    state.SkipWithError("not every syscall went through the dispatcher");
    return;
  }
  for (auto _ : state) {
    auto r = box.Call(fn);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations() * kSyscallsPerCall);
}

void BM_InterceptedSyscall(benchmark::State& state) {
  SyscallLoop(state, SyscallBox(), &GetppidLoop, getppid(), kSyscallsPerCall);
}
BENCHMARK(BM_InterceptedSyscall);

void BM_DeniedSyscallErrno(benchmark::State& state) {
  SyscallLoop(state, DenyBox(), &GetppidLoop, -EPERM, kSyscallsPerCall);
}
BENCHMARK(BM_DeniedSyscallErrno);

void BM_CompartmentEmpty16(benchmark::State& state) {
  SyscallLoop(state, SyscallBox(), &EmptyLoop16, SYS_getppid, 0);
}
BENCHMARK(BM_CompartmentEmpty16);

// ---------------------------------------------------------------------------
// Faults and Reset.

// One untimed fault of `fn`: checks that it is contained as kAborted with the
// expected signal and si_code, and records how many frames the report
// symbolized (each one, plus the faulting ip, is one absl::Symbolize).
bool CheckFault(benchmark::State& state, mpkbox::Compartment& box,
                void (*fn)(), int sig, int code) {
  if (!box.Reset().ok()) {
    state.SkipWithError("Reset failed");
    return false;
  }
  absl::Status s = box.Call(fn);
  const mpkbox::FaultReport* f = box.last_fault();
  if (s.code() != absl::StatusCode::kAborted || f == nullptr ||
      f->signal != sig || f->code != code) {
    state.SkipWithError("the fault was not contained as expected");
    return false;
  }
  state.counters["frames"] = static_cast<double>(f->backtrace.size());
  // The key the report found for si_addr in /proc/self/smaps (-1: unmapped,
  // or no address to look up).
  state.counters["pkey"] = f->pkey;
  return box.Reset().ok();
}

void FaultAndReset(benchmark::State& state, void (*fn)(), int sig, int code) {
  mpkbox::Compartment& box = FaultBox();
  if (!CheckFault(state, box, fn, sig, code)) return;
  for (auto _ : state) {
    absl::Status s = box.Call(fn);
    if (s.code() != absl::StatusCode::kAborted) {
      state.SkipWithError("the fault did not give kAborted");
      break;
    }
    absl::Status r = box.Reset();
    if (!r.ok()) {
      state.SkipWithError("Reset failed");
      break;
    }
  }
  if (!box.Reset().ok() || !box.Call(&Empty).ok()) {
    state.SkipWithError("the compartment is unusable after the loop");
  }
}

void BM_FaultAndReset(benchmark::State& state) {
  FaultAndReset(state, &Ud2, SIGILL, ILL_ILLOPN);
}
BENCHMARK(BM_FaultAndReset);

void BM_FaultAndResetSegv(benchmark::State& state) {
  FaultAndReset(state, &WriteHostGlobal, SIGSEGV, SEGV_PKUERR);
  if (host_global != 0) state.SkipWithError("the host global was written");
}
BENCHMARK(BM_FaultAndResetSegv);

void BM_FaultAndResetNull(benchmark::State& state) {
  FaultAndReset(state, &WriteNullPlus8, SIGSEGV, SEGV_MAPERR);
}
BENCHMARK(BM_FaultAndResetNull);

// Only box.Call(fn) is timed: the Reset and the Call(&Empty) that renews the
// thread's context (its first since the Reset) are outside.
void FaultToStatus(benchmark::State& state, void (*fn)(), int sig, int code) {
  mpkbox::Compartment& box = FaultBox();
  if (!CheckFault(state, box, fn, sig, code)) return;
  for (auto _ : state) {
    if (!box.Reset().ok() || !box.Call(&Empty).ok()) {
      state.SkipWithError("Reset or the Call after it failed");
      break;
    }
    const auto start = std::chrono::steady_clock::now();
    absl::Status s = box.Call(fn);
    const auto end = std::chrono::steady_clock::now();
    state.SetIterationTime(std::chrono::duration<double>(end - start).count());
    if (s.code() != absl::StatusCode::kAborted) {
      state.SkipWithError("the fault did not give kAborted");
      break;
    }
  }
  if (!box.Reset().ok() || !box.Call(&Empty).ok()) {
    state.SkipWithError("the compartment is unusable after the loop");
  }
}

void BM_FaultToStatus(benchmark::State& state) {
  FaultToStatus(state, &Ud2, SIGILL, ILL_ILLOPN);
}
BENCHMARK(BM_FaultToStatus)->UseManualTime();

void BM_FaultToStatusSegv(benchmark::State& state) {
  FaultToStatus(state, &WriteHostGlobal, SIGSEGV, SEGV_PKUERR);
  if (host_global != 0) state.SkipWithError("the host global was written");
}
BENCHMARK(BM_FaultToStatusSegv)->UseManualTime();

void BM_Reset(benchmark::State& state) {
  mpkbox::Compartment& box = FaultBox();
  if (!box.Reset().ok() || !Check(state, box.Call(&Empty))) return;
  for (auto _ : state) {
    absl::Status r = box.Reset();
    absl::Status s = box.Call(&Empty);  // maps the thread's stack again
    if (!r.ok() || !s.ok()) {
      state.SkipWithError("Reset or the Call after it failed");
      break;
    }
  }
}
BENCHMARK(BM_Reset);

// A compartment per request: Create, one Call (which maps the thread's stack
// for it) and destruction. Compare with BM_ForkExitWait.
void BM_CreateCallDestroy(benchmark::State& state) {
  for (auto _ : state) {
    auto box = mpkbox::Compartment::Create({.name = "per-request"});
    if (!box.ok() || !(*box)->Call(&Empty).ok()) {
      state.SkipWithError("Create or its first Call failed");
      break;
    }
  }
}
BENCHMARK(BM_CreateCallDestroy);

// The kernel runs a handler that is not behind mpkbox's entry with its
// initial PKRU (key 0 only), and the host's data and stacks carry the trusted
// key: its counter is on a key-0 page, and it runs on a stack mapped here.
MPKBOX_COMPARTMENT_READABLE volatile sig_atomic_t signals_seen = 0;
void EmptyHandler(int, siginfo_t*, void*) { signals_seen = signals_seen + 1; }

// `install` is libc's __sigaction (the kernel alone) or the host's sigaction
// (mpkbox's entry first).
void SignalRoundTrip(benchmark::State& state,
                     int (*install)(int, const struct sigaction*,
                                    struct sigaction*),
                     bool on_own_stack) {
  struct sigaction sa {}, old{};
  sa.sa_sigaction = &EmptyHandler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_SIGINFO | (on_own_stack ? SA_ONSTACK : 0);
  if (install(SIGUSR1, &sa, &old) != 0) {
    state.SkipWithError("sigaction failed");
    return;
  }
  const pid_t pid = getpid();
  const pid_t tid = static_cast<pid_t>(syscall(SYS_gettid));
  signals_seen = 0;
  for (auto _ : state) {
    // Delivered to this thread before the syscall returns.
    syscall(SYS_tgkill, pid, tid, SIGUSR1);
  }
  if (static_cast<int64_t>(signals_seen) !=
      static_cast<int64_t>(state.iterations())) {
    state.SkipWithError("not every signal reached the handler");
  }
  install(SIGUSR1, &old, nullptr);
}

void BM_SignalRoundTrip(benchmark::State& state) {
  // On a fresh thread: a thread that has entered a compartment has Syscall
  // User Dispatch armed, with its selector on a key the kernel's initial
  // signal PKRU denies, so a handler that is not behind mpkbox's entry cannot
  // even sigreturn there (the kernel kills the process). The timed loop runs
  // entirely on that thread; the thread's creation is outside it.
  std::thread t([&state] {
    constexpr size_t kBytes = 64 * 1024;
    void* stack = mmap(nullptr, kBytes, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    // The raw syscall: the stack is for handlers outside mpkbox's entry.
    stack_t ss{.ss_sp = stack, .ss_flags = 0, .ss_size = kBytes};
    if (stack == MAP_FAILED || syscall(SYS_sigaltstack, &ss, nullptr) != 0) {
      state.SkipWithError("cannot set up the handler's stack");
      return;
    }
    SignalRoundTrip(state, &__sigaction, /*on_own_stack=*/true);
    ss = stack_t{.ss_sp = nullptr, .ss_flags = SS_DISABLE, .ss_size = 0};
    syscall(SYS_sigaltstack, &ss, nullptr);
    munmap(stack, kBytes);
  });
  t.join();
}
BENCHMARK(BM_SignalRoundTrip);

void BM_SignalRoundTripHost(benchmark::State& state) {
  SignalRoundTrip(state, &sigaction, /*on_own_stack=*/false);
}
BENCHMARK(BM_SignalRoundTripHost);

void BM_ForkExitWait(benchmark::State& state) {
  for (auto _ : state) {
    const pid_t child = fork();
    if (child == 0) _exit(0);
    int status = 0;
    if (child < 0 || waitpid(child, &status, 0) != child ||
        !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      state.SkipWithError("fork/waitpid failed");
      break;
    }
  }
}
BENCHMARK(BM_ForkExitWait);

void BM_SymbolizeOne(benchmark::State& state) {
  char name[256];  // as the fault report's buffer
  const void* pc = reinterpret_cast<const void*>(&Ud2);
  if (!absl::Symbolize(pc, name, sizeof(name))) {
    state.SkipWithError("absl::Symbolize failed");
    return;
  }
  for (auto _ : state) {
    bool ok = absl::Symbolize(pc, name, sizeof(name));
    benchmark::DoNotOptimize(ok);
    benchmark::DoNotOptimize(name);
  }
}
BENCHMARK(BM_SymbolizeOne);

void BM_ReadSmaps(benchmark::State& state, const void* addr, int key) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(addr);
  if (mpkbox::internal::PkeyOfAddress(a) != key) {
    state.SkipWithError("PkeyOfAddress gave an unexpected key");
    return;
  }
  for (auto _ : state) {
    int k = mpkbox::internal::PkeyOfAddress(a);
    benchmark::DoNotOptimize(k);
  }
}
// Ud2's page and the host global are near the start of the file (the
// executable's own mappings); address 8 lies below the first mapping, where
// the (sorted) file shows it is unmapped.
BENCHMARK_CAPTURE(BM_ReadSmaps, code, reinterpret_cast<const void*>(&Ud2), 0);
BENCHMARK_CAPTURE(BM_ReadSmaps, host_global,
                  static_cast<const void*>(&host_global), 0);
BENCHMARK_CAPTURE(BM_ReadSmaps, unmapped,
                  static_cast<const void*>(bad_pointer), -1);

}  // namespace

int main(int argc, char** argv) {
  if (!mpkbox::Runtime::IsSupported()) {
    std::fprintf(stderr, "gate_bench: no PKU on this machine\n");
    return 2;
  }
  // This program's WRPKRU baselines are stray WRPKRUs: more than strict
  // mode's breakpoints can guard. The guards cost the gate nothing (they
  // fire only at those addresses), so the figures hold for strict mode.
  if (absl::Status s = mpkbox::Runtime::Init({.strict = false}); !s.ok()) {
    std::fprintf(stderr, "gate_bench: Runtime::Init: %s\n",
                 std::string(s.message()).c_str());
    return 2;
  }
  Box();  // create the compartments before any timing
  FaultBox();
  SyscallBox();
  DenyBox();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
