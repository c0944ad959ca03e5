// Loaded code's mmap/munmap (runtime/compartment_libc/memory.cc: the libc
// entry, pages of the compartment's heap) against the kernel's, in the
// same run.
//
//   BM_PlainMmap/<bytes>   mmap, one write, munmap, kCalls times, from the
//                          host (glibc's wrappers, the kernel's pages).
//   BM_LoadedMmap/<bytes>  one Call of a loaded plugin's loop doing the same
//                          through its imports.
//
// Items are mmap/munmap pairs: the loaded one's time per item includes a
// share (1 / kCalls) of the Call's gate round trip.
#include <sys/mman.h>

#include <cstdio>
#include <cstdlib>
#include <memory>

#include "benchmark/benchmark.h"
#include "mpkbox/mpkbox.h"

namespace {

constexpr int kCalls = 16;

using MmapLoop = long(unsigned long, int);

struct Plugin {
  std::unique_ptr<mpkbox::Compartment> box;
  MmapLoop* loop = nullptr;
};

Plugin& Loaded() {
  static Plugin* plugin = [] {
    auto* p = new Plugin;
    auto box = mpkbox::Compartment::Create({.name = "bench-mmap"});
    if (!box.ok()) {
      std::fprintf(stderr, "libc_memory_bench: %s\n",
                   box.status().ToString().c_str());
      std::exit(2);
    }
    p->box = *std::move(box);
    absl::Status s = p->box->Load(MPKBOX_MMAP_LOOP_PLUGIN);
    auto loop = p->box->Lookup<MmapLoop>("mmap_loop");
    if (!s.ok() || !loop.ok()) {
      std::fprintf(stderr, "libc_memory_bench: cannot load the plugin\n");
      std::exit(2);
    }
    p->loop = *loop;
    return p;
  }();
  return *plugin;
}

void BM_PlainMmap(benchmark::State& state) {
  const size_t bytes = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    for (int i = 0; i < kCalls; ++i) {
      char* p = static_cast<char*>(mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
      p[0] = 1;
      benchmark::DoNotOptimize(p[0]);
      munmap(p, bytes);
    }
  }
  state.SetItemsProcessed(state.iterations() * kCalls);
}
BENCHMARK(BM_PlainMmap)->Arg(4096)->Arg(64 << 10)->Arg(1 << 20);

void BM_LoadedMmap(benchmark::State& state) {
  Plugin& p = Loaded();
  const unsigned long bytes = static_cast<unsigned long>(state.range(0));
  auto first = p.box->Call(p.loop, bytes, kCalls);
  if (!first.ok() || first->UnverifiedValue("bench self-check") != kCalls) {
    state.SkipWithError("the loaded mmap loop failed");
    return;
  }
  for (auto _ : state) {
    auto r = p.box->Call(p.loop, bytes, kCalls);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations() * kCalls);
}
BENCHMARK(BM_LoadedMmap)->Arg(4096)->Arg(64 << 10)->Arg(1 << 20);

}  // namespace

BENCHMARK_MAIN();
