// Loaded code's libc syscall wrappers (runtime/compartment_libc/syscalls.cc:
// the libc entry, the policy judged with host rights, no SIGSYS) against the
// same wrapper called by the host, in the same run.
//
//   BM_PlainWrite        write(2) of 16 bytes to /dev/null from the host,
//                        kCalls times (glibc's wrapper), on a thread that
//                        has entered a compartment (Syscall User Dispatch
//                        armed, as on any host thread that uses them).
//   BM_LoadedWrite       one Call of a loaded plugin's loop making the same
//                        kCalls writes through its `write` import, in a
//                        compartment whose policy allows write to that fd.
//   BM_LoadedWriteSigpipeBlocked
//                        BM_LoadedWrite on a thread that blocks SIGPIPE:
//                        each write then runs between a block and a restore
//                        of the mask, with a sigpending (runtime/sigpipe.cc's
//                        exact path; before issue 15, every write's).
//   BM_PlainGetrandom, BM_LoadedGetrandom
//                        the same with getrandom(2) of 16 bytes.
//
// Items are syscalls: the loaded one's time per item includes a share
// (1 / kCalls) of the Call's gate round trip.
#include <fcntl.h>
#include <signal.h>
#include <sys/random.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>

#include "benchmark/benchmark.h"
#include "mpkbox/mpkbox.h"

namespace {

constexpr int kCalls = 16;
constexpr long kBytes = 16;

using WriteLoop = long(int, const char*, long, int);
using GetrandomLoop = long(char*, long, int);

int DevNull() {
  static const int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
  return fd;
}

struct Plugin {
  std::unique_ptr<mpkbox::Compartment> box;
  WriteLoop* write_loop = nullptr;
  GetrandomLoop* getrandom_loop = nullptr;
  char* buffer = nullptr;
};

Plugin& Loaded() {
  static Plugin* plugin = [] {
    auto* p = new Plugin;
    auto box = mpkbox::Compartment::Create(
        {.name = "bench-libc",
         .syscalls = mpkbox::SyscallPolicy().AllowWrite({DevNull()})
                         .AllowGetrandom()});
    if (!box.ok()) {
      std::fprintf(stderr, "libc_bench: %s\n", box.status().ToString().c_str());
      std::exit(2);
    }
    p->box = *std::move(box);
    absl::Status s = p->box->Load(MPKBOX_LIBC_LOOP_PLUGIN);
    auto w = p->box->Lookup<WriteLoop>("write_loop");
    auto g = p->box->Lookup<GetrandomLoop>("getrandom_loop");
    auto b = p->box->Allocate(4096);
    if (!s.ok() || !w.ok() || !g.ok() || !b.ok()) {
      std::fprintf(stderr, "libc_bench: cannot load the plugin\n");
      std::exit(2);
    }
    p->write_loop = *w;
    p->getrandom_loop = *g;
    p->buffer = static_cast<char*>(*b);
    return p;
  }();
  return *plugin;
}

// Arms Syscall User Dispatch on this thread, as a Call does.
bool EnterOnce(benchmark::State& state) {
  Plugin& p = Loaded();
  if (p.box->Call(p.getrandom_loop, p.buffer, kBytes, 1).ok()) return true;
  state.SkipWithError("the first Call failed");
  return false;
}

void BM_PlainWrite(benchmark::State& state) {
  if (!EnterOnce(state)) return;
  char buf[kBytes] = {};
  for (auto _ : state) {
    for (int i = 0; i < kCalls; ++i) {
      long r = write(DevNull(), buf, kBytes);
      benchmark::DoNotOptimize(r);
    }
  }
  state.SetItemsProcessed(state.iterations() * kCalls);
}
BENCHMARK(BM_PlainWrite);

void BM_LoadedWrite(benchmark::State& state) {
  Plugin& p = Loaded();
  auto first = p.box->Call(p.write_loop, DevNull(), p.buffer, kBytes, kCalls);
  if (!first.ok() || first->UnverifiedValue("bench self-check") != kBytes) {
    state.SkipWithError("the loaded write loop failed");
    return;
  }
  for (auto _ : state) {
    auto r = p.box->Call(p.write_loop, DevNull(), p.buffer, kBytes, kCalls);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations() * kCalls);
}
BENCHMARK(BM_LoadedWrite);

void BM_LoadedWriteSigpipeBlocked(benchmark::State& state) {
  sigset_t pipe_only, saved;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_only, &saved);
  BM_LoadedWrite(state);
  pthread_sigmask(SIG_SETMASK, &saved, nullptr);
}
BENCHMARK(BM_LoadedWriteSigpipeBlocked);

void BM_PlainGetrandom(benchmark::State& state) {
  if (!EnterOnce(state)) return;
  char buf[kBytes];
  for (auto _ : state) {
    for (int i = 0; i < kCalls; ++i) {
      long r = getrandom(buf, kBytes, 0);
      benchmark::DoNotOptimize(r);
    }
  }
  state.SetItemsProcessed(state.iterations() * kCalls);
}
BENCHMARK(BM_PlainGetrandom);

void BM_LoadedGetrandom(benchmark::State& state) {
  Plugin& p = Loaded();
  auto first = p.box->Call(p.getrandom_loop, p.buffer, kBytes, kCalls);
  if (!first.ok() || first->UnverifiedValue("bench self-check") != kBytes) {
    state.SkipWithError("the loaded getrandom loop failed");
    return;
  }
  for (auto _ : state) {
    auto r = p.box->Call(p.getrandom_loop, p.buffer, kBytes, kCalls);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations() * kCalls);
}
BENCHMARK(BM_LoadedGetrandom);

}  // namespace

BENCHMARK_MAIN();
