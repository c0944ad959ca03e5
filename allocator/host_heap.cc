#include "allocator/host_heap.h"

#include <dlfcn.h>
#include <elf.h>
#include <sched.h>
#include <sys/auxv.h>
#include <sys/mman.h>

#include <mutex>
#include <new>

#include <cstdio>

#include "absl/container/flat_hash_set.h"
#include "allocator/address_zone.h"
#include "runtime/keys/pku.h"

// jemalloc's options. Without retain, destroying an arena unmaps its
// metadata; with it, every compartment Reset would leak 2 MiB of address
// space (measured: bench/RESULTS.md, lifecycle tests).
// narenas:1: host threads allocate from the host arena (thread.arena), so
// automatic arenas would only use up jemalloc's 4,095 arena indices, which
// compartment heaps need (one arena each; past them, mpkbox's private
// jemalloc's: jemalloc_instance.h); oversize_threshold:0: no dedicated
// arena for huge allocations, for the same reason. thp:never:
// jemalloc's metadata (2 MiB base blocks, one or more per compartment
// arena) gets MADV_NOHUGEPAGE; under transparent huge pages `always` each
// block was otherwise committed whole (4,092 compartments: 8 GB or more,
// bench/RESULTS.md "Huge pages"). Compartment and host arenas map their
// extents through mpkbox's hooks, which this does not touch.
const char* malloc_conf =  // declared by jemalloc.h
    "retain:false,narenas:1,oversize_threshold:0,thp:never";

