#include "runtime/loader/import_policy.h"

#include <dlfcn.h>
#include <string.h>
#include <sys/mman.h>

#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "runtime/compartment_libc/bindings.h"
#include "runtime/keys/seal.h"
#include "trampolines/trampolines.h"


namespace mpkbox::internal {
namespace {

// C library functions that are safe with compartment rights: they read
// their arguments and key-0 constants (locale tables), write only what they
// are given, and make syscalls only through the policy. Those that set errno
// on failure (strtol, read, ...) fault under Ambient::kReadOnly when they do.
constexpr const char* kPureLibc[] = {
    // memory and strings
    "memcpy", "memmove", "memset", "memcmp", "memchr", "memrchr", "rawmemchr",
    "memmem", "mempcpy", "bcmp", "bzero", "explicit_bzero", "strlen",
    "strnlen", "strcmp", "strncmp", "strcpy", "strncpy", "stpcpy", "stpncpy",
    "strcat", "strncat", "strchr", "strrchr", "strchrnul", "strstr",
    "strcasestr", "strspn", "strcspn", "strpbrk", "strtok_r", "strsep",
    "strcasecmp", "strncasecmp", "strcoll", "strxfrm", "strdup", "strndup",
    "strerror", "strerror_r", "__xpg_strerror_r", "__memcpy_chk",
    "__memmove_chk", "__memset_chk", "__strcpy_chk", "__strncpy_chk",
    "__strcat_chk", "__strncat_chk", "__stpcpy_chk", "__mempcpy_chk",
    "__explicit_bzero_chk", "wmemcpy", "wmemset", "wcslen", "wcscmp",
    // conversions and characters
    "strtol", "strtoul", "strtoll", "strtoull", "strtoimax", "strtoumax",
    "strtod", "strtof", "strtold", "atoi", "atol", "atoll", "atof",
    "__isoc23_strtol", "__isoc23_strtoul", "__isoc23_strtoll",
    "__isoc23_strtoull", "__ctype_b_loc", "__ctype_tolower_loc",
    "__ctype_toupper_loc", "__ctype_get_mb_cur_max", "tolower", "toupper",
    "isalpha", "isdigit", "isalnum", "isspace", "isupper", "islower",
    "isxdigit", "isprint", "ispunct", "iscntrl", "isgraph",
    // formatting into memory
    "snprintf", "vsnprintf", "sprintf", "vsprintf", "__snprintf_chk",
    "__vsnprintf_chk", "__sprintf_chk", "__vsprintf_chk",
    // algorithms and arithmetic
    "bsearch", "abs", "labs", "llabs", "div", "ldiv",
    "lldiv", "ffs", "ffsl", "ffsll",
    // bit arithmetic on a dev_t argument (libarchive's cpio writer)
    "gnu_dev_major", "gnu_dev_minor", "gnu_dev_makedev",
    // rand_r keeps its state in the caller's argument (libxml2's dict seed)
    "rand_r",
    // setjmp saves registers into the caller's buffer (longjmp: below)
    "_setjmp", "setjmp", "__sigsetjmp", "sigsetjmp",
    // ending badly is contained
    "abort", "__stack_chk_fail", "__assert_fail", "__fortify_fail",
    "__chk_fail",
    // randomness (getrandom without cancellation inside) and the vDSO; the
    // plain syscall wrappers are compartment_libc's (bindings.h)
    "arc4random", "arc4random_buf", "arc4random_uniform", "clock_gettime",
    "gettimeofday", "time",
    // a key-0 flag libstdc++ only reads (are atomics needed?): true of the
    // host's threads, which are the ones that run compartment code
    "__libc_single_threaded",
};

// Routed to the process's own entry points (runtime/libc_overrides/malloc.cc):
// compartment code then allocates from its heap.
constexpr const char* kRouted[] = {
    "malloc", "calloc", "realloc", "free", "posix_memalign", "aligned_alloc",
    "memalign", "valloc", "pvalloc", "malloc_usable_size", "reallocarray",
    "_Znwm", "_Znam", "_ZnwmRKSt9nothrow_t", "_ZnamRKSt9nothrow_t",
    "_ZnwmSt11align_val_t", "_ZnamSt11align_val_t",
    "_ZnwmSt11align_val_tRKSt9nothrow_t", "_ZnamSt11align_val_tRKSt9nothrow_t",
    "_ZdlPv", "_ZdaPv", "_ZdlPvm", "_ZdaPvm", "_ZdlPvRKSt9nothrow_t",
    "_ZdaPvRKSt9nothrow_t", "_ZdlPvSt11align_val_t", "_ZdaPvSt11align_val_t",
    "_ZdlPvmSt11align_val_t", "_ZdaPvmSt11align_val_t",
    "_ZdlPvSt11align_val_tRKSt9nothrow_t",
    "_ZdaPvSt11align_val_tRKSt9nothrow_t",
};

bool DefinedBy(const void* p, const char* library) {
  Dl_info info;
  return dladdr(p, &info) != 0 && info.dli_fname != nullptr &&
         strstr(info.dli_fname, library) != nullptr;
}

constexpr uintptr_t kTrapStride = 16;
constexpr size_t kTrapBytes = size_t{1} << 20;

struct Policy {
  absl::Mutex mu;
  absl::flat_hash_set<std::string> pure;
  absl::flat_hash_set<std::string> routed;
  void* libc = nullptr;
  void* libm = nullptr;
  uintptr_t traps = 0;  // PROT_NONE: every access faults
  std::vector<std::string> trap_names ABSL_GUARDED_BY(mu);
  std::vector<const char*> trap_why ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<std::string, uintptr_t> trap_of ABSL_GUARDED_BY(mu);
};

Policy& GetPolicy() {
  static Policy* policy = [] {
    auto* p = new Policy;
    for (const char* n : kPureLibc) p->pure.insert(n);
    for (const char* n : kRouted) p->routed.insert(n);
    p->libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    p->libm = dlopen("libm.so.6", RTLD_NOW);  // pure functions
    void* traps = mmap(nullptr, kTrapBytes, PROT_NONE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    p->traps = traps == MAP_FAILED ? 0 : reinterpret_cast<uintptr_t>(traps);
    // Never readable, never unmapped: a trap must stay a trap.
    if (p->traps != 0) Seal(traps, kTrapBytes);
    return p;
  }();
  return *policy;
}

void* Find(void* handle, absl::string_view name, absl::string_view version) {
  if (handle == nullptr) return nullptr;
  const std::string n(name);
  if (!version.empty()) {
    if (void* p = dlvsym(handle, n.c_str(), std::string(version).c_str())) {
      return p;
    }
  }
  return dlsym(handle, n.c_str());
}

HostImport Trap(Policy& p, absl::string_view name, const char* why) {
  absl::MutexLock lock(&p.mu);
  auto [it, inserted] = p.trap_of.try_emplace(std::string(name), 0);
  if (inserted) {
    const size_t index = p.trap_names.size();
    if (p.traps == 0 || (index + 1) * kTrapStride > kTrapBytes) {
      p.trap_of.erase(it);
      return HostImport{};  // unbound: the load fails, naming it
    }
    it->second = p.traps + index * kTrapStride;
    p.trap_names.emplace_back(name);
    p.trap_why.push_back(why);
  }
  return HostImport{it->second, true, why};
}

}  // namespace

bool IsHostLibrary(absl::string_view soname) {
  return soname == "libc.so.6" || soname == "libm.so.6" ||
         soname == "ld-linux-x86-64.so.2" || soname == "libpthread.so.0" ||
         soname == "libdl.so.2" || soname == "librt.so.1" ||
         soname == "libmvec.so.1";
}

HostImport BindHostImport(absl::string_view name, absl::string_view version) {
  Policy& p = GetPolicy();
  const std::string n(name);
  if (const LibcBinding* b = FindLibcBinding(name)) {
    return {reinterpret_cast<uintptr_t>(b->fn)};
  }
  if (p.routed.contains(n)) {
    return {reinterpret_cast<uintptr_t>(dlsym(RTLD_DEFAULT, n.c_str()))};
  }
  if (p.pure.contains(n)) {
    return {reinterpret_cast<uintptr_t>(Find(p.libc, name, version))};
  }
  // libm: arithmetic only. dlsym on its handle also searches libc, its
  // dependency: only what libm itself defines counts.
  if (void* m = Find(p.libm, name, version); m != nullptr && DefinedBy(m, "libm.so")) {
    return {reinterpret_cast<uintptr_t>(m)};
  }
  if (Find(p.libc, name, version) != nullptr ||
      dlsym(RTLD_DEFAULT, n.c_str()) != nullptr) {
    return Trap(p, name,
                "it would run with the compartment's rights on host state "
                "(stdio, locale, threads, signals, files or the like)");
  }
  return HostImport{};
}

std::optional<std::string> RefusedImportAt(uintptr_t address) {
  Policy& p = GetPolicy();
  if (p.traps == 0 || address - p.traps >= kTrapBytes) return std::nullopt;
  absl::MutexLock lock(&p.mu);
  const size_t index = (address - p.traps) / kTrapStride;
  if (index >= p.trap_names.size()) return std::nullopt;
  return absl::StrCat("'", p.trap_names[index], "', an import mpkbox refuses: ",
                      p.trap_why[index]);
}

}  // namespace mpkbox::internal
