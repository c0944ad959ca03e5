// Loaded code's stdio (runtime/compartment_libc/stdio_*.cc: formatting
// inside, the bytes through the libc entry, copied and cut into lines by
// the host for the sink) against glibc's fprintf by the host, in the same
// run.
//
//   BM_PlainFprintf   fprintf of a short line to an unbuffered FILE on
//                     /dev/null (as stderr is unbuffered), kCalls times.
//   BM_LoadedFprintf  one Call of a loaded loop making the same kCalls
//                     fprintf(stderr, ...) calls; the sink discards each
//                     line. Its time per item includes 1 / kCalls of the
//                     Call's gate round trip.
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "benchmark/benchmark.h"
#include "mpkbox/mpkbox.h"

namespace {

constexpr int kCalls = 16;

using FprintfLoop = int(int);

struct Plugin {
  std::unique_ptr<mpkbox::Compartment> box;
  FprintfLoop* loop = nullptr;
};

Plugin& Loaded() {
  static Plugin* plugin = [] {
    auto* p = new Plugin;
    mpkbox::CompartmentOptions options{.name = "bench-stdio"};
    options.stdio_sink = [](mpkbox::StdioStream, absl::string_view line) {
      benchmark::DoNotOptimize(line.data());
    };
    options.stdio_budget_bytes = ~size_t{0};
    auto box = mpkbox::Compartment::Create(std::move(options));
    if (!box.ok()) {
      std::fprintf(stderr, "stdio_bench: %s\n",
                   box.status().ToString().c_str());
      std::exit(2);
    }
    p->box = *std::move(box);
    absl::Status s = p->box->Load(MPKBOX_STDIO_LOOP_PLUGIN);
    auto loop = p->box->Lookup<FprintfLoop>("fprintf_loop");
    if (!s.ok() || !loop.ok()) {
      std::fprintf(stderr, "stdio_bench: cannot load the plugin\n");
      std::exit(2);
    }
    p->loop = *loop;
    return p;
  }();
  return *plugin;
}

void BM_PlainFprintf(benchmark::State& state) {
  FILE* f = std::fopen("/dev/null", "w");
  std::setvbuf(f, nullptr, _IONBF, 0);
  for (auto _ : state) {
    for (int i = 0; i < kCalls; ++i) {
      int r = std::fprintf(f, "warning %d: %s\n", i, "x");
      benchmark::DoNotOptimize(r);
    }
  }
  std::fclose(f);
  state.SetItemsProcessed(state.iterations() * kCalls);
}
BENCHMARK(BM_PlainFprintf);

void BM_LoadedFprintf(benchmark::State& state) {
  Plugin& p = Loaded();
  for (auto _ : state) {
    auto r = p.box->Call(p.loop, kCalls);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations() * kCalls);
}
BENCHMARK(BM_LoadedFprintf);

}  // namespace

BENCHMARK_MAIN();
