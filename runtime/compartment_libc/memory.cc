// Loaded code's mmap family. glibc's are raw syscalls, which the policy
// never allows (a mapping could land on, re-tag or replace any memory).
// These serve anonymous memory from the compartment's own heap instead
// (CompartmentHeap::AllocateMapping): whole pages with its key, read-write,
// never executable, recorded host-side in its LibcState. munmap, mremap,
// mprotect and madvise reach only what that record holds.
//
// Nothing inside becomes executable: code that was never scanned could hold
// a WRPKRU, so PROT_EXEC fails (EPERM from mmap, EACCES from mprotect) and
// JIT compilers inside (pcre2's) fall back to their interpreters.
//
// mprotect only ever keeps read-write. The host reads and writes memory it
// has checked is the compartment's (a syscall's copies, the allocator's
// caches) with host rights, which page protections still bind: a page made
// read-only or PROT_NONE would fault the host there, not the compartment.
// So PROT_READ and PROT_NONE fail with EACCES too, and an mmap that asks
// for less than read-write gets read-write.
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/types.h>

#include <cstdint>

#include "allocator/compartment_heap.h"
#include "runtime/compartment_libc/bindings.h"
#include "runtime/compartment_libc/libc_entry.h"
#include "runtime/compartment_libc/libc_state.h"
#include "runtime/syscall_rules.h"
#include "runtime/testing_switches.h"

