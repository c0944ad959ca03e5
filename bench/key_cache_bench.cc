// The key cache (issue 16 item 1): what a Call costs when its compartment
// holds a hardware key (a hit: the gate round trip, unchanged) and when it
// must take one from another compartment (a miss: both re-tagged), against
// the size of the memory and the number of mappings a re-tag moves.
//
//   BM_KeyHit               box->Call(&Empty) on a resident compartment: the
//                           same loop as gate_bench's BM_GateRoundTrip.
//   BM_KeyMiss/<KiB>/<thr>  14 compartments called in turn, so each Call
//                           evicts the least recently used (the next one):
//                           a miss, an eviction and the gate. <KiB> of each
//                           heap touched; <thr> more threads have called each
//                           compartment, so each has 1 + <thr> stacks (two
//                           pkey_mprotect calls each, guard and stack).
//                           huge_MiB: the process's huge pages after
//                           (from 56 KiB touched: sparse chunks of heaps
//                           that miss often, allocator/huge_chunks.h).
//   BM_KeyContention/<thr>  <thr> threads (more than the 13 keys) each call
//                           compartments among 64 in a random order: time per
//                           call, misses and waits included.
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "mpkbox/mpkbox.h"

namespace {

void Empty() {}

std::vector<std::unique_ptr<mpkbox::Compartment>> MakeBoxes(
    int n, size_t touched_bytes, const std::string& prefix) {
  std::vector<std::unique_ptr<mpkbox::Compartment>> boxes;
  for (int i = 0; i < n; ++i) {
    auto box = mpkbox::Compartment::Create({.name = absl::StrCat(prefix, i)});
    if (!box.ok()) return {};
    if (touched_bytes > 0) {
      absl::StatusOr<void*> p = (*box)->Allocate(touched_bytes);
      if (!p.ok()) return {};
      memset(*p, 1, touched_bytes);
    }
    boxes.push_back(*std::move(box));
  }
  return boxes;
}

// AnonHugePages of the whole process, in MiB.
double AnonHugeMiB() {
  std::ifstream rollup("/proc/self/smaps_rollup");
  std::string line;
  while (std::getline(rollup, line)) {
    if (line.rfind("AnonHugePages:", 0) == 0) {
      return std::stod(line.substr(14)) / 1024;
    }
  }
  return 0;
}

void BM_KeyHit(benchmark::State& state) {
  auto boxes = MakeBoxes(1, 0, "hit");
  if (boxes.empty() || !boxes[0]->Call(&Empty).ok()) {
    state.SkipWithError("set-up failed");
    return;
  }
  mpkbox::Compartment& box = *boxes[0];
  for (auto _ : state) {
    absl::Status s = box.Call(&Empty);
    benchmark::DoNotOptimize(s);
  }
}
BENCHMARK(BM_KeyHit);

void BM_KeyMiss(benchmark::State& state) {
  const size_t touched = static_cast<size_t>(state.range(0)) << 10;
  const int extra_threads = static_cast<int>(state.range(1));
  constexpr int kBoxes = 14;  // one more than the keys compartments get
  auto boxes = MakeBoxes(kBoxes, touched, "miss");
  if (boxes.empty()) {
    state.SkipWithError("set-up failed");
    return;
  }
  for (int t = 0; t < extra_threads; ++t) {
    std::thread([&] {
      for (auto& b : boxes) static_cast<void>(b->Call(&Empty));
    }).join();
  }
  for (auto& b : boxes) {
    if (!b->Call(&Empty).ok()) {
      state.SkipWithError("first call failed");
      return;
    }
  }
  size_t i = 0;
  for (auto _ : state) {
    if (!boxes[i]->Call(&Empty).ok()) {
      state.SkipWithError("call failed");
      break;
    }
    i = i + 1 == kBoxes ? 0 : i + 1;
  }
  // Dense heap chunks become huge pages (allocator/huge_chunks.h): the
  // process's total, for the 14 compartments' memory it costs.
  state.counters["huge_MiB"] = AnonHugeMiB();
}
BENCHMARK(BM_KeyMiss)
    ->ArgsProduct({{0, 48, 56, 64, 128, 256, 448, 512, 768, 1024, 8192}, {0}})
    ->Args({1024, 3})
    ->Args({1024, 15});

void BM_KeyContention(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  auto boxes = MakeBoxes(64, 4096, "busy");
  if (boxes.empty()) {
    state.SkipWithError("set-up failed");
    return;
  }
  constexpr int kCallsPerThread = 200;
  std::atomic<int> failed{0};
  for (auto _ : state) {
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        std::mt19937 rng(t + 1);
        for (int k = 0; k < kCallsPerThread; ++k) {
          if (!boxes[rng() % boxes.size()]->Call(&Empty).ok()) ++failed;
        }
      });
    }
    for (std::thread& w : workers) w.join();
  }
  if (failed.load() != 0) state.SkipWithError("calls failed");
  state.SetItemsProcessed(state.iterations() * threads * kCallsPerThread);
}
BENCHMARK(BM_KeyContention)->Arg(2)->Arg(16)->Arg(32)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
