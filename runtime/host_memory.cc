#include "runtime/host_memory.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "allocator/host_heap.h"
#include "mpkbox/runtime.h"
#include "runtime/keys/pku.h"
#include "runtime/signals.h"
#include "runtime/testing_switches.h"
#include "trampolines/trampolines.h"

// The host's MPKBOX_COMPARTMENT_READABLE globals (mpkbox/runtime.h): the
// linker's bounds of their section, if the program has one.
extern "C" {
extern char __start_mpkbox_readable[] __attribute__((weak));
extern char __stop_mpkbox_readable[] __attribute__((weak));
}

namespace mpkbox::internal {
namespace {

// Ends the section on a page boundary, so that the page of the last
// readable global holds nothing else (libmpkbox.a links after the host's
// objects, so this comes last).
[[gnu::used]] MPKBOX_COMPARTMENT_READABLE char g_readable_end[4096];

constexpr uintptr_t kPage = MPKBOX_PAGE_SIZE;
// An unlimited RLIMIT_STACK puts mmap's area far away (the legacy layout);
// a huge finite one is not trusted to say where the stack can grow.
constexpr uintptr_t kMaxRegisteredGrowth = uintptr_t{1} << 30;
uintptr_t PageDown(uintptr_t a) { return a & ~(kPage - 1); }
uintptr_t PageUp(uintptr_t a) { return (a + kPage - 1) & ~(kPage - 1); }

// A thread started through pthread_create: its stack below the page its
// start routine runs on.
struct ThreadStack {
  pthread_t thread;
  uintptr_t lo, hi;
  bool key_open;  // its PKRU opens the trusted key (else it is left alone)
};

struct State {
  absl::Mutex mu;
  bool initialized ABSL_GUARDED_BY(mu) = false;
  bool enabled ABSL_GUARDED_BY(mu) = false;
  std::vector<ThreadStack> threads ABSL_GUARDED_BY(mu);
};
State& S() {
  static State* s = new State;
  return *s;
}
// Read without the lock by HostMemoryProtected.
std::atomic<bool> g_protected{false};

// Puts [lo, hi) on the trusted key and records it as `kind`.
absl::Status Tag(uintptr_t lo, uintptr_t hi, int prot, HostMemoryKind kind) {
  if (lo >= hi) return absl::OkStatus();
  const int key = Keys().trusted;
  if (pkey_mprotect(reinterpret_cast<void*>(lo), hi - lo, prot, key) != 0) {
    return absl::InternalError(absl::StrFormat(
        "cannot put the %s at [0x%x, 0x%x) on the trusted key %d: %s",
        HostMemoryKindName(kind), lo, hi, key, strerror(errno)));
  }
  AddHostRange(lo, hi, kind, key);
  return absl::OkStatus();
}

// Objects whose writable state compartment code reads through the C
// library functions it may call (runtime/loader/import_policy.cc).
// The unwinders' state too (libgcc_s for C++ exceptions thrown and caught
// in host code run inside, libunwind for backtraces taken inside).
bool Exempt(absl::string_view path) {
  absl::string_view base = path.substr(path.rfind('/') + 1);
  return absl::StartsWith(base, "libc.so") ||
         absl::StartsWith(base, "libgcc_s.so") ||
         absl::StartsWith(base, "libunwind.so") ||
         absl::StartsWith(base, "libunwind-x86_64.so") ||
         absl::StartsWith(base, "ld-linux") ||
         absl::StartsWith(base, "libm.so") ||
         absl::StartsWith(base, "linux-vdso");
}

uintptr_t Address(uintptr_t base, uintptr_t ptr) {
  return ptr < base ? base + ptr : ptr;  // ld.so relocates some d_ptr values
}

using Ranges = std::vector<std::pair<uintptr_t, uintptr_t>>;

// [lo, hi) minus the pages of [cut_lo, cut_hi).
void Subtract(Ranges& v, uintptr_t cut_lo, uintptr_t cut_hi) {
  cut_lo = PageDown(cut_lo);
  cut_hi = PageUp(cut_hi);
  Ranges out;
  for (auto [lo, hi] : v) {
    if (cut_hi <= lo || cut_lo >= hi) {
      out.push_back({lo, hi});
      continue;
    }
    if (lo < cut_lo) out.push_back({lo, cut_lo});
    if (cut_hi < hi) out.push_back({cut_hi, hi});
  }
  v = std::move(out);
}

// The pages of one object that are writable at run time and not exempt.
int CollectData(dl_phdr_info* info, size_t, void* data) {
  auto* pieces = static_cast<Ranges*>(data);
  if (Exempt(info->dlpi_name)) return 0;
  const uintptr_t base = info->dlpi_addr;
  uintptr_t relro_end = 0, gotplt = 0, gotplt_end = 0;
  // Copy relocations put library variables (libc's environ, stdout, ...)
  // into this object's .bss, where the library's own code reads them.
  Ranges copies;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type == PT_GNU_RELRO) {
      // ld.so protects whole pages: the end rounds down.
      relro_end = PageDown(base + ph.p_vaddr + ph.p_memsz);
    } else if (ph.p_type == PT_DYNAMIC) {
      size_t pltrelsz = 0, relasz = 0;
      const ElfW(Rela)* rela = nullptr;
      const ElfW(Sym)* symtab = nullptr;
      for (auto* d = reinterpret_cast<const ElfW(Dyn)*>(base + ph.p_vaddr);
           d->d_tag != DT_NULL; ++d) {
        if (d->d_tag == DT_PLTGOT) gotplt = Address(base, d->d_un.d_ptr);
        if (d->d_tag == DT_PLTRELSZ) pltrelsz = d->d_un.d_val;
        if (d->d_tag == DT_RELA) {
          rela =
              reinterpret_cast<const ElfW(Rela)*>(Address(base, d->d_un.d_ptr));
        }
        if (d->d_tag == DT_RELASZ) relasz = d->d_un.d_val;
        if (d->d_tag == DT_SYMTAB) {
          symtab =
              reinterpret_cast<const ElfW(Sym)*>(Address(base, d->d_un.d_ptr));
        }
      }
      if (gotplt != 0) {
        gotplt_end = gotplt + 8 * (3 + pltrelsz / sizeof(ElfW(Rela)));
      }
      for (size_t r = 0; rela != nullptr && symtab != nullptr &&
                         r < relasz / sizeof(ElfW(Rela));
           ++r) {
        if (ELF64_R_TYPE(rela[r].r_info) != R_X86_64_COPY) continue;
        const uintptr_t at = base + rela[r].r_offset;
        copies.push_back(
            {at, at + symtab[ELF64_R_SYM(rela[r].r_info)].st_size});
      }
    }
  }
  Ranges v;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD || !(ph.p_flags & PF_W)) continue;
    uintptr_t lo = PageDown(base + ph.p_vaddr);
    const uintptr_t hi = PageUp(base + ph.p_vaddr + ph.p_memsz);
    if (relro_end > lo && relro_end <= hi) lo = relro_end;
    v.push_back({lo, hi});
  }
  // Calls between objects read the GOT: code run inside (a host function
  // given to Call) calls the C library through it.
  if (gotplt != 0) Subtract(v, gotplt, gotplt_end);
  for (auto [lo, hi] : copies) Subtract(v, lo, hi);
  const auto ambient = reinterpret_cast<uintptr_t>(&mpkbox_ambient);
  Subtract(v, ambient, ambient + sizeof(mpkbox_ambient));
  if (__start_mpkbox_readable != nullptr) {
    Subtract(v, reinterpret_cast<uintptr_t>(__start_mpkbox_readable),
             reinterpret_cast<uintptr_t>(__stop_mpkbox_readable));
  }
  for (auto r : v) {
    if (r.first < r.second) pieces->push_back(r);
  }
  return 0;
}

