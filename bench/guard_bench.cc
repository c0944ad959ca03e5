// What guarding the process's stray privileged instructions costs
// (runtime/gadget_guard.cc: traps in place, breakpoints for the rest).
// Not part of bench/run.sh's report; bench/RESULTS.md records its figures
// by hand with the command. Run in registration order: BM_HostPkeySet runs
// Init in this process, which the children of the first three must not
// inherit.
//
//   BM_InitInFreshProcess  Runtime::Init in a forked child of a process that
//                          never ran it (manual time: Init alone).
//   BM_FirstScan           the first ScanProcessForGadgets in such a child:
//                          maps, byte scan, disassembly of each site's
//                          function, the one-byte writes. What Init adds.
//   BM_Rescan              a second scan in the same child: what each
//                          dlopen pays (nothing new to disassemble or
//                          write), and what Init's scan cost before the
//                          traps (the same maps parse and byte scan).
//   BM_HostPkeySet         libc's pkey_set run by host code: its WRPKRU is a
//                          trap now, emulated by the signal dispatcher.
//   BM_CheckedWrpkru       mpkbox_open_all_keys, trampolines/' checked
//                          WRPKRU: the same write without the trap.
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstdint>

#include "benchmark/benchmark.h"
#include "mpkbox/mpkbox.h"
#include "runtime/gadget_guard.h"
#include "trampolines/trampolines.h"

namespace {

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

// Runs `timed` in a forked child and returns the nanoseconds it reports.
template <typename Setup, typename Timed>
double InChild(Setup setup, Timed timed) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  const pid_t pid = fork();
  if (pid == 0) {
    setup();
    const int64_t t0 = NowNs();
    timed();
    const int64_t ns = NowNs() - t0;
    (void)!write(fds[1], &ns, sizeof(ns));
    _exit(0);
  }
  int64_t ns = -1;
  (void)!read(fds[0], &ns, sizeof(ns));
  close(fds[0]);
  close(fds[1]);
  waitpid(pid, nullptr, 0);
  return static_cast<double>(ns) * 1e-9;
}

void BM_InitInFreshProcess(benchmark::State& state) {
  for (auto _ : state) {
    state.SetIterationTime(InChild(
        [] {}, [] { benchmark::DoNotOptimize(mpkbox::Runtime::Init().ok()); }));
  }
}
BENCHMARK(BM_InitInFreshProcess)->UseManualTime()->Unit(benchmark::kMicrosecond);

void BM_FirstScan(benchmark::State& state) {
  for (auto _ : state) {
    state.SetIterationTime(InChild([] {}, [] {
      mpkbox::internal::ScanProcessForGadgets().IgnoreError();
    }));
  }
}
BENCHMARK(BM_FirstScan)->UseManualTime()->Unit(benchmark::kMicrosecond);

void BM_Rescan(benchmark::State& state) {
  for (auto _ : state) {
    state.SetIterationTime(InChild(
        [] { mpkbox::internal::ScanProcessForGadgets().IgnoreError(); },
        [] { mpkbox::internal::ScanProcessForGadgets().IgnoreError(); }));
  }
}
BENCHMARK(BM_Rescan)->UseManualTime()->Unit(benchmark::kMicrosecond);

void BM_HostPkeySet(benchmark::State& state) {
  if (!mpkbox::Runtime::Init().ok()) {
    state.SkipWithError("Runtime::Init failed");
    return;
  }
  for (auto _ : state) benchmark::DoNotOptimize(pkey_set(1, 0));
}
BENCHMARK(BM_HostPkeySet);

void BM_CheckedWrpkru(benchmark::State& state) {
  for (auto _ : state) mpkbox_open_all_keys();
}
BENCHMARK(BM_CheckedWrpkru);

}  // namespace

BENCHMARK_MAIN();