namespace mpkbox::internal {

constinit HostHeap g_host;
AllocatorTables* g_allocator_tables = nullptr;
constinit std::atomic<int> g_allocator_state{0};

namespace {

constinit thread_local bool t_initializing = false;

// ld.so's executable segment, from its program headers in memory.
void FindLoader() {
  const uintptr_t base = getauxval(AT_BASE);
  if (base == 0) return;  // static executable, or ld.so run directly
  const auto* ehdr = reinterpret_cast<const Elf64_Ehdr*>(base);
  const auto* phdr = reinterpret_cast<const Elf64_Phdr*>(base + ehdr->e_phoff);
  for (int i = 0; i < ehdr->e_phnum; ++i) {
    if (phdr[i].p_type == PT_LOAD && (phdr[i].p_flags & PF_X)) {
      g_host.loader_lo = base + phdr[i].p_vaddr;
      g_host.loader_hi = g_host.loader_lo + phdr[i].p_memsz;
    }
  }
}

absl::Status SetUp() {
  if (!CpuHasPku()) {
    return absl::FailedPreconditionError("this CPU has no PKU");
  }
  g_host.trusted_key = pkey_alloc(0, 0);
  if (g_host.trusted_key < 0) {
    return absl::FailedPreconditionError(
        "pkey_alloc for the trusted key failed");
  }
  if (absl::Status s = ReserveZone(); !s.ok()) return s;
  constexpr size_t kBytes = (sizeof(AllocatorTables) + MPKBOX_PAGE_SIZE - 1) &
                            ~size_t{MPKBOX_PAGE_SIZE - 1};
  void* page = mmap(nullptr, kBytes, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED) {
    return absl::ResourceExhaustedError("cannot map the allocator's state");
  }
  if (absl::Status s =
          TagPages(page, kBytes, PROT_READ | PROT_WRITE, g_host.trusted_key);
      !s.ok()) {
    return s;
  }
  g_allocator_tables = new (page) AllocatorTables;
  InitTaggedHooks(&g_allocator_tables->host_hooks, g_host.trusted_key, 0, 0);
  absl::StatusOr<unsigned> host =
      CreateTaggedArena(kSystemJemalloc, &g_allocator_tables->host_hooks,
                        /*metadata_use_hooks=*/true);
  if (!host.ok()) return host.status();
  InitTaggedHooks(&g_allocator_tables->ambient_hooks, 0,
                  WindowBase(kAmbientWindow), kWindowBytes);
  absl::StatusOr<unsigned> ambient =
      CreateTaggedArena(kSystemJemalloc, &g_allocator_tables->ambient_hooks,
                        /*metadata_use_hooks=*/true);
  if (!ambient.ok()) return ambient.status();
  FindLoader();
  g_host.host_arena = *host;
  g_host.host_flags = MALLOCX_ARENA(*host);
  g_host.ambient_flags = MALLOCX_ARENA(*ambient) | MALLOCX_TCACHE_NONE;
  return absl::OkStatus();
}

}  // namespace

void InitAllocator() {
  if (t_initializing) return;  // jemalloc's own set-up allocating
  int expected = 0;
  if (g_allocator_state.compare_exchange_strong(expected, 1)) {
    t_initializing = true;  // what SetUp allocates comes from arena 0
    if (absl::Status s = SetUp(); !s.ok()) {
      g_host.host_flags = 0;
      g_host.ambient_flags = 0;
      snprintf(g_host.error, sizeof(g_host.error),
               "the host heap cannot be protected: %.*s",
               static_cast<int>(s.message().size()), s.message().data());
    }
    t_initializing = false;
    g_allocator_state.store(kAllocatorReady, std::memory_order_release);
    return;
  }
  while (g_allocator_state.load(std::memory_order_acquire) != kAllocatorReady) {
    sched_yield();
  }
}

constinit MallocFn g_jemalloc_malloc = nullptr;
constinit FreeFn g_jemalloc_free = nullptr;
constinit thread_local int8_t t_bound_to_host = 0;

namespace {
// After every library's initialization, when dlopen is safe to call.
__attribute__((constructor)) void FindJemalloc() {
  void* je = dlopen("libjemalloc.so.2", RTLD_NOW | RTLD_NOLOAD);
  if (je == nullptr) return;
  auto m = reinterpret_cast<MallocFn>(dlsym(je, "malloc"));
  auto f = reinterpret_cast<FreeFn>(dlsym(je, "free"));
  if (m != nullptr && f != nullptr) {
    g_jemalloc_free = f;
    g_jemalloc_malloc = m;
  }
}
}  // namespace

void BindThreadToHostArena() {
  InitAllocator();
  if (g_host.host_flags == 0 || g_jemalloc_malloc == nullptr) {
    t_bound_to_host = g_jemalloc_malloc == nullptr ? 0 : -1;
    return;
  }
  unsigned arena = g_host.host_arena;
  t_bound_to_host =
      mallctl("thread.arena", nullptr, nullptr, &arena, sizeof(arena)) == 0
          ? 1
          : -1;
}

namespace {
struct AmbientLive {
  std::mutex mu;  // a pthread mutex: it never allocates
  absl::flat_hash_set<uintptr_t> live;
};
AmbientLive& Ambient() {
  static AmbientLive* ambient = new AmbientLive;
  return *ambient;
}
}  // namespace

void AmbientRemember(const void* p) {
  AmbientLive& a = Ambient();
  std::lock_guard<std::mutex> lock(a.mu);
  a.live.insert(reinterpret_cast<uintptr_t>(p));
}

void* AmbientAllocate(size_t n, int flags) {
  void* p = mallocx(n == 0 ? 1 : n, g_host.ambient_flags | flags);
  if (p != nullptr) AmbientRemember(p);
  return p;
}

bool AmbientIsLive(const void* p) {
  AmbientLive& a = Ambient();
  std::lock_guard<std::mutex> lock(a.mu);
  return a.live.contains(reinterpret_cast<uintptr_t>(p));
}

bool AmbientForget(const void* p) {
  AmbientLive& a = Ambient();
  std::lock_guard<std::mutex> lock(a.mu);
  return a.live.erase(reinterpret_cast<uintptr_t>(p)) != 0;
}

absl::StatusOr<int> HostHeapTrustedKey() {
  InitAllocator();
  if (g_host.error[0] != 0) {
    return absl::FailedPreconditionError(g_host.error);
  }
  return g_host.trusted_key;
}

}  // namespace mpkbox::internal