struct Mapping {
  uintptr_t lo, hi;
  int prot;
};

// "rw-p" and the like, as mmap's PROT_* bits.
int ProtOf(const char* perms) {
  return (perms[0] == 'r' ? PROT_READ : 0) |
         (perms[1] == 'w' ? PROT_WRITE : 0) | (perms[2] == 'x' ? PROT_EXEC : 0);
}

// /proc/self/maps: pkey_mprotect sets the protection too, and the host's
// own (a page it made read-only) must stay.
std::vector<Mapping> ReadMappings() {
  std::vector<Mapping> out;
  FILE* maps = fopen("/proc/self/maps", "re");
  if (maps == nullptr) return out;
  char line[512];
  while (fgets(line, sizeof(line), maps) != nullptr) {
    Mapping m{};
    char perms[8] = {};
    if (sscanf(line, "%lx-%lx %4s", &m.lo, &m.hi, perms) != 3) continue;
    m.prot = ProtOf(perms);
    out.push_back(m);
  }
  fclose(maps);
  return out;
}

absl::Status TagData() {
  Ranges pieces;
  dl_iterate_phdr(CollectData, &pieces);
  const std::vector<Mapping> maps = ReadMappings();
  RemoveHostRanges(HostMemoryKind::kData);
  for (auto [lo, hi] : pieces) {
    for (const Mapping& m : maps) {
      const uintptr_t a = std::max(lo, m.lo), b = std::min(hi, m.hi);
      if (a >= b || !(m.prot & PROT_WRITE)) continue;  // writable data only
      if (absl::Status s = Tag(a, b, m.prot, HostMemoryKind::kData); !s.ok()) {
        return s;
      }
    }
  }
  return absl::OkStatus();
}