namespace mpkbox::internal {
namespace {

enum MemoryRequest : uint64_t {
  kMmap = 0,   // (length, prot, flags)
  kMunmap,     // (address, length)
  kMremap,     // (address, old length, new length, flags)
  kMprotect,   // (address, length, prot)
  kMadvise,    // (address, length, advice): the advice that drops pages
};

constexpr uint64_t kPage = MPKBOX_PAGE_SIZE;

uint64_t Op(MemoryRequest r) { return LibcOp(kLibcMemory, r); }
uint64_t U(const void* p) { return reinterpret_cast<uintptr_t>(p); }
uint64_t U(long v) { return static_cast<uint64_t>(v); }

// ---- compartment side -------------------------------------------------------

void* Mmap(void*, size_t length, int prot, int flags, int fd, off_t) {
  // The address is only a hint without MAP_FIXED, and MAP_FIXED fails.
  const long r = LibcResult(EnterLibc(Op(kMmap), length, U(prot), U(flags)));
  (void)fd;  // ignored with MAP_ANONYMOUS, as the kernel does
  return r == -1 ? MAP_FAILED : reinterpret_cast<void*>(r);
}

int Munmap(void* address, size_t length) {
  return static_cast<int>(LibcResult(EnterLibc(Op(kMunmap), U(address), length)));
}

// Variadic in C: the fifth argument (MREMAP_FIXED's address) is refused.
void* Mremap(void* address, size_t old_length, size_t new_length, int flags) {
  const long r = LibcResult(EnterLibc(Op(kMremap), U(address), old_length,
                                      new_length, U(flags)));
  return r == -1 ? MAP_FAILED : reinterpret_cast<void*>(r);
}

int Mprotect(void* address, size_t length, int prot) {
  return static_cast<int>(
      LibcResult(EnterLibc(Op(kMprotect), U(address), length, U(prot))));
}

// Hints change nothing the compartment could observe but timing: answered
// here. The advice that drops pages goes to the host, which applies it to
// the compartment's own mappings only.
int Advise(void* address, size_t length, int advice) {
  if (U(address) % kPage != 0) return EINVAL;
  switch (advice) {
    case MADV_NORMAL:
    case MADV_RANDOM:
    case MADV_SEQUENTIAL:
    case MADV_WILLNEED:
    case MADV_FREE:  // the contents may stay: doing nothing is a valid free
    case MADV_DONTFORK:
    case MADV_DOFORK:
    case MADV_WIPEONFORK:
    case MADV_KEEPONFORK:
    case MADV_HUGEPAGE:
    case MADV_NOHUGEPAGE:
    case MADV_DONTDUMP:
    case MADV_DODUMP:
    case MADV_COLD:
    case MADV_PAGEOUT:
      return 0;
    case MADV_DONTNEED: {
      const long r = static_cast<long>(
          EnterLibc(Op(kMadvise), U(address), length, U(advice)));
      return r < 0 ? static_cast<int>(-r) : 0;
    }
    default:
      return EINVAL;
  }
}

int Madvise(void* address, size_t length, int advice) {
  const int e = Advise(address, length, advice);
  if (e == 0) return 0;
  *mpkbox_compartment_errno_location() = e;
  return -1;
}

// glibc ignores POSIX_MADV_DONTNEED (it may not drop data): so do we.
int PosixMadvise(void* address, size_t length, int advice) {
  switch (advice) {
    case POSIX_MADV_NORMAL:
    case POSIX_MADV_RANDOM:
    case POSIX_MADV_SEQUENTIAL:
    case POSIX_MADV_WILLNEED:
    case POSIX_MADV_DONTNEED:
      return Advise(address, length, MADV_NORMAL);
    default:
      return EINVAL;
  }
}

constexpr char kOwnMappings[] =
    "the host checks the range is one of the compartment's own mappings "
    "(its record, host memory); never re-tags or unmaps anything else";
constexpr char kServed[] =
    "anonymous only, never MAP_FIXED or PROT_EXEC: pages of the "
    "compartment's own heap, read-write with its key (a Deny or Fail of "
    "SYS_mmap in its policy takes it away)";

// ---- host side --------------------------------------------------------------

bool RoundToPages(uint64_t length, uint64_t* pages) {
  if (length == 0 || length > (uint64_t{1} << 46)) return false;
  *pages = (length + kPage - 1) & ~(kPage - 1);
  return true;
}

CompartmentHeap* HeapOf(const LibcCaller& caller) {
  CompartmentHeap* heap = HeapOfSlot(caller.slot);
  return heap != nullptr && heap->domain() == caller.domain ? heap : nullptr;
}

long HostMmap(const LibcCaller& caller, uint64_t length, uint64_t prot,
              uint64_t flags) {
  // The host may take mmap away: a rule it names for SYS_mmap (never the
  // policy's default for unlisted calls, which is for raw syscalls).
  const SyscallRule& rule = SyscallRules::For(*caller.ctx->policy, SYS_mmap);
  if (rule.listed && rule.action == SyscallAction::kErrno) return -rule.error;
  if (rule.listed && rule.action == SyscallAction::kFailCall) {
    RecordFault(caller.tb, FaultKind::kSyscallDenied,
                {.signal = SIGSYS,
                 .syscall = SYS_mmap,
                 .what = "the compartment's syscall policy fails mmap"});
    AbandonRecordedCallback(caller.tb);
  }
  constexpr uint64_t kHarmlessFlags =
      MAP_NORESERVE | MAP_POPULATE | MAP_STACK;
  if (prot & PROT_EXEC) return -EPERM;  // never-scanned code could run
  if (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) return -EPERM;
  if (!(flags & MAP_ANONYMOUS)) return -EACCES;  // files: never mapped
  if (prot & ~uint64_t{PROT_READ | PROT_WRITE}) return -EINVAL;
  const uint64_t type = flags & MAP_TYPE;
  // Shared anonymous memory is shared with forked children only: no
  // compartment forks, so it is private memory too.
  if (type != MAP_PRIVATE && type != MAP_SHARED) return -EINVAL;
  if (flags & ~(MAP_TYPE | MAP_ANONYMOUS | kHarmlessFlags)) return -EINVAL;
  uint64_t pages;
  if (!RoundToPages(length, &pages)) return length == 0 ? -EINVAL : -ENOMEM;
  CompartmentHeap* heap = HeapOf(caller);
  void* p = heap != nullptr ? heap->AllocateMapping(pages) : nullptr;
  if (p == nullptr) return -ENOMEM;
  absl::MutexLock lock(&caller.state->mu);
  caller.state->mappings[U(p)] = {pages, pages};
  return static_cast<long>(U(p));
}

// The record of the mapping that starts at `address` and is `length`
// bytes long (rounded to pages), or null.
LibcState::Mapping* Exactly(LibcState* state, uint64_t address,
                            uint64_t length)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(state->mu) {
  uint64_t pages;
  if (address % kPage != 0 || !RoundToPages(length, &pages)) return nullptr;
  auto it = state->mappings.find(address);
  if (it == state->mappings.end() || it->second.length != pages) {
    return nullptr;
  }
  return &it->second;
}

// True if [address, address + length) lies inside one mapping.
bool Within(LibcState* state, uint64_t address, uint64_t length)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(state->mu) {
  uint64_t pages;
  if (address % kPage != 0 || !RoundToPages(length, &pages)) return false;
  auto it = state->mappings.upper_bound(address);
  if (it == state->mappings.begin()) return false;
  --it;
  return address - it->first <= it->second.length &&
         pages <= it->second.length - (address - it->first);
}

long HostMunmap(const LibcCaller& caller, uint64_t address, uint64_t length) {
  CompartmentHeap* heap = HeapOf(caller);
  {
    absl::MutexLock lock(&caller.state->mu);
    if (heap == nullptr || Exactly(caller.state, address, length) == nullptr) {
      return -EINVAL;  // not a whole mapping of its own: nothing happens
    }
    caller.state->mappings.erase(address);
  }
  heap->FreeMapping(reinterpret_cast<void*>(address));
  return 0;
}

long HostMremap(const LibcCaller& caller, uint64_t address,
                uint64_t old_length, uint64_t new_length, uint64_t flags) {
  if (flags & ~uint64_t{MREMAP_MAYMOVE}) return -EINVAL;  // FIXED, DONTUNMAP
  uint64_t new_pages;
  if (!RoundToPages(new_length, &new_pages)) {
    return new_length == 0 ? -EINVAL : -ENOMEM;
  }
  CompartmentHeap* heap = HeapOf(caller);
  if (heap == nullptr) return -EFAULT;
  absl::MutexLock lock(&caller.state->mu);
  LibcState::Mapping* m = Exactly(caller.state, address, old_length);
  if (m == nullptr) return -EFAULT;
  char* p = reinterpret_cast<char*>(address);
  if (new_pages <= m->allocated) {
    // Pages that come back read zero, as fresh anonymous pages do.
    if (new_pages > m->length) memset(p + m->length, 0, new_pages - m->length);
    m->length = new_pages;
    return static_cast<long>(address);
  }
  if (!(flags & MREMAP_MAYMOVE)) return -ENOMEM;
  void* q = heap->AllocateMapping(new_pages);
  if (q == nullptr) return -ENOMEM;
  // Compartment memory on both sides, read-write (mprotect keeps it so).
  memcpy(q, p, m->length);
  caller.state->mappings.erase(address);
  caller.state->mappings[U(q)] = {new_pages, new_pages};
  heap->FreeMapping(p);
  return static_cast<long>(U(q));
}

long HostMprotect(const LibcCaller& caller, uint64_t address, uint64_t length,
                  uint64_t prot) {
  if (address % kPage != 0) return -EINVAL;
  absl::MutexLock lock(&caller.state->mu);
  if (MPKBOX_SWITCHED_OFF(allow_exec_mappings) && prot & PROT_EXEC &&
      Within(caller.state, address, length)) {
    // The attack the refusal stops, for a test to show (keeps the key).
    return mprotect(reinterpret_cast<void*>(address), length,
                    PROT_READ | PROT_WRITE | PROT_EXEC) == 0
               ? 0
               : -errno;
  }
  if (prot & PROT_EXEC) return -EACCES;
  if (prot & ~uint64_t{PROT_READ | PROT_WRITE}) return -EINVAL;
  if (!Within(caller.state, address, length)) return -ENOMEM;
  // Read-write is what the pages have: nothing to do. Less would fault the
  // host where it touches them (the file comment).
  return prot == (PROT_READ | PROT_WRITE) ? 0 : -EACCES;
}

long HostMadvise(const LibcCaller& caller, uint64_t address, uint64_t length,
                 uint64_t advice) {
  if (advice != MADV_DONTNEED) return -EINVAL;
  absl::MutexLock lock(&caller.state->mu);
  // Anywhere else it could drop the loader's private copy of a code page
  // (back to the file's bytes, before relocation and gadget rewriting).
  if (!Within(caller.state, address, length)) return -EINVAL;
  const uint64_t pages = (length + kPage - 1) & ~(kPage - 1);
  return madvise(reinterpret_cast<void*>(address), pages, MADV_DONTNEED) == 0
             ? 0
             : -errno;
}

}  // namespace

absl::Span<const LibcBinding> MemoryBindings() {
  static const LibcBinding kBindings[] = {
      {"mmap", LibcFn(&Mmap), kServed},
      {"mmap64", LibcFn(&Mmap), kServed},
      {"munmap", LibcFn(&Munmap), kOwnMappings},
      {"mremap", LibcFn(&Mremap), kOwnMappings},
      {"mprotect", LibcFn(&Mprotect),
       "never PROT_EXEC; only read-write on the compartment's own mappings, "
       "which they have (the host checks its record)"},
      {"madvise", LibcFn(&Madvise),
       "hints do nothing; MADV_DONTNEED only on the compartment's own "
       "mappings (the host checks its record)"},
      {"posix_madvise", LibcFn(&PosixMadvise),
       "hints only: nothing changes, as glibc's DONTNEED"},
  };
  return kBindings;
}

uint64_t LibcMemoryRequest(const LibcCaller& caller, uint64_t op,
                           const uint64_t a[5]) {
  long r;
  switch (op & 0xff) {
    case kMmap:
      r = HostMmap(caller, a[0], a[1], a[2]);
      break;
    case kMunmap:
      r = HostMunmap(caller, a[0], a[1]);
      break;
    case kMremap:
      r = HostMremap(caller, a[0], a[1], a[2], a[3]);
      break;
    case kMprotect:
      r = HostMprotect(caller, a[0], a[1], a[2]);
      break;
    case kMadvise:
      r = HostMadvise(caller, a[0], a[1], a[2]);
      break;
    default:
      AbandonCallback(caller.tb, FaultKind::kSyscallDenied, op,
                      "an unknown memory request");
  }
  return static_cast<uint64_t>(r);
}

}  // namespace mpkbox::internal
