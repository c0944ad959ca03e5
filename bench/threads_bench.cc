// Loaded code's pthread bindings (runtime/compartment_libc/threads.cc)
// against glibc's, the same plugin (bench/plugins/mutex_loop.c) loaded into
// a compartment and dlopen'ed natively, in the same run.
//
//   BM_NativeMutex / BM_LoadedMutex        kCalls uncontended lock/unlock
//                                          pairs of a normal mutex
//   BM_NativeRecursive / BM_LoadedRecursive   the same, a recursive mutex
//   BM_NativeOnceKeys / BM_LoadedOnceKeys  kCalls of pthread_once (done),
//                                          setspecific and getspecific
//   BM_NativeMutexMultiThreaded            BM_NativeMutex once the process
//                                          has a second thread (registered
//                                          last: it starts one that sleeps)
//
// glibc (2.35 on) locks a normal mutex with plain stores while the process
// has one thread; the bindings cannot know that no other host thread will
// enter the compartment, so they always use atomics, as glibc does once a
// second thread exists.
//
// Items are pairs (or triples); the loaded one's time per item includes a
// share (1 / kCalls) of one Call's gate round trip.
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <chrono>
#include <memory>
#include <thread>

#include "benchmark/benchmark.h"
#include "mpkbox/mpkbox.h"

namespace {

constexpr long kCalls = 256;

using MutexLoop = long(long, int);
using OnceKeysLoop = long(long);

struct Loops {
  MutexLoop* mutex = nullptr;
  OnceKeysLoop* once_keys = nullptr;
};

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "threads_bench: %s\n", what);
  std::exit(2);
}

const Loops& Native() {
  static const Loops loops = [] {
    void* h = dlopen(MPKBOX_MUTEX_LOOP_PLUGIN, RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) Die(dlerror());
    return Loops{reinterpret_cast<MutexLoop*>(dlsym(h, "mutex_loop")),
                 reinterpret_cast<OnceKeysLoop*>(
                     dlsym(h, "once_and_keys_loop"))};
  }();
  return loops;
}

mpkbox::Compartment& Box() {
  static mpkbox::Compartment* box = [] {
    auto b = mpkbox::Compartment::Create({.name = "bench-threads"});
    if (!b.ok()) Die(b.status().ToString().c_str());
    if (absl::Status s = (*b)->Load(MPKBOX_MUTEX_LOOP_PLUGIN); !s.ok()) {
      Die(s.ToString().c_str());
    }
    return b->release();
  }();
  return *box;
}

const Loops& Loaded() {
  static const Loops loops = [] {
    auto m = Box().Lookup<MutexLoop>("mutex_loop");
    auto o = Box().Lookup<OnceKeysLoop>("once_and_keys_loop");
    if (!m.ok() || !o.ok()) Die("lookup");
    return Loops{*m, *o};
  }();
  return loops;
}

void Check(benchmark::State& state, long failures) {
  if (failures != 0) state.SkipWithError("a pthread call failed");
}

void BM_NativeMutex(benchmark::State& state) {
  for (auto _ : state) Check(state, Native().mutex(kCalls, 0));
  state.SetItemsProcessed(state.iterations() * kCalls);
}
void BM_LoadedMutex(benchmark::State& state) {
  for (auto _ : state) {
    auto r = Box().Call(Loaded().mutex, kCalls, 0);
    Check(state, r.ok() ? r->UnverifiedValue("a count") : 1);
  }
  state.SetItemsProcessed(state.iterations() * kCalls);
}
void BM_NativeRecursive(benchmark::State& state) {
  for (auto _ : state) Check(state, Native().mutex(kCalls, 1));
  state.SetItemsProcessed(state.iterations() * kCalls);
}
void BM_LoadedRecursive(benchmark::State& state) {
  for (auto _ : state) {
    auto r = Box().Call(Loaded().mutex, kCalls, 1);
    Check(state, r.ok() ? r->UnverifiedValue("a count") : 1);
  }
  state.SetItemsProcessed(state.iterations() * kCalls);
}
void BM_NativeOnceKeys(benchmark::State& state) {
  for (auto _ : state) Check(state, Native().once_keys(kCalls));
  state.SetItemsProcessed(state.iterations() * kCalls);
}
void BM_LoadedOnceKeys(benchmark::State& state) {
  for (auto _ : state) {
    auto r = Box().Call(Loaded().once_keys, kCalls);
    Check(state, r.ok() ? r->UnverifiedValue("a count") : 1);
  }
  state.SetItemsProcessed(state.iterations() * kCalls);
}

void BM_NativeMutexMultiThreaded(benchmark::State& state) {
  static const bool started = [] {
    std::thread([] {
      for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
    }).detach();
    return true;
  }();
  (void)started;
  BM_NativeMutex(state);
}

BENCHMARK(BM_NativeMutex);
BENCHMARK(BM_LoadedMutex);
BENCHMARK(BM_NativeRecursive);
BENCHMARK(BM_LoadedRecursive);
BENCHMARK(BM_NativeOnceKeys);
BENCHMARK(BM_LoadedOnceKeys);
BENCHMARK(BM_NativeMutexMultiThreaded);

}  // namespace

BENCHMARK_MAIN();