// The [stack] mapping, all of it: frames, and above them the arguments,
// environment and auxiliary vector (no allowed libc function reads them).
// Pages it grows by later inherit the mapping's key.
absl::Status TagMainStack() {
  FILE* maps = fopen("/proc/self/maps", "re");
  if (maps == nullptr) {
    return absl::InternalError(absl::StrFormat(
        "cannot read /proc/self/maps to find the main stack: %s",
        strerror(errno)));
  }
  char line[512];
  uintptr_t lo = 0, hi = 0;
  char perms[8] = {};
  while (fgets(line, sizeof(line), maps) != nullptr) {
    if (strstr(line, "[stack]") != nullptr &&
        sscanf(line, "%lx-%lx %4s", &lo, &hi, perms) == 3) {
      break;
    }
    lo = hi = 0;
  }
  fclose(maps);
  if (lo == 0) return absl::OkStatus();  // no main stack mapping: nothing
  // Registered down to where it may grow (RLIMIT_STACK): the kernel places
  // other mappings below that.
  rlimit limit{};
  uintptr_t floor = lo;
  if (getrlimit(RLIMIT_STACK, &limit) == 0 && limit.rlim_cur < hi &&
      limit.rlim_cur <= kMaxRegisteredGrowth) {
    floor = std::min<uintptr_t>(lo, hi - limit.rlim_cur);
  }
  if (absl::Status s = Tag(lo, hi, ProtOf(perms), HostMemoryKind::kStack);
      !s.ok()) {
    return s;
  }
  AddHostRange(floor, lo, HostMemoryKind::kStack, Keys().trusted);
  return absl::OkStatus();
}

absl::Status TagThread(const ThreadStack& t) {
  if (!t.key_open) return absl::OkStatus();  // it could not use its stack
  return Tag(t.lo, t.hi, PROT_READ | PROT_WRITE, HostMemoryKind::kStack);
}

bool TrustedKeyOpen(int key) {
  return key > 0 && ((ReadPkru() >> (2 * key)) & kAccessDisable) == 0;
}

// glibc installs its SIGSETXID handler at the first pthread_create and its
// SIGCANCEL handler at the first pthread_cancel: both happen here, once, on
// a thread that ignores the cancellation, so that mpkbox can route the two
// handlers through its entry before any host stack is tagged.
void MakeLibcInstallItsHandlers() {
  // libc's pthread_create, not the interposed one: the thread allocates
  // nothing, so it leaves nothing in the heaps.
  using CreateFn =
      int (*)(pthread_t*, const pthread_attr_t*, void* (*)(void*), void*);
  auto create = reinterpret_cast<CreateFn>(dlsym(RTLD_NEXT, "pthread_create"));
  if (create == nullptr) return;
  std::atomic<int> step{0};
  pthread_t thread;
  if (create(
          &thread, nullptr,
          +[](void* arg) -> void* {
            auto* st = static_cast<std::atomic<int>*>(arg);
            int old = 0;
            pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
            st->store(1);
            while (st->load() != 2) sched_yield();
            return nullptr;
          },
          &step) != 0) {
    return;
  }
  while (step.load() != 1) sched_yield();
  pthread_cancel(thread);
  step.store(2);
  pthread_join(thread, nullptr);
}

}  // namespace

absl::Status ProtectHostMemory(bool enabled) {
  if (enabled) {
    MakeLibcInstallItsHandlers();
    AdoptLibcSignalHandlers();
  }
  State& s = S();
  absl::MutexLock lock(&s.mu);
  s.initialized = true;
  s.enabled = enabled;
  if (!enabled) return absl::OkStatus();
  if (absl::Status st = TagData(); !st.ok()) return st;
  if (absl::Status st = TagMainStack(); !st.ok()) return st;
  for (const ThreadStack& t : s.threads) {
    if (absl::Status st = TagThread(t); !st.ok()) return st;
  }
  g_protected.store(true);
  return absl::OkStatus();
}

bool HostMemoryProtected() { return g_protected.load(); }

void RefreshHostData() {
  if (!HostMemoryProtected()) return;
  State& s = S();
  absl::MutexLock lock(&s.mu);
  if (!s.enabled) return;
  TagData().IgnoreError();  // what could not be tagged stays readable
}

uintptr_t ProtectThisThreadStack(uintptr_t sp) {
  pthread_attr_t attr;
  if (pthread_getattr_np(pthread_self(), &attr) != 0) return 0;
  void* addr = nullptr;
  size_t size = 0;
  const int err = pthread_attr_getstack(&attr, &addr, &size);
  pthread_attr_destroy(&attr);
  if (err != 0) return 0;
  const uintptr_t lo = PageUp(reinterpret_cast<uintptr_t>(addr));
  const uintptr_t boundary = PageDown(sp);
  if (boundary <= lo) return 0;
  // The trusted key is the host heap's: it exists from the process's first
  // malloc, and threads inherit a PKRU that opens it.
  ThreadStack t{pthread_self(), lo, boundary,
                TrustedKeyOpen(g_host.trusted_key)};
  State& s = S();
  absl::MutexLock lock(&s.mu);
  if (s.initialized && !s.enabled) return 0;
  if (!s.initialized) {
    s.threads.push_back(t);  // Init decides
    return boundary;
  }
  s.threads.push_back(t);
  if (!TagThread(t).ok()) return 0;
  return boundary;
}

void ForgetThisThreadStack() {
  State& s = S();
  absl::MutexLock lock(&s.mu);
  const pthread_t self = pthread_self();
  auto it = std::find_if(
      s.threads.begin(), s.threads.end(),
      [self](const ThreadStack& t) { return pthread_equal(t.thread, self); });
  if (it == s.threads.end()) return;
  // glibc may hand the stack to a later thread or unmap it: either way it
  // is no host stack of this thread any more.
  RemoveHostRange(it->lo, it->hi);
  s.threads.erase(it);
}

int FirstHostPointer(const uintptr_t* addresses, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (addresses[i] != 0 &&
        HostMemoryKindOf(addresses[i]) != HostMemoryKind::kNone) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

#ifdef MPKBOX_TESTING_SWITCHES
void ExposeHostMemoryForTesting() {
  State& s = S();
  absl::MutexLock lock(&s.mu);
  s.enabled = false;
  g_protected.store(false);
  for (HostMemoryKind kind : {HostMemoryKind::kStack, HostMemoryKind::kData}) {
    ForEachHostRange(kind, [](uintptr_t lo, uintptr_t hi) {
      // The main stack's range reaches below its mapping (where it may
      // grow): page by page where the whole range fails.
      if (pkey_mprotect(reinterpret_cast<void*>(lo), hi - lo,
                        PROT_READ | PROT_WRITE, 0) == 0) {
        return;
      }
      for (uintptr_t p = lo; p < hi; p += kPage) {
        pkey_mprotect(reinterpret_cast<void*>(p), kPage, PROT_READ | PROT_WRITE,
                      0);
      }
    });
    RemoveHostRanges(kind);
  }
}
#endif

}  // namespace mpkbox::internal
